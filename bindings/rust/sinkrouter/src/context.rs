//! Context: a backend and device with its worker threads; decode steps and statistics run on it.
use std::ffi::CStr;
use std::mem::size_of;
use std::ptr::{null_mut, NonNull};
use std::sync::Arc;

use sinkrouter_sys as sys;

use crate::error::{check, Error, Result, Status};

/// Where a context runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// The first GPU backend that loads and finds a device, else the CPU.
    Auto,
    Cpu,
    Cuda,
    Hip,
}

impl Backend {
    pub fn raw(self) -> sys::sr_backend {
        match self {
            Backend::Auto => sys::SR_BACKEND_AUTO,
            Backend::Cpu => sys::SR_BACKEND_CPU,
            Backend::Cuda => sys::SR_BACKEND_CUDA,
            Backend::Hip => sys::SR_BACKEND_HIP,
        }
    }

    fn from_raw(raw: sys::sr_backend) -> Result<Backend> {
        match raw {
            sys::SR_BACKEND_AUTO => Ok(Backend::Auto),
            sys::SR_BACKEND_CPU => Ok(Backend::Cpu),
            sys::SR_BACKEND_CUDA => Ok(Backend::Cuda),
            sys::SR_BACKEND_HIP => Ok(Backend::Hip),
            other => Err(Error::new(Status::Unsupported, format!("backend = {other} is not known to this binding"))),
        }
    }

    /// The library's name ("cpu", "cuda", "hip", "auto").
    pub fn name(self) -> String {
        // SAFETY: sr_backend_name returns a static, NUL-terminated string for any value.
        unsafe { CStr::from_ptr(sys::sr_backend_name(self.raw())) }.to_string_lossy().into_owned()
    }
}

/// Options of [`Context::with_options`]. `new()` takes the library's defaults
/// (sr_context_options_default); change fields, or use struct update syntax.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ContextOptions {
    pub backend: Backend,
    /// GPU ordinal; must be 0 for the CPU.
    pub device_index: i32,
    /// CPU worker threads; 0 = all online cores.
    pub num_threads: i32,
}

impl ContextOptions {
    pub fn new() -> Result<ContextOptions> {
        let raw = raw_defaults()?;
        Ok(ContextOptions {
            backend: Backend::from_raw(raw.backend)?,
            device_index: raw.device_index,
            num_threads: raw.num_threads,
        })
    }

    fn to_raw(self) -> Result<sys::sr_context_options> {
        let mut raw = raw_defaults()?;
        raw.backend = self.backend.raw();
        raw.device_index = self.device_index;
        raw.num_threads = self.num_threads;
        Ok(raw)
    }
}

fn raw_defaults() -> Result<sys::sr_context_options> {
    let mut raw = std::mem::MaybeUninit::<sys::sr_context_options>::zeroed();
    // SAFETY: the pointer and size describe one sr_context_options.
    check(unsafe { sys::sr_context_options_default(raw.as_mut_ptr(), size_of::<sys::sr_context_options>()) })?;
    // SAFETY: zeroed is a valid sr_context_options (integers and a null pointer), and the
    // call succeeded, so every field holds its default.
    Ok(unsafe { raw.assume_init() })
}

/// Owns one sr_context; destroys it when the last [`Context`] or [`crate::KvCache`] holding it
/// is dropped.
pub(crate) struct ContextHandle {
    raw: NonNull<sys::sr_context>,
    backend: Backend,
}

// SAFETY: sinkrouter.h, "Thread safety": sr_context handles may be used from several threads
// at once, and nothing ties a context to the thread that created it.
unsafe impl Send for ContextHandle {}
unsafe impl Sync for ContextHandle {}

impl ContextHandle {
    pub(crate) fn as_ptr(&self) -> *mut sys::sr_context {
        self.raw.as_ptr()
    }
}

impl Drop for ContextHandle {
    fn drop(&mut self) {
        // SAFETY: we own the handle, and no cache of it is left: every KvCache holds an Arc of
        // this handle, so it only drops after the last cache was destroyed.
        unsafe { sys::sr_context_destroy(self.raw.as_ptr()) }
    }
}

/// A SinkRouter context. Cloning is cheap and shares the one C context; it is destroyed when
/// the last clone and the last cache created on it are dropped.
#[derive(Clone)]
pub struct Context {
    pub(crate) handle: Arc<ContextHandle>,
}

impl Context {
    /// A context with the library's default options (backend AUTO: a GPU if one is found).
    pub fn new() -> Result<Context> {
        Context::with_options(&ContextOptions::new()?)
    }

    /// A CPU context with `num_threads` workers (0 = all online cores).
    pub fn cpu(num_threads: i32) -> Result<Context> {
        Context::with_options(&ContextOptions { backend: Backend::Cpu, num_threads, ..ContextOptions::new()? })
    }

    pub fn with_options(options: &ContextOptions) -> Result<Context> {
        let raw_options = options.to_raw()?;
        let mut raw = null_mut();
        // SAFETY: valid options and out-pointer; on success we own the returned handle.
        check(unsafe { sys::sr_context_create(&raw_options, &mut raw) })?;
        let raw = NonNull::new(raw)
            .ok_or_else(|| Error::new(Status::Internal, "sr_context_create succeeded but returned NULL"))?;
        let mut backend = sys::SR_BACKEND_AUTO;
        // Built before the backend query so that a failure there still destroys the context.
        let mut handle = ContextHandle { raw, backend: Backend::Auto };
        // SAFETY: live handle, valid out-pointer.
        check(unsafe { sys::sr_context_backend(handle.as_ptr(), &mut backend) })?;
        handle.backend = Backend::from_raw(backend)?;
        Ok(Context { handle: Arc::new(handle) })
    }

    /// The backend it runs on (resolved: never `Auto`).
    pub fn backend(&self) -> Backend {
        self.handle.backend
    }

    /// Worker threads of a CPU context; 0 for GPU contexts.
    pub fn num_threads(&self) -> Result<i32> {
        let mut threads = 0;
        // SAFETY: live handle, valid out-pointer.
        check(unsafe { sys::sr_context_num_threads(self.handle.as_ptr(), &mut threads) })?;
        Ok(threads)
    }

    /// Description of the device ("cpu: 16 threads, avx512").
    pub fn device_name(&self) -> Result<String> {
        let mut name = std::ptr::null();
        // SAFETY: live handle, valid out-pointer; the string lives as long as the context and
        // is copied here.
        check(unsafe { sys::sr_context_device_name(self.handle.as_ptr(), &mut name) })?;
        Ok(unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned())
    }

    /// The raw handle, for calls only sinkrouter-sys offers (device buffers, streams). It stays
    /// valid while this context (or a cache of it) is alive.
    pub fn as_raw(&self) -> *mut sys::sr_context {
        self.handle.as_ptr()
    }
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").field("backend", &self.handle.backend).finish_non_exhaustive()
    }
}
