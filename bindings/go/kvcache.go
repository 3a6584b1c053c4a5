package sinkrouter

// #include "sinkrouter/sinkrouter.h"
import "C"

import (
	"runtime"
	"sync"
	"unsafe"
)

// KvCacheOptions configures NewKvCache. Start from DefaultKvCacheOptions and set NumLayers,
// NumKVHeads and CapacityTokens, which have no default.
type KvCacheOptions struct {
	NumLayers      int32
	NumKVHeads     int32
	HeadDim        int32 // 64, 128 or 256
	PageTokens     int32 // tokens per page: 16, 32, 64 or 128
	CapacityTokens int64 // pool size: ceil(CapacityTokens / PageTokens) pages
	DType          DType // element type of K and V in the cache
	MaxBatch       int32 // largest batch of one decode step
	MaxQHeads      int32 // largest num_q_heads of a decode step; 0 = 8 * NumKVHeads
}

// DefaultKvCacheOptions holds the C library's defaults (sr_kv_cache_options_default).
func DefaultKvCacheOptions() KvCacheOptions {
	var c C.sr_kv_cache_options
	_ = call("sr_kv_cache_options_default", func() C.sr_status {
		return C.sr_kv_cache_options_default(&c, C.size_t(unsafe.Sizeof(c)))
	})
	return KvCacheOptions{
		NumLayers:      int32(c.num_layers),
		NumKVHeads:     int32(c.num_kv_heads),
		HeadDim:        int32(c.head_dim),
		PageTokens:     int32(c.page_tokens),
		CapacityTokens: int64(c.capacity_tokens),
		DType:          DType(c.dtype),
		MaxBatch:       int32(c.max_batch),
		MaxQHeads:      int32(c.max_q_heads),
	}
}

// KvCache is paged K/V storage for layers x kv-heads x head_dim, holding sequences.
type KvCache struct {
	mu      sync.RWMutex // read-held by calls, write-held by Close
	ptr     *C.sr_kv_cache
	context *Context       // keeps the Go context (and its finalizer) behind this cache
	options KvCacheOptions // as created, MaxQHeads resolved
}

// NewKvCache creates a cache on a context.
func NewKvCache(context *Context, options KvCacheOptions) (*KvCache, error) {
	if context == nil {
		return nil, argumentError("NewKvCache", StatusInvalidArgument, "context is nil")
	}
	ctx, err := context.acquire("NewKvCache")
	if err != nil {
		return nil, err
	}
	defer context.mu.RUnlock()
	var c C.sr_kv_cache_options
	_ = call("sr_kv_cache_options_default", func() C.sr_status {
		return C.sr_kv_cache_options_default(&c, C.size_t(unsafe.Sizeof(c)))
	})
	c.num_layers = C.int32_t(options.NumLayers)
	c.num_kv_heads = C.int32_t(options.NumKVHeads)
	c.head_dim = C.int32_t(options.HeadDim)
	c.page_tokens = C.int32_t(options.PageTokens)
	c.capacity_tokens = C.int64_t(options.CapacityTokens)
	c.dtype = C.sr_dtype(options.DType)
	c.max_batch = C.int32_t(options.MaxBatch)
	c.max_q_heads = C.int32_t(options.MaxQHeads)
	var ptr *C.sr_kv_cache
	if err := call("sr_kv_cache_create", func() C.sr_status { return C.sr_kv_cache_create(ctx, &c, &ptr) }); err != nil {
		return nil, err
	}
	if options.MaxQHeads == 0 {
		options.MaxQHeads = 8 * options.NumKVHeads
	}
	cache := &KvCache{ptr: ptr, context: context, options: options}
	runtime.SetFinalizer(cache, (*KvCache).Close)
	return cache, nil
}

// Close destroys the cache and returns its memory. Safe to call more than once.
func (c *KvCache) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ptr != nil {
		C.sr_kv_cache_destroy(c.ptr)
		c.ptr = nil
		runtime.SetFinalizer(c, nil)
	}
	return nil
}

// Options are the options the cache was created with (MaxQHeads resolved).
func (c *KvCache) Options() KvCacheOptions { return c.options }

// Context is the context the cache was created on.
func (c *KvCache) Context() *Context { return c.context }

// acquire read-locks the handle for one call; release with c.mu.RUnlock().
func (c *KvCache) acquire(op string) (*C.sr_kv_cache, error) {
	c.mu.RLock()
	if c.ptr == nil {
		c.mu.RUnlock()
		return nil, closedError(op, "cache")
	}
	return c.ptr, nil
}

// Pages is the number of pages in the pool and how many no sequence holds.
func (c *KvCache) Pages() (total, free int64, err error) {
	ptr, err := c.acquire("KvCache.Pages")
	if err != nil {
		return 0, 0, err
	}
	defer c.mu.RUnlock()
	var t, f C.int64_t
	err = call("sr_kv_cache_pages", func() C.sr_status { return C.sr_kv_cache_pages(ptr, &t, &f) })
	return int64(t), int64(f), err
}
