//! Raw declarations of libsinkrouter's C ABI (`include/sinkrouter/sinkrouter.h`), one to one.
//!
//! Everything here is `unsafe` to call and follows the header's conventions; the `sinkrouter`
//! crate wraps it in owned handles, slices and `Result`s. C enums are `c_int` type aliases with
//! one constant per value (not Rust enums: a newer library may return a value this crate does
//! not know, which would be undefined behaviour in a Rust enum).
//!
//! The declarations are written through the macros in `abi_macros`, which also record every
//! struct layout, enum value and function name ([`STRUCT_LAYOUTS`], [`ENUM_VALUES`],
//! [`FUNCTION_NAMES`]); the crate's `abi_layout` test compares those with what the C compiler
//! reports for the header, so a declaration that drifts from the header fails a test.
#![no_std]
#![allow(non_camel_case_types)]

#[macro_use]
mod abi_macros;
mod functions;
mod types;

pub use abi_macros::{EnumValue, StructLayout};

/// SR_ABI_VERSION of the header these declarations follow (include/sinkrouter/version.h): the
/// SONAME's number. Compare with `sr_abi_version()` to detect a library of another ABI.
pub const SR_ABI_VERSION: core::ffi::c_uint = 1;
pub use functions::*;
pub use types::*;
