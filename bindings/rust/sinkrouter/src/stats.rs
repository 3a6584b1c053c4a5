//! Decode statistics of a context: summed over the steps run with `collect_stats`.
use std::mem::size_of;

use sinkrouter_sys as sys;

use crate::context::Context;
use crate::error::{check, Result};

#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct DecodeStats {
    /// Decode steps counted.
    pub steps: i64,
    /// (sequence, q-head) pairs computed.
    pub heads: i64,
    /// (sequence, kv-head, page) blocks scored.
    pub blocks_total: i64,
    /// Of those, blocks whose V was not read.
    pub blocks_v_skipped: i64,
    /// q-heads recomputed exactly because the bound passed the budget.
    pub heads_recomputed: i64,
    /// Largest skipped softmax mass of any (sequence, q-head).
    pub max_skipped_mass: f64,
    /// Largest certified relative error bound of any (sequence, q-head).
    pub max_error_bound: f64,
    /// Routed steps run dense because their longest sequence was shorter than
    /// `DecodeOptions::route_from_tokens`.
    pub steps_run_dense: i64,
}

impl DecodeStats {
    /// Fraction of scored blocks whose V was skipped (0 when nothing was scored).
    pub fn v_skip_fraction(&self) -> f64 {
        if self.blocks_total == 0 {
            0.0
        } else {
            self.blocks_v_skipped as f64 / self.blocks_total as f64
        }
    }
}

impl Context {
    /// Statistics since the last reset (GPU: waits for the context's stream).
    pub fn stats(&self) -> Result<DecodeStats> {
        let mut raw = std::mem::MaybeUninit::<sys::sr_decode_stats>::zeroed();
        // SAFETY: live context; the pointer and size describe one sr_decode_stats.
        check(unsafe {
            sys::sr_context_stats(self.handle.as_ptr(), raw.as_mut_ptr(), size_of::<sys::sr_decode_stats>())
        })?;
        // SAFETY: zeroed numbers are valid and the call wrote every field.
        let raw = unsafe { raw.assume_init() };
        Ok(DecodeStats {
            steps: raw.steps,
            heads: raw.heads,
            blocks_total: raw.blocks_total,
            blocks_v_skipped: raw.blocks_v_skipped,
            heads_recomputed: raw.heads_recomputed,
            max_skipped_mass: raw.max_skipped_mass,
            max_error_bound: raw.max_error_bound,
            steps_run_dense: raw.steps_run_dense,
        })
    }

    pub fn reset_stats(&self) -> Result<()> {
        // SAFETY: live context.
        check(unsafe { sys::sr_context_reset_stats(self.handle.as_ptr()) })
    }
}
