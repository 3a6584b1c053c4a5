//! Merging attention states: outputs computed over disjoint sets of keys (shards of one
//! sequence, a shared prefix cache and a per-request suffix), each with its lse and optionally
//! its certified bound, into attention over their union. Since library 0.3.0.
use std::ffi::c_void;
use std::mem::size_of;
use std::ptr::{null, null_mut};

use sinkrouter_sys as sys;

use crate::context::{Backend, Context};
use crate::element::Element;
use crate::error::{check, check_len, Error, Result, Status};

/// Attention over one set of keys for `rows` (batch entry, q-head) pairs: `out`
/// [rows][head_dim] (a decode step's output: rows = batch x num_q_heads), `lse` [rows] (what
/// [`DecodeStep::lse`](crate::DecodeStep::lse) wrote) and optionally `bound` [rows], the
/// state's certified relative error bounds ([`DecodeStep::head_error_bound`](crate::DecodeStep::head_error_bound));
/// a state without one is exact.
#[derive(Debug, Clone, Copy)]
pub struct AttentionState<'a, E: Element = f32> {
    pub out: &'a [E],
    pub lse: &'a [f32],
    pub bound: Option<&'a [f32]>,
}

impl<'a, E: Element> AttentionState<'a, E> {
    /// An exact state: no bound.
    pub fn new(out: &'a [E], lse: &'a [f32]) -> AttentionState<'a, E> {
        AttentionState { out, lse, bound: None }
    }

    /// The state's certified relative error bound of each row.
    pub fn bound(mut self, bound: &'a [f32]) -> AttentionState<'a, E> {
        self.bound = Some(bound);
        self
    }
}

/// The buffers of one merge: the states (1 to 64, all of one shape) and the merged output
/// `out` [rows][head_dim], with optional merged `lse` [rows] and certified relative `bound`
/// [rows]. States and output may have different element types (f32, [`F16Bits`](crate::F16Bits),
/// [`Bf16Bits`](crate::Bf16Bits)). The merged state is a state again and can be merged further.
pub struct MergeStep<'a, S: Element = f32, O: Element = f32> {
    head_dim: i32,
    states: &'a [AttentionState<'a, S>],
    out: &'a mut [O],
    lse: Option<&'a mut [f32]>,
    bound: Option<&'a mut [f32]>,
}

impl<'a, S: Element, O: Element> MergeStep<'a, S, O> {
    /// Merges `states` into `out`; rows = `out.len() / head_dim`.
    pub fn new(head_dim: i32, states: &'a [AttentionState<'a, S>], out: &'a mut [O]) -> MergeStep<'a, S, O> {
        MergeStep { head_dim, states, out, lse: None, bound: None }
    }

    /// Also write the merged lse: log sum_i exp(lse_i).
    pub fn lse(mut self, out: &'a mut [f32]) -> MergeStep<'a, S, O> {
        self.lse = Some(out);
        self
    }

    /// Also write the merged certified relative error bound (0 where every state is exact).
    pub fn bound(mut self, out: &'a mut [f32]) -> MergeStep<'a, S, O> {
        self.bound = Some(out);
        self
    }

    /// Rows of the merge, with every buffer's length checked against them. With no state or a
    /// head_dim the library rejects, no buffer is touched, so those are left to its message.
    fn rows(&self) -> Result<i64> {
        if self.states.is_empty() || self.head_dim < 1 {
            return Ok((self.out.len() / self.head_dim.max(1) as usize) as i64);
        }
        let head_dim = self.head_dim as usize;
        if self.out.len() % head_dim != 0 {
            return Err(Error::new(
                Status::InvalidArgument,
                format!("out holds {} elements, not a whole number of rows of head_dim {head_dim}", self.out.len()),
            ));
        }
        let rows = self.out.len() / head_dim;
        let shape = format!("rows {rows} x head_dim {head_dim} (from out)");
        let row_shape = format!("rows {rows} (from out)");
        for (i, state) in self.states.iter().enumerate() {
            check_len(&format!("states[{i}].out"), state.out.len(), self.out.len(), &shape)?;
            check_len(&format!("states[{i}].lse"), state.lse.len(), rows, &row_shape)?;
            if let Some(bound) = state.bound {
                check_len(&format!("states[{i}].bound"), bound.len(), rows, &row_shape)?;
            }
        }
        if let Some(buffer) = &self.lse {
            check_len("lse", buffer.len(), rows, &row_shape)?;
        }
        if let Some(buffer) = &self.bound {
            check_len("bound", buffer.len(), rows, &row_shape)?;
        }
        i64::try_from(rows).map_err(|_| Error::new(Status::OutOfRange, format!("rows = {rows} does not fit an i64")))
    }
}

fn raw_defaults() -> Result<sys::sr_merge_args> {
    let mut raw = std::mem::MaybeUninit::<sys::sr_merge_args>::zeroed();
    // SAFETY: the pointer and size describe one sr_merge_args.
    check(unsafe { sys::sr_merge_args_default(raw.as_mut_ptr(), size_of::<sys::sr_merge_args>()) })?;
    // SAFETY: zeroed numbers and null pointers are valid, and the call wrote every default.
    Ok(unsafe { raw.assume_init() })
}

impl Context {
    /// Merges attention over disjoint sets of keys into attention over their union:
    /// out = sum_i exp(lse_i - lse) out_i with lse = log sum_i exp(lse_i), and the states'
    /// bounds combined into the merged certified bound. A learned sink belongs in one state
    /// only. Host slices: CPU contexts only, as [`Context::decode`].
    pub fn merge_attention_states<S: Element, O: Element>(&self, step: MergeStep<'_, S, O>) -> Result<()> {
        if self.backend() != Backend::Cpu {
            return Err(Error::new(
                Status::Unsupported,
                format!(
                    "merging host slices needs a CPU context, but this one runs on {}: \
                     use sinkrouter-sys with device buffers",
                    self.backend().name()
                ),
            ));
        }
        let rows = step.rows()?;
        let num_states = i32::try_from(step.states.len()).map_err(|_| {
            Error::new(Status::OutOfRange, format!("num_states = {} does not fit an i32", step.states.len()))
        })?;
        let outs: Vec<*const c_void> = step.states.iter().map(|s| s.out.as_ptr().cast()).collect();
        let lses: Vec<*const f32> = step.states.iter().map(|s| s.lse.as_ptr()).collect();
        let bounds: Vec<*const f32> = step.states.iter().map(|s| s.bound.map_or(null(), |b| b.as_ptr())).collect();
        let mut args = raw_defaults()?;
        args.num_states = num_states;
        args.rows = rows;
        args.head_dim = step.head_dim;
        args.state_outs = outs.as_ptr();
        args.state_dtype = S::DTYPE.raw();
        args.state_lses = lses.as_ptr();
        args.state_bounds = if bounds.iter().any(|b| !b.is_null()) { bounds.as_ptr() } else { null() };
        args.out = step.out.as_mut_ptr().cast();
        args.out_dtype = O::DTYPE.raw();
        args.lse = step.lse.map_or(null_mut(), |b| b.as_mut_ptr());
        args.bound = step.bound.map_or(null_mut(), |b| b.as_mut_ptr());
        args.stream = null_mut();
        // SAFETY: live context; the pointer tables hold num_states entries, each state's
        // buffers and the outputs hold rows (x head_dim) elements of the dtypes named (checked
        // above; with no state or a rejected head_dim the library reads no buffer), all host
        // memory borrowed for the whole synchronous CPU call. `out` is a unique borrow, so it
        // aliases no state.
        check(unsafe { sys::sr_merge_attention_states(self.handle.as_ptr(), &args) })
    }
}
