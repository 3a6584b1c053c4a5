package sinkrouter

// #include "sinkrouter/sinkrouter.h"
import "C"

import (
	"fmt"
	"runtime"
)

// Status mirrors sr_status. Values are pinned by the C header (the ABI layout test checks them).
type Status int32

const (
	StatusOK                 Status = 0
	StatusInvalidArgument    Status = 1
	StatusOutOfRange         Status = 2
	StatusUnsupported        Status = 3
	StatusOutOfMemory        Status = 4
	StatusCacheFull          Status = 5
	StatusUnknownSequence    Status = 6
	StatusBackendUnavailable Status = 7
	StatusDevice             Status = 8
	StatusStructSize         Status = 9
	StatusInternal           Status = 10
)

// String is the C name of the status ("SR_ERR_CACHE_FULL"), as sr_status_string gives it.
func (s Status) String() string {
	return C.GoString(C.sr_status_string(C.sr_status(s)))
}

// Error makes a Status usable as an errors.Is target: errors.Is(err, StatusCacheFull).
func (s Status) Error() string { return s.String() }

// Error is every error this package returns.
type Error struct {
	Op      string // the C function (or binding method) that failed
	Status  Status
	Message string // sr_last_error() of the failing call, or the binding's own check
}

func (e *Error) Error() string {
	return fmt.Sprintf("sinkrouter: %s: %s: %s", e.Op, e.Status, e.Message)
}

// Is reports whether target is this error's Status.
func (e *Error) Is(target error) bool {
	status, ok := target.(Status)
	return ok && status == e.Status
}

// call runs one C function and turns its status into an *Error. sr_last_error() is per OS
// thread, so the goroutine stays on one thread from the call until the message is copied.
func call(op string, fn func() C.sr_status) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	status := fn()
	if status == C.SR_OK {
		return nil
	}
	return &Error{Op: op, Status: Status(status), Message: C.GoString(C.sr_last_error())}
}

// argumentError is a check the binding makes before calling C, reported like the C library's.
func argumentError(op string, status Status, format string, args ...any) error {
	return &Error{Op: op, Status: status, Message: fmt.Sprintf(format, args...)}
}

func closedError(op, handle string) error {
	return argumentError(op, StatusInvalidArgument, "%s is closed", handle)
}
