//! Decode steps from host slices: options with the library's defaults, and the step's buffers.
use std::mem::size_of;
use std::ptr::{null, null_mut};

use sinkrouter_sys as sys;

use crate::context::{Backend, Context};
use crate::error::{check, check_len, Error, Result, Status};
use crate::kv_cache::{KvCache, SeqId};

/// How a decode step chooses the V blocks it skips.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RoutingMode {
    /// Dense exact attention: every K and V block is read.
    Off,
    /// Skip the V block of a page whose logits all sit more than `tau` below the anchor
    /// reference; with `error_budget > 0`, a head whose bound exceeds it is recomputed exactly.
    Tau,
    /// Skip blocks while the certified relative error stays within `error_budget`; never
    /// exceeds it. The mode to run.
    Budget,
}

impl RoutingMode {
    pub fn raw(self) -> sys::sr_routing_mode {
        match self {
            RoutingMode::Off => sys::SR_ROUTING_OFF,
            RoutingMode::Tau => sys::SR_ROUTING_TAU,
            RoutingMode::Budget => sys::SR_ROUTING_BUDGET,
        }
    }

    fn from_raw(raw: sys::sr_routing_mode) -> Result<RoutingMode> {
        match raw {
            sys::SR_ROUTING_OFF => Ok(RoutingMode::Off),
            sys::SR_ROUTING_TAU => Ok(RoutingMode::Tau),
            sys::SR_ROUTING_BUDGET => Ok(RoutingMode::Budget),
            other => Err(Error::new(Status::Unsupported, format!("routing = {other} is not known to this binding"))),
        }
    }
}

/// How a decode step runs. `new()` takes the library's defaults (sr_decode_args_default);
/// change fields, or use struct update syntax:
/// `DecodeOptions { routing: RoutingMode::Budget, error_budget: 1e-2, ..DecodeOptions::new()? }`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecodeOptions {
    pub routing: RoutingMode,
    /// Logit gap of `RoutingMode::Tau` (> 0; +inf skips nothing).
    pub tau: f32,
    /// Anchor set: the first `sink_tokens` tokens...
    pub sink_tokens: i32,
    /// ...and the last `window_tokens` tokens.
    pub window_tokens: i32,
    /// Relative output error ||o - o'|| / ||o||: required (> 0) for `Budget`, optional cap
    /// (0 = none) for `Tau`.
    pub error_budget: f32,
    /// Routing applies from this length on: a routed step whose longest sequence is shorter
    /// runs dense (exact: nothing skipped, bound 0, counted in [`DecodeStats::steps_run_dense`]).
    /// -1 (the default) = the backend's own threshold (CPU 0, CUDA/HIP 65536); 0 = route every
    /// step.
    ///
    /// [`DecodeStats::steps_run_dense`]: crate::DecodeStats::steps_run_dense
    pub route_from_tokens: i64,
    /// Softmax scale; 0 = 1 / sqrt(head_dim).
    pub scale: f32,
    /// Add the step to the context's statistics ([`Context::stats`]).
    pub collect_stats: bool,
    /// Sliding window: each sequence attends to its last `window_left + 1` tokens only, and no
    /// other token is read; -1 (the default) = every token. Since library 0.3.0, as are the
    /// two fields below and [`DecodeStep::sink_logits`] and [`DecodeStep::lse`].
    pub window_left: i32,
    /// With a window: its first `window_sink_tokens` tokens are attended too, as StreamingLLM
    /// keeps them (default 0; more needs `window_left >= 0`).
    pub window_sink_tokens: i32,
    /// Logit soft cap: above 0, each logit s becomes `cap * tanh(s / cap)` (Gemma 2) before the
    /// softmax, the routing and the bound; 0 (the default) = none.
    pub logit_soft_cap: f32,
}

impl DecodeOptions {
    pub fn new() -> Result<DecodeOptions> {
        let raw = raw_defaults()?;
        Ok(DecodeOptions {
            routing: RoutingMode::from_raw(raw.routing)?,
            tau: raw.tau,
            sink_tokens: raw.sink_tokens,
            window_tokens: raw.window_tokens,
            error_budget: raw.error_budget,
            route_from_tokens: raw.route_from_tokens,
            scale: raw.scale,
            collect_stats: raw.collect_stats != 0,
            window_left: raw.window_left,
            window_sink_tokens: raw.window_sink_tokens,
            logit_soft_cap: raw.logit_soft_cap,
        })
    }
}

fn raw_defaults() -> Result<sys::sr_decode_args> {
    let mut raw = std::mem::MaybeUninit::<sys::sr_decode_args>::zeroed();
    // SAFETY: the pointer and size describe one sr_decode_args.
    check(unsafe { sys::sr_decode_args_default(raw.as_mut_ptr(), size_of::<sys::sr_decode_args>()) })?;
    // SAFETY: zeroed numbers and null pointers are valid, and the call wrote every default.
    Ok(unsafe { raw.assume_init() })
}

/// The buffers of one decode step: queries of a batch of sequences in one layer, the output,
/// optional per-head routing reports and lse, and optional learned sink logits. Layouts: `q`
/// and `out` [batch][num_q_heads][head_dim], per-head outputs [batch][num_q_heads], with batch =
/// `seq_ids.len()`; sink logits [num_q_heads].
pub struct DecodeStep<'a> {
    layer: i32,
    seq_ids: &'a [SeqId],
    num_q_heads: i32,
    q: &'a [f32],
    out: &'a mut [f32],
    head_skipped_mass: Option<&'a mut [f32]>,
    head_error_bound: Option<&'a mut [f32]>,
    lse: Option<&'a mut [f32]>,
    sink_logits: Option<&'a [f32]>,
}

impl<'a> DecodeStep<'a> {
    pub fn new(layer: i32, seq_ids: &'a [SeqId], num_q_heads: i32, q: &'a [f32], out: &'a mut [f32]) -> DecodeStep<'a> {
        DecodeStep {
            layer,
            seq_ids,
            num_q_heads,
            q,
            out,
            head_skipped_mass: None,
            head_error_bound: None,
            lse: None,
            sink_logits: None,
        }
    }

    /// Also write each head's softmax mass whose V was skipped.
    pub fn head_skipped_mass(mut self, out: &'a mut [f32]) -> DecodeStep<'a> {
        self.head_skipped_mass = Some(out);
        self
    }

    /// Also write each head's certified relative error bound.
    pub fn head_error_bound(mut self, out: &'a mut [f32]) -> DecodeStep<'a> {
        self.head_error_bound = Some(out);
        self
    }

    /// Also write each head's lse ([batch][num_q_heads]): the natural log of its whole softmax
    /// denominator, learned sink included, exact even where routing skipped V. With the output
    /// it is the [`AttentionState`](crate::AttentionState) that
    /// [`Context::merge_attention_states`] takes. Since library 0.3.0.
    pub fn lse(mut self, out: &'a mut [f32]) -> DecodeStep<'a> {
        self.lse = Some(out);
        self
    }

    /// Learned sink logits, one per q-head ([num_q_heads], gpt-oss style): exp(sink) joins the
    /// head's softmax denominator with no value, so its output shrinks by Z / (Z + exp(sink)).
    /// `f32::NEG_INFINITY` = no sink for that head; NaN and +inf are refused. Since library 0.3.0.
    pub fn sink_logits(mut self, sink_logits: &'a [f32]) -> DecodeStep<'a> {
        self.sink_logits = Some(sink_logits);
        self
    }

    /// Lengths the library will read and write, checked before it is called. With a batch
    /// or num_q_heads it rejects, it touches no buffer, so those are left to its own message.
    fn check_lengths(&self, head_dim: i32) -> Result<()> {
        let batch = self.seq_ids.len();
        if batch == 0 || self.num_q_heads < 1 {
            return Ok(());
        }
        let heads = batch.checked_mul(self.num_q_heads as usize);
        let elements = heads.and_then(|h| h.checked_mul(head_dim as usize));
        let (Some(heads), Some(elements)) = (heads, elements) else {
            return Err(Error::new(Status::OutOfRange, format!("batch = {batch} is too large")));
        };
        let shape = format!("batch {batch} x num_q_heads {} x head_dim {head_dim}", self.num_q_heads);
        check_len("q", self.q.len(), elements, &shape)?;
        check_len("out", self.out.len(), elements, &shape)?;
        let head_shape = format!("batch {batch} x num_q_heads {}", self.num_q_heads);
        if let Some(buffer) = &self.head_skipped_mass {
            check_len("head_skipped_mass", buffer.len(), heads, &head_shape)?;
        }
        if let Some(buffer) = &self.head_error_bound {
            check_len("head_error_bound", buffer.len(), heads, &head_shape)?;
        }
        if let Some(buffer) = &self.lse {
            check_len("lse", buffer.len(), heads, &head_shape)?;
        }
        if let Some(buffer) = &self.sink_logits {
            check_len(
                "sink_logits",
                buffer.len(),
                self.num_q_heads as usize,
                &format!("num_q_heads {}", self.num_q_heads),
            )?;
        }
        Ok(())
    }
}

impl Context {
    /// One decode step of attention on `cache`. Host slices: CPU contexts only (a GPU
    /// backend reads device memory; use sinkrouter-sys with device buffers there).
    pub fn decode(&self, cache: &KvCache, step: DecodeStep<'_>, options: &DecodeOptions) -> Result<()> {
        if self.backend() != Backend::Cpu {
            return Err(Error::new(
                Status::Unsupported,
                format!(
                    "decode from host slices needs a CPU context, but this one runs on {}: \
                     use sinkrouter-sys with device buffers",
                    self.backend().name()
                ),
            ));
        }
        step.check_lengths(cache.options().head_dim)?;
        let batch = i32::try_from(step.seq_ids.len()).map_err(|_| {
            Error::new(Status::OutOfRange, format!("batch = {} does not fit an i32", step.seq_ids.len()))
        })?;
        let mut args = raw_defaults()?;
        args.layer = step.layer;
        args.batch = batch;
        args.seq_ids = step.seq_ids.as_ptr().cast(); // SeqId is a transparent i64
        args.num_q_heads = step.num_q_heads;
        args.q = step.q.as_ptr().cast();
        args.q_dtype = sys::SR_DTYPE_F32;
        args.out = step.out.as_mut_ptr().cast();
        args.out_dtype = sys::SR_DTYPE_F32;
        args.scale = options.scale;
        args.routing = options.routing.raw();
        args.tau = options.tau;
        args.sink_tokens = options.sink_tokens;
        args.window_tokens = options.window_tokens;
        args.error_budget = options.error_budget;
        args.route_from_tokens = options.route_from_tokens;
        args.head_skipped_mass = step.head_skipped_mass.map_or(null_mut(), |b| b.as_mut_ptr());
        args.head_error_bound = step.head_error_bound.map_or(null_mut(), |b| b.as_mut_ptr());
        args.collect_stats = i32::from(options.collect_stats);
        args.stream = null_mut();
        args.sink_logits = step.sink_logits.map_or(null(), |s| s.as_ptr());
        args.lse = step.lse.map_or(null_mut(), |b| b.as_mut_ptr());
        args.window_left = options.window_left;
        args.window_sink_tokens = options.window_sink_tokens;
        args.logit_soft_cap = options.logit_soft_cap;
        // SAFETY: live context and cache; every buffer is host memory of the length the
        // library uses for this batch, num_q_heads and head_dim (checked above), borrowed for
        // the whole synchronous CPU call.
        check(unsafe { sys::sr_decode_step(self.handle.as_ptr(), cache.as_raw(), &args) })
    }
}
