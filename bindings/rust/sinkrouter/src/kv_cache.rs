//! KvCache: paged K/V storage of a context, its sequences, and K/V transfer from host slices.
use std::mem::size_of;
use std::ptr::{null_mut, NonNull};
use std::sync::Arc;

use sinkrouter_sys as sys;

use crate::context::{Context, ContextHandle};
use crate::element::{Dtype, Element};
use crate::error::{check, Error, Result, Status};

/// A sequence of a cache. Ids are never reused within a cache.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub i64);

/// Options of [`KvCache::new`]. `new()` takes the three values without a default and the
/// library's defaults (sr_kv_cache_options_default) for the rest.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KvCacheOptions {
    pub num_layers: i32,
    pub num_kv_heads: i32,
    /// 64, 128 or 256.
    pub head_dim: i32,
    /// Tokens per page: 16, 32, 64 or 128.
    pub page_tokens: i32,
    /// Pool size: pages = ceil(capacity_tokens / page_tokens).
    pub capacity_tokens: i64,
    /// Element type of K and V in the cache.
    pub dtype: Dtype,
    /// Largest batch of one decode step.
    pub max_batch: i32,
    /// Largest num_q_heads of a decode step; 0 = 8 * num_kv_heads.
    pub max_q_heads: i32,
}

impl KvCacheOptions {
    pub fn new(num_layers: i32, num_kv_heads: i32, capacity_tokens: i64) -> Result<KvCacheOptions> {
        let raw = raw_defaults()?;
        Ok(KvCacheOptions {
            num_layers,
            num_kv_heads,
            head_dim: raw.head_dim,
            page_tokens: raw.page_tokens,
            capacity_tokens,
            dtype: Dtype::from_raw(raw.dtype)?,
            max_batch: raw.max_batch,
            max_q_heads: raw.max_q_heads,
        })
    }

    fn to_raw(self) -> Result<sys::sr_kv_cache_options> {
        let mut raw = raw_defaults()?;
        raw.num_layers = self.num_layers;
        raw.num_kv_heads = self.num_kv_heads;
        raw.head_dim = self.head_dim;
        raw.page_tokens = self.page_tokens;
        raw.capacity_tokens = self.capacity_tokens;
        raw.dtype = self.dtype.raw();
        raw.max_batch = self.max_batch;
        raw.max_q_heads = self.max_q_heads;
        Ok(raw)
    }
}

fn raw_defaults() -> Result<sys::sr_kv_cache_options> {
    let mut raw = std::mem::MaybeUninit::<sys::sr_kv_cache_options>::zeroed();
    // SAFETY: the pointer and size describe one sr_kv_cache_options.
    check(unsafe { sys::sr_kv_cache_options_default(raw.as_mut_ptr(), size_of::<sys::sr_kv_cache_options>()) })?;
    // SAFETY: zeroed integers are valid, and the call wrote every default.
    Ok(unsafe { raw.assume_init() })
}

/// Pages of a cache's pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pages {
    pub total: i64,
    /// Pages no sequence holds.
    pub free: i64,
}

/// A KV cache; destroyed on drop.
///
/// The header requires every cache of a context to be destroyed before the context. The cache
/// therefore holds an `Arc` of its context's handle (rather than a lifetime borrowing the
/// [`Context`]): the context lives as long as any cache of it, a cache can be stored, moved
/// to other threads and outlive the `Context` value it was created from, and `Drop` destroys
/// the cache before the `Arc` (a field) is released.
pub struct KvCache {
    raw: NonNull<sys::sr_kv_cache>,
    options: KvCacheOptions,
    context: Arc<ContextHandle>,
}

// SAFETY: sinkrouter.h, "Thread safety": cache handles may be used from several threads at
// once; calls that change a cache are serialised internally, reads and decode steps run
// concurrently. That is why the changing methods below take `&self`.
unsafe impl Send for KvCache {}
unsafe impl Sync for KvCache {}

impl Drop for KvCache {
    fn drop(&mut self) {
        // SAFETY: we own the handle; `self.context` (dropped after this) keeps the context alive.
        unsafe { sys::sr_kv_cache_destroy(self.raw.as_ptr()) }
    }
}

impl KvCache {
    /// A cache in the context's memory (host for the CPU, device for GPUs).
    pub fn new(context: &Context, options: &KvCacheOptions) -> Result<KvCache> {
        let raw_options = options.to_raw()?;
        let mut raw = null_mut();
        // SAFETY: live context, valid options and out-pointer; on success we own the cache.
        check(unsafe { sys::sr_kv_cache_create(context.handle.as_ptr(), &raw_options, &mut raw) })?;
        let raw = NonNull::new(raw)
            .ok_or_else(|| Error::new(Status::Internal, "sr_kv_cache_create succeeded but returned NULL"))?;
        Ok(KvCache { raw, options: *options, context: Arc::clone(&context.handle) })
    }

    /// The options it was created with.
    pub fn options(&self) -> &KvCacheOptions {
        &self.options
    }

    /// The context the cache lives on.
    pub fn context(&self) -> Context {
        Context { handle: Arc::clone(&self.context) }
    }

    /// Elements of one token of one layer in K (or V): num_kv_heads * head_dim.
    pub fn token_elements(&self) -> usize {
        self.options.num_kv_heads as usize * self.options.head_dim as usize
    }

    pub fn pages(&self) -> Result<Pages> {
        let (mut total, mut free) = (0, 0);
        // SAFETY: live cache, valid out-pointers.
        check(unsafe { sys::sr_kv_cache_pages(self.raw.as_ptr(), &mut total, &mut free) })?;
        Ok(Pages { total, free })
    }

    /// A new, empty sequence.
    pub fn add_sequence(&self) -> Result<SeqId> {
        let mut seq = 0;
        // SAFETY: live cache (changes are serialised by the library), valid out-pointer.
        check(unsafe { sys::sr_seq_add(self.raw.as_ptr(), &mut seq) })?;
        Ok(SeqId(seq))
    }

    /// A new sequence with the parent's tokens; pages are shared and copied on first write.
    pub fn fork(&self, parent: SeqId) -> Result<SeqId> {
        let mut child = 0;
        // SAFETY: as add_sequence.
        check(unsafe { sys::sr_seq_fork(self.raw.as_ptr(), parent.0, &mut child) })?;
        Ok(SeqId(child))
    }

    /// Removes a sequence; pages no other sequence holds return to the pool.
    pub fn remove(&self, seq: SeqId) -> Result<()> {
        // SAFETY: live cache.
        check(unsafe { sys::sr_seq_remove(self.raw.as_ptr(), seq.0) })
    }

    /// Tokens the sequence holds in one layer.
    pub fn length(&self, seq: SeqId, layer: i32) -> Result<i64> {
        let mut length = 0;
        // SAFETY: live cache, valid out-pointer.
        check(unsafe { sys::sr_seq_length(self.raw.as_ptr(), seq.0, layer, &mut length) })?;
        Ok(length)
    }

    /// Keeps only the first `new_length` tokens in every layer.
    pub fn truncate(&self, seq: SeqId, new_length: i64) -> Result<()> {
        // SAFETY: live cache.
        check(unsafe { sys::sr_seq_truncate(self.raw.as_ptr(), seq.0, new_length) })
    }

    /// Appends tokens to one layer of a sequence. `k` and `v` are [n_tokens][num_kv_heads][head_dim]
    /// of any [`Element`] type; the library converts to the cache's dtype (f32 -> bf16 rounds
    /// to nearest even; an FP8 cache stores each token's per-kv-head scale with it). On
    /// `CacheFull` nothing is appended.
    pub fn append<E: Element>(&self, seq: SeqId, layer: i32, k: &[E], v: &[E]) -> Result<()> {
        if k.len() != v.len() {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("k holds {} elements but v holds {}: they must be the same length", k.len(), v.len()),
            ));
        }
        let n_tokens = self.whole_tokens("k", k.len())?;
        let io = self.io::<E>()?;
        // SAFETY: live cache; k and v hold n_tokens contiguous tokens of E, as io says. With
        // n_tokens = 0 the library rejects the call before reading the (dangling) pointers.
        check(unsafe {
            sys::sr_kv_append(self.raw.as_ptr(), seq.0, layer, n_tokens, k.as_ptr().cast(), v.as_ptr().cast(), &io)
        })
    }

    /// Copies tokens starting at `first_token` of one layer into `k_out` and/or `v_out`
    /// ([n_tokens][num_kv_heads][head_dim]; n_tokens from the slices' length), converting to E.
    pub fn read<E: Element>(
        &self,
        seq: SeqId,
        layer: i32,
        first_token: i64,
        k_out: Option<&mut [E]>,
        v_out: Option<&mut [E]>,
    ) -> Result<()> {
        let n_tokens = match (&k_out, &v_out) {
            (None, None) => {
                return Err(Error::new(Status::InvalidArgument, "k_out and v_out are both None: nothing to read"))
            }
            (Some(k), Some(v)) if k.len() != v.len() => {
                return Err(Error::new(
                    Status::InvalidArgument,
                    format!(
                        "k_out holds {} elements but v_out holds {}: they must be the same length",
                        k.len(),
                        v.len()
                    ),
                ))
            }
            (Some(k), _) => self.whole_tokens("k_out", k.len())?,
            (None, Some(v)) => self.whole_tokens("v_out", v.len())?,
        };
        let io = self.io::<E>()?;
        let k_ptr = k_out.map_or(null_mut(), |k| k.as_mut_ptr().cast());
        let v_ptr = v_out.map_or(null_mut(), |v| v.as_mut_ptr().cast());
        // SAFETY: live cache; each non-null buffer holds n_tokens tokens of E, as io says.
        check(unsafe { sys::sr_kv_read(self.raw.as_ptr(), seq.0, layer, first_token, n_tokens, k_ptr, v_ptr, &io) })
    }

    /// Reads `n_tokens` tokens of K and V into new vectors.
    pub fn read_vec<E: Element>(
        &self,
        seq: SeqId,
        layer: i32,
        first_token: i64,
        n_tokens: usize,
    ) -> Result<(Vec<E>, Vec<E>)> {
        let len = n_tokens.checked_mul(self.token_elements()).ok_or_else(|| {
            Error::new(Status::OutOfRange, format!("n_tokens = {n_tokens} is too large to hold in memory"))
        })?;
        let (mut k, mut v) = (vec![E::ZERO; len], vec![E::ZERO; len]);
        self.read(seq, layer, first_token, Some(&mut k), Some(&mut v))?;
        Ok((k, v))
    }

    /// The raw handle, for calls only sinkrouter-sys offers. Valid while this cache lives.
    pub fn as_raw(&self) -> *const sys::sr_kv_cache {
        self.raw.as_ptr()
    }

    /// Tokens in a buffer of `len` elements; an error if it is not a whole number of tokens.
    fn whole_tokens(&self, name: &str, len: usize) -> Result<i64> {
        let token = self.token_elements();
        if len % token != 0 {
            return Err(Error::new(
                Status::InvalidArgument,
                format!(
                    "{name} holds {len} elements, not a whole number of tokens of num_kv_heads {} x head_dim {} = {token}",
                    self.options.num_kv_heads, self.options.head_dim
                ),
            ));
        }
        Ok((len / token) as i64)
    }

    /// Host buffers of E, contiguous [n_tokens][num_kv_heads][head_dim].
    fn io<E: Element>(&self) -> Result<sys::sr_kv_io> {
        let mut io = std::mem::MaybeUninit::<sys::sr_kv_io>::zeroed();
        // SAFETY: the pointer and size describe one sr_kv_io.
        check(unsafe { sys::sr_kv_io_default(io.as_mut_ptr(), size_of::<sys::sr_kv_io>()) })?;
        // SAFETY: zeroed fields are valid and the call wrote the defaults.
        let mut io = unsafe { io.assume_init() };
        io.dtype = E::DTYPE.raw();
        io.memory = sys::SR_MEMORY_HOST;
        io.token_stride = 0;
        io.head_stride = 0;
        io.stream = null_mut();
        Ok(io)
    }
}

impl std::fmt::Debug for KvCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KvCache").field("options", &self.options).finish_non_exhaustive()
    }
}
