//! Raw declarations of libflashsci's C ABI, one for one with `include/flashsci.h`.
//!
//! Every function, typedef and enumerator of the header is here under its C name;
//! enumerations are integer type aliases with one constant per enumerator (a value
//! the library returns can never be an invalid Rust enum). `abi/check_bindings.py`
//! compares this file with the header and fails on any difference.
//!
//! Everything here is `unsafe` to call; the `flashsci` crate is the safe API.
//! See the header for the semantics of each function.
#![allow(non_camel_case_types)]

use std::ffi::c_void;
use std::marker::{PhantomData, PhantomPinned};
use std::os::raw::{c_char, c_float, c_int, c_uint};

/// Incremented on an incompatible ABI change.
pub const FLASHSCI_VERSION_MAJOR: c_int = 0;
/// Incremented when functions or enumerators are added.
pub const FLASHSCI_VERSION_MINOR: c_int = 2;
/// Incremented for fixes.
pub const FLASHSCI_VERSION_PATCH: c_int = 0;
/// The header's version as one number: MAJOR*10000 + MINOR*100 + PATCH.
pub const FLASHSCI_VERSION: c_int =
    FLASHSCI_VERSION_MAJOR * 10000 + FLASHSCI_VERSION_MINOR * 100 + FLASHSCI_VERSION_PATCH;

/// `enum flashsci_status`: the result of every call.
pub type flashsci_status_t = c_uint;
/// The call did what it was asked.
pub const FLASHSCI_STATUS_SUCCESS: flashsci_status_t = 0;
/// A bad argument: null, out of range, or inconsistent.
pub const FLASHSCI_STATUS_INVALID_VALUE: flashsci_status_t = 1;
/// Well-formed, but this build or device cannot run it.
pub const FLASHSCI_STATUS_NOT_SUPPORTED: flashsci_status_t = 2;
/// The CUDA backend was asked for and no usable GPU or driver exists.
pub const FLASHSCI_STATUS_NO_DEVICE: flashsci_status_t = 3;
/// An allocation failed.
pub const FLASHSCI_STATUS_OUT_OF_MEMORY: flashsci_status_t = 4;
/// A CUDA call failed; the message carries cudaGetErrorString.
pub const FLASHSCI_STATUS_DEVICE_ERROR: flashsci_status_t = 5;
/// A bug in libflashsci.
pub const FLASHSCI_STATUS_INTERNAL_ERROR: flashsci_status_t = 6;

/// `enum flashsci_dtype`: element type of q, k, v and o.
pub type flashsci_dtype_t = c_uint;
/// IEEE binary16.
pub const FLASHSCI_DTYPE_FLOAT16: flashsci_dtype_t = 1;
/// bfloat16 (8-bit exponent, 7-bit mantissa).
pub const FLASHSCI_DTYPE_BFLOAT16: flashsci_dtype_t = 2;
/// IEEE binary32.
pub const FLASHSCI_DTYPE_FLOAT32: flashsci_dtype_t = 3;

/// `enum flashsci_backend`: where a plan computes.
pub type flashsci_backend_t = c_uint;
/// CUDA when a usable GPU exists, else CPU.
pub const FLASHSCI_BACKEND_AUTO: flashsci_backend_t = 0;
/// The current CUDA device; device pointers.
pub const FLASHSCI_BACKEND_CUDA: flashsci_backend_t = 1;
/// The host, all cores; host pointers.
pub const FLASHSCI_BACKEND_CPU: flashsci_backend_t = 2;

/// `enum flashsci_mask`: which keys each query row may see.
pub type flashsci_mask_t = c_uint;
/// Every key.
pub const FLASHSCI_MASK_NONE: flashsci_mask_t = 0;
/// Top-left: row i sees keys j <= i (PyTorch is_causal).
pub const FLASHSCI_MASK_CAUSAL: flashsci_mask_t = 1;
/// Row i sees j <= i + seqlen_k - seqlen_q (FlashAttention-2).
pub const FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT: flashsci_mask_t = 2;

/// `enum flashsci_tensor`: names a tensor for `flashsci_plan_set_strides`.
pub type flashsci_tensor_t = c_uint;
/// Queries, [batch, seqlen_q, heads_q, head_dim].
pub const FLASHSCI_TENSOR_Q: flashsci_tensor_t = 0;
/// Keys, [batch, seqlen_k, heads_kv, head_dim].
pub const FLASHSCI_TENSOR_K: flashsci_tensor_t = 1;
/// Values, [batch, seqlen_k, heads_kv, head_dim].
pub const FLASHSCI_TENSOR_V: flashsci_tensor_t = 2;
/// Output, [batch, seqlen_q, heads_q, head_dim].
pub const FLASHSCI_TENSOR_O: flashsci_tensor_t = 3;
/// The backward's dout = dL/dO, like O.
pub const FLASHSCI_TENSOR_DO: flashsci_tensor_t = 4;
/// The backward's dq, like Q.
pub const FLASHSCI_TENSOR_DQ: flashsci_tensor_t = 5;
/// The backward's dk, like K.
pub const FLASHSCI_TENSOR_DK: flashsci_tensor_t = 6;
/// The backward's dv, like V.
pub const FLASHSCI_TENSOR_DV: flashsci_tensor_t = 7;

/// `enum flashsci_precision`: how a float32 plan multiplies; fp16/bf16 plans accept and ignore it.
pub type flashsci_precision_t = c_uint;
/// fp32-level accuracy, by the fastest means the device has.
pub const FLASHSCI_PRECISION_DEFAULT: flashsci_precision_t = 0;
/// fp32 inputs on TF32 tensor cores, one pass: fastest, ~1e-3 relative.
pub const FLASHSCI_PRECISION_TF32: flashsci_precision_t = 1;
/// fp32 inputs with fp32 FMAs only, no tensor cores.
pub const FLASHSCI_PRECISION_IEEE: flashsci_precision_t = 2;

/// The opaque plan object (`struct flashsci_plan_st`); only ever behind a pointer.
#[repr(C)]
pub struct flashsci_plan_st {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}
/// An opaque plan: backend, shape, element type, mask, scale, strides, window, softcap, ALiBi slopes, precision
/// and the backward's determinism.
pub type flashsci_plan_t = *mut flashsci_plan_st;

/// The CUDA runtime's stream object (`struct CUstream_st`); only ever behind a pointer.
#[repr(C)]
pub struct CUstream_st {
    _opaque: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}
/// A CUDA stream; the same type as `cudaStream_t`. Null is the legacy default stream.
pub type flashsci_stream_t = *mut CUstream_st;

extern "C" {
    /// MAJOR*10000 + MINOR*100 + PATCH of the library actually loaded.
    pub fn flashsci_version() -> c_int;
    /// The loaded library's version as a static "MAJOR.MINOR.PATCH"; never null.
    pub fn flashsci_version_string() -> *const c_char;
    /// A short, static description of any status value; never null.
    pub fn flashsci_status_string(status: flashsci_status_t) -> *const c_char;
    /// The calling thread's message for its last failing call; "" if none; never null.
    pub fn flashsci_last_error() -> *const c_char;
    /// Creates a plan for a backend; `*plan` is left untouched on failure.
    pub fn flashsci_plan_create(plan: *mut flashsci_plan_t, backend: flashsci_backend_t) -> flashsci_status_t;
    /// Destroys a plan; null is a no-op success.
    pub fn flashsci_plan_destroy(plan: flashsci_plan_t) -> flashsci_status_t;
    /// The backend a plan computes on, with AUTO resolved.
    pub fn flashsci_plan_get_backend(plan: flashsci_plan_t, backend: *mut flashsci_backend_t) -> flashsci_status_t;
    /// Sets the problem shape; resets strides (and the default scale).
    pub fn flashsci_plan_set_shape(
        plan: flashsci_plan_t,
        batch: i64,
        seqlen_q: i64,
        seqlen_k: i64,
        heads_q: i64,
        heads_kv: i64,
        head_dim: i64,
    ) -> flashsci_status_t;
    /// Sets the shape of a variable-length batch: `batch` sequences packed along one token axis,
    /// q/o `[total_q, heads_q, head_dim]`, k/v `[total_k, heads_kv, head_dim]`; resets strides (batch stride 0).
    pub fn flashsci_plan_set_varlen_shape(
        plan: flashsci_plan_t,
        batch: i64,
        total_q: i64,
        total_k: i64,
        max_seqlen_q: i64,
        max_seqlen_k: i64,
        heads_q: i64,
        heads_kv: i64,
        head_dim: i64,
    ) -> flashsci_status_t;
    /// Sets the element type of q, k, v and o.
    pub fn flashsci_plan_set_dtype(plan: flashsci_plan_t, dtype: flashsci_dtype_t) -> flashsci_status_t;
    /// Sets the mask; the default is `FLASHSCI_MASK_NONE`.
    pub fn flashsci_plan_set_mask(plan: flashsci_plan_t, mask: flashsci_mask_t) -> flashsci_status_t;
    /// Sets the factor applied to Q·Kᵀ before the softmax (default 1/sqrt(head_dim)).
    pub fn flashsci_plan_set_softmax_scale(plan: flashsci_plan_t, scale: c_float) -> flashsci_status_t;
    /// Restricts row i to keys `c - window_left <= j <= c + window_right` around the window diagonal
    /// `c = i + seqlen_k - seqlen_q` (`c = i` under `FLASHSCI_MASK_CAUSAL`); -1 is unbounded (the default).
    pub fn flashsci_plan_set_window(plan: flashsci_plan_t, window_left: i64, window_right: i64) -> flashsci_status_t;
    /// Scores become `softcap·tanh(scale·q·k / softcap)`; 0 (the default) is off.
    pub fn flashsci_plan_set_softcap(plan: flashsci_plan_t, softcap: c_float) -> flashsci_status_t;
    /// ALiBi: `heads_q` host floats copied into the plan (NULL: off); needs the shape first.
    pub fn flashsci_plan_set_alibi_slopes(plan: flashsci_plan_t, slopes: *const c_float) -> flashsci_status_t;
    /// Describes a tensor's layout by three strides in elements; the head_dim stride is 1.
    pub fn flashsci_plan_set_strides(
        plan: flashsci_plan_t,
        tensor: flashsci_tensor_t,
        batch_stride: i64,
        seq_stride: i64,
        head_stride: i64,
    ) -> flashsci_status_t;
    /// How a float32 plan multiplies (`FLASHSCI_PRECISION_*`); the CPU backend computes fp32 exactly in every mode.
    pub fn flashsci_plan_set_precision(plan: flashsci_plan_t, precision: flashsci_precision_t) -> flashsci_status_t;
    /// 1: bit-identical gradients run to run; 0 (the default): the CUDA backward may use atomics.
    pub fn flashsci_plan_set_deterministic(plan: flashsci_plan_t, deterministic: c_int) -> flashsci_status_t;
    /// The scratch size `flashsci_forward` needs for the plan as set.
    pub fn flashsci_plan_get_workspace_size(plan: flashsci_plan_t, bytes: *mut usize) -> flashsci_status_t;
    /// Names the kernel `flashsci_forward` runs for the plan as set (a static string).
    pub fn flashsci_plan_get_kernel_name(plan: flashsci_plan_t, name: *mut *const c_char) -> flashsci_status_t;
    /// Computes O = softmax(scale · Q Kᵀ + mask) V, and optionally the LSE.
    pub fn flashsci_forward(
        plan: flashsci_plan_t,
        q: *const c_void,
        k: *const c_void,
        v: *const c_void,
        o: *mut c_void,
        lse: *mut c_float,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: flashsci_stream_t,
    ) -> flashsci_status_t;
    /// Attention over each sequence of a variable-length batch; `lse` is `f32 [heads_q, total_q]`,
    /// `cu_seqlens_q`/`cu_seqlens_k` `i32 [batch + 1]` row offsets in the backend's memory.
    pub fn flashsci_forward_varlen(
        plan: flashsci_plan_t,
        q: *const c_void,
        k: *const c_void,
        v: *const c_void,
        o: *mut c_void,
        lse: *mut c_float,
        cu_seqlens_q: *const i32,
        cu_seqlens_k: *const i32,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: flashsci_stream_t,
    ) -> flashsci_status_t;
    /// The scratch size `flashsci_backward` and `flashsci_backward_varlen` need for the plan as set.
    pub fn flashsci_plan_get_backward_workspace_size(plan: flashsci_plan_t, bytes: *mut usize) -> flashsci_status_t;
    /// The gradients dq, dk, dv (overwritten) from `dout` = dL/dO and the forward's `o` and `lse`
    /// (`f32 [batch, heads_q, seqlen_q]`, required) for q, k, v.
    pub fn flashsci_backward(
        plan: flashsci_plan_t,
        q: *const c_void,
        k: *const c_void,
        v: *const c_void,
        o: *const c_void,
        dout: *const c_void,
        lse: *const c_float,
        dq: *mut c_void,
        dk: *mut c_void,
        dv: *mut c_void,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: flashsci_stream_t,
    ) -> flashsci_status_t;
    /// The gradients over each sequence of a variable-length batch; `lse` is `f32 [heads_q, total_q]`;
    /// rows outside every sequence are not written.
    pub fn flashsci_backward_varlen(
        plan: flashsci_plan_t,
        q: *const c_void,
        k: *const c_void,
        v: *const c_void,
        o: *const c_void,
        dout: *const c_void,
        lse: *const c_float,
        dq: *mut c_void,
        dk: *mut c_void,
        dv: *mut c_void,
        cu_seqlens_q: *const i32,
        cu_seqlens_k: *const i32,
        workspace: *mut c_void,
        workspace_bytes: usize,
        stream: flashsci_stream_t,
    ) -> flashsci_status_t;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linked_library_matches_these_declarations() {
        // The library's major version must be the one these declarations were written for.
        let version = unsafe { flashsci_version() };
        assert_eq!(version / 10000, FLASHSCI_VERSION_MAJOR, "library {version}, declarations {FLASHSCI_VERSION}");
        assert!(version >= FLASHSCI_VERSION, "library {version} is older than the declarations ({FLASHSCI_VERSION})");
    }

    #[test]
    fn raw_plan_round_trip() {
        unsafe {
            let mut plan: flashsci_plan_t = std::ptr::null_mut();
            assert_eq!(flashsci_plan_create(&mut plan, FLASHSCI_BACKEND_CPU), FLASHSCI_STATUS_SUCCESS);
            assert!(!plan.is_null());
            let mut backend: flashsci_backend_t = FLASHSCI_BACKEND_AUTO;
            assert_eq!(flashsci_plan_get_backend(plan, &mut backend), FLASHSCI_STATUS_SUCCESS);
            assert_eq!(backend, FLASHSCI_BACKEND_CPU);
            assert_eq!(flashsci_plan_set_shape(plan, 1, 2, 2, 1, 1, 12), FLASHSCI_STATUS_INVALID_VALUE);
            assert_ne!(*flashsci_last_error(), 0, "a failing call leaves a message");
            assert_eq!(flashsci_plan_destroy(plan), FLASHSCI_STATUS_SUCCESS);
            assert_eq!(flashsci_plan_destroy(std::ptr::null_mut()), FLASHSCI_STATUS_SUCCESS);
        }
    }
}
