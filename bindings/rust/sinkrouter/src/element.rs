//! Element types of K/V buffers and their sr_dtype: f32, and f16/bf16 carried as raw bits
//! (Rust has no stable 16-bit float type).
use sinkrouter_sys as sys;

use crate::error::{Error, Result, Status};

/// Element type of a cache or of a caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    F32,
    F16,
    Bf16,
    /// OCP FP8 E4M3, for caches only (no [`Element`] type has it): the library keeps one f32
    /// scale per token and kv-head for K and for V, and appends and reads convert from and to
    /// the f32, [`F16Bits`] or [`Bf16Bits`] slices you pass. Since library 0.2.0.
    Fp8E4m3,
}

impl Dtype {
    pub fn raw(self) -> sys::sr_dtype {
        match self {
            Dtype::F32 => sys::SR_DTYPE_F32,
            Dtype::F16 => sys::SR_DTYPE_F16,
            Dtype::Bf16 => sys::SR_DTYPE_BF16,
            Dtype::Fp8E4m3 => sys::SR_DTYPE_FP8_E4M3,
        }
    }

    pub(crate) fn from_raw(raw: sys::sr_dtype) -> Result<Dtype> {
        match raw {
            sys::SR_DTYPE_F32 => Ok(Dtype::F32),
            sys::SR_DTYPE_F16 => Ok(Dtype::F16),
            sys::SR_DTYPE_BF16 => Ok(Dtype::Bf16),
            sys::SR_DTYPE_FP8_E4M3 => Ok(Dtype::Fp8E4m3),
            other => Err(Error::new(Status::Unsupported, format!("dtype = {other} is not known to this binding"))),
        }
    }
}

/// IEEE half precision, as its bit pattern.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct F16Bits(pub u16);

/// bfloat16 (the upper half of an f32), as its bit pattern.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Bf16Bits(pub u16);

impl Bf16Bits {
    /// Rounds to nearest even, as the library does when it converts f32 to bf16.
    pub fn from_f32(value: f32) -> Bf16Bits {
        let bits = value.to_bits();
        if value.is_nan() {
            return Bf16Bits(((bits >> 16) as u16) | 0x0040); // keep it a (quiet) NaN
        }
        let round = 0x7fff + ((bits >> 16) & 1);
        Bf16Bits((bits.wrapping_add(round) >> 16) as u16)
    }

    pub fn to_f32(self) -> f32 {
        f32::from_bits((self.0 as u32) << 16)
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for super::F16Bits {}
    impl Sealed for super::Bf16Bits {}
}

/// A type whose slices the library reads and writes as one sr_dtype. Sealed: the library must
/// know the layout, so only the three types here implement it.
pub trait Element: Copy + Send + Sync + sealed::Sealed + 'static {
    const DTYPE: Dtype;
    const ZERO: Self;
}

impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
    const ZERO: f32 = 0.0;
}

impl Element for F16Bits {
    const DTYPE: Dtype = Dtype::F16;
    const ZERO: F16Bits = F16Bits(0);
}

impl Element for Bf16Bits {
    const DTYPE: Dtype = Dtype::Bf16;
    const ZERO: Bf16Bits = Bf16Bits(0);
}
