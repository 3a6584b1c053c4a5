package sinkrouter

// #include "sinkrouter/sinkrouter.h"
import "C"

import (
	"runtime"
	"sync"
	"unsafe"
)

// ContextOptions configures NewContext. Start from DefaultContextOptions.
type ContextOptions struct {
	Backend     Backend
	DeviceIndex int32 // GPU ordinal; must be 0 for the CPU
	NumThreads  int32 // CPU worker threads; 0 = all online cores
}

// DefaultContextOptions holds the C library's defaults (sr_context_options_default).
func DefaultContextOptions() ContextOptions {
	var c C.sr_context_options
	// Cannot fail: the pointer is valid and the size is the one the header declares.
	_ = call("sr_context_options_default", func() C.sr_status {
		return C.sr_context_options_default(&c, C.size_t(unsafe.Sizeof(c)))
	})
	return ContextOptions{Backend: Backend(c.backend), DeviceIndex: int32(c.device_index), NumThreads: int32(c.num_threads)}
}

// Context is a backend and device with its worker threads and decode statistics.
type Context struct {
	mu      sync.RWMutex // read-held by calls, write-held by Close, so Close never frees a handle in use
	ptr     *C.sr_context
	backend Backend // resolved at creation (never BackendAuto)
}

// NewContext opens a context; nil options means DefaultContextOptions().
func NewContext(options *ContextOptions) (*Context, error) {
	if ABIVersion() != HeaderABIVersion {
		return nil, argumentError("NewContext", StatusUnsupported,
			"the loaded libsinkrouter has ABI version %d, but this package was built against ABI version %d",
			ABIVersion(), HeaderABIVersion)
	}
	o := DefaultContextOptions()
	if options != nil {
		o = *options
	}
	var c C.sr_context_options
	_ = call("sr_context_options_default", func() C.sr_status {
		return C.sr_context_options_default(&c, C.size_t(unsafe.Sizeof(c)))
	})
	c.backend = C.sr_backend(o.Backend)
	c.device_index = C.int32_t(o.DeviceIndex)
	c.num_threads = C.int32_t(o.NumThreads)
	var ptr *C.sr_context
	if err := call("sr_context_create", func() C.sr_status { return C.sr_context_create(&c, &ptr) }); err != nil {
		return nil, err
	}
	var backend C.sr_backend
	if err := call("sr_context_backend", func() C.sr_status { return C.sr_context_backend(ptr, &backend) }); err != nil {
		C.sr_context_destroy(ptr)
		return nil, err
	}
	ctx := &Context{ptr: ptr, backend: Backend(backend)}
	runtime.SetFinalizer(ctx, (*Context).Close)
	return ctx, nil
}

// Close releases the context. Safe to call more than once. Caches created on it keep the
// native context alive until they are closed themselves.
func (c *Context) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr != nil {
		C.sr_context_destroy(c.ptr)
		c.ptr = nil
		runtime.SetFinalizer(c, nil)
	}
	return nil
}

// acquire read-locks the handle for one call; release with c.mu.RUnlock().
func (c *Context) acquire(op string) (*C.sr_context, error) {
	c.mu.RLock()
	if c.ptr == nil {
		c.mu.RUnlock()
		return nil, closedError(op, "context")
	}
	return c.ptr, nil
}

// Backend is the backend the context runs on (never BackendAuto).
func (c *Context) Backend() (Backend, error) {
	if _, err := c.acquire("Context.Backend"); err != nil {
		return 0, err
	}
	defer c.mu.RUnlock()
	return c.backend, nil
}

// NumThreads is the number of CPU worker threads (0 for GPU contexts).
func (c *Context) NumThreads() (int, error) {
	ptr, err := c.acquire("Context.NumThreads")
	if err != nil {
		return 0, err
	}
	defer c.mu.RUnlock()
	var n C.int32_t
	err = call("sr_context_num_threads", func() C.sr_status { return C.sr_context_num_threads(ptr, &n) })
	return int(n), err
}

// DeviceName describes the context's device ("cpu: 16 threads, avx512").
func (c *Context) DeviceName() (string, error) {
	ptr, err := c.acquire("Context.DeviceName")
	if err != nil {
		return "", err
	}
	defer c.mu.RUnlock()
	var name *C.char
	err = call("sr_context_device_name", func() C.sr_status { return C.sr_context_device_name(ptr, &name) })
	if err != nil {
		return "", err
	}
	return C.GoString(name), nil
}
