// The tests compare the internal struct mirrors with the C layout (tests/AbiLayoutTests.cs).
using System.Runtime.CompilerServices;

[assembly: InternalsVisibleTo("SinkRouter.Tests")]
