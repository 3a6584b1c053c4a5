// A small test runner: NUnit's framework assembly (Debian's libnunit-framework2.6.3-cil) is not
// on this machine, so nunit-console has nothing to run. Every public static method marked [Test]
// runs; a test fails by throwing. Arguments are substrings of "Class.Method" to select tests.
// The last line printed is "N passed, M failed"; the exit code is non-zero on any failure and
// when no test ran.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Reflection;

namespace SinkRouter.Tests
{
    [AttributeUsage(AttributeTargets.Method)]
    internal sealed class TestAttribute : Attribute
    {
    }

    internal static class TestRunner
    {
        private static int Main(string[] filters)
        {
            List<MethodInfo> tests = typeof(TestRunner).Assembly.GetTypes()
                .SelectMany(type => type.GetMethods(BindingFlags.Public | BindingFlags.Static))
                .Where(method => method.IsDefined(typeof(TestAttribute), false))
                .Where(method => filters.Length == 0 || filters.Any(f => FullName(method).Contains(f)))
                .OrderBy(FullName, StringComparer.Ordinal)
                .ToList();
            Console.WriteLine("libsinkrouter " + Library.Version + ", " + tests.Count + " tests");

            int passed = 0, failed = 0;
            foreach (MethodInfo test in tests)
            {
                Stopwatch clock = Stopwatch.StartNew();
                try
                {
                    test.Invoke(null, null);
                    passed++;
                    Console.WriteLine("PASS " + FullName(test) + " (" + clock.ElapsedMilliseconds + " ms)");
                }
                catch (TargetInvocationException wrapped)
                {
                    failed++;
                    Exception e = wrapped.InnerException;
                    Console.WriteLine("FAIL " + FullName(test) + ": " + e.GetType().Name + ": " + e.Message);
                    if (!(e is TestFailure)) Console.WriteLine(e.StackTrace);
                }
            }
            Console.WriteLine(passed + " passed, " + failed + " failed");
            return failed == 0 && passed > 0 ? 0 : 1;
        }

        private static string FullName(MethodInfo method)
        {
            return method.DeclaringType.Name + "." + method.Name;
        }
    }
}
