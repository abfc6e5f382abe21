/*
 * libflashsci — C++17 RAII wrapper of flashsci.h (header only).
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#ifndef FLASHSCI_HPP
#define FLASHSCI_HPP

/**
 * @file flashsci.hpp
 * @brief A header-only C++17 wrapper of flashsci.h: an owning, movable flashsci::Plan
 *        whose setters chain and throw flashsci::Error on failure.
 *
 * It adds no state and no symbols to the library: every call is the C function of the
 * same name, and the C ABI (flashsci.h) stays the only contract.
 *
 * @code
 * #include <flashsci.hpp>
 *
 * flashsci::Plan plan(flashsci::Backend::cpu);
 * plan.set_shape({batch, seqlen, seqlen, heads_q, heads_kv, 64})
 *     .set_dtype(flashsci::Dtype::float32)
 *     .set_mask(flashsci::Mask::causal);
 * plan.forward(q, k, v, o, lse);   // throws flashsci::Error with the status and the library's message
 * plan.backward(q, k, v, o, dout, lse, dq, dk, dv);   // the gradients, from the forward's o and lse
 * @endcode
 *
 * Threads follow flashsci.h: the const members (forward(), backward(), the getters) may run
 * concurrently on one plan; the setters must not run concurrently with anything else on
 * it. A Plan may be moved to and destroyed on another thread.
 */

#include <flashsci.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>

/** The C++ API of libflashsci. */
namespace flashsci {

/** Element type of q, k, v and o (the values of #flashsci_dtype_t). */
enum class Dtype : int {
    float16 = FLASHSCI_DTYPE_FLOAT16,   /**< IEEE binary16. */
    bfloat16 = FLASHSCI_DTYPE_BFLOAT16, /**< bfloat16. */
    float32 = FLASHSCI_DTYPE_FLOAT32    /**< IEEE binary32. */
};

/** Where a plan computes (the values of #flashsci_backend_t). */
enum class Backend : int {
    automatic = FLASHSCI_BACKEND_AUTO, /**< CUDA when a usable GPU exists, else CPU. */
    cuda = FLASHSCI_BACKEND_CUDA,      /**< The current CUDA device; device pointers. */
    cpu = FLASHSCI_BACKEND_CPU         /**< The host, all cores; host pointers. */
};

/** Which keys each query row may see (the values of #flashsci_mask_t). */
enum class Mask : int {
    none = FLASHSCI_MASK_NONE,                              /**< Every key. */
    causal = FLASHSCI_MASK_CAUSAL,                          /**< Row i sees keys j <= i (PyTorch is_causal). */
    causal_bottom_right = FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT /**< Row i sees j <= i + seqlen_k - seqlen_q. */
};

/** Names a tensor for Plan::set_strides() (the values of #flashsci_tensor_t). */
enum class Tensor : int {
    q = FLASHSCI_TENSOR_Q, /**< Queries. */
    k = FLASHSCI_TENSOR_K, /**< Keys. */
    v = FLASHSCI_TENSOR_V, /**< Values. */
    o = FLASHSCI_TENSOR_O,   /**< Output. */
    dout = FLASHSCI_TENSOR_DO, /**< The backward's dL/dO, like o. */
    dq = FLASHSCI_TENSOR_DQ,   /**< The backward's dL/dQ, like q. */
    dk = FLASHSCI_TENSOR_DK,   /**< The backward's dL/dK, like k. */
    dv = FLASHSCI_TENSOR_DV    /**< The backward's dL/dV, like v. */
};

/** How a float32 plan multiplies (the values of #flashsci_precision_t); fp16/bf16 plans ignore it. */
enum class Precision : int {
    automatic = FLASHSCI_PRECISION_DEFAULT, /**< fp32-level accuracy by the fastest means the device has. */
    tf32 = FLASHSCI_PRECISION_TF32,         /**< One pass on TF32 tensor cores, ~1e-3 relative. */
    ieee = FLASHSCI_PRECISION_IEEE          /**< fp32 FMAs only. */
};

/** A failed call: the status and the library's message for it. */
class Error : public std::runtime_error {
public:
    /** An error of `status` whose message is `message`. */
    Error(flashsci_status_t status, const std::string& message)
        : std::runtime_error(std::string(flashsci_status_string(status)) + ": " + message), status_(status),
          message_(message) {}

    /** Why the call failed. */
    flashsci_status_t status() const noexcept { return status_; }

    /** The library's message: the function, the argument, its value and what is allowed. */
    const std::string& message() const noexcept { return message_; }

private:
    flashsci_status_t status_;
    std::string message_;
};

/** Throws flashsci::Error with this thread's message unless `status` is success. */
inline void check(flashsci_status_t status) {
    if (status != FLASHSCI_STATUS_SUCCESS) throw Error(status, flashsci_last_error());
}

/** The loaded library's version: MAJOR*10000 + MINOR*100 + PATCH (compare with #FLASHSCI_VERSION). */
inline int version() noexcept { return flashsci_version(); }

/** The loaded library's version as "MAJOR.MINOR.PATCH". */
inline std::string version_string() { return flashsci_version_string(); }

/** The problem shape, in the order of flashsci_plan_set_shape(). */
struct Shape {
    std::int64_t batch;    /**< Number of sequences, >= 1. */
    std::int64_t seqlen_q; /**< Query rows per sequence, >= 1. */
    std::int64_t seqlen_k; /**< Keys (and values) per sequence, >= 1. */
    std::int64_t heads_q;  /**< Query (and output) heads, >= 1. */
    std::int64_t heads_kv; /**< Key/value heads, >= 1, dividing heads_q. */
    std::int64_t head_dim; /**< Features per head: a multiple of 8 from 8 to 256. */

    /** Elements of a contiguous q or o. */
    std::size_t q_elements() const noexcept { return static_cast<std::size_t>(batch * seqlen_q * heads_q * head_dim); }
    /** Elements of a contiguous k or v. */
    std::size_t kv_elements() const noexcept {
        return static_cast<std::size_t>(batch * seqlen_k * heads_kv * head_dim);
    }
    /** Elements of the LSE, [batch, heads_q, seqlen_q]. */
    std::size_t lse_elements() const noexcept { return static_cast<std::size_t>(batch * heads_q * seqlen_q); }
};

/** The shape of a variable-length batch, in the order of flashsci_plan_set_varlen_shape(). */
struct VarlenShape {
    std::int64_t batch;        /**< Number of sequences, >= 1. */
    std::int64_t total_q;      /**< Query rows of all sequences together, from 1 to 2^31 - 1. */
    std::int64_t total_k;      /**< Key (and value) rows of all sequences together, from 1 to 2^31 - 1. */
    std::int64_t max_seqlen_q; /**< The longest sequence's query rows, from 1 to total_q. */
    std::int64_t max_seqlen_k; /**< The longest sequence's keys, from 1 to total_k. */
    std::int64_t heads_q;      /**< Query (and output) heads, >= 1. */
    std::int64_t heads_kv;     /**< Key/value heads, >= 1, dividing heads_q. */
    std::int64_t head_dim;     /**< Features per head: a multiple of 8 from 8 to 256. */

    /** Elements of a contiguous q or o, [total_q, heads_q, head_dim]. */
    std::size_t q_elements() const noexcept { return static_cast<std::size_t>(total_q * heads_q * head_dim); }
    /** Elements of a contiguous k or v, [total_k, heads_kv, head_dim]. */
    std::size_t kv_elements() const noexcept { return static_cast<std::size_t>(total_k * heads_kv * head_dim); }
    /** Elements of the LSE, [heads_q, total_q]. */
    std::size_t lse_elements() const noexcept { return static_cast<std::size_t>(heads_q * total_q); }
    /** Entries of cu_seqlens_q and of cu_seqlens_k, batch + 1. */
    std::size_t offsets() const noexcept { return static_cast<std::size_t>(batch + 1); }
};

/** An owned #flashsci_plan_t: created by the constructor, destroyed by the destructor; movable, not copyable. */
class Plan {
public:
    /** Creates a plan (flashsci_plan_create()); a CUDA plan binds to the current device. Throws Error. */
    explicit Plan(Backend backend = Backend::automatic) {
        check(flashsci_plan_create(&plan_, static_cast<flashsci_backend_t>(backend)));
    }

    /** Takes ownership of a plan made with flashsci_plan_create(). */
    explicit Plan(flashsci_plan_t owned) noexcept : plan_(owned) {}

    /** Destroys the plan (flashsci_plan_destroy()). */
    ~Plan() { flashsci_plan_destroy(plan_); }

    /** Moves the plan; `other` is left empty. */
    Plan(Plan&& other) noexcept : plan_(std::exchange(other.plan_, nullptr)) {}

    /** Destroys this plan and takes `other`'s. */
    Plan& operator=(Plan&& other) noexcept {
        if (this != &other) {
            flashsci_plan_destroy(plan_);
            plan_ = std::exchange(other.plan_, nullptr);
        }
        return *this;
    }

    Plan(const Plan&) = delete;            /**< Plans are not copied. */
    Plan& operator=(const Plan&) = delete; /**< Plans are not copied. */

    /** The raw handle, still owned by this object. */
    flashsci_plan_t get() const noexcept { return plan_; }

    /** Gives up ownership: the caller destroys the returned handle. */
    flashsci_plan_t release() noexcept { return std::exchange(plan_, nullptr); }

    /** Sets the shape; resets strides to contiguous (flashsci_plan_set_shape()). Throws Error. */
    Plan& set_shape(const Shape& s) {
        check(flashsci_plan_set_shape(plan_, s.batch, s.seqlen_q, s.seqlen_k, s.heads_q, s.heads_kv, s.head_dim));
        return *this;
    }

    /**
     * Sets the shape of a variable-length batch, run by forward_varlen(); resets strides to the packed
     * contiguous layout (flashsci_plan_set_varlen_shape()). set_shape() makes the plan dense again. Throws Error.
     */
    Plan& set_varlen_shape(const VarlenShape& s) {
        check(flashsci_plan_set_varlen_shape(plan_, s.batch, s.total_q, s.total_k, s.max_seqlen_q, s.max_seqlen_k,
                                             s.heads_q, s.heads_kv, s.head_dim));
        return *this;
    }

    /** Sets the element type (flashsci_plan_set_dtype()). Throws Error. */
    Plan& set_dtype(Dtype dtype) {
        check(flashsci_plan_set_dtype(plan_, static_cast<flashsci_dtype_t>(dtype)));
        return *this;
    }

    /** Sets the mask (flashsci_plan_set_mask()). Throws Error. */
    Plan& set_mask(Mask mask) {
        check(flashsci_plan_set_mask(plan_, static_cast<flashsci_mask_t>(mask)));
        return *this;
    }

    /** Sets the factor on Q·Kᵀ (flashsci_plan_set_softmax_scale()). Throws Error. */
    Plan& set_softmax_scale(float scale) {
        check(flashsci_plan_set_softmax_scale(plan_, scale));
        return *this;
    }

    /** Sliding window around the diagonal, -1 unbounded (flashsci_plan_set_window()). Throws Error. */
    Plan& set_window(int64_t window_left, int64_t window_right) {
        check(flashsci_plan_set_window(plan_, window_left, window_right));
        return *this;
    }

    /** Caps scores at softcap·tanh(s / softcap), 0 off (flashsci_plan_set_softcap()). Throws Error. */
    Plan& set_softcap(float softcap) {
        check(flashsci_plan_set_softcap(plan_, softcap));
        return *this;
    }

    /** ALiBi slopes, heads_q host floats or nullptr (flashsci_plan_set_alibi_slopes()). Throws Error. */
    Plan& set_alibi_slopes(const float* slopes) {
        check(flashsci_plan_set_alibi_slopes(plan_, slopes));
        return *this;
    }

    /** Describes a tensor's layout in elements (flashsci_plan_set_strides()). Throws Error. */
    Plan& set_strides(Tensor tensor, std::int64_t batch_stride, std::int64_t seq_stride, std::int64_t head_stride) {
        check(flashsci_plan_set_strides(plan_, static_cast<flashsci_tensor_t>(tensor), batch_stride, seq_stride,
                                        head_stride));
        return *this;
    }

    /** How a float32 plan multiplies (flashsci_plan_set_precision()). Throws Error. */
    Plan& set_precision(Precision precision) {
        check(flashsci_plan_set_precision(plan_, static_cast<flashsci_precision_t>(precision)));
        return *this;
    }

    /** Bit-identical gradients run to run, or not (flashsci_plan_set_deterministic()). Throws Error. */
    Plan& set_deterministic(bool deterministic) {
        check(flashsci_plan_set_deterministic(plan_, deterministic ? 1 : 0));
        return *this;
    }

    /** The backend, AUTO resolved (flashsci_plan_get_backend()). Throws Error. */
    Backend backend() const {
        flashsci_backend_t b;
        check(flashsci_plan_get_backend(plan_, &b));
        return static_cast<Backend>(b);
    }

    /** Bytes of scratch memory forward() needs (flashsci_plan_get_workspace_size()). Throws Error. */
    std::size_t workspace_size() const {
        std::size_t bytes = 0;
        check(flashsci_plan_get_workspace_size(plan_, &bytes));
        return bytes;
    }

    /** Bytes of scratch memory backward() needs (flashsci_plan_get_backward_workspace_size()). Throws Error. */
    std::size_t backward_workspace_size() const {
        std::size_t bytes = 0;
        check(flashsci_plan_get_backward_workspace_size(plan_, &bytes));
        return bytes;
    }

    /** The kernel forward() runs (flashsci_plan_get_kernel_name()), e.g. "cpu". Throws Error. */
    const char* kernel_name() const {
        const char* name = nullptr;
        check(flashsci_plan_get_kernel_name(plan_, &name));
        return name;
    }

    /**
     * Computes O = softmax(scale · Q Kᵀ + mask) V, and the LSE when `lse` is not null
     * (flashsci_forward()). Host pointers and a null stream for a CPU plan; device
     * pointers and a stream (enqueued, not waited for) for a CUDA plan. Throws Error;
     * on failure nothing is written.
     */
    void forward(const void* q, const void* k, const void* v, void* o, float* lse = nullptr,
                 void* workspace = nullptr, std::size_t workspace_bytes = 0,
                 flashsci_stream_t stream = nullptr) const {
        check(flashsci_forward(plan_, q, k, v, o, lse, workspace, workspace_bytes, stream));
    }

    /**
     * Attention over each sequence of a variable-length batch, and the LSE ([heads_q, total_q]) when `lse` is
     * not null (flashsci_forward_varlen()). `cu_seqlens_q` and `cu_seqlens_k` hold batch + 1 int32 row offsets
     * in the plan's memory (host for a CPU plan, its device for a CUDA plan). Throws Error; on failure nothing
     * is written.
     */
    void forward_varlen(const void* q, const void* k, const void* v, void* o, float* lse,
                        const std::int32_t* cu_seqlens_q, const std::int32_t* cu_seqlens_k,
                        void* workspace = nullptr, std::size_t workspace_bytes = 0,
                        flashsci_stream_t stream = nullptr) const {
        check(flashsci_forward_varlen(plan_, q, k, v, o, lse, cu_seqlens_q, cu_seqlens_k, workspace,
                                      workspace_bytes, stream));
    }

    /**
     * The gradients dq, dk, dv of attention from dout = dL/dO and the forward's o and lse for q, k, v
     * (flashsci_backward()); dq, dk and dv are overwritten. Memory and streams as for forward(). Throws Error;
     * on failure nothing is written.
     */
    void backward(const void* q, const void* k, const void* v, const void* o, const void* dout, const float* lse,
                  void* dq, void* dk, void* dv, void* workspace = nullptr, std::size_t workspace_bytes = 0,
                  flashsci_stream_t stream = nullptr) const {
        check(flashsci_backward(plan_, q, k, v, o, dout, lse, dq, dk, dv, workspace, workspace_bytes, stream));
    }

    /**
     * The gradients over each sequence of a variable-length batch (flashsci_backward_varlen()); offsets as for
     * forward_varlen(), rows outside every sequence not written. Throws Error; on failure nothing is written.
     */
    void backward_varlen(const void* q, const void* k, const void* v, const void* o, const void* dout,
                         const float* lse, void* dq, void* dk, void* dv, const std::int32_t* cu_seqlens_q,
                         const std::int32_t* cu_seqlens_k, void* workspace = nullptr,
                         std::size_t workspace_bytes = 0, flashsci_stream_t stream = nullptr) const {
        check(flashsci_backward_varlen(plan_, q, k, v, o, dout, lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k,
                                       workspace, workspace_bytes, stream));
    }

private:
    flashsci_plan_t plan_ = nullptr;
};

}  // namespace flashsci

#endif /* FLASHSCI_HPP */
