package sinkrouter

// #include <stdint.h>
import "C"

import (
	"math"
	"unsafe"
)

// int32Arg narrows a Go int to the int32_t the C API takes, naming the argument on overflow.
func int32Arg(op, name string, v int) (C.int32_t, error) {
	if v < math.MinInt32 || v > math.MaxInt32 {
		return 0, argumentError(op, StatusOutOfRange, "%s = %d does not fit in int32", name, v)
	}
	return C.int32_t(v), nil
}

// firstElement is the address C reads a slice from, NULL for an empty slice (the C library
// then names the argument). C never keeps these pointers past the call.
func firstElement[T any](s []T) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(&s[0])
}
