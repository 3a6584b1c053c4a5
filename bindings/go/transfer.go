package sinkrouter

// #include "sinkrouter/sinkrouter.h"
import "C"

import "unsafe"

// AppendF32 appends tokens to one layer of a sequence from f32 K and V laid out
// [n_tokens][num_kv_heads][head_dim]; n_tokens is len(k) / (num_kv_heads * head_dim). The
// cache converts to its own dtype (bf16 and f16 round to nearest even; an FP8 cache also
// computes each token's per-kv-head scale).
func (c *KvCache) AppendF32(seq SeqID, layer int, k, v []float32) error {
	return appendTokens(c, "KvCache.AppendF32", seq, layer, DTypeF32, len(k), len(v), firstElement(k), firstElement(v))
}

// AppendBits appends tokens from 16-bit K and V (the bit patterns of bf16 or f16 values, as
// dtype says), laid out like AppendF32's.
func (c *KvCache) AppendBits(seq SeqID, layer int, dtype DType, k, v []uint16) error {
	if err := checkBitsDType("KvCache.AppendBits", dtype); err != nil {
		return err
	}
	return appendTokens(c, "KvCache.AppendBits", seq, layer, dtype, len(k), len(v), firstElement(k), firstElement(v))
}

// ReadF32 copies tokens [firstToken, firstToken + n) of one layer into k and v as f32, where n
// is the length of the non-nil buffers / (num_kv_heads * head_dim). Either k or v may be nil.
func (c *KvCache) ReadF32(seq SeqID, layer int, firstToken int64, k, v []float32) error {
	return readTokens(c, "KvCache.ReadF32", seq, layer, firstToken, DTypeF32, len(k), len(v), k == nil, v == nil,
		firstElement(k), firstElement(v))
}

// ReadBits copies tokens out as the 16-bit patterns of dtype (bf16 or f16); see ReadF32.
func (c *KvCache) ReadBits(seq SeqID, layer int, firstToken int64, dtype DType, k, v []uint16) error {
	if err := checkBitsDType("KvCache.ReadBits", dtype); err != nil {
		return err
	}
	return readTokens(c, "KvCache.ReadBits", seq, layer, firstToken, dtype, len(k), len(v), k == nil, v == nil,
		firstElement(k), firstElement(v))
}

func checkBitsDType(op string, dtype DType) error {
	if dtype != DTypeBF16 && dtype != DTypeF16 {
		return argumentError(op, StatusInvalidArgument, "dtype = %s does not fit []uint16 buffers (bf16 or f16)", dtype)
	}
	return nil
}

// hostIO describes contiguous [n_tokens][num_kv_heads][head_dim] host buffers of one dtype.
func hostIO(dtype DType) C.sr_kv_io {
	var io C.sr_kv_io
	_ = call("sr_kv_io_default", func() C.sr_status { return C.sr_kv_io_default(&io, C.size_t(unsafe.Sizeof(io))) })
	io.dtype = C.sr_dtype(dtype)
	io.memory = C.sr_memory(memoryHost)
	return io
}

// tokensIn is the token count of a buffer of n elements, or an error naming the buffer.
func tokensIn(c *KvCache, op, name string, n int) (int64, error) {
	row := int(c.options.NumKVHeads) * int(c.options.HeadDim)
	if n == 0 || n%row != 0 {
		return 0, argumentError(op, StatusInvalidArgument,
			"len(%s) = %d is not a positive multiple of num_kv_heads * head_dim = %d", name, n, row)
	}
	return int64(n / row), nil
}

func appendTokens(c *KvCache, op string, seq SeqID, layer int, dtype DType, lenK, lenV int, k, v unsafe.Pointer) error {
	ptr, err := c.acquire(op)
	if err != nil {
		return err
	}
	defer c.mu.RUnlock()
	l, err := int32Arg(op, "layer", layer)
	if err != nil {
		return err
	}
	n, err := tokensIn(c, op, "k", lenK)
	if err != nil {
		return err
	}
	if lenV != lenK {
		return argumentError(op, StatusInvalidArgument, "len(v) = %d differs from len(k) = %d", lenV, lenK)
	}
	io := hostIO(dtype)
	return call("sr_kv_append", func() C.sr_status {
		return C.sr_kv_append(ptr, C.sr_seq_id(seq), l, C.int64_t(n), k, v, &io)
	})
}

func readTokens(c *KvCache, op string, seq SeqID, layer int, firstToken int64, dtype DType, lenK, lenV int,
	kNil, vNil bool, k, v unsafe.Pointer) error {
	ptr, err := c.acquire(op)
	if err != nil {
		return err
	}
	defer c.mu.RUnlock()
	l, err := int32Arg(op, "layer", layer)
	if err != nil {
		return err
	}
	if kNil && vNil {
		return argumentError(op, StatusInvalidArgument, "k and v are both nil: nothing to read")
	}
	var n int64
	if kNil {
		n, err = tokensIn(c, op, "v", lenV)
	} else {
		n, err = tokensIn(c, op, "k", lenK)
		if err == nil && !vNil && lenV != lenK {
			err = argumentError(op, StatusInvalidArgument, "len(v) = %d differs from len(k) = %d", lenV, lenK)
		}
	}
	if err != nil {
		return err
	}
	io := hostIO(dtype)
	return call("sr_kv_read", func() C.sr_status {
		return C.sr_kv_read(ptr, C.sr_seq_id(seq), l, C.int64_t(firstToken), C.int64_t(n), k, v, &io)
	})
}
