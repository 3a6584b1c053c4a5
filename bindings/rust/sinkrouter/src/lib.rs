//! Safe Rust binding of libsinkrouter: long-context decode attention with sink-aware routing.
//!
//! - [`Context`]: a backend and device; runs decode steps ([`Context::decode`]), merges
//!   attention states computed over disjoint keys ([`Context::merge_attention_states`]) and
//!   keeps statistics ([`Context::stats`]).
//! - [`KvCache`]: paged K/V storage on a context, with sequences ([`SeqId`]) and K/V transfer
//!   from slices of f32, [`F16Bits`] or [`Bf16Bits`].
//! - Every fallible call returns [`Result`]; an [`Error`] carries the C status and the C
//!   library's message naming the bad argument.
//!
//! Both handle types are `Send + Sync`, as sinkrouter.h's thread-safety section promises, and
//! free their C handle on drop. A cache keeps its context alive.
//!
//! ```no_run
//! use sinkrouter::{Context, DecodeOptions, DecodeStep, KvCache, KvCacheOptions, RoutingMode};
//! # fn main() -> sinkrouter::Result<()> {
//! let context = Context::cpu(0)?;
//! let cache = KvCache::new(&context, &KvCacheOptions::new(1, 8, 8192)?)?;
//! let seq = cache.add_sequence()?;
//! let token = vec![0.5f32; cache.token_elements()];
//! cache.append(seq, 0, &token, &token)?;
//! let q = vec![1.0f32; 32 * 128];
//! let mut out = vec![0.0f32; q.len()];
//! let options = DecodeOptions { routing: RoutingMode::Budget, error_budget: 1e-2, ..DecodeOptions::new()? };
//! context.decode(&cache, DecodeStep::new(0, &[seq], 32, &q, &mut out), &options)?;
//! # Ok(())
//! # }
//! ```
mod context;
mod decode;
mod element;
mod error;
mod kv_cache;
mod merge;
mod stats;

use std::ffi::CStr;

pub use context::{Backend, Context, ContextOptions};
pub use decode::{DecodeOptions, DecodeStep, RoutingMode};
pub use element::{Bf16Bits, Dtype, Element, F16Bits};
pub use error::{Error, Result, Status};
pub use kv_cache::{KvCache, KvCacheOptions, Pages, SeqId};
pub use merge::{AttentionState, MergeStep};
pub use sinkrouter_sys as sys;
pub use stats::DecodeStats;

/// "major.minor.patch" of the loaded library.
pub fn version() -> String {
    // SAFETY: sr_version returns a static, NUL-terminated string.
    unsafe { CStr::from_ptr(sys::sr_version()) }.to_string_lossy().into_owned()
}

/// major * 10000 + minor * 100 + patch of the loaded library.
pub fn version_number() -> u32 {
    // SAFETY: no arguments, no state.
    unsafe { sys::sr_version_number() }
}

/// ABI version of the loaded library; equals [`sys::SR_ABI_VERSION`] when it matches the
/// header this binding was written against.
pub fn abi_version() -> u32 {
    // SAFETY: no arguments, no state.
    unsafe { sys::sr_abi_version() }
}
