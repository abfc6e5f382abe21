/*
 * libflashsci — FlashAttention-Science: exact attention behind a stable C ABI.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef FLASHSCI_H
#define FLASHSCI_H

/**
 * @file flashsci.h
 * @brief The public C interface of libflashsci.
 *
 * @section intro Introduction
 *
 * libflashsci computes exact scaled-dot-product attention
 *
 *     O = softmax(scale · Q Kᵀ + mask) V
 *
 * tile by tile with the online softmax: for each query row it keeps a running
 * maximum `m` and a running sum `l` of exponentials, rescales the partial output
 * whenever `m` grows, and divides by `l` once at the end. Memory stays O(seqlen);
 * nothing of size seqlen_q × seqlen_k is ever stored.
 *
 * @section layout Tensor layouts
 *
 * All tensors are four-dimensional with `head_dim` innermost and contiguous:
 *
 *     q: [batch, seqlen_q, heads_q,  head_dim]
 *     k: [batch, seqlen_k, heads_kv, head_dim]
 *     v: [batch, seqlen_k, heads_kv, head_dim]
 *     o: [batch, seqlen_q, heads_q,  head_dim]
 *
 * That is the default (contiguous "BSHD") layout. Any other layout whose
 * head_dim stride is 1 — BHSD, a slice of a packed QKV tensor, padded rows — is
 * described with flashsci_plan_set_strides(), in elements. q, k, v and o share
 * one element type (flashsci_dtype_t).
 *
 * Grouped-query attention (GQA) and multi-query attention (MQA) need only
 * `heads_q % heads_kv == 0`: query head `h` reads key/value head
 * `h / (heads_q / heads_kv)`.
 *
 * Sequences of different lengths may instead be packed along one token axis,
 * without padding: see @ref varlen.
 *
 * @section lse Log-sum-exp
 *
 * flashsci_forward() can also return the natural-log log-sum-exp of each query
 * row over the keys that row may see,
 *
 *     lse[b, h, i] = log( Σ_j exp(scale · q_i · k_j) ),   lse: float32 [batch, heads_q, seqlen_q]
 *
 * (over the final scores of @ref features when a softcap or ALiBi is set),
 * which a backward pass needs, and which merges partial results computed over
 * disjoint key ranges. A row that sees no key gets `O = 0` and `lse = -inf`.
 * A variable-length batch (@ref varlen) has one LSE row per head over all its
 * tokens: `lse: float32 [heads_q, total_q]`.
 *
 * @section masks Masks
 *
 * - #FLASHSCI_MASK_NONE: every row sees every key.
 * - #FLASHSCI_MASK_CAUSAL: top-left aligned, row i sees keys j <= i
 *   (PyTorch's `is_causal=True`).
 * - #FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT: row i sees keys
 *   j <= i + seqlen_k - seqlen_q (FlashAttention-2's convention, natural for
 *   decoding with a KV cache). When seqlen_q > seqlen_k the first rows see no key.
 *
 * @section features Sliding window, softcap and ALiBi
 *
 * Three optional settings change the scores, in this order, on every backend
 * and kernel:
 *
 *     s_ij = scale · q_i · k_j
 *     s_ij = softcap · tanh(s_ij / softcap)        if a softcap is set
 *     s_ij = s_ij − slope[h] · |i + seqlen_k − seqlen_q − j|   if ALiBi slopes are set
 *
 * and the LSE is taken over these final scores. A sliding window
 * (flashsci_plan_set_window()) restricts the keys each row sees, on top of the
 * mask. Its diagonal follows FlashAttention-2: `c = i + seqlen_k − seqlen_q`
 * (bottom-right aligned) for #FLASHSCI_MASK_NONE and
 * #FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT, and `c = i` for #FLASHSCI_MASK_CAUSAL.
 * Row i sees key j iff the mask allows it, `j >= c − window_left` (when
 * window_left >= 0) and `j <= c + window_right` (when window_right >= 0). A row
 * that sees no key gets `O = 0` and `lse = -inf`. The ALiBi distance is always
 * measured from the bottom-right diagonal, as in FlashAttention-2.
 *
 * Mistral-style local causal attention over the last 4096 keys, Gemma-2's
 * softcap of 50, and ALiBi with one slope per query head (host memory, copied):
 *
 * @code
 * flashsci_plan_set_mask(plan, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT);
 * flashsci_plan_set_window(plan, 4095, 0);
 * flashsci_plan_set_softcap(plan, 50.0f);
 * flashsci_plan_set_alibi_slopes(plan, slopes);  // after flashsci_plan_set_shape: heads_q floats
 * @endcode
 *
 * @section varlen Variable-length batches
 *
 * A batch of sequences of different lengths can be packed along one token axis,
 * without padding (FlashAttention-2's "varlen" layout):
 *
 *     q: [total_q, heads_q,  head_dim]      o: [total_q, heads_q, head_dim]
 *     k: [total_k, heads_kv, head_dim]      v: [total_k, heads_kv, head_dim]
 *     lse: float32 [heads_q, total_q] contiguous
 *     cu_seqlens_q, cu_seqlens_k: int32 [batch + 1]
 *
 * Sequence b owns the query rows `cu_seqlens_q[b] .. cu_seqlens_q[b+1] - 1` and the
 * key rows `cu_seqlens_k[b] .. cu_seqlens_k[b+1] - 1`, so `cu_seqlens_q[0] = 0`
 * and the offsets never decrease. flashsci_plan_set_varlen_shape() describes
 * such a batch by its totals and its longest sequences, and
 * flashsci_forward_varlen() runs it. Every sequence is attended on its own, with
 * its own lengths `len_q = cu_seqlens_q[b+1] − cu_seqlens_q[b]` and
 * `len_k = cu_seqlens_k[b+1] − cu_seqlens_k[b]` in place of seqlen_q and seqlen_k
 * in @ref masks and @ref features. So bottom-right causal aligns each sequence's
 * own ends (row i sees `j <= i + len_k − len_q`), and the window diagonal and the
 * ALiBi distance are measured the same way. GQA, the masks, window, softcap and
 * ALiBi all apply. A sequence may be empty (`len_q = 0`: nothing to do); the rows
 * of a sequence with no keys (`len_k = 0`) get `O = 0` and `lse = -inf`. Rows of
 * o and entries of lse outside every sequence (past `cu_seqlens_q[batch]`) are not
 * written.
 *
 * Strides still work, with a batch stride of 0 (the offsets locate the
 * sequences) and `seq_stride` the elements between consecutive tokens. Three
 * sequences of 5, 17 and 1 tokens in one packed QKV tensor `[23, 3, heads, 64]`
 * (bf16, device memory), causal:
 *
 * @code
 * int32_t cu_seqlens[4] = {0, 5, 22, 23};   // copied to device memory: d_cu_seqlens
 * flashsci_plan_set_varlen_shape(plan, 3, 23, 23, 17, 17, heads, heads, 64);
 * flashsci_plan_set_dtype(plan, FLASHSCI_DTYPE_BFLOAT16);
 * flashsci_plan_set_mask(plan, FLASHSCI_MASK_CAUSAL);
 * for (int t = FLASHSCI_TENSOR_Q; t <= FLASHSCI_TENSOR_V; ++t)  // q, k, v: slices of qkv
 *     flashsci_plan_set_strides(plan, (flashsci_tensor_t)t, 0, 3 * heads * 64, 64);
 * flashsci_forward_varlen(plan, qkv, qkv + heads * 64, qkv + 2 * heads * 64, o, lse,
 *                         d_cu_seqlens, d_cu_seqlens, NULL, 0, stream);
 * @endcode
 *
 * The CPU backend checks every offset before it writes anything. The CUDA
 * backend cannot read device memory without synchronising (a forward must stay
 * capturable in a CUDA graph), so it trusts the offsets: it clamps each into
 * `[0, total]` and each length to the maximum, so that no value of them makes
 * it read or write outside the buffers the plan's shape describes, but the
 * output for offsets that break the rules above is unspecified.
 *
 * @section backward Backward pass
 *
 * flashsci_backward() computes the gradients of a loss L with respect to q, k and
 * v from `dout = dL/dO`, the forward's output `o` and its log-sum-exp `lse` (the
 * natural-log LSE flashsci_forward() returns for the same inputs and plan). With
 * S the final scores of one (batch, query head) — scaled, capped and biased as in
 * @ref features, and −inf where the mask or window hides a key — it evaluates,
 * one tile at a time and without storing anything of size seqlen_q × seqlen_k:
 *
 *     D_i  = Σ_d dO_id · O_id                  D = rowsum(dO ∘ O)
 *     P    = exp(S − LSE)                      the forward's probabilities, rebuilt from the LSE
 *     dV   = Pᵀ · dO
 *     dP   = dO · Vᵀ
 *     dS   = P ∘ (dP − D)
 *     dS   = dS ∘ (1 − T²),  T_ij = tanh(scale · q_i·k_j / softcap)   only when a softcap is set
 *     dQ   = scale · dS · K
 *     dK   = scale · dSᵀ · Q
 *
 * The softcap's line is the chain rule through `softcap · tanh(x / softcap)`,
 * whose derivative is 1 − T²; the ALiBi bias does not depend on q or k and adds
 * nothing. With grouped-query attention, dK and dV of a key/value head are the
 * sums of the contributions of the `heads_q / heads_kv` query heads that read
 * it. dq, dk and dv are overwritten, not accumulated into: a query row that sees
 * no key gets dq = 0, and a key that no row sees gets dk = dv = 0. A
 * variable-length batch (flashsci_backward_varlen()) is differentiated sequence
 * by sequence; rows of dq, dk and dv outside every sequence are not written.
 * Dropout is not supported.
 *
 * The gradients have the plan's element type and are computed with the same
 * accumulation as the forward (fp32, fp64 for fp32 inputs on the CPU). The CPU
 * backend gives bit-identical gradients for identical inputs on every run,
 * whatever the number of threads. On the CUDA backend,
 * flashsci_plan_set_deterministic() chooses between that guarantee (1) and a
 * faster reduction whose last bits may vary from run to run (0, the default). The backward's tensors have their
 * own strides, set like the forward's with #FLASHSCI_TENSOR_DO,
 * #FLASHSCI_TENSOR_DQ, #FLASHSCI_TENSOR_DK and #FLASHSCI_TENSOR_DV.
 *
 * @code
 * flashsci_forward(plan, q, k, v, o, lse, NULL, 0, stream);   // lse is needed
 * size_t bytes;
 * flashsci_plan_get_backward_workspace_size(plan, &bytes);   // device memory: ws
 * flashsci_backward(plan, q, k, v, o, dout, lse, dq, dk, dv, ws, bytes, stream);
 * @endcode
 *
 * @section usage Usage
 *
 * A plan is created once, described with setters, then used for any number of
 * forwards:
 *
 * @code
 * flashsci_plan_t plan;
 * if (flashsci_plan_create(&plan, FLASHSCI_BACKEND_AUTO) != FLASHSCI_STATUS_SUCCESS) {
 *     fprintf(stderr, "flashsci: %s\n", flashsci_last_error());
 *     return 1;
 * }
 * flashsci_plan_set_shape(plan, batch, seqlen, seqlen, heads, heads, 128);
 * flashsci_plan_set_dtype(plan, FLASHSCI_DTYPE_BFLOAT16);
 * flashsci_plan_set_mask(plan, FLASHSCI_MASK_CAUSAL);
 * flashsci_status_t s = flashsci_forward(plan, q, k, v, o, lse, NULL, 0, stream);
 * flashsci_plan_destroy(plan);
 * @endcode
 *
 * @section backends Backends
 *
 * - CPU (#FLASHSCI_BACKEND_CPU): host pointers, `stream` must be NULL, runs
 *   synchronously on `FLASHSCI_NUM_THREADS` threads (a positive integer; by
 *   default every core the process may run on) with fp32 accumulation. fp32
 *   inputs keep fp32 accuracy: a row whose scores may exceed 32 in magnitude
 *   (by |scale·q|·|k| over the keys it sees) gets them in fp64. The path is
 *   picked from cpuid per call (AVX-512, AVX2 with FMA, or portable code that
 *   runs on any CPU); `FLASHSCI_CPU_ISA` (`avx512`, `avx2`, `portable`, or
 *   `reference` for the plain, slow path with fp64 accumulation of fp32
 *   inputs) forces one, and flashsci_plan_get_kernel_name() names it.
 * - CUDA (#FLASHSCI_BACKEND_CUDA): device pointers on the device that was
 *   current when the plan was created (or managed memory); the work is enqueued
 *   on `stream` without host synchronisation or allocation, so a forward can be
 *   captured in a CUDA graph (also in cudaStreamCaptureModeGlobal) and replayed
 *   any number of times. Every input type is accumulated in fp32; fp32 inputs
 *   keep fp32-level accuracy by default: on compute capability 8.0 and later
 *   they are multiplied on TF32 tensor cores as 3xTF32 (each operand split
 *   into a TF32 part and a TF32 remainder, three products summed), elsewhere
 *   with fp32 FMAs.
 * - AUTO resolves to CUDA when a usable GPU exists, else to CPU.
 *
 * @section precision Precision of fp32 inputs
 *
 * flashsci_plan_set_precision() chooses how a float32 plan multiplies on the
 * GPU: #FLASHSCI_PRECISION_DEFAULT (fp32-level accuracy by the fastest means the
 * device has), #FLASHSCI_PRECISION_TF32 (one pass on TF32 tensor cores, about
 * 1e-3 relative) or #FLASHSCI_PRECISION_IEEE (fp32 FMAs only). On compute
 * capability 8.0 and later the forward takes DEFAULT as 3xTF32 (each operand
 * split into a TF32 part and a TF32 remainder, three products summed in fp32,
 * the remainder's own product dropped: errors at fp32 level) and TF32 as one
 * pass; IEEE, older GPUs and the fp32 backward run fp32 FMAs in every mode.
 * Measured on an H100 against an fp64 reference (max |out - ref| / max |ref|,
 * normal random inputs, head_dim 64-256, 1k-16k keys; docs/performance.md):
 * DEFAULT 5e-7 to 1e-5 up to 4k keys and up to 1e-4 at 16k keys without a
 * mask (the fp32-FMA path: up to 8e-5), TF32 3e-4 to 1e-3.
 * The CPU backend computes fp32 inputs at fp32 accuracy in every mode.
 * fp16 and bf16 plans accept any value and are unaffected by it: they always
 * multiply their own type and accumulate in fp32.
 *
 * @section errors Error model
 *
 * Every function returns a #flashsci_status_t (except the few documented
 * otherwise). No function aborts, exits, prints, or lets a C++ exception escape.
 * A failing call writes nothing to its outputs, enqueues nothing, and sets a
 * message for the calling thread — naming the function, the argument, its value
 * and what is allowed — that flashsci_last_error() returns until the thread's
 * next failing call. Enumeration arguments outside their enumerators, negative
 * or zero sizes, and shapes or strides whose element or byte counts overflow 64
 * bits are #FLASHSCI_STATUS_INVALID_VALUE. Every size the library accepts is
 * indexed with 64-bit offsets on every path; a fast path that indexes with
 * 32-bit numbers is not selected beyond its range (the general path runs
 * instead).
 *
 * What the library cannot check is the caller's precondition: a plan handle
 * from flashsci_plan_create() that has not been destroyed, and buffers that
 * hold every element the plan's shape and strides reach (q, k, v, o, and the
 * backward's dout, dq, dk, dv),
 * batch × heads_q × seqlen_q floats (lse; heads_q × total_q for a
 * variable-length batch) and batch + 1 offsets (cu_seqlens_q, cu_seqlens_k).
 * The CUDA backend asks the driver about each pointer and rejects, with
 * #FLASHSCI_STATUS_INVALID_VALUE naming the argument, ordinary or page-locked
 * host memory and memory of another device; a pointer the driver knows nothing
 * about passes that check.
 *
 * @section threads Threads
 *
 * One plan may serve concurrent flashsci_forward() and flashsci_backward()
 * calls from many threads (on different streams for the CUDA backend), and each
 * gives the result it would give alone. Setters must not run concurrently with
 * any other call on the same plan, nor flashsci_plan_destroy() with any.
 * Distinct plans are independent, and may be created and destroyed on any
 * threads at once. Error messages are per thread. A workspace must not be shared by calls that may
 * run at the same time. The CPU backend runs each call on threads of its
 * own, all joined before the call returns.
 *
 * @section nonfinite NaN and infinity
 *
 * A non-finite input reaches only the query rows that see it:
 * - a NaN in a row of q, or in a row of k that query row i sees, makes all of
 *   row i of o and lse[i] NaN;
 * - a NaN in v[b, j, h, d] makes o[b, i, ·, d] NaN for the rows i that see key
 *   j; their other columns and their lse are unaffected;
 * - an infinity makes the rows that see it unspecified (Inf or NaN are
 *   possible, as is a finite value);
 * - every other row is what it would be without that input; in particular a
 *   masked key never reaches a row through 0 · NaN, and a row that sees no key
 *   still gets o = 0 and lse = -inf. These rows are bit-for-bit those of the
 *   run without the non-finite input, with one exception: when v holds a NaN
 *   or infinity, a CUDA fast path may compute the rows that share its kv head
 *   and its sequence (batch entry, or sequence of a variable-length batch) by
 *   a different method, within the same call and stream. Such rows agree with
 *   the clean run up to rounding, and their lse bit for bit. The CPU backend
 *   and the general CUDA kernel never do this.
 *
 * Large finite scores (|scale · q·k| of 1e4 and beyond, as long as the score
 * itself is finite in fp32) neither overflow nor degrade the softmax: the
 * running maximum is subtracted before every exponential.
 *
 * @section determinism Determinism
 *
 * The same inputs on the same plan and the same device give bit-identical o
 * and lse, whichever threads or streams run the forwards and whether or not a
 * CUDA graph replays them: no path reduces with atomics or in an order that
 * depends on scheduling. A plan created again with the same settings on the
 * same device selects the same kernel and gives the same bits. Different
 * devices, backends or library versions may differ within the documented
 * tolerances. The backward is deterministic in the same way on the CPU backend
 * always and on the CUDA backend after flashsci_plan_set_deterministic(plan, 1).
 *
 * @section abi ABI
 *
 * Only `flashsci_*` symbols are exported; the soname is `libflashsci.so.<major>`.
 * Names and enumerator values never change within a major version; new
 * functions and enumerators may be added.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(FLASHSCI_BUILDING_LIBRARY) && defined(__GNUC__)
#define FLASHSCI_API __attribute__((visibility("default")))
#else
#define FLASHSCI_API
#endif

/** @name Version */
/**@{*/
#define FLASHSCI_VERSION_MAJOR 0 /**< Incremented on an incompatible ABI change. */
#define FLASHSCI_VERSION_MINOR 2 /**< Incremented when functions or enumerators are added. */
#define FLASHSCI_VERSION_PATCH 0 /**< Incremented for fixes. */
/** The version of this header as one number: MAJOR*10000 + MINOR*100 + PATCH. */
#define FLASHSCI_VERSION \
    (FLASHSCI_VERSION_MAJOR * 10000 + FLASHSCI_VERSION_MINOR * 100 + FLASHSCI_VERSION_PATCH)

/**
 * The version of the loaded library, to compare with #FLASHSCI_VERSION.
 * @return MAJOR*10000 + MINOR*100 + PATCH of the library actually loaded.
 */
FLASHSCI_API int flashsci_version(void);

/**
 * The version of the loaded library as text.
 * @return a static string "MAJOR.MINOR.PATCH"; never NULL.
 */
FLASHSCI_API const char* flashsci_version_string(void);
/**@}*/

/** @name Status and errors */
/**@{*/
/** The result of every call. */
typedef enum flashsci_status {
    FLASHSCI_STATUS_SUCCESS = 0,        /**< The call did what it was asked. */
    FLASHSCI_STATUS_INVALID_VALUE = 1,  /**< A bad argument: null, out of range, or inconsistent. */
    FLASHSCI_STATUS_NOT_SUPPORTED = 2,  /**< Well-formed, but this build or device cannot run it. */
    FLASHSCI_STATUS_NO_DEVICE = 3,      /**< The CUDA backend was asked for and no usable GPU or driver exists. */
    FLASHSCI_STATUS_OUT_OF_MEMORY = 4,  /**< An allocation failed. */
    FLASHSCI_STATUS_DEVICE_ERROR = 5,   /**< A CUDA call failed; the message carries cudaGetErrorString. */
    FLASHSCI_STATUS_INTERNAL_ERROR = 6  /**< A bug in libflashsci; please report the message. */
} flashsci_status_t;

/**
 * A short, static description of a status.
 * @param status any value, also one outside the enumeration.
 * @return a static string such as "invalid value"; never NULL
 *         ("unknown status" for a value outside the enumeration).
 */
FLASHSCI_API const char* flashsci_status_string(flashsci_status_t status);

/**
 * The message of the calling thread's last failing call.
 * @return a thread-local string naming the function, the argument, its value and
 *         what is allowed; "" if no call of this thread has failed. Valid until
 *         the thread's next libflashsci call; never NULL.
 */
FLASHSCI_API const char* flashsci_last_error(void);
/**@}*/

/** @name Enumerations */
/**@{*/
/** Element type of q, k, v and o. */
typedef enum flashsci_dtype {
    FLASHSCI_DTYPE_FLOAT16 = 1,   /**< IEEE binary16. */
    FLASHSCI_DTYPE_BFLOAT16 = 2,  /**< bfloat16 (8-bit exponent, 7-bit mantissa). */
    FLASHSCI_DTYPE_FLOAT32 = 3    /**< IEEE binary32. */
} flashsci_dtype_t;

/** Where a plan computes. */
typedef enum flashsci_backend {
    FLASHSCI_BACKEND_AUTO = 0,  /**< CUDA when a usable GPU exists, else CPU. */
    FLASHSCI_BACKEND_CUDA = 1,  /**< The current CUDA device; device pointers. */
    FLASHSCI_BACKEND_CPU = 2    /**< The host, all cores; host pointers. */
} flashsci_backend_t;

/** Which keys each query row may see. */
typedef enum flashsci_mask {
    FLASHSCI_MASK_NONE = 0,                /**< Every key. */
    FLASHSCI_MASK_CAUSAL = 1,              /**< Top-left: row i sees keys j <= i (PyTorch is_causal). */
    FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT = 2  /**< Row i sees j <= i + seqlen_k - seqlen_q (FlashAttention-2). */
} flashsci_mask_t;

/** Names a tensor for flashsci_plan_set_strides(). */
typedef enum flashsci_tensor {
    FLASHSCI_TENSOR_Q = 0,   /**< Queries, [batch, seqlen_q, heads_q, head_dim]. */
    FLASHSCI_TENSOR_K = 1,   /**< Keys, [batch, seqlen_k, heads_kv, head_dim]. */
    FLASHSCI_TENSOR_V = 2,   /**< Values, [batch, seqlen_k, heads_kv, head_dim]. */
    FLASHSCI_TENSOR_O = 3,   /**< Output, [batch, seqlen_q, heads_q, head_dim]. */
    FLASHSCI_TENSOR_DO = 4,  /**< The backward's dout = dL/dO, like O: [batch, seqlen_q, heads_q, head_dim]. */
    FLASHSCI_TENSOR_DQ = 5,  /**< The backward's dq, like Q: [batch, seqlen_q, heads_q, head_dim]. */
    FLASHSCI_TENSOR_DK = 6,  /**< The backward's dk, like K: [batch, seqlen_k, heads_kv, head_dim]. */
    FLASHSCI_TENSOR_DV = 7   /**< The backward's dv, like V: [batch, seqlen_k, heads_kv, head_dim]. */
} flashsci_tensor_t;

/** How a float32 plan multiplies (see @ref precision); fp16 and bf16 plans accept and ignore it. */
typedef enum flashsci_precision {
    FLASHSCI_PRECISION_DEFAULT = 0,  /**< fp32-level accuracy, by the fastest means the device has. */
    FLASHSCI_PRECISION_TF32 = 1,     /**< fp32 inputs on TF32 tensor cores, one pass: fastest, ~1e-3 relative. */
    FLASHSCI_PRECISION_IEEE = 2      /**< fp32 inputs with fp32 FMAs only, no tensor cores. */
} flashsci_precision_t;
/**@}*/

/** @name Plans */
/**@{*/
/** An opaque plan: backend, shape, element type, mask, scale, strides, window, softcap, ALiBi slopes, precision
 *  and the backward's determinism. */
typedef struct flashsci_plan_st* flashsci_plan_t;

/** A CUDA stream; the same type as cudaStream_t. NULL is the legacy default stream. */
typedef struct CUstream_st* flashsci_stream_t;

/**
 * Creates a plan for a backend.
 *
 * A CUDA plan binds to the device current on the calling thread.
 * @param plan    receives the new plan; must not be NULL. Left untouched on failure.
 * @param backend #FLASHSCI_BACKEND_AUTO, #FLASHSCI_BACKEND_CUDA or #FLASHSCI_BACKEND_CPU.
 * @return #FLASHSCI_STATUS_SUCCESS; #FLASHSCI_STATUS_INVALID_VALUE for a NULL
 *         `plan` or an unknown backend; #FLASHSCI_STATUS_NO_DEVICE when CUDA is
 *         asked for and no usable GPU exists (or the library was built without
 *         CUDA); #FLASHSCI_STATUS_OUT_OF_MEMORY.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_create(flashsci_plan_t* plan, flashsci_backend_t backend);

/**
 * Destroys a plan. The plan must not be in use by another thread.
 * @param plan a plan from flashsci_plan_create(), or NULL (a no-op).
 * @return #FLASHSCI_STATUS_SUCCESS.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_destroy(flashsci_plan_t plan);

/**
 * The backend a plan computes on, with AUTO resolved.
 * @param plan    a plan; must not be NULL.
 * @param backend receives #FLASHSCI_BACKEND_CUDA or #FLASHSCI_BACKEND_CPU; must not be NULL.
 * @return #FLASHSCI_STATUS_SUCCESS or #FLASHSCI_STATUS_INVALID_VALUE.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_get_backend(flashsci_plan_t plan, flashsci_backend_t* backend);

/**
 * Sets the problem shape. Resets every tensor's strides to the contiguous
 * [batch, seqlen, heads, head_dim] layout and the softmax scale to
 * 1/sqrt(head_dim) unless flashsci_plan_set_softmax_scale() was called. A
 * heads_q other than the previous shape's turns ALiBi off
 * (flashsci_plan_set_alibi_slopes()); window and softcap are kept. A plan with a
 * variable-length shape (flashsci_plan_set_varlen_shape()) becomes dense again.
 * @param plan     a plan; must not be NULL.
 * @param batch    number of sequences, >= 1.
 * @param seqlen_q query rows per sequence, >= 1.
 * @param seqlen_k keys (and values) per sequence, >= 1.
 * @param heads_q  query (and output) heads, >= 1.
 * @param heads_kv key/value heads, >= 1, dividing heads_q.
 * @param head_dim features per head: a multiple of 8 from 8 to 256.
 * @return #FLASHSCI_STATUS_SUCCESS; #FLASHSCI_STATUS_INVALID_VALUE (the plan is
 *         left unchanged) for a value out of range or a tensor whose element
 *         count overflows 64 bits.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_set_shape(flashsci_plan_t plan, int64_t batch, int64_t seqlen_q,
                                                       int64_t seqlen_k, int64_t heads_q, int64_t heads_kv,
                                                       int64_t head_dim);

/**
 * Sets the shape of a variable-length batch (@ref varlen): `batch` sequences of
 * different lengths packed along one token axis, run by flashsci_forward_varlen()
 * (flashsci_forward() then refuses the plan). Resets every tensor's strides to the
 * contiguous packed layout (batch stride 0, seq stride heads × head_dim, head stride
 * head_dim); scale, mask, window, softcap and ALiBi behave as with
 * flashsci_plan_set_shape(), which makes the plan dense again.
 *
 *     q, o: [total_q, heads_q, head_dim]   k, v: [total_k, heads_kv, head_dim]
 *     lse: float32 [heads_q, total_q]      cu_seqlens_q, cu_seqlens_k: int32 [batch + 1]
 *
 * @param plan         a plan; must not be NULL.
 * @param batch        number of sequences, >= 1.
 * @param total_q      query rows of all sequences together (rows of q and o), from 1 to 2^31 − 1.
 * @param total_k      key (and value) rows of all sequences together, from 1 to 2^31 − 1.
 * @param max_seqlen_q the longest sequence's query rows, from 1 to total_q.
 * @param max_seqlen_k the longest sequence's keys, from 1 to total_k.
 * @param heads_q      query (and output) heads, >= 1.
 * @param heads_kv     key/value heads, >= 1, dividing heads_q.
 * @param head_dim     features per head: a multiple of 8 from 8 to 256.
 * @return #FLASHSCI_STATUS_SUCCESS; #FLASHSCI_STATUS_INVALID_VALUE (the plan is
 *         left unchanged) for a value out of range, a maximum above its total, a
 *         total that int32 offsets cannot reach, or sizes whose element count
 *         (batch × max_seqlen × heads × head_dim included) overflows 64 bits.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_set_varlen_shape(flashsci_plan_t plan, int64_t batch, int64_t total_q,
                                                              int64_t total_k, int64_t max_seqlen_q,
                                                              int64_t max_seqlen_k, int64_t heads_q,
                                                              int64_t heads_kv, int64_t head_dim);

/**
 * Sets the element type of q, k, v and o.
 * @param plan  a plan; must not be NULL.
 * @param dtype #FLASHSCI_DTYPE_FLOAT16, #FLASHSCI_DTYPE_BFLOAT16 or #FLASHSCI_DTYPE_FLOAT32.
 * @return #FLASHSCI_STATUS_SUCCESS or #FLASHSCI_STATUS_INVALID_VALUE.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_set_dtype(flashsci_plan_t plan, flashsci_dtype_t dtype);

/**
 * Sets the mask; the default is #FLASHSCI_MASK_NONE.
 * @param plan a plan; must not be NULL.
 * @param mask a #flashsci_mask_t value.
 * @return #FLASHSCI_STATUS_SUCCESS or #FLASHSCI_STATUS_INVALID_VALUE.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_set_mask(flashsci_plan_t plan, flashsci_mask_t mask);

/**
 * Sets the factor applied to Q·Kᵀ before the softmax; the default is 1/sqrt(head_dim).
 * @param plan  a plan; must not be NULL.
 * @param scale a finite, positive number.
 * @return #FLASHSCI_STATUS_SUCCESS or #FLASHSCI_STATUS_INVALID_VALUE.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_set_softmax_scale(flashsci_plan_t plan, float scale);

/**
 * Restricts each query row to a band of keys (sliding-window, or local, attention);
 * the default is unbounded on both sides.
 *
 * With the window diagonal `c = i + seqlen_k − seqlen_q` (or `c = i` under
 * #FLASHSCI_MASK_CAUSAL), row i sees key j only if `c − window_left <= j <= c + window_right`,
 * a side set to -1 being unbounded; the mask applies as well (see @ref features).
 * `(0, 0)` lets row i see the single key on its diagonal.
 * @param plan         a plan; must not be NULL.
 * @param window_left  keys visible before the diagonal: -1 (unbounded) or >= 0.
 * @param window_right keys visible after the diagonal: -1 (unbounded) or >= 0.
 * @return #FLASHSCI_STATUS_SUCCESS or #FLASHSCI_STATUS_INVALID_VALUE (a side below -1).
 */
FLASHSCI_API flashsci_status_t flashsci_plan_set_window(flashsci_plan_t plan, int64_t window_left,
                                                        int64_t window_right);

/**
 * Caps the scores smoothly: `s = softcap · tanh(scale · q·k / softcap)` (Gemma-2,
 * FlashAttention-2: the scale applies before the cap); the default 0 is off.
 * @param plan    a plan; must not be NULL.
 * @param softcap 0 (off), or a finite, positive number.
 * @return #FLASHSCI_STATUS_SUCCESS or #FLASHSCI_STATUS_INVALID_VALUE.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_set_softcap(flashsci_plan_t plan, float softcap);

/**
 * Adds the ALiBi bias `−slopes[h] · |i + seqlen_k − seqlen_q − j|` to the scaled
 * (and capped) score of query head h, row i, key j (FlashAttention-2's convention).
 *
 * The slopes are copied into the plan (for a CUDA plan also onto its device, here,
 * so that flashsci_forward() allocates nothing); the caller's array may be freed on
 * return. Needs the shape first; flashsci_plan_set_shape() with another heads_q
 * turns ALiBi off again. The default is off.
 * @param plan   a plan with its shape set; must not be NULL.
 * @param slopes NULL (off), or heads_q finite floats in host memory.
 * @return #FLASHSCI_STATUS_SUCCESS; #FLASHSCI_STATUS_INVALID_VALUE for a shape not
 *         yet set or a non-finite slope (the plan is left unchanged);
 *         #FLASHSCI_STATUS_OUT_OF_MEMORY or #FLASHSCI_STATUS_DEVICE_ERROR when the
 *         device copy fails.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_set_alibi_slopes(flashsci_plan_t plan, const float* slopes);

/**
 * Describes a tensor's layout by three strides in elements; the head_dim stride is 1.
 *
 * Needs the shape to be set first (flashsci_plan_set_shape() and
 * flashsci_plan_set_varlen_shape() reset strides).
 * Example, q stored BHSD ([batch, heads, seqlen, head_dim] contiguous):
 * `flashsci_plan_set_strides(plan, FLASHSCI_TENSOR_Q, heads*seqlen*d, d, seqlen*d)`.
 * On a variable-length plan (@ref varlen) the tensor is [total, heads, head_dim],
 * batch_stride must be 0 and seq_stride steps between tokens: k of a packed
 * [total, 3, heads, d] QKV tensor is `(0, 3*heads*d, d)` from its first element.
 * @param plan         a plan with its shape set; must not be NULL.
 * @param tensor       which tensor: a #flashsci_tensor_t value (the backward's #FLASHSCI_TENSOR_DO,
 *                     #FLASHSCI_TENSOR_DQ, #FLASHSCI_TENSOR_DK and #FLASHSCI_TENSOR_DV included).
 * @param batch_stride elements between consecutive sequences, >= 0; 0 on a variable-length plan.
 * @param seq_stride   elements between consecutive rows (tokens) of a sequence, >= 0.
 * @param head_stride  elements between consecutive heads, >= 0.
 * @return #FLASHSCI_STATUS_SUCCESS; #FLASHSCI_STATUS_INVALID_VALUE for a negative
 *         stride, an unknown tensor, a shape not yet set, a batch_stride other
 *         than 0 on a variable-length plan, strides whose largest offset
 *         overflows 64 bits, or (for the outputs O, DQ, DK and DV only) strides
 *         under which two output elements overlap.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_set_strides(flashsci_plan_t plan, flashsci_tensor_t tensor,
                                                         int64_t batch_stride, int64_t seq_stride,
                                                         int64_t head_stride);

/**
 * Chooses how a float32 plan multiplies (see @ref precision); the default is
 * #FLASHSCI_PRECISION_DEFAULT. The CPU backend keeps fp32 accuracy in every
 * mode; on the CUDA backend the mode selects the forward's kernel (sm80_*_f32_3xtf32,
 * sm80_*_f32_tf32 or cuda_general). fp16 and bf16 plans accept any value and
 * ignore it.
 * @param plan      a plan; must not be NULL.
 * @param precision #FLASHSCI_PRECISION_DEFAULT, #FLASHSCI_PRECISION_TF32 or #FLASHSCI_PRECISION_IEEE.
 * @return #FLASHSCI_STATUS_SUCCESS or #FLASHSCI_STATUS_INVALID_VALUE (the plan is left unchanged).
 */
FLASHSCI_API flashsci_status_t flashsci_plan_set_precision(flashsci_plan_t plan, flashsci_precision_t precision);

/**
 * Asks for bit-identical gradients from flashsci_backward() and
 * flashsci_backward_varlen(): with 1, identical inputs give identical dq, dk and dv
 * on the same device and build, every run; with 0 (the default) the CUDA backend
 * may sum partial gradients with atomics, in an order that changes the last bits
 * from run to run. The CPU backend and every forward are deterministic either way.
 * The setting may change flashsci_plan_get_backward_workspace_size().
 * @param plan          a plan; must not be NULL.
 * @param deterministic 0 or 1.
 * @return #FLASHSCI_STATUS_SUCCESS or #FLASHSCI_STATUS_INVALID_VALUE (the plan is left unchanged).
 */
FLASHSCI_API flashsci_status_t flashsci_plan_set_deterministic(flashsci_plan_t plan, int deterministic);

/**
 * The size of the scratch memory flashsci_forward() needs for the plan as set.
 * @param plan  a plan with shape and dtype set; must not be NULL.
 * @param bytes receives the size; 0 means no workspace is needed; must not be NULL.
 * @return #FLASHSCI_STATUS_SUCCESS or #FLASHSCI_STATUS_INVALID_VALUE.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_get_workspace_size(flashsci_plan_t plan, size_t* bytes);

/**
 * Names the kernel flashsci_forward() runs for the plan as set, so that a
 * benchmark can prove which path it measured.
 *
 * The choice assumes q, k, v and o are 16-byte aligned (a fast path may need
 * that; misaligned pointers fall back to the general path). The environment
 * variable `FLASHSCI_KERNEL`, read when the plan is created, may force a path:
 * `general` (the general CUDA kernel), `decode` (the decoding kernel, which runs
 * fp16/bf16 plans of at most 16 query rows per kv head, (heads_q / heads_kv) ·
 * seqlen_q, on compute capability 8.0 and later, splitting the keys over many
 * CTAs), `sm90` (the Hopper fast path) or `sm80` (the mma.sync kernels of
 * compute capability 8.0 and later: fp16/bf16, and fp32 forwards on TF32
 * tensor cores unless the precision is IEEE); a forward the forced kernel
 * cannot run then fails with #FLASHSCI_STATUS_NOT_SUPPORTED. Without it,
 * decoding plans take the decoding kernel, then the Hopper fast path where it
 * runs, then the sm_80 forward where it runs (16-byte aligned tensors with
 * strides in whole 16 bytes), else the general one. The CUDA backward
 * runs the sm_80 backward where it runs (the same conditions on every tensor,
 * gradients included), else the general CUDA kernel; `sm80` and `general`
 * force one of them (a backward `sm80` cannot run fails with
 * #FLASHSCI_STATUS_NOT_SUPPORTED), the other values leave the choice as is.
 *
 * CPU plans are named by their instruction-set path: "cpu_avx512", "cpu_avx2",
 * "cpu_portable" or "cpu_reference"; `FLASHSCI_CPU_ISA`, read at every call,
 * may force one (see @ref backends), and a forward then fails with
 * #FLASHSCI_STATUS_NOT_SUPPORTED if the value names none or one this CPU lacks.
 * @param plan a plan with shape and dtype set; must not be NULL.
 * @param name receives a static string such as "cpu_avx2", "cuda_general",
 *             "cuda_decode_hd128_bf16", "sm90_hd128_bf16" or "sm80_hd128_bf16";
 *             must not be NULL.
 * @return #FLASHSCI_STATUS_SUCCESS; #FLASHSCI_STATUS_INVALID_VALUE;
 *         #FLASHSCI_STATUS_NOT_SUPPORTED when a forced kernel cannot run the plan.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_get_kernel_name(flashsci_plan_t plan, const char** name);

/**
 * Computes O = softmax(scale · Q Kᵀ + mask) V, and optionally the LSE.
 *
 * Pointers are host memory for the CPU backend and device memory (of the plan's
 * device) for the CUDA backend. Each buffer must hold every element the plan's
 * shape and strides reach: the library cannot know how large a buffer is (see
 * @ref errors). A forward is safe to call from many threads at once on one plan
 * (see @ref threads), and captures into a CUDA graph.
 * @param plan            a plan with shape and dtype set; must not be NULL.
 * @param q               queries [batch, seqlen_q, heads_q, head_dim] (or the set strides); not NULL.
 * @param k               keys [batch, seqlen_k, heads_kv, head_dim]; not NULL.
 * @param v               values [batch, seqlen_k, heads_kv, head_dim]; not NULL.
 * @param o               output [batch, seqlen_q, heads_q, head_dim]; not NULL; must not overlap q, k or v.
 * @param lse             NULL, or float32 [batch, heads_q, seqlen_q] contiguous, receiving the
 *                        natural-log log-sum-exp of each row's scaled scores (-inf for a row that sees no key).
 * @param workspace       scratch of at least flashsci_plan_get_workspace_size() bytes; may be NULL when that is 0.
 * @param workspace_bytes the size of `workspace`.
 * @param stream          CUDA backend: the stream to enqueue on (NULL: legacy default stream).
 *                        CPU backend: must be NULL.
 * @return #FLASHSCI_STATUS_SUCCESS (for CUDA: enqueued); #FLASHSCI_STATUS_INVALID_VALUE
 *         for a NULL or misaligned pointer, outputs overlapping inputs, a missing
 *         shape or dtype, a variable-length plan (flashsci_forward_varlen() runs
 *         those), a small workspace, a stream on the CPU backend, or (CUDA)
 *         a host pointer or one of another device; #FLASHSCI_STATUS_NOT_SUPPORTED when this build
 *         cannot run the plan; #FLASHSCI_STATUS_DEVICE_ERROR when a launch fails.
 *         On failure `o` and `lse` are not written.
 */
FLASHSCI_API flashsci_status_t flashsci_forward(flashsci_plan_t plan, const void* q, const void* k, const void* v,
                                                void* o, float* lse, void* workspace, size_t workspace_bytes,
                                                flashsci_stream_t stream);

/**
 * Computes attention over each sequence of a variable-length batch (@ref varlen),
 * and optionally the LSE.
 *
 * Like flashsci_forward() in everything else: pointers in host memory for the CPU
 * backend and in device memory of the plan's device for the CUDA backend, the
 * offsets included; enqueued on `stream` without synchronisation or allocation
 * (CUDA graphs capture it). The CPU backend checks every offset before it writes;
 * the CUDA backend cannot read them without synchronising and trusts them, clamped
 * so that no value makes it read or write outside the buffers the shape describes
 * (the output is then unspecified).
 * @param plan            a plan with a variable-length shape (flashsci_plan_set_varlen_shape()) and a dtype; not NULL.
 * @param q               queries [total_q, heads_q, head_dim] (or the set strides); not NULL.
 * @param k               keys [total_k, heads_kv, head_dim]; not NULL.
 * @param v               values [total_k, heads_kv, head_dim]; not NULL.
 * @param o               output [total_q, heads_q, head_dim]; not NULL; must not overlap q, k, v or the offsets.
 *                        Rows outside every sequence are not written.
 * @param lse             NULL, or float32 [heads_q, total_q] contiguous: `lse[h * total_q + t]` for token t
 *                        (row t − cu_seqlens_q[b] of its sequence b); -inf for a row that sees no key;
 *                        entries of tokens outside every sequence are not written.
 * @param cu_seqlens_q    int32 [batch + 1], 4-byte aligned: cu_seqlens_q[0] = 0, nondecreasing, at most total_q,
 *                        consecutive entries at most max_seqlen_q apart; sequence b's queries are rows
 *                        cu_seqlens_q[b] .. cu_seqlens_q[b+1] − 1 of q and o. Not NULL.
 * @param cu_seqlens_k    int32 [batch + 1] likewise for k and v, with total_k and max_seqlen_k. Not NULL;
 *                        may be `cu_seqlens_q` itself when the lengths agree (self-attention).
 * @param workspace       scratch of at least flashsci_plan_get_workspace_size() bytes; may be NULL when that is 0.
 * @param workspace_bytes the size of `workspace`.
 * @param stream          CUDA backend: the stream to enqueue on (NULL: legacy default stream).
 *                        CPU backend: must be NULL.
 * @return #FLASHSCI_STATUS_SUCCESS (for CUDA: enqueued); #FLASHSCI_STATUS_INVALID_VALUE
 *         for everything flashsci_forward() refuses, a dense plan (flashsci_forward()
 *         runs those), a NULL or misaligned offset array, outputs overlapping the
 *         offsets, (CPU) offsets that break the rules above, naming the array and
 *         the first bad index, or (CUDA) offsets in host memory or another device's;
 *         #FLASHSCI_STATUS_NOT_SUPPORTED; #FLASHSCI_STATUS_DEVICE_ERROR when a launch fails.
 *         On failure `o` and `lse` are not written.
 */
FLASHSCI_API flashsci_status_t flashsci_forward_varlen(flashsci_plan_t plan, const void* q, const void* k,
                                                       const void* v, void* o, float* lse,
                                                       const int32_t* cu_seqlens_q, const int32_t* cu_seqlens_k,
                                                       void* workspace, size_t workspace_bytes,
                                                       flashsci_stream_t stream);
/**@}*/

/** @name Backward */
/**@{*/
/**
 * The size of the scratch memory flashsci_backward() and flashsci_backward_varlen()
 * need for the plan as set (its shape, dtype, strides and deterministic setting).
 * @param plan  a plan with shape and dtype set; must not be NULL.
 * @param bytes receives the size; 0 means no workspace is needed; must not be NULL.
 * @return #FLASHSCI_STATUS_SUCCESS; #FLASHSCI_STATUS_INVALID_VALUE;
 *         #FLASHSCI_STATUS_NOT_SUPPORTED when this build cannot run the plan's backward.
 */
FLASHSCI_API flashsci_status_t flashsci_plan_get_backward_workspace_size(flashsci_plan_t plan, size_t* bytes);

/**
 * Computes the gradients dq, dk and dv of attention from dout = dL/dO (see @ref backward).
 *
 * q, k, v, o, dout, dq, dk and dv have the plan's dtype; each takes its strides from
 * the plan (#FLASHSCI_TENSOR_Q ... #FLASHSCI_TENSOR_DV, contiguous by default). Mask,
 * scale, window, softcap, ALiBi and GQA are those of the plan, which must be the
 * forward's. Pointers are host memory for the CPU backend and device memory (of the
 * plan's device) for the CUDA backend, which enqueues the work on `stream` without
 * synchronisation or allocation (CUDA graphs capture it). Each buffer must hold every
 * element the plan's shape and strides reach (see @ref errors).
 * @param plan            a plan with shape and dtype set; must not be NULL.
 * @param q               queries [batch, seqlen_q, heads_q, head_dim] (or the set strides); not NULL.
 * @param k               keys [batch, seqlen_k, heads_kv, head_dim]; not NULL.
 * @param v               values [batch, seqlen_k, heads_kv, head_dim]; not NULL.
 * @param o               the forward's output for q, k, v: [batch, seqlen_q, heads_q, head_dim]; not NULL.
 * @param dout            dL/dO, [batch, seqlen_q, heads_q, head_dim]; not NULL.
 * @param lse             the forward's log-sum-exp for q, k, v: float32 [batch, heads_q, seqlen_q] contiguous,
 *                        natural log, -inf for a row that sees no key; not NULL.
 * @param dq              receives dL/dQ, [batch, seqlen_q, heads_q, head_dim]; not NULL.
 * @param dk              receives dL/dK, [batch, seqlen_k, heads_kv, head_dim] (summed over each group of query
 *                        heads); not NULL.
 * @param dv              receives dL/dV, [batch, seqlen_k, heads_kv, head_dim]; not NULL.
 *                        dq, dk and dv must overlap neither each other nor any input.
 * @param workspace       scratch of at least flashsci_plan_get_backward_workspace_size() bytes; may be NULL when
 *                        that is 0. It need not be initialised.
 * @param workspace_bytes the size of `workspace`.
 * @param stream          CUDA backend: the stream to enqueue on (NULL: legacy default stream).
 *                        CPU backend: must be NULL.
 * @return #FLASHSCI_STATUS_SUCCESS (for CUDA: enqueued); #FLASHSCI_STATUS_INVALID_VALUE
 *         for a NULL or misaligned pointer, an output overlapping an input or another
 *         output, a missing shape or dtype, a variable-length plan
 *         (flashsci_backward_varlen() runs those), a small workspace, a stream on the
 *         CPU backend, or (CUDA) a host pointer or one of another device;
 *         #FLASHSCI_STATUS_NOT_SUPPORTED when this build cannot run the plan;
 *         #FLASHSCI_STATUS_DEVICE_ERROR when a launch fails.
 *         On failure dq, dk and dv are not written.
 */
FLASHSCI_API flashsci_status_t flashsci_backward(flashsci_plan_t plan, const void* q, const void* k, const void* v,
                                                 const void* o, const void* dout, const float* lse, void* dq,
                                                 void* dk, void* dv, void* workspace, size_t workspace_bytes,
                                                 flashsci_stream_t stream);

/**
 * Computes the gradients of attention over each sequence of a variable-length batch
 * (@ref varlen, @ref backward).
 *
 * Like flashsci_backward() in everything else. The CPU backend checks every offset
 * before it writes; the CUDA backend trusts them, clamped as in
 * flashsci_forward_varlen(). Rows of dq, dk and dv outside every sequence are not
 * written.
 * @param plan            a plan with a variable-length shape (flashsci_plan_set_varlen_shape()) and a dtype; not NULL.
 * @param q               queries [total_q, heads_q, head_dim] (or the set strides); not NULL.
 * @param k               keys [total_k, heads_kv, head_dim]; not NULL.
 * @param v               values [total_k, heads_kv, head_dim]; not NULL.
 * @param o               the forward's output, [total_q, heads_q, head_dim]; not NULL.
 * @param dout            dL/dO, [total_q, heads_q, head_dim]; not NULL.
 * @param lse             the forward's log-sum-exp, float32 [heads_q, total_q] contiguous; not NULL.
 * @param dq              receives dL/dQ, [total_q, heads_q, head_dim]; not NULL.
 * @param dk              receives dL/dK, [total_k, heads_kv, head_dim]; not NULL.
 * @param dv              receives dL/dV, [total_k, heads_kv, head_dim]; not NULL.
 *                        dq, dk and dv must overlap neither each other nor any input, the offsets included.
 * @param cu_seqlens_q    int32 [batch + 1], 4-byte aligned, as for flashsci_forward_varlen(); not NULL.
 * @param cu_seqlens_k    int32 [batch + 1] likewise for k and v; not NULL; may be `cu_seqlens_q` itself.
 * @param workspace       scratch of at least flashsci_plan_get_backward_workspace_size() bytes; may be NULL when
 *                        that is 0.
 * @param workspace_bytes the size of `workspace`.
 * @param stream          CUDA backend: the stream to enqueue on (NULL: legacy default stream).
 *                        CPU backend: must be NULL.
 * @return #FLASHSCI_STATUS_SUCCESS (for CUDA: enqueued); #FLASHSCI_STATUS_INVALID_VALUE
 *         for everything flashsci_backward() refuses, a dense plan (flashsci_backward()
 *         runs those), a NULL or misaligned offset array, (CPU) offsets that break the
 *         rules of flashsci_forward_varlen(), naming the array and the first bad index,
 *         or (CUDA) offsets in host memory or another device's;
 *         #FLASHSCI_STATUS_NOT_SUPPORTED; #FLASHSCI_STATUS_DEVICE_ERROR when a launch fails.
 *         On failure dq, dk and dv are not written.
 */
FLASHSCI_API flashsci_status_t flashsci_backward_varlen(flashsci_plan_t plan, const void* q, const void* k,
                                                        const void* v, const void* o, const void* dout,
                                                        const float* lse, void* dq, void* dk, void* dv,
                                                        const int32_t* cu_seqlens_q, const int32_t* cu_seqlens_k,
                                                        void* workspace, size_t workspace_bytes,
                                                        flashsci_stream_t stream);
/**@}*/

#ifdef __cplusplus
}
#endif

#endif /* FLASHSCI_H */
