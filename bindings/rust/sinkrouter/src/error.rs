//! Errors: the C status of a failed call and the message sr_last_error() gave for it.
use std::ffi::CStr;
use std::fmt;

use sinkrouter_sys as sys;

/// The failure codes of `sr_status` (every value but `SR_OK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    InvalidArgument,
    OutOfRange,
    Unsupported,
    OutOfMemory,
    CacheFull,
    UnknownSequence,
    BackendUnavailable,
    Device,
    StructSize,
    Internal,
    /// A code appended to sr_status after this binding was written.
    Unknown(i32),
}

impl Status {
    /// The status of a raw code; `None` for `SR_OK`.
    pub fn from_raw(raw: sys::sr_status) -> Option<Status> {
        Some(match raw {
            sys::SR_OK => return None,
            sys::SR_ERR_INVALID_ARGUMENT => Status::InvalidArgument,
            sys::SR_ERR_OUT_OF_RANGE => Status::OutOfRange,
            sys::SR_ERR_UNSUPPORTED => Status::Unsupported,
            sys::SR_ERR_OUT_OF_MEMORY => Status::OutOfMemory,
            sys::SR_ERR_CACHE_FULL => Status::CacheFull,
            sys::SR_ERR_UNKNOWN_SEQUENCE => Status::UnknownSequence,
            sys::SR_ERR_BACKEND_UNAVAILABLE => Status::BackendUnavailable,
            sys::SR_ERR_DEVICE => Status::Device,
            sys::SR_ERR_STRUCT_SIZE => Status::StructSize,
            sys::SR_ERR_INTERNAL => Status::Internal,
            other => Status::Unknown(other),
        })
    }

    pub fn raw(self) -> sys::sr_status {
        match self {
            Status::InvalidArgument => sys::SR_ERR_INVALID_ARGUMENT,
            Status::OutOfRange => sys::SR_ERR_OUT_OF_RANGE,
            Status::Unsupported => sys::SR_ERR_UNSUPPORTED,
            Status::OutOfMemory => sys::SR_ERR_OUT_OF_MEMORY,
            Status::CacheFull => sys::SR_ERR_CACHE_FULL,
            Status::UnknownSequence => sys::SR_ERR_UNKNOWN_SEQUENCE,
            Status::BackendUnavailable => sys::SR_ERR_BACKEND_UNAVAILABLE,
            Status::Device => sys::SR_ERR_DEVICE,
            Status::StructSize => sys::SR_ERR_STRUCT_SIZE,
            Status::Internal => sys::SR_ERR_INTERNAL,
            Status::Unknown(raw) => raw,
        }
    }

    /// The library's name of the status ("SR_ERR_CACHE_FULL").
    pub fn name(self) -> String {
        // SAFETY: sr_status_string returns a static, NUL-terminated string for any value.
        unsafe { CStr::from_ptr(sys::sr_status_string(self.raw())) }.to_string_lossy().into_owned()
    }
}

/// A failed call: its status and the message saying what was wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: Status,
    message: String,
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An error the binding found before calling C (a slice of the wrong length).
    pub(crate) fn new(status: Status, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// What was wrong, naming the argument (from sr_last_error() for failures of the C library).
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.status.name())
    }
}

impl std::error::Error for Error {}

/// Turns a C status into a Result. Call it right after the C call, on the same thread: the
/// message is the thread's sr_last_error(), valid only until its next call.
pub(crate) fn check(raw: sys::sr_status) -> Result<()> {
    match Status::from_raw(raw) {
        None => Ok(()),
        Some(status) => {
            // SAFETY: sr_last_error never returns NULL; we copy the string before any other call.
            let message = unsafe { CStr::from_ptr(sys::sr_last_error()) }.to_string_lossy().into_owned();
            Err(Error { status, message })
        }
    }
}

/// Refuses a caller's slice of the wrong length before any call, naming it and the layout
/// (`shape`) that decides its length.
pub(crate) fn check_len(name: &str, len: usize, want: usize, shape: &str) -> Result<()> {
    if len == want {
        Ok(())
    } else {
        Err(Error::new(Status::InvalidArgument, format!("{name} holds {len} elements, but {shape} needs {want}")))
    }
}
