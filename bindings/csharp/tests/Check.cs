// Assertions for the test runner: each throws TestFailure with what was expected and seen.
using System;

namespace SinkRouter.Tests
{
    internal sealed class TestFailure : Exception
    {
        public TestFailure(string message) : base(message)
        {
        }
    }

    internal static class Check
    {
        public static void True(bool condition, string what)
        {
            if (!condition) throw new TestFailure(what);
        }

        public static void Equal<T>(T expected, T actual, string what)
        {
            if (!Equals(expected, actual))
                throw new TestFailure(what + ": expected " + expected + ", got " + actual);
        }

        public static void AtMost(double limit, double actual, string what)
        {
            if (!(actual <= limit)) throw new TestFailure(what + ": " + actual + " exceeds " + limit);
        }

        public static void Contains(string expectedPart, string actual, string what)
        {
            if (actual == null || !actual.Contains(expectedPart))
                throw new TestFailure(what + ": \"" + actual + "\" does not contain \"" + expectedPart + "\"");
        }

        /// <summary>Runs action, which must throw exactly TException; returns the exception.</summary>
        public static TException Throws<TException>(Action action, string what) where TException : Exception
        {
            try
            {
                action();
            }
            catch (TException e) when (e.GetType() == typeof(TException))
            {
                return e;
            }
            catch (Exception e)
            {
                throw new TestFailure(what + ": expected " + typeof(TException).Name + ", got " + e.GetType().Name +
                                      ": " + e.Message);
            }
            throw new TestFailure(what + ": expected " + typeof(TException).Name + ", nothing was thrown");
        }

        /// <summary>The call must fail in the C library with this status and a message that
        /// names the argument.</summary>
        public static SinkRouterException FailsWith(Status status, string argument, Action action, string what)
        {
            SinkRouterException e = Throws<SinkRouterException>(action, what);
            Equal(status, e.Status, what + ": status");
            Contains(argument, e.NativeMessage, what + ": message");
            Contains(Library.StatusName(status), e.Message, what + ": exception message");
            return e;
        }
    }
}
