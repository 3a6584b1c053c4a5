"""SinkRouterError: a failed sr_ call, with the C status and the C library's own message."""
from __future__ import annotations

from ._abi import Status
from ._lib import library


class SinkRouterError(Exception):
    """A libsinkrouter call returned a status other than SR_OK.

    status:  the sr_status as a Status member.
    message: sr_last_error() of the failing call, which names the bad argument and its value.
    """

    def __init__(self, status: Status, message: str):
        self.status = status
        self.message = message
        super().__init__(f"{status.name}: {message}")


def check(status: int) -> None:
    """Raises SinkRouterError unless status is SR_OK. Call it right after the C call, on the
    same thread: sr_last_error() is per thread and valid until that thread's next call."""
    if status == Status.OK:
        return
    message = library().sr_last_error().decode("utf-8", errors="replace")
    try:
        known = Status(status)
    except ValueError:  # a code appended by a newer library
        known = Status.INTERNAL
        message = f"status {status} (unknown to this binding): {message}"
    raise SinkRouterError(known, message)
