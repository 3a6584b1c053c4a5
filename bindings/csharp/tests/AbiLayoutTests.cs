// Drift check: the C# mirrors must match the header as the C compiler lays it out. The program
// named by SR_ABI_LAYOUT_DUMP (bindings/common/abi_layout_dump.c) prints one fact a line:
//   struct NAME SIZE | field STRUCT.FIELD OFFSET | enum ENUM.NAME VALUE | function NAME
// Every fact must hold here, and every mirror here must appear there.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Reflection;
using System.Runtime.InteropServices;
using SinkRouter.Native;

namespace SinkRouter.Tests
{
    public static class AbiLayoutTests
    {
        // C enum -> (C# enum, prefix its C names carry after SR_).
        private static readonly Dictionary<string, KeyValuePair<Type, string>> Enums =
            new Dictionary<string, KeyValuePair<Type, string>>
            {
                { "sr_status", Pair(typeof(Status), "ERR_") },
                { "sr_backend", Pair(typeof(Backend), "BACKEND_") },
                { "sr_dtype", Pair(typeof(DType), "DTYPE_") },
                { "sr_memory", Pair(typeof(MemoryKind), "MEMORY_") },
                { "sr_routing_mode", Pair(typeof(RoutingMode), "ROUTING_") },
            };

        private static readonly Assembly Binding = typeof(Context).Assembly;
        private const string MirrorNamespace = "SinkRouter.Native";

        [Test]
        public static void StructSizesAndFieldOffsetsMatchTheHeader()
        {
            var fieldsSeen = new Dictionary<Type, int>();
            foreach (string[] fact in Facts())
            {
                if (fact[0] == "struct")
                {
                    Type mirror = Mirror(fact[1]);
                    Check.Equal(long.Parse(fact[2]), (long)Marshal.SizeOf(mirror), "size of " + fact[1]);
                    if (!fieldsSeen.ContainsKey(mirror)) fieldsSeen[mirror] = 0;
                }
                else if (fact[0] == "field")
                {
                    string[] parts = fact[1].Split('.');
                    Type mirror = Mirror(parts[0]);
                    Check.True(mirror.GetField(parts[1], BindingFlags.Public | BindingFlags.Instance) != null,
                               parts[0] + " has field " + parts[1] + " in the header but not in the C# mirror");
                    Check.Equal(long.Parse(fact[2]), Marshal.OffsetOf(mirror, parts[1]).ToInt64(),
                                "offset of " + fact[1]);
                    fieldsSeen[mirror] = fieldsSeen.ContainsKey(mirror) ? fieldsSeen[mirror] + 1 : 1;
                }
            }
            foreach (Type mirror in Mirrors())
            {
                Check.True(fieldsSeen.ContainsKey(mirror), "C# mirror " + mirror.Name + " is not a struct of the header");
                int declared = mirror.GetFields(BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance).Length;
                Check.Equal(fieldsSeen[mirror], declared, "fields of " + mirror.Name + " (header vs C#)");
            }
        }

        [Test]
        public static void EnumValuesMatchTheHeader()
        {
            var membersSeen = new HashSet<string>();
            foreach (string[] fact in Facts().Where(f => f[0] == "enum"))
            {
                string[] parts = fact[1].Split('.');
                Check.True(Enums.ContainsKey(parts[0]), "the header has enum " + parts[0] + " but the binding has no mirror");
                Type mirror = Enums[parts[0]].Key;
                string member = CSharpMemberName(parts[1], Enums[parts[0]].Value);
                Check.True(Enum.IsDefined(mirror, member),
                           parts[1] + " of the header has no member " + mirror.Name + "." + member);
                Check.Equal(int.Parse(fact[2]), (int)Enum.Parse(mirror, member), "value of " + parts[1]);
                membersSeen.Add(mirror.Name + "." + member);
            }
            foreach (Type mirror in Enums.Values.Select(pair => pair.Key))
            {
                Check.Equal(typeof(int), Enum.GetUnderlyingType(mirror), "underlying type of " + mirror.Name);
                foreach (string member in Enum.GetNames(mirror))
                    Check.True(membersSeen.Contains(mirror.Name + "." + member),
                               mirror.Name + "." + member + " is not a value of the header");
            }
        }

        [Test]
        public static void EveryFunctionOfTheHeaderIsDeclaredAndNothingElse()
        {
            HashSet<string> declared = new HashSet<string>(
                typeof(NativeMethods).GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic)
                    .Where(method => (method.Attributes & MethodAttributes.PinvokeImpl) != 0)
                    .Select(method => method.Name));
            HashSet<string> header = new HashSet<string>(Facts().Where(f => f[0] == "function").Select(f => f[1]));
            foreach (string function in header)
                Check.True(declared.Contains(function), "the header declares " + function + " but the binding does not");
            foreach (string function in declared)
                Check.True(header.Contains(function), "the binding declares " + function + ", which the header lacks");
        }

        [Test]
        public static void LoadedLibraryHasTheAbiTheseDeclarationsMirror()
        {
            Check.Equal(Library.ExpectedAbiVersion, Library.AbiVersion, "sr_abi_version()");
            string[] parts = Library.Version.Split('.');
            Check.Equal(3, parts.Length, "parts of sr_version() \"" + Library.Version + "\"");
            uint number = uint.Parse(parts[0]) * 10000 + uint.Parse(parts[1]) * 100 + uint.Parse(parts[2]);
            Check.Equal(number, Library.VersionNumber, "sr_version_number() against sr_version()");
        }

        // ------------------------------------------------------------ helpers

        private static List<string[]> facts;

        /// <summary>The dump's lines, split on spaces; fails when the dump cannot be had.</summary>
        private static List<string[]> Facts()
        {
            if (facts != null) return facts;
            string program = Environment.GetEnvironmentVariable("SR_ABI_LAYOUT_DUMP");
            if (string.IsNullOrEmpty(program))
                throw new TestFailure("SR_ABI_LAYOUT_DUMP is not set: point it at the sr_abi_layout_dump program " +
                                      "(build/<preset>/bindings/sr_abi_layout_dump) so the layout can be compared");
            var start = new ProcessStartInfo(program)
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
            };
            string output;
            using (Process dump = Process.Start(start))
            {
                output = dump.StandardOutput.ReadToEnd();
                dump.WaitForExit();
                Check.Equal(0, dump.ExitCode, "exit code of " + program);
            }
            var parsed = new List<string[]>();
            foreach (string line in output.Split('\n').Select(l => l.Trim()).Where(l => l.Length > 0))
            {
                string[] fact = line.Split(' ');
                bool known = (fact[0] == "struct" || fact[0] == "field" || fact[0] == "enum") && fact.Length == 3 ||
                             fact[0] == "function" && fact.Length == 2;
                Check.True(known, "unknown line in the layout dump: \"" + line + "\"");
                parsed.Add(fact);
            }
            Check.True(parsed.Any(f => f[0] == "struct") && parsed.Any(f => f[0] == "enum") &&
                       parsed.Any(f => f[0] == "function"),
                       program + " printed no structs, enums or functions");
            facts = parsed;
            return facts;
        }

        private static Type Mirror(string cName)
        {
            Type mirror = Binding.GetType(MirrorNamespace + "." + cName);
            Check.True(mirror != null, "the header has struct " + cName + " but the binding has no mirror");
            return mirror;
        }

        private static IEnumerable<Type> Mirrors()
        {
            return Binding.GetTypes().Where(type => type.Namespace == MirrorNamespace && type.IsValueType);
        }

        /// <summary>SR_ERR_CACHE_FULL -> CacheFull, SR_DTYPE_BF16 -> Bf16, SR_OK -> Ok.</summary>
        private static string CSharpMemberName(string cName, string kindPrefix)
        {
            string name = cName.StartsWith("SR_") ? cName.Substring(3) : cName;
            if (name.StartsWith(kindPrefix)) name = name.Substring(kindPrefix.Length);
            return string.Concat(name.Split('_').Select(word => word.Substring(0, 1) + word.Substring(1).ToLowerInvariant()));
        }

        private static KeyValuePair<Type, string> Pair(Type type, string prefix)
        {
            return new KeyValuePair<Type, string>(type, prefix);
        }
    }
}
