package sinkrouter

// #include "sinkrouter/sinkrouter.h"
import "C"

import "fmt"

// Backend mirrors sr_backend.
type Backend int32

const (
	BackendAuto Backend = 0 // the first GPU backend that loads and finds a device, else the CPU
	BackendCPU  Backend = 1
	BackendCUDA Backend = 2
	BackendHIP  Backend = 3
)

// String is the C library's name of the backend ("cpu").
func (b Backend) String() string { return C.GoString(C.sr_backend_name(C.sr_backend(b))) }

// DType mirrors sr_dtype: the element type of K/V in a cache or in a caller's buffer.
type DType int32

const (
	DTypeCache DType = -1 // in transfers only: the cache's own dtype
	DTypeF32   DType = 0
	DTypeF16   DType = 1
	DTypeBF16  DType = 2
	// DTypeFP8E4M3 (OCP FP8 E4M3) is a cache element type only: transfers and decode buffers
	// never take it. The library keeps one f32 scale per token and kv-head for K and for V
	// (8 bytes a token and kv-head besides the elements) and converts on append and read.
	// Since library 0.2.0.
	DTypeFP8E4M3 DType = 3
)

// Size is the bytes of one element, 0 for DTypeCache or an unknown value (DTypeFP8E4M3: 1).
func (d DType) Size() int { return int(C.sr_dtype_size(C.sr_dtype(d))) }

func (d DType) String() string {
	switch d {
	case DTypeCache:
		return "cache"
	case DTypeF32:
		return "f32"
	case DTypeF16:
		return "f16"
	case DTypeBF16:
		return "bf16"
	case DTypeFP8E4M3:
		return "fp8_e4m3"
	}
	return fmt.Sprintf("DType(%d)", int32(d))
}

// memory mirrors sr_memory. Go slices are host memory, so only memoryHost is ever passed;
// the device value is kept so the ABI layout test sees the whole enum mirrored.
type memory int32

const (
	memoryHost   memory = 0
	memoryDevice memory = 1
)

// RoutingMode mirrors sr_routing_mode.
type RoutingMode int32

const (
	RoutingOff    RoutingMode = 0 // dense exact attention
	RoutingTau    RoutingMode = 1 // skip V blocks whose logits sit more than Tau below the anchor reference
	RoutingBudget RoutingMode = 2 // skip V blocks while the certified relative error stays within ErrorBudget
)

func (m RoutingMode) String() string {
	switch m {
	case RoutingOff:
		return "off"
	case RoutingTau:
		return "tau"
	case RoutingBudget:
		return "budget"
	}
	return fmt.Sprintf("RoutingMode(%d)", int32(m))
}

// SeqID names a sequence of a cache; ids are never reused within a cache.
type SeqID int64
