package sinkrouter

// #include "sinkrouter/sinkrouter.h"
import "C"

// AddSequence adds an empty sequence.
func (c *KvCache) AddSequence() (SeqID, error) {
	ptr, err := c.acquire("KvCache.AddSequence")
	if err != nil {
		return 0, err
	}
	defer c.mu.RUnlock()
	var id C.sr_seq_id
	err = call("sr_seq_add", func() C.sr_status { return C.sr_seq_add(ptr, &id) })
	return SeqID(id), err
}

// ForkSequence adds a sequence holding the parent's tokens; pages are shared until written.
func (c *KvCache) ForkSequence(parent SeqID) (SeqID, error) {
	ptr, err := c.acquire("KvCache.ForkSequence")
	if err != nil {
		return 0, err
	}
	defer c.mu.RUnlock()
	var id C.sr_seq_id
	err = call("sr_seq_fork", func() C.sr_status { return C.sr_seq_fork(ptr, C.sr_seq_id(parent), &id) })
	return SeqID(id), err
}

// RemoveSequence removes a sequence; pages no other sequence holds return to the pool.
func (c *KvCache) RemoveSequence(seq SeqID) error {
	ptr, err := c.acquire("KvCache.RemoveSequence")
	if err != nil {
		return err
	}
	defer c.mu.RUnlock()
	return call("sr_seq_remove", func() C.sr_status { return C.sr_seq_remove(ptr, C.sr_seq_id(seq)) })
}

// SequenceLength is the number of tokens a sequence holds in one layer.
func (c *KvCache) SequenceLength(seq SeqID, layer int) (int64, error) {
	ptr, err := c.acquire("KvCache.SequenceLength")
	if err != nil {
		return 0, err
	}
	defer c.mu.RUnlock()
	l, err := int32Arg("KvCache.SequenceLength", "layer", layer)
	if err != nil {
		return 0, err
	}
	var n C.int64_t
	err = call("sr_seq_length", func() C.sr_status { return C.sr_seq_length(ptr, C.sr_seq_id(seq), l, &n) })
	return int64(n), err
}

// TruncateSequence keeps the first newLength tokens of every layer.
func (c *KvCache) TruncateSequence(seq SeqID, newLength int64) error {
	ptr, err := c.acquire("KvCache.TruncateSequence")
	if err != nil {
		return err
	}
	defer c.mu.RUnlock()
	return call("sr_seq_truncate", func() C.sr_status {
		return C.sr_seq_truncate(ptr, C.sr_seq_id(seq), C.int64_t(newLength))
	})
}
