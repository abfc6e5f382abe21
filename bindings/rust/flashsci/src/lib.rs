//! Safe Rust API of libflashsci: exact scaled-dot-product attention,
//! `O = softmax(scale · Q Kᵀ + mask) V`, computed with the online softmax.
//!
//! A [`Plan`] is created once for a backend, described with builder-style setters,
//! and run any number of times. Every failure is an [`Error`] carrying the library's
//! [`Status`] and its message (which names the function, the argument, its value and
//! what is allowed).
//!
//! ```no_run
//! use flashsci::{Backend, Dtype, Mask, Plan, Shape};
//!
//! # fn main() -> Result<(), flashsci::Error> {
//! let shape = Shape::new(1, 128, 128, 8, 2, 64); // GQA: 8 query heads share 2 kv heads
//! let mut plan = Plan::new(Backend::Cpu)?;
//! plan.set_shape(shape)?.set_dtype(Dtype::F32)?.set_mask(Mask::Causal)?;
//!
//! let q = vec![0.5f32; shape.q_len()];
//! let kv = vec![0.25f32; shape.kv_len()];
//! let mut o = vec![0f32; shape.q_len()];
//! let mut lse = vec![0f32; shape.lse_len()];
//! plan.forward(&q, &kv, &kv, &mut o, Some(&mut lse))?;
//! # Ok(())
//! # }
//! ```
//!
//! # Layouts
//! Tensors are `[batch, seqlen, heads, head_dim]` by default (`q`, `o`: `heads_q`;
//! `k`, `v`: `heads_kv`); any layout with a contiguous `head_dim` is described with
//! [`Plan::set_strides`] in elements. The LSE is `f32 [batch, heads_q, seqlen_q]`.
//!
//! A variable-length batch ([`Plan::set_varlen_shape`], [`Plan::forward_varlen`]) packs
//! sequences of different lengths along one token axis: `q`, `o` `[total_q, heads_q,
//! head_dim]`, `k`, `v` `[total_k, heads_kv, head_dim]`, `i32` offsets `cu_seqlens_q`,
//! `cu_seqlens_k` of `batch + 1` entries, and the LSE `f32 [heads_q, total_q]`.
//!
//! # Backward
//! [`Plan::backward`] computes the gradients `dq`, `dk`, `dv` from `dout` = dL/dO and the
//! forward's `o` and `lse` ([`BackwardSlices`]); the backward's tensors have their own
//! strides ([`Tensor::DO`], [`Tensor::DQ`], [`Tensor::DK`], [`Tensor::DV`]).
//!
//! # Host slices and device memory
//! [`Plan::forward`] takes host slices and runs on a CPU plan; it checks that every
//! slice covers its tensor as the plan describes it, so it cannot read or write out of
//! bounds. 16-bit inputs are passed as `u16` bit patterns (fp16 or bf16, as the plan's
//! [`Dtype`] says). Device memory (a CUDA plan) goes through the `unsafe`
//! [`Plan::forward_raw`] with the caller's pointers and CUDA stream.
//!
//! # Threads
//! A [`Plan`] is [`Send`]: it is a heap object of the library bound to no thread
//! (a CUDA plan is bound to the *device* that was current when it was created, not to a
//! thread). It is also [`Sync`]: the header allows one plan to serve concurrent
//! `flashsci_forward` and `flashsci_backward` calls from many threads, and every `&self`
//! method ([`Plan::forward`], [`Plan::backward`], their `_raw` forms, [`Plan::workspace_size`],
//! [`Plan::kernel_name`], [`Plan::backend`]) only reads the plan. The setters, which
//! the header forbids to run concurrently with any other call on the plan, take
//! `&mut self`, so the borrow checker enforces that rule; [`Drop`] needs ownership, so
//! a plan is never destroyed while another thread uses it. Error messages are
//! thread-local in the library and read right after the failing call on the same
//! thread.

use std::ffi::{c_void, CStr};
use std::fmt;
use std::os::raw::c_char;
use std::ptr::NonNull;

pub use flashsci_sys as sys;

/// Why a call failed: the library's `flashsci_status_t` (never `SUCCESS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Status {
    /// A bad argument: null, out of range, or inconsistent.
    InvalidValue,
    /// Well-formed, but this build or device cannot run it.
    NotSupported,
    /// The CUDA backend was asked for and no usable GPU or driver exists.
    NoDevice,
    /// An allocation failed.
    OutOfMemory,
    /// A CUDA call failed.
    DeviceError,
    /// A bug in libflashsci.
    InternalError,
    /// A status this crate does not know (from a newer library).
    Other(u32),
}

impl Status {
    /// The status of a raw value; `None` for `FLASHSCI_STATUS_SUCCESS`.
    pub fn from_raw(raw: sys::flashsci_status_t) -> Option<Status> {
        Some(match raw {
            sys::FLASHSCI_STATUS_SUCCESS => return None,
            sys::FLASHSCI_STATUS_INVALID_VALUE => Status::InvalidValue,
            sys::FLASHSCI_STATUS_NOT_SUPPORTED => Status::NotSupported,
            sys::FLASHSCI_STATUS_NO_DEVICE => Status::NoDevice,
            sys::FLASHSCI_STATUS_OUT_OF_MEMORY => Status::OutOfMemory,
            sys::FLASHSCI_STATUS_DEVICE_ERROR => Status::DeviceError,
            sys::FLASHSCI_STATUS_INTERNAL_ERROR => Status::InternalError,
            other => Status::Other(other),
        })
    }

    /// The raw `flashsci_status_t` value.
    pub fn raw(self) -> sys::flashsci_status_t {
        match self {
            Status::InvalidValue => sys::FLASHSCI_STATUS_INVALID_VALUE,
            Status::NotSupported => sys::FLASHSCI_STATUS_NOT_SUPPORTED,
            Status::NoDevice => sys::FLASHSCI_STATUS_NO_DEVICE,
            Status::OutOfMemory => sys::FLASHSCI_STATUS_OUT_OF_MEMORY,
            Status::DeviceError => sys::FLASHSCI_STATUS_DEVICE_ERROR,
            Status::InternalError => sys::FLASHSCI_STATUS_INTERNAL_ERROR,
            Status::Other(raw) => raw,
        }
    }

    /// The library's short description, e.g. "invalid value".
    pub fn description(self) -> &'static str {
        // SAFETY: flashsci_status_string accepts any value and returns a static string.
        unsafe { static_str(sys::flashsci_status_string(self.raw())) }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// A failed call: its [`Status`] and the library's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    status: Status,
    message: String,
}

impl Error {
    fn new(status: Status, message: impl Into<String>) -> Error {
        Error { status, message: message.into() }
    }

    /// Why the call failed.
    pub fn status(&self) -> Status {
        self.status
    }

    /// What was wrong: the function, the argument, its value and what is allowed.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "flashsci: {}: {}", self.status, self.message)
    }
}

impl std::error::Error for Error {}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// SAFETY: `p` must be null or a NUL-terminated string that lives forever.
unsafe fn static_str(p: *const c_char) -> &'static str {
    if p.is_null() {
        return "";
    }
    CStr::from_ptr(p).to_str().unwrap_or("(message is not UTF-8)")
}

/// Turns a raw status into a `Result`, reading this thread's message on failure.
fn check(raw: sys::flashsci_status_t) -> Result<()> {
    match Status::from_raw(raw) {
        None => Ok(()),
        Some(status) => {
            // SAFETY: flashsci_last_error returns this thread's message, valid until its next call.
            let message = unsafe { CStr::from_ptr(sys::flashsci_last_error()) }.to_string_lossy().into_owned();
            Err(Error::new(status, message))
        }
    }
}

/// `FLASHSCI_VERSION` of the loaded library: MAJOR*10000 + MINOR*100 + PATCH.
pub fn version() -> i32 {
    // SAFETY: no arguments, no state.
    unsafe { sys::flashsci_version() }
}

/// The loaded library's version, "MAJOR.MINOR.PATCH".
pub fn version_string() -> &'static str {
    // SAFETY: returns a static string.
    unsafe { static_str(sys::flashsci_version_string()) }
}

/// Element type of q, k, v and o.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    /// IEEE binary16, passed as `u16` bit patterns.
    F16,
    /// bfloat16, passed as `u16` bit patterns.
    BF16,
    /// IEEE binary32.
    F32,
}

impl Dtype {
    fn raw(self) -> sys::flashsci_dtype_t {
        match self {
            Dtype::F16 => sys::FLASHSCI_DTYPE_FLOAT16,
            Dtype::BF16 => sys::FLASHSCI_DTYPE_BFLOAT16,
            Dtype::F32 => sys::FLASHSCI_DTYPE_FLOAT32,
        }
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::F16 | Dtype::BF16 => 2,
            Dtype::F32 => 4,
        }
    }
}

/// Where a plan computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// CUDA when a usable GPU exists, else CPU (resolved at [`Plan::new`]).
    Auto,
    /// The CUDA device current at [`Plan::new`]; device pointers ([`Plan::forward_raw`]).
    Cuda,
    /// The host, all cores; host memory ([`Plan::forward`]).
    Cpu,
}

impl Backend {
    fn raw(self) -> sys::flashsci_backend_t {
        match self {
            Backend::Auto => sys::FLASHSCI_BACKEND_AUTO,
            Backend::Cuda => sys::FLASHSCI_BACKEND_CUDA,
            Backend::Cpu => sys::FLASHSCI_BACKEND_CPU,
        }
    }
}

/// Which keys each query row may see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mask {
    /// Every key (the default).
    #[default]
    None,
    /// Top-left: row i sees keys j <= i (PyTorch's `is_causal`).
    Causal,
    /// Row i sees keys j <= i + seqlen_k - seqlen_q (FlashAttention-2's convention).
    CausalBottomRight,
}

impl Mask {
    fn raw(self) -> sys::flashsci_mask_t {
        match self {
            Mask::None => sys::FLASHSCI_MASK_NONE,
            Mask::Causal => sys::FLASHSCI_MASK_CAUSAL,
            Mask::CausalBottomRight => sys::FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT,
        }
    }
}

/// Names a tensor for [`Plan::set_strides`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tensor {
    /// Queries, `[batch, seqlen_q, heads_q, head_dim]`.
    Q,
    /// Keys, `[batch, seqlen_k, heads_kv, head_dim]`.
    K,
    /// Values, `[batch, seqlen_k, heads_kv, head_dim]`.
    V,
    /// Output, `[batch, seqlen_q, heads_q, head_dim]`.
    O,
    /// The backward's `dout` = dL/dO, like `o`.
    DO,
    /// The backward's `dq`, like `q`.
    DQ,
    /// The backward's `dk`, like `k`.
    DK,
    /// The backward's `dv`, like `v`.
    DV,
}

/// How a float32 plan multiplies (`flashsci_precision_t`); fp16 and bf16 plans accept and ignore it. The CPU
/// backend computes fp32 exactly in every mode; the CUDA backend runs fp32 FMAs in every mode until it has a
/// tensor-core engine for fp32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Precision {
    /// fp32-level accuracy, by the fastest means the device has (the default).
    #[default]
    Default,
    /// fp32 inputs on TF32 tensor cores, one pass: fastest, ~1e-3 relative.
    Tf32,
    /// fp32 inputs with fp32 FMAs only, no tensor cores.
    Ieee,
}

impl Precision {
    fn raw(self) -> sys::flashsci_precision_t {
        match self {
            Precision::Default => sys::FLASHSCI_PRECISION_DEFAULT,
            Precision::Tf32 => sys::FLASHSCI_PRECISION_TF32,
            Precision::Ieee => sys::FLASHSCI_PRECISION_IEEE,
        }
    }
}

impl Tensor {
    const ALL: [Tensor; 8] =
        [Tensor::Q, Tensor::K, Tensor::V, Tensor::O, Tensor::DO, Tensor::DQ, Tensor::DK, Tensor::DV];

    fn raw(self) -> sys::flashsci_tensor_t {
        match self {
            Tensor::Q => sys::FLASHSCI_TENSOR_Q,
            Tensor::K => sys::FLASHSCI_TENSOR_K,
            Tensor::V => sys::FLASHSCI_TENSOR_V,
            Tensor::O => sys::FLASHSCI_TENSOR_O,
            Tensor::DO => sys::FLASHSCI_TENSOR_DO,
            Tensor::DQ => sys::FLASHSCI_TENSOR_DQ,
            Tensor::DK => sys::FLASHSCI_TENSOR_DK,
            Tensor::DV => sys::FLASHSCI_TENSOR_DV,
        }
    }

    /// Whether the tensor has the keys' rows and heads (k, v and their gradients) rather than the queries'.
    fn has_key_rows(self) -> bool {
        matches!(self, Tensor::K | Tensor::V | Tensor::DK | Tensor::DV)
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The problem shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shape {
    /// Number of sequences, >= 1.
    pub batch: i64,
    /// Query rows per sequence, >= 1.
    pub seqlen_q: i64,
    /// Keys (and values) per sequence, >= 1.
    pub seqlen_k: i64,
    /// Query (and output) heads, >= 1.
    pub heads_q: i64,
    /// Key/value heads, >= 1, dividing `heads_q`.
    pub heads_kv: i64,
    /// Features per head: a multiple of 8 from 8 to 256.
    pub head_dim: i64,
}

impl Shape {
    /// A shape from its six numbers, in the order of `flashsci_plan_set_shape`.
    pub fn new(batch: i64, seqlen_q: i64, seqlen_k: i64, heads_q: i64, heads_kv: i64, head_dim: i64) -> Shape {
        Shape { batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim }
    }

    /// Elements of a contiguous q or o.
    pub fn q_len(&self) -> usize {
        (self.batch * self.seqlen_q * self.heads_q * self.head_dim) as usize
    }

    /// Elements of a contiguous k or v.
    pub fn kv_len(&self) -> usize {
        (self.batch * self.seqlen_k * self.heads_kv * self.head_dim) as usize
    }

    /// Elements of the LSE, `[batch, heads_q, seqlen_q]`.
    pub fn lse_len(&self) -> usize {
        (self.batch * self.heads_q * self.seqlen_q) as usize
    }

    fn dims(&self, tensor: Tensor) -> (i64, i64, i64) {
        if tensor.has_key_rows() {
            (self.batch, self.seqlen_k, self.heads_kv)
        } else {
            (self.batch, self.seqlen_q, self.heads_q)
        }
    }

    fn contiguous(&self, tensor: Tensor) -> Strides {
        let (_, seqlen, heads) = self.dims(tensor);
        Strides { batch: seqlen * heads * self.head_dim, seq: heads * self.head_dim, head: self.head_dim }
    }
}

/// The shape of a variable-length batch, in the order of `flashsci_plan_set_varlen_shape`:
/// `batch` sequences packed along one token axis, sequence b owning rows
/// `cu_seqlens[b] .. cu_seqlens[b + 1]` of the packed tensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VarlenShape {
    /// Number of sequences, >= 1.
    pub batch: i64,
    /// Query rows of all sequences together, from 1 to 2^31 - 1.
    pub total_q: i64,
    /// Key (and value) rows of all sequences together, from 1 to 2^31 - 1.
    pub total_k: i64,
    /// The longest sequence's query rows, from 1 to `total_q`.
    pub max_seqlen_q: i64,
    /// The longest sequence's keys, from 1 to `total_k`.
    pub max_seqlen_k: i64,
    /// Query (and output) heads, >= 1.
    pub heads_q: i64,
    /// Key/value heads, >= 1, dividing `heads_q`.
    pub heads_kv: i64,
    /// Features per head: a multiple of 8 from 8 to 256.
    pub head_dim: i64,
}

impl VarlenShape {
    /// A shape from its eight numbers, in the order of `flashsci_plan_set_varlen_shape`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        batch: i64,
        total_q: i64,
        total_k: i64,
        max_seqlen_q: i64,
        max_seqlen_k: i64,
        heads_q: i64,
        heads_kv: i64,
        head_dim: i64,
    ) -> VarlenShape {
        VarlenShape { batch, total_q, total_k, max_seqlen_q, max_seqlen_k, heads_q, heads_kv, head_dim }
    }

    /// Elements of a contiguous q or o, `[total_q, heads_q, head_dim]`.
    pub fn q_len(&self) -> usize {
        (self.total_q * self.heads_q * self.head_dim) as usize
    }

    /// Elements of a contiguous k or v, `[total_k, heads_kv, head_dim]`.
    pub fn kv_len(&self) -> usize {
        (self.total_k * self.heads_kv * self.head_dim) as usize
    }

    /// Elements of the LSE, `[heads_q, total_q]`.
    pub fn lse_len(&self) -> usize {
        (self.heads_q * self.total_q) as usize
    }

    /// Entries of `cu_seqlens_q` and of `cu_seqlens_k`: `batch + 1`.
    pub fn offsets_len(&self) -> usize {
        (self.batch + 1) as usize
    }

    /// (sequences, rows, heads) a tensor's strides reach: all tokens as one sequence.
    fn dims(&self, tensor: Tensor) -> (i64, i64, i64) {
        if tensor.has_key_rows() {
            (1, self.total_k, self.heads_kv)
        } else {
            (1, self.total_q, self.heads_q)
        }
    }

    fn contiguous(&self, tensor: Tensor) -> Strides {
        let (_, _, heads) = self.dims(tensor);
        Strides { batch: 0, seq: heads * self.head_dim, head: self.head_dim }
    }
}

/// A tensor's strides in elements (the head_dim stride is 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Strides {
    /// Elements between consecutive sequences.
    pub batch: i64,
    /// Elements between consecutive rows of a sequence.
    pub seq: i64,
    /// Elements between consecutive heads.
    pub head: i64,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for u16 {}
}

/// A host element type [`Plan::forward`] accepts: `f32` for [`Dtype::F32`], `u16` bit
/// patterns for [`Dtype::F16`] and [`Dtype::BF16`].
pub trait Element: sealed::Sealed + Copy {
    /// Whether slices of this type hold elements of `dtype`.
    fn holds(dtype: Dtype) -> bool;
}

impl Element for f32 {
    fn holds(dtype: Dtype) -> bool {
        dtype == Dtype::F32
    }
}

impl Element for u16 {
    fn holds(dtype: Dtype) -> bool {
        matches!(dtype, Dtype::F16 | Dtype::BF16)
    }
}

/// The forward's host slices by name, tensor and length.
fn forward_slices<'a, T>(q: &[T], k: &[T], v: &[T], o: &[T]) -> [(&'a str, Tensor, usize); 4] {
    [("q", Tensor::Q, q.len()), ("k", Tensor::K, k.len()), ("v", Tensor::V, v.len()), ("o", Tensor::O, o.len())]
}

/// The backward's host slices by name, tensor and length.
#[allow(clippy::too_many_arguments)]
fn backward_slices<'a, T>(
    q: &[T],
    k: &[T],
    v: &[T],
    o: &[T],
    dout: &[T],
    dq: &[T],
    dk: &[T],
    dv: &[T],
) -> [(&'a str, Tensor, usize); 8] {
    [
        ("q", Tensor::Q, q.len()),
        ("k", Tensor::K, k.len()),
        ("v", Tensor::V, v.len()),
        ("o", Tensor::O, o.len()),
        ("dout", Tensor::DO, dout.len()),
        ("dq", Tensor::DQ, dq.len()),
        ("dk", Tensor::DK, dk.len()),
        ("dv", Tensor::DV, dv.len()),
    ]
}

/// The pointer a raw call gets for a host workspace: null when the kernel needs none.
fn workspace_pointer(workspace: &mut [u8]) -> *mut c_void {
    if workspace.is_empty() { std::ptr::null_mut() } else { workspace.as_mut_ptr().cast() }
}

/// The backward's tensors on host slices: the inputs (q, k, v, the forward's o and lse, dout = dL/dO) and the
/// gradients written (dq, dk, dv), each in the plan's [`Dtype`] but lse (`f32`).
pub struct BackwardSlices<'a, T> {
    /// Queries.
    pub q: &'a [T],
    /// Keys.
    pub k: &'a [T],
    /// Values.
    pub v: &'a [T],
    /// The forward's output for q, k, v.
    pub o: &'a [T],
    /// dL/dO, laid out like `o`.
    pub dout: &'a [T],
    /// The forward's log-sum-exp for q, k, v.
    pub lse: &'a [f32],
    /// Receives dL/dQ, laid out like `q`.
    pub dq: &'a mut [T],
    /// Receives dL/dK, laid out like `k` (summed over the query heads of each group).
    pub dk: &'a mut [T],
    /// Receives dL/dV, laid out like `v`.
    pub dv: &'a mut [T],
}

/// An owned `flashsci_plan_t`, destroyed on drop.
///
/// Setters take `&mut self` and return `&mut Self`, so they chain:
/// `plan.set_shape(shape)?.set_dtype(Dtype::BF16)?.set_mask(Mask::Causal)?;`.
/// A plan may be re-shaped and reused. See the crate documentation for threads.
pub struct Plan {
    raw: NonNull<sys::flashsci_plan_st>,
    backend: Backend,
    shape: Option<Shape>,
    varlen: Option<VarlenShape>,
    dtype: Option<Dtype>,
    strides: [Strides; 8],
}

// SAFETY: see "Threads" in the crate documentation: the plan is a library heap object
// bound to no thread, and the library allows concurrent forwards and getters on one plan;
// everything that mutates it takes `&mut self` or ownership.
unsafe impl Send for Plan {}
// SAFETY: as above: `&self` methods are the library's concurrent-safe calls.
unsafe impl Sync for Plan {}

impl Plan {
    /// Creates a plan. A CUDA plan binds to the CUDA device current on this thread.
    ///
    /// Fails with [`Status::NoDevice`] when CUDA is asked for and no usable GPU
    /// exists (or the library was built without CUDA).
    pub fn new(backend: Backend) -> Result<Plan> {
        let mut raw: sys::flashsci_plan_t = std::ptr::null_mut();
        // SAFETY: `raw` is a valid out-pointer.
        check(unsafe { sys::flashsci_plan_create(&mut raw, backend.raw()) })?;
        let raw = NonNull::new(raw)
            .ok_or_else(|| Error::new(Status::InternalError, "flashsci_plan_create returned a null plan"))?;
        let mut resolved: sys::flashsci_backend_t = sys::FLASHSCI_BACKEND_AUTO;
        // SAFETY: a live plan and a valid out-pointer.
        let got = check(unsafe { sys::flashsci_plan_get_backend(raw.as_ptr(), &mut resolved) });
        let mut plan =
            Plan { raw, backend: Backend::Cpu, shape: None, varlen: None, dtype: None, strides: [Strides::default(); 8] };
        got?; // on failure `plan` is dropped, destroying the handle
        plan.backend = if resolved == sys::FLASHSCI_BACKEND_CUDA { Backend::Cuda } else { Backend::Cpu };
        Ok(plan)
    }

    /// The backend the plan computes on ([`Backend::Auto`] resolved).
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The shape last set, if any (`None` on a variable-length plan).
    pub fn shape(&self) -> Option<Shape> {
        self.shape
    }

    /// The variable-length shape last set, if the plan has one ([`Plan::set_shape`] clears it).
    pub fn varlen_shape(&self) -> Option<VarlenShape> {
        self.varlen
    }

    /// The element type last set, if any.
    pub fn dtype(&self) -> Option<Dtype> {
        self.dtype
    }

    /// A tensor's strides as the plan has them (contiguous after [`Plan::set_shape`]).
    pub fn strides(&self, tensor: Tensor) -> Strides {
        self.strides[tensor.index()]
    }

    /// The raw handle, for calls of [`sys`]; it stays owned by this plan.
    pub fn as_raw(&self) -> sys::flashsci_plan_t {
        self.raw.as_ptr()
    }

    /// Sets the shape; resets every tensor's strides to the contiguous layout. On
    /// failure the plan is unchanged.
    pub fn set_shape(&mut self, shape: Shape) -> Result<&mut Self> {
        let s = shape;
        // SAFETY: a live plan, exclusively borrowed.
        check(unsafe {
            sys::flashsci_plan_set_shape(self.as_raw(), s.batch, s.seqlen_q, s.seqlen_k, s.heads_q, s.heads_kv, s.head_dim)
        })?;
        self.shape = Some(shape);
        self.varlen = None;
        for t in Tensor::ALL {
            self.strides[t.index()] = shape.contiguous(t);
        }
        Ok(self)
    }

    /// Sets the shape of a variable-length batch, run by [`Plan::forward_varlen`]; resets every
    /// tensor's strides to the contiguous packed layout (batch stride 0). [`Plan::set_shape`] makes
    /// the plan dense again. On failure the plan is unchanged.
    pub fn set_varlen_shape(&mut self, shape: VarlenShape) -> Result<&mut Self> {
        let s = shape;
        // SAFETY: a live plan, exclusively borrowed.
        check(unsafe {
            sys::flashsci_plan_set_varlen_shape(
                self.as_raw(),
                s.batch,
                s.total_q,
                s.total_k,
                s.max_seqlen_q,
                s.max_seqlen_k,
                s.heads_q,
                s.heads_kv,
                s.head_dim,
            )
        })?;
        self.varlen = Some(shape);
        self.shape = None;
        for t in Tensor::ALL {
            self.strides[t.index()] = shape.contiguous(t);
        }
        Ok(self)
    }

    /// Sets the element type of q, k, v and o.
    pub fn set_dtype(&mut self, dtype: Dtype) -> Result<&mut Self> {
        // SAFETY: a live plan, exclusively borrowed.
        check(unsafe { sys::flashsci_plan_set_dtype(self.as_raw(), dtype.raw()) })?;
        self.dtype = Some(dtype);
        Ok(self)
    }

    /// Sets the mask (default [`Mask::None`]).
    pub fn set_mask(&mut self, mask: Mask) -> Result<&mut Self> {
        // SAFETY: a live plan, exclusively borrowed.
        check(unsafe { sys::flashsci_plan_set_mask(self.as_raw(), mask.raw()) })?;
        Ok(self)
    }

    /// Sets the factor applied to Q·Kᵀ (default `1/sqrt(head_dim)`): finite, positive.
    pub fn set_softmax_scale(&mut self, scale: f32) -> Result<&mut Self> {
        // SAFETY: a live plan, exclusively borrowed.
        check(unsafe { sys::flashsci_plan_set_softmax_scale(self.as_raw(), scale) })?;
        Ok(self)
    }

    /// Sliding window: row i sees keys `c - left <= j <= c + right` around the diagonal
    /// `c = i + seqlen_k - seqlen_q` (`c = i` under [`Mask::Causal`]); `None` leaves a side unbounded.
    pub fn set_window(&mut self, left: Option<i64>, right: Option<i64>) -> Result<&mut Self> {
        const UNBOUNDED: i64 = -1;
        // SAFETY: a live plan, exclusively borrowed.
        check(unsafe {
            sys::flashsci_plan_set_window(self.as_raw(), left.unwrap_or(UNBOUNDED), right.unwrap_or(UNBOUNDED))
        })?;
        Ok(self)
    }

    /// Scores become `softcap·tanh(scale·q·k / softcap)` (Gemma-2); 0 turns it off.
    pub fn set_softcap(&mut self, softcap: f32) -> Result<&mut Self> {
        // SAFETY: a live plan, exclusively borrowed.
        check(unsafe { sys::flashsci_plan_set_softcap(self.as_raw(), softcap) })?;
        Ok(self)
    }

    /// ALiBi: one slope per query head, `score -= slope[h]·|i + seqlen_k - seqlen_q - j|`; `None` turns it off.
    /// Needs the shape; [`Plan::set_shape`] with another `heads_q` turns it off.
    pub fn set_alibi_slopes(&mut self, slopes: Option<&[f32]>) -> Result<&mut Self> {
        let heads_q = self.shape.map(|s| s.heads_q).or(self.varlen.map(|s| s.heads_q));
        let pointer = match (slopes, heads_q) {
            (None, _) => std::ptr::null(),
            (Some(s), Some(heads_q)) if s.len() as i64 != heads_q => {
                return Err(Error::new(
                    Status::InvalidValue,
                    format!("set_alibi_slopes: slopes has {} values, heads_q is {}", s.len(), heads_q),
                ))
            }
            // Without a shape the library refuses before reading any slope.
            (Some(s), _) => s.as_ptr(),
        };
        // SAFETY: a live plan, exclusively borrowed; `pointer` is null or holds heads_q floats.
        check(unsafe { sys::flashsci_plan_set_alibi_slopes(self.as_raw(), pointer) })?;
        Ok(self)
    }

    /// Describes a tensor's layout in elements (after [`Plan::set_shape`] or [`Plan::set_varlen_shape`], which
    /// reset it); the batch stride must be 0 on a variable-length plan.
    pub fn set_strides(&mut self, tensor: Tensor, strides: Strides) -> Result<&mut Self> {
        // SAFETY: a live plan, exclusively borrowed.
        check(unsafe {
            sys::flashsci_plan_set_strides(self.as_raw(), tensor.raw(), strides.batch, strides.seq, strides.head)
        })?;
        self.strides[tensor.index()] = strides;
        Ok(self)
    }

    /// How a float32 plan multiplies (default [`Precision::Default`]); see [`Precision`].
    pub fn set_precision(&mut self, precision: Precision) -> Result<&mut Self> {
        // SAFETY: a live plan, exclusively borrowed.
        check(unsafe { sys::flashsci_plan_set_precision(self.as_raw(), precision.raw()) })?;
        Ok(self)
    }

    /// `true`: bit-identical gradients from every backward on the same device and build; `false` (the default):
    /// the CUDA backward may sum with atomics (last-bit differences). The CPU backend is deterministic either way.
    pub fn set_deterministic(&mut self, deterministic: bool) -> Result<&mut Self> {
        // SAFETY: a live plan, exclusively borrowed.
        check(unsafe { sys::flashsci_plan_set_deterministic(self.as_raw(), i32::from(deterministic)) })?;
        Ok(self)
    }

    /// Bytes of scratch memory a backward needs (0: none). [`Plan::backward`] allocates it itself;
    /// [`Plan::backward_raw`] takes it from the caller.
    pub fn backward_workspace_size(&self) -> Result<usize> {
        let mut bytes = 0usize;
        // SAFETY: a live plan and a valid out-pointer; a getter may run beside forwards and backwards.
        check(unsafe { sys::flashsci_plan_get_backward_workspace_size(self.as_raw(), &mut bytes) })?;
        Ok(bytes)
    }

    /// Bytes of scratch memory a forward needs (0: none). [`Plan::forward`] allocates it
    /// itself; [`Plan::forward_raw`] takes it from the caller.
    pub fn workspace_size(&self) -> Result<usize> {
        let mut bytes = 0usize;
        // SAFETY: a live plan and a valid out-pointer; a getter may run beside forwards.
        check(unsafe { sys::flashsci_plan_get_workspace_size(self.as_raw(), &mut bytes) })?;
        Ok(bytes)
    }

    /// The kernel a forward runs for the plan as set, e.g. "cpu_avx2" or "sm90_hd128_bf16".
    pub fn kernel_name(&self) -> Result<&'static str> {
        let mut name: *const c_char = std::ptr::null();
        // SAFETY: a live plan and a valid out-pointer; the name is a static string.
        check(unsafe { sys::flashsci_plan_get_kernel_name(self.as_raw(), &mut name) })?;
        // SAFETY: the library returns a static string.
        Ok(unsafe { static_str(name) })
    }

    /// Elements a slice must hold for `tensor`, (sequences, rows, heads) of `head_dim` under the plan's strides.
    fn extent(&self, dims: (i64, i64, i64), head_dim: i64, tensor: Tensor) -> Result<usize> {
        let (b, s, h) = dims;
        let st = self.strides[tensor.index()];
        let last = (b as i128 - 1) * st.batch as i128
            + (s as i128 - 1) * st.seq as i128
            + (h as i128 - 1) * st.head as i128
            + head_dim as i128;
        usize::try_from(last).map_err(|_| Error::new(Status::InvalidValue, "tensor extent overflows usize"))
    }

    /// The checks of the host-slice calls: a CPU plan, a dtype the element type holds, and slices that
    /// cover their tensors (`dims` of each, `head_dim`); `slices` names each with its tensor and length.
    fn check_host_slices<T: Element>(
        &self,
        function: &str,
        dims: impl Fn(Tensor) -> (i64, i64, i64),
        head_dim: i64,
        slices: &[(&str, Tensor, usize)],
    ) -> Result<()> {
        if self.backend != Backend::Cpu {
            return Err(Error::new(
                Status::InvalidValue,
                format!("{function}: host slices need a CPU plan, this one runs on {:?}; use the _raw calls with device memory", self.backend),
            ));
        }
        let dtype = self
            .dtype
            .ok_or_else(|| Error::new(Status::InvalidValue, format!("{function}: set the shape and the dtype first")))?;
        if !T::holds(dtype) {
            return Err(Error::new(
                Status::InvalidValue,
                format!("{function}: slices of {} cannot hold {dtype:?} (f32 for F32, u16 for F16 and BF16)", std::any::type_name::<T>()),
            ));
        }
        for &(name, tensor, len) in slices {
            let need = self.extent(dims(tensor), head_dim, tensor)?;
            if len < need {
                return Err(Error::new(
                    Status::InvalidValue,
                    format!("{function}: {name} has {len} elements, its shape and strides reach {need}"),
                ));
            }
        }
        Ok(())
    }

    /// The dense shape of a host-slice call; `varlen_function` runs the plan if it has a variable-length one.
    fn host_dense_shape(&self, function: &str, varlen_function: &str) -> Result<Shape> {
        if self.varlen.is_some() {
            return Err(Error::new(
                Status::InvalidValue,
                format!("{function}: the plan has a variable-length shape (set_varlen_shape); call {varlen_function}"),
            ));
        }
        self.shape
            .ok_or_else(|| Error::new(Status::InvalidValue, format!("{function}: set the shape and the dtype first")))
    }

    /// The variable-length shape of a host-slice call; `dense_function` runs dense plans.
    fn host_varlen_shape(&self, function: &str, dense_function: &str) -> Result<VarlenShape> {
        self.varlen.ok_or_else(|| {
            Error::new(
                Status::InvalidValue,
                format!("{function}: the plan needs a variable-length shape (set_varlen_shape) and a dtype; {dense_function} runs dense plans"),
            )
        })
    }

    /// Both offset slices hold at least `need` (batch + 1) entries; the library checks their values.
    fn check_offsets_len(function: &str, need: usize, cu_seqlens_q: &[i32], cu_seqlens_k: &[i32]) -> Result<()> {
        for (name, offsets) in [("cu_seqlens_q", cu_seqlens_q), ("cu_seqlens_k", cu_seqlens_k)] {
            if offsets.len() < need {
                return Err(Error::new(
                    Status::InvalidValue,
                    format!("{function}: {name} has {} offsets, batch + 1 = {need} are needed", offsets.len()),
                ));
            }
        }
        Ok(())
    }

    /// The LSE's pointer: null, or a slice of at least `need` floats.
    fn lse_pointer(function: &str, lse: Option<&mut [f32]>, need: usize, layout: &str) -> Result<*mut f32> {
        match lse {
            None => Ok(std::ptr::null_mut()),
            Some(lse) if lse.len() >= need => Ok(lse.as_mut_ptr()),
            Some(lse) => Err(Error::new(
                Status::InvalidValue,
                format!("{function}: lse has {} elements, {layout} needs {need}", lse.len()),
            )),
        }
    }

    /// The checks of the host-slice backwards, and the workspace they need.
    fn prepare_host_backward<T: Element>(
        &self,
        function: &str,
        dims: impl Fn(Tensor) -> (i64, i64, i64),
        head_dim: i64,
        lse_len: usize,
        lse_layout: &str,
        t: &BackwardSlices<'_, T>,
    ) -> Result<Vec<u8>> {
        let slices = backward_slices(t.q, t.k, t.v, t.o, t.dout, t.dq, t.dk, t.dv);
        self.check_host_slices::<T>(function, dims, head_dim, &slices)?;
        if t.lse.len() < lse_len {
            return Err(Error::new(
                Status::InvalidValue,
                format!("{function}: lse has {} elements, {lse_layout} needs {lse_len}", t.lse.len()),
            ));
        }
        Ok(vec![0u8; self.backward_workspace_size()?])
    }

    /// Runs the backward of a CPU plan on host slices: `t.dq`, `t.dk` and `t.dv` receive the gradients of
    /// attention for dL/dO = `t.dout`, from the forward's `t.o` and `t.lse` (`batch·heads_q·seqlen_q` floats)
    /// for `t.q`, `t.k`, `t.v`.
    ///
    /// Every tensor holds the plan's [`Dtype`] laid out as its shape and strides say (the strides of
    /// [`Tensor::DO`], [`Tensor::DQ`], [`Tensor::DK`] and [`Tensor::DV`] included). Errors (with nothing
    /// written): as [`Plan::forward`], for these slices; any error of `flashsci_backward`.
    pub fn backward<T: Element>(&self, t: BackwardSlices<'_, T>) -> Result<()> {
        const FN: &str = "flashsci::Plan::backward";
        let shape = self.host_dense_shape(FN, "backward_varlen")?;
        let mut workspace = self.prepare_host_backward(
            FN,
            |x| shape.dims(x),
            shape.head_dim,
            shape.lse_len(),
            "[batch, heads_q, seqlen_q]",
            &t,
        )?;
        let workspace_ptr = workspace_pointer(&mut workspace);
        // SAFETY: a CPU plan; every slice covers its tensor as the plan describes it and lse holds its floats
        // (checked above); dq, dk and dv are exclusive borrows, so they overlap no input nor each other (the
        // library rejects self-overlapping output strides); the workspace has the size asked for.
        unsafe {
            self.backward_raw(
                t.q.as_ptr().cast(),
                t.k.as_ptr().cast(),
                t.v.as_ptr().cast(),
                t.o.as_ptr().cast(),
                t.dout.as_ptr().cast(),
                t.lse.as_ptr(),
                t.dq.as_mut_ptr().cast(),
                t.dk.as_mut_ptr().cast(),
                t.dv.as_mut_ptr().cast(),
                workspace_ptr,
                workspace.len(),
                std::ptr::null_mut(),
            )
        }
    }

    /// The backward of a CPU plan with a variable-length shape on host slices; `t.lse` is `[heads_q, total_q]`,
    /// the offsets as for [`Plan::forward_varlen`]; rows outside every sequence are not written. Errors (with
    /// nothing written): as [`Plan::forward_varlen`], for these slices; any error of `flashsci_backward_varlen`.
    pub fn backward_varlen<T: Element>(
        &self,
        t: BackwardSlices<'_, T>,
        cu_seqlens_q: &[i32],
        cu_seqlens_k: &[i32],
    ) -> Result<()> {
        const FN: &str = "flashsci::Plan::backward_varlen";
        let shape = self.host_varlen_shape(FN, "backward")?;
        let mut workspace =
            self.prepare_host_backward(FN, |x| shape.dims(x), shape.head_dim, shape.lse_len(), "[heads_q, total_q]", &t)?;
        Self::check_offsets_len(FN, shape.offsets_len(), cu_seqlens_q, cu_seqlens_k)?;
        let workspace_ptr = workspace_pointer(&mut workspace);
        // SAFETY: as in `backward`, and both offset slices hold batch + 1 entries (the library checks their values
        // before writing).
        unsafe {
            self.backward_varlen_raw(
                t.q.as_ptr().cast(),
                t.k.as_ptr().cast(),
                t.v.as_ptr().cast(),
                t.o.as_ptr().cast(),
                t.dout.as_ptr().cast(),
                t.lse.as_ptr(),
                t.dq.as_mut_ptr().cast(),
                t.dk.as_mut_ptr().cast(),
                t.dv.as_mut_ptr().cast(),
                cu_seqlens_q.as_ptr(),
                cu_seqlens_k.as_ptr(),
                workspace_ptr,
                workspace.len(),
                std::ptr::null_mut(),
            )
        }
    }

    /// `flashsci_backward` with raw pointers: device memory and a CUDA stream for a CUDA plan (enqueued, no host
    /// synchronisation), host memory and a null stream for a CPU plan.
    ///
    /// # Safety
    /// Every pointer must point to memory of the plan's backend covering its tensor as the plan's shape, dtype
    /// and strides describe it (`lse`: `batch·heads_q·seqlen_q` floats); dq, dk and dv must overlap neither each
    /// other nor any input; `workspace` is null (when [`Plan::backward_workspace_size`] is 0) or holds
    /// `workspace_bytes` bytes; all of it stays valid, and dq/dk/dv/workspace are not used by anyone else, until
    /// the backward has finished (on `stream`, for CUDA).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn backward_raw(
        &self,
        q: *const c_void,
        k: *const c_void,
        v: *const c_void,
        o: *const c_void,
        dout: *const c_void,
        lse: *const f32,
        dq: *mut c_void,
        dk: *mut c_void,
        dv: *mut c_void,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: sys::flashsci_stream_t,
    ) -> Result<()> {
        check(sys::flashsci_backward(
            self.as_raw(),
            q,
            k,
            v,
            o,
            dout,
            lse,
            dq,
            dk,
            dv,
            workspace,
            workspace_bytes,
            stream,
        ))
    }

    /// `flashsci_backward_varlen` with raw pointers, as [`Plan::backward_raw`] for a variable-length plan.
    ///
    /// # Safety
    /// As [`Plan::backward_raw`], for the variable-length layout (`lse`: `heads_q·total_q` floats), with
    /// `cu_seqlens_q`, `cu_seqlens_k` pointing to `batch + 1` `i32`s in the backend's memory, as for
    /// [`Plan::forward_varlen_raw`].
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn backward_varlen_raw(
        &self,
        q: *const c_void,
        k: *const c_void,
        v: *const c_void,
        o: *const c_void,
        dout: *const c_void,
        lse: *const f32,
        dq: *mut c_void,
        dk: *mut c_void,
        dv: *mut c_void,
        cu_seqlens_q: *const i32,
        cu_seqlens_k: *const i32,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: sys::flashsci_stream_t,
    ) -> Result<()> {
        check(sys::flashsci_backward_varlen(
            self.as_raw(),
            q,
            k,
            v,
            o,
            dout,
            lse,
            dq,
            dk,
            dv,
            cu_seqlens_q,
            cu_seqlens_k,
            workspace,
            workspace_bytes,
            stream,
        ))
    }

    /// Runs a CPU plan on host slices: `o` (and `lse`, if given) receive the result.
    ///
    /// q, k, v and o hold the plan's [`Dtype`] (`f32`, or `u16` bit patterns of fp16 or
    /// bf16) laid out as its shape and strides say; each slice must cover its tensor's
    /// last element, and `lse`, if given, `batch·heads_q·seqlen_q` floats. Errors (with
    /// nothing written): [`Status::InvalidValue`] for a CUDA plan, a plan without shape or
    /// dtype (or with a variable-length shape: [`Plan::forward_varlen`] runs those), an
    /// element type that does not hold the dtype, or a short slice; any error of
    /// `flashsci_forward`.
    pub fn forward<T: Element>(&self, q: &[T], k: &[T], v: &[T], o: &mut [T], lse: Option<&mut [f32]>) -> Result<()> {
        const FN: &str = "flashsci::Plan::forward";
        let shape = self.host_dense_shape(FN, "forward_varlen")?;
        self.check_host_slices::<T>(FN, |t| shape.dims(t), shape.head_dim, &forward_slices(q, k, v, o))?;
        let lse_ptr = Self::lse_pointer(FN, lse, shape.lse_len(), "[batch, heads_q, seqlen_q]")?;
        let mut workspace = vec![0u8; self.workspace_size()?];
        let workspace_ptr = workspace_pointer(&mut workspace);
        // SAFETY: a CPU plan; every slice covers its tensor as the plan describes it (checked
        // above); o is exclusively borrowed so it overlaps none of q, k, v (the library
        // rejects self-overlapping o strides); the workspace has the size asked for.
        unsafe {
            self.forward_raw(
                q.as_ptr().cast(),
                k.as_ptr().cast(),
                v.as_ptr().cast(),
                o.as_mut_ptr().cast(),
                lse_ptr,
                workspace_ptr,
                workspace.len(),
                std::ptr::null_mut(),
            )
        }
    }

    /// Runs a CPU plan with a variable-length shape on host slices: `o` (and `lse`, if given,
    /// `[heads_q, total_q]`) receive the result; rows outside every sequence are not written.
    ///
    /// q, k, v and o as for [`Plan::forward`], laid out as the variable-length shape and the
    /// strides say; `cu_seqlens_q` and `cu_seqlens_k` hold at least `batch + 1` offsets (the
    /// library checks their values and names the first bad one). Errors (with nothing written):
    /// [`Status::InvalidValue`] for a CUDA plan, a plan without a variable-length shape or a dtype,
    /// an element type that does not hold the dtype, a short slice, or bad offsets; any error of
    /// `flashsci_forward_varlen`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_varlen<T: Element>(
        &self,
        q: &[T],
        k: &[T],
        v: &[T],
        o: &mut [T],
        cu_seqlens_q: &[i32],
        cu_seqlens_k: &[i32],
        lse: Option<&mut [f32]>,
    ) -> Result<()> {
        const FN: &str = "flashsci::Plan::forward_varlen";
        let shape = self.host_varlen_shape(FN, "forward")?;
        self.check_host_slices::<T>(FN, |t| shape.dims(t), shape.head_dim, &forward_slices(q, k, v, o))?;
        Self::check_offsets_len(FN, shape.offsets_len(), cu_seqlens_q, cu_seqlens_k)?;
        let lse_ptr = Self::lse_pointer(FN, lse, shape.lse_len(), "[heads_q, total_q]")?;
        let mut workspace = vec![0u8; self.workspace_size()?];
        let workspace_ptr = workspace_pointer(&mut workspace);
        // SAFETY: a CPU plan; every slice covers its tensor and both offset slices hold batch + 1
        // entries (checked above; the library checks their values before writing); o is
        // exclusively borrowed so it overlaps none of the inputs; the workspace has the size asked for.
        unsafe {
            self.forward_varlen_raw(
                q.as_ptr().cast(),
                k.as_ptr().cast(),
                v.as_ptr().cast(),
                o.as_mut_ptr().cast(),
                lse_ptr,
                cu_seqlens_q.as_ptr(),
                cu_seqlens_k.as_ptr(),
                workspace_ptr,
                workspace.len(),
                std::ptr::null_mut(),
            )
        }
    }

    /// `flashsci_forward` with raw pointers: device memory and a CUDA stream for a CUDA
    /// plan (enqueued, no host synchronisation), host memory and a null stream for a CPU
    /// plan.
    ///
    /// # Safety
    /// q, k, v and o must point to memory of the plan's backend (the plan's device for
    /// CUDA) covering each tensor as the plan's shape, dtype and strides describe it; o
    /// must not overlap q, k or v; `lse` is null or points to `batch·heads_q·seqlen_q`
    /// floats; `workspace` is null (when [`Plan::workspace_size`] is 0) or holds
    /// `workspace_bytes` bytes; all of it stays valid, and o/lse/workspace are not used
    /// by anyone else, until the forward has finished (on `stream`, for CUDA).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn forward_raw(
        &self,
        q: *const c_void,
        k: *const c_void,
        v: *const c_void,
        o: *mut c_void,
        lse: *mut f32,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: sys::flashsci_stream_t,
    ) -> Result<()> {
        check(sys::flashsci_forward(self.as_raw(), q, k, v, o, lse, workspace, workspace_bytes, stream))
    }

    /// `flashsci_forward_varlen` with raw pointers: device memory (the offsets too) and a CUDA
    /// stream for a CUDA plan, host memory and a null stream for a CPU plan.
    ///
    /// # Safety
    /// As [`Plan::forward_raw`], for the variable-length layout: q, k, v and o cover
    /// `[total, heads, head_dim]` under the plan's strides, `lse` is null or holds
    /// `heads_q·total_q` floats, and `cu_seqlens_q`, `cu_seqlens_k` point to `batch + 1` `i32`s
    /// in the backend's memory. A CUDA plan trusts their values (keeping every access inside the
    /// tensors; the output is unspecified for offsets that break the header's rules).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn forward_varlen_raw(
        &self,
        q: *const c_void,
        k: *const c_void,
        v: *const c_void,
        o: *mut c_void,
        lse: *mut f32,
        cu_seqlens_q: *const i32,
        cu_seqlens_k: *const i32,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: sys::flashsci_stream_t,
    ) -> Result<()> {
        check(sys::flashsci_forward_varlen(
            self.as_raw(),
            q,
            k,
            v,
            o,
            lse,
            cu_seqlens_q,
            cu_seqlens_k,
            workspace,
            workspace_bytes,
            stream,
        ))
    }
}

impl Drop for Plan {
    fn drop(&mut self) {
        // SAFETY: we own the handle and nobody borrows the plan any more.
        unsafe {
            sys::flashsci_plan_destroy(self.raw.as_ptr());
        }
    }
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("backend", &self.backend)
            .field("shape", &self.shape)
            .field("varlen_shape", &self.varlen)
            .field("dtype", &self.dtype)
            .field("strides", &self.strides)
            .finish()
    }
}
