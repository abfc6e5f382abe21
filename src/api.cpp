// The C ABI: argument validation, plan state, and the hand-off to select_kernel().
#include <flashsci.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <new>
#include <utility>
#include <vector>

#include "cuda_device.h"
#include "dispatch.h"
#include "error.h"
#include "plan.h"

using flashsci::fail;
using flashsci::guarded;
namespace kernels = flashsci::kernels;

namespace {

constexpr int64_t kHeadDimMultiple = 8;
constexpr int64_t kMaxHeadDim = 256;
constexpr int64_t kLseBytes = sizeof(float);
constexpr int64_t kOffsetBytes = sizeof(int32_t);     // an entry of cu_seqlens
constexpr int64_t kMaxTotalTokens = int64_t{1} << 31;  // cu_seqlens offsets are int32

bool checked_mul(int64_t a, int64_t b, int64_t* out) { return !__builtin_mul_overflow(a, b, out); }
bool checked_add(int64_t a, int64_t b, int64_t* out) { return !__builtin_add_overflow(a, b, out); }

// a·b·c·d without overflow, and with room left for `element_bytes`-sized elements.
bool checked_count(std::array<int64_t, 4> dims, int64_t element_bytes) {
    int64_t n = element_bytes;
    for (int64_t d : dims)
        if (!checked_mul(n, d, &n)) return false;
    return true;
}

kernels::Strides contiguous_strides(int64_t seqlen, int64_t heads, int64_t head_dim) {
    return {seqlen * heads * head_dim, heads * head_dim, head_dim};
}

struct Extent {
    int64_t batch, seqlen, heads;
};

// The largest element offset a tensor reaches, or false on overflow.
bool max_offset(const Extent& e, const kernels::Strides& s, int64_t head_dim, int64_t* out) {
    int64_t total = head_dim - 1, term = 0;
    return checked_mul(e.batch - 1, s.batch, &term) && checked_add(total, term, &total) &&
           checked_mul(e.seqlen - 1, s.seq, &term) && checked_add(total, term, &total) &&
           checked_mul(e.heads - 1, s.head, &term) && checked_add(total, term, &total) && (*out = total, true);
}

// Sufficient test that no two elements share an address: sorted by stride, each
// dimension's stride passes the span of all smaller ones.
bool strides_overlap(const Extent& e, const kernels::Strides& s, int64_t head_dim) {
    struct Dim {
        int64_t extent, stride;
    };
    std::array<Dim, 4> dims{{{head_dim, 1}, {e.heads, s.head}, {e.seqlen, s.seq}, {e.batch, s.batch}}};
    std::sort(dims.begin(), dims.end(), [](Dim a, Dim b) { return a.stride < b.stride; });
    int64_t span = 0;  // largest offset reached by the dimensions so far
    for (const Dim& d : dims) {
        if (d.extent == 1) continue;
        if (d.stride <= span) return true;
        span += d.stride * (d.extent - 1);
    }
    return false;
}

kernels::Strides& strides_of(flashsci_plan_st& plan, flashsci_tensor_t tensor) {
    switch (tensor) {
        case FLASHSCI_TENSOR_Q: return plan.shape.q_strides;
        case FLASHSCI_TENSOR_K: return plan.shape.k_strides;
        case FLASHSCI_TENSOR_V: return plan.shape.v_strides;
        case FLASHSCI_TENSOR_O: break;
    }
    return plan.shape.o_strides;
}

// The rows a tensor's strides must reach: [batch, seqlen, heads], or [total, heads] (one "sequence") varlen.
Extent extent_of(const kernels::Problem& s, flashsci_tensor_t tensor) {
    if (tensor == FLASHSCI_TENSOR_K || tensor == FLASHSCI_TENSOR_V)
        return s.varlen ? Extent{1, s.total_k, s.heads_kv} : Extent{s.batch, s.seqlen_k, s.heads_kv};
    return s.varlen ? Extent{1, s.total_q, s.heads_q} : Extent{s.batch, s.seqlen_q, s.heads_q};
}

// Floats of the LSE: [batch, heads_q, seqlen_q], or [heads_q, total_q] varlen.
int64_t lse_elements(const kernels::Problem& s) {
    return s.varlen ? s.heads_q * s.total_q : s.batch * s.heads_q * s.seqlen_q;
}

const char* tensor_name(flashsci_tensor_t tensor) {
    static constexpr const char* names[] = {"q", "k", "v", "o"};
    return names[tensor];
}

kernels::Element element_of(flashsci_dtype_t dtype) {
    switch (dtype) {
        case FLASHSCI_DTYPE_FLOAT16: return kernels::Element::f16;
        case FLASHSCI_DTYPE_BFLOAT16: return kernels::Element::bf16;
        case FLASHSCI_DTYPE_FLOAT32: break;
    }
    return kernels::Element::f32;
}

kernels::Mask mask_of(flashsci_mask_t mask) {
    switch (mask) {
        case FLASHSCI_MASK_CAUSAL: return kernels::Mask::causal_top_left;
        case FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT: return kernels::Mask::causal_bottom_right;
        case FLASHSCI_MASK_NONE: break;
    }
    return kernels::Mask::none;
}

ForcedKernel forced_kernel_from_environment() {
    const char* value = std::getenv("FLASHSCI_KERNEL");
    if (value == nullptr) return ForcedKernel::none;
    if (std::strcmp(value, "general") == 0) return ForcedKernel::general;
    if (std::strcmp(value, "decode") == 0) return ForcedKernel::decode;
    if (std::strcmp(value, "sm90") == 0) return ForcedKernel::sm90;
    if (std::strcmp(value, "sm80") == 0) return ForcedKernel::sm80;
    return ForcedKernel::none;
}

// The problem the plan describes, without tensors. `shape_setter` is the setter the message points to.
flashsci_status_t complete_problem(const char* function, const flashsci_plan_st* plan, kernels::Problem* p,
                                   const char* shape_setter = "flashsci_plan_set_shape") {
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", function);
    if (!plan->has_shape)
        return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: the plan has no shape; call %s first", function,
                    shape_setter);
    if (!plan->has_dtype)
        return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: the plan has no dtype; call flashsci_plan_set_dtype first",
                    function);
    *p = plan->shape;
    p->element = element_of(plan->dtype);
    p->mask = mask_of(plan->mask);
    p->scale = plan->has_custom_scale ? plan->custom_scale : float(1.0 / std::sqrt(double(p->head_dim)));
    p->window_left = plan->window_left, p->window_right = plan->window_right;
    p->softcap = plan->softcap;
    p->alibi_slopes = plan->alibi_slopes.empty()                  ? nullptr
                      : plan->backend == FLASHSCI_BACKEND_CUDA ? plan->alibi_slopes_device
                                                               : plan->alibi_slopes.data();
    return FLASHSCI_STATUS_SUCCESS;
}

struct ByteRange {
    uintptr_t begin, end;  // [begin, end)
    bool overlaps(const ByteRange& other) const { return begin < other.end && other.begin < end; }
};

ByteRange byte_range(const void* base, const Extent& e, const kernels::Strides& s, int64_t head_dim,
                     int64_t element_bytes) {
    int64_t last = 0;
    max_offset(e, s, head_dim, &last);  // cannot overflow: checked when shape and strides were set
    auto begin = reinterpret_cast<uintptr_t>(base);
    return {begin, begin + uintptr_t(last + 1) * uintptr_t(element_bytes)};
}

flashsci_status_t check_tensor_pointer(const char* function, const char* name, const void* pointer,
                                       int64_t alignment) {
    if (pointer == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s must not be NULL", function, name);
    if (reinterpret_cast<uintptr_t>(pointer) % uintptr_t(alignment) != 0)
        return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s (%p) must be aligned to its %lld-byte element type",
                    function, name, pointer, static_cast<long long>(alignment));
    return FLASHSCI_STATUS_SUCCESS;
}

ByteRange flat_range(const void* base, int64_t count, int64_t element_bytes) {
    auto begin = reinterpret_cast<uintptr_t>(base);
    return {begin, begin + uintptr_t(count) * uintptr_t(element_bytes)};
}

// O and LSE must not overlap any input (q, k, v, and a varlen problem's cu_seqlens), nor each other.
flashsci_status_t check_no_aliasing(const char* function, const kernels::Problem& p) {
    const int64_t bytes = kernels::element_bytes(p.element);
    const ByteRange inputs[] = {
        byte_range(p.q, extent_of(p, FLASHSCI_TENSOR_Q), p.q_strides, p.head_dim, bytes),
        byte_range(p.k, extent_of(p, FLASHSCI_TENSOR_K), p.k_strides, p.head_dim, bytes),
        byte_range(p.v, extent_of(p, FLASHSCI_TENSOR_V), p.v_strides, p.head_dim, bytes),
        flat_range(p.cu_seqlens_q, p.varlen ? p.batch + 1 : 0, kOffsetBytes),
        flat_range(p.cu_seqlens_k, p.varlen ? p.batch + 1 : 0, kOffsetBytes)};
    const char* input_names[] = {"q", "k", "v", "cu_seqlens_q", "cu_seqlens_k"};
    const ByteRange out = byte_range(p.o, extent_of(p, FLASHSCI_TENSOR_O), p.o_strides, p.head_dim, bytes);
    for (size_t i = 0; i < std::size(inputs); ++i)
        if (out.overlaps(inputs[i]))
            return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: o overlaps %s; the output needs its own memory",
                        function, input_names[i]);
    if (p.lse == nullptr) return FLASHSCI_STATUS_SUCCESS;
    const ByteRange lse = flat_range(p.lse, lse_elements(p), kLseBytes);
    if (lse.overlaps(out)) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: lse overlaps o", function);
    for (size_t i = 0; i < std::size(inputs); ++i)
        if (lse.overlaps(inputs[i]))
            return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: lse overlaps %s", function, input_names[i]);
    return FLASHSCI_STATUS_SUCCESS;
}

// Host offsets of a varlen forward on the CPU, all read before anything is written: name[0] == 0, then for each
// index in order, nondecreasing, at most `total` and at most `max_seqlen` past the previous one.
flashsci_status_t check_host_offsets(const char* function, const char* name, const int32_t* cu, int64_t batch,
                                     const char* total_name, int64_t total, const char* max_name,
                                     int64_t max_seqlen) {
    if (cu[0] != 0)
        return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s[0] (%d) must be 0", function, name, int(cu[0]));
    for (int64_t b = 1; b <= batch; ++b) {
        const int64_t previous = cu[b - 1], offset = cu[b];
        if (offset < previous)
            return fail(FLASHSCI_STATUS_INVALID_VALUE,
                        "%s: %s[%lld] (%lld) is below %s[%lld] (%lld); offsets must be nondecreasing", function, name,
                        static_cast<long long>(b), static_cast<long long>(offset), name,
                        static_cast<long long>(b - 1), static_cast<long long>(previous));
        if (offset > total)
            return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s[%lld] (%lld) exceeds %s (%lld)", function, name,
                        static_cast<long long>(b), static_cast<long long>(offset), total_name,
                        static_cast<long long>(total));
        if (offset - previous > max_seqlen)
            return fail(FLASHSCI_STATUS_INVALID_VALUE,
                        "%s: %s[%lld] - %s[%lld] (%lld) exceeds %s (%lld): sequence %lld is longer than the plan's "
                        "maximum",
                        function, name, static_cast<long long>(b), name, static_cast<long long>(b - 1),
                        static_cast<long long>(offset - previous), max_name, static_cast<long long>(max_seqlen),
                        static_cast<long long>(b - 1));
    }
    return FLASHSCI_STATUS_SUCCESS;
}

struct NamedValue {
    const char* name;
    int64_t value;
};

template <size_t N>
flashsci_status_t check_at_least_one(const char* function, const NamedValue (&values)[N]) {
    for (const NamedValue& arg : values)
        if (arg.value < 1)
            return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s (%lld) must be at least 1", function, arg.name,
                        static_cast<long long>(arg.value));
    return FLASHSCI_STATUS_SUCCESS;
}

// head_dim's range and heads_q % heads_kv, as set_shape and set_varlen_shape require them.
flashsci_status_t check_heads(const char* function, int64_t heads_q, int64_t heads_kv, int64_t head_dim) {
    if (head_dim < kHeadDimMultiple || head_dim > kMaxHeadDim || head_dim % kHeadDimMultiple != 0)
        return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: head_dim (%lld) must be a multiple of %lld from %lld to %lld",
                    function, static_cast<long long>(head_dim), static_cast<long long>(kHeadDimMultiple),
                    static_cast<long long>(kHeadDimMultiple), static_cast<long long>(kMaxHeadDim));
    if (heads_q % heads_kv != 0)
        return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: heads_q (%lld) must be a multiple of heads_kv (%lld)",
                    function, static_cast<long long>(heads_q), static_cast<long long>(heads_kv));
    return FLASHSCI_STATUS_SUCCESS;
}

void turn_alibi_off(flashsci_plan_st& plan) {
    flashsci::free_on_device(plan.device, plan.alibi_slopes_device);
    plan.alibi_slopes_device = nullptr;
    plan.alibi_slopes.clear();
}

// The part of a new (validated) shape common to set_shape and set_varlen_shape, as a dense shape; the caller
// marks it variable-length and sets the strides.
void apply_shape(flashsci_plan_st& plan, int64_t batch, int64_t seqlen_q, int64_t seqlen_k, int64_t heads_q,
                 int64_t heads_kv, int64_t head_dim) {
    if (heads_q != plan.shape.heads_q) turn_alibi_off(plan);  // its slopes were per head of the old shape
    kernels::Problem& s = plan.shape;
    s.batch = batch, s.seqlen_q = seqlen_q, s.seqlen_k = seqlen_k;
    s.heads_q = heads_q, s.heads_kv = heads_kv, s.head_dim = head_dim;
    s.varlen = false, s.total_q = s.total_k = 0;
    plan.has_shape = true;
}

// The pointers of one forward: q, k, v, o, lse, and a varlen forward's offsets.
struct ForwardArgs {
    const void *q, *k, *v;
    void* o;
    float* lse;
    const int32_t *cu_seqlens_q, *cu_seqlens_k;
};

// flashsci_forward and flashsci_forward_varlen: validation in the order the header lists, then the kernel.
flashsci_status_t forward(const char* fn, bool varlen, flashsci_plan_t plan, const ForwardArgs& a, void* workspace,
                          size_t workspace_bytes, flashsci_stream_t stream) {
    kernels::Problem p;
    flashsci_status_t status =
        complete_problem(fn, plan, &p, varlen ? "flashsci_plan_set_varlen_shape" : "flashsci_plan_set_shape");
    if (status != FLASHSCI_STATUS_SUCCESS) return status;
    if (p.varlen && !varlen)
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: the plan has a variable-length shape (flashsci_plan_set_varlen_shape); call "
                    "flashsci_forward_varlen with its cu_seqlens, or flashsci_plan_set_shape for a dense batch",
                    fn);
    if (!p.varlen && varlen)
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: the plan has a dense shape (flashsci_plan_set_shape); call flashsci_forward, or "
                    "flashsci_plan_set_varlen_shape for a variable-length batch",
                    fn);
    const int64_t bytes = kernels::element_bytes(p.element);
    const struct {
        const char* name;
        const void* pointer;
        int64_t alignment;
    } pointers[] = {{"q", a.q, bytes},
                    {"k", a.k, bytes},
                    {"v", a.v, bytes},
                    {"o", a.o, bytes},
                    {"cu_seqlens_q", a.cu_seqlens_q, kOffsetBytes},  // the last two: varlen only
                    {"cu_seqlens_k", a.cu_seqlens_k, kOffsetBytes}};
    const size_t checked_pointers = std::size(pointers) - (varlen ? 0 : 2);
    for (size_t i = 0; i < checked_pointers; ++i)
        if ((status = check_tensor_pointer(fn, pointers[i].name, pointers[i].pointer, pointers[i].alignment)) !=
            FLASHSCI_STATUS_SUCCESS)
            return status;
    if (a.lse != nullptr && (status = check_tensor_pointer(fn, "lse", a.lse, kLseBytes)) != FLASHSCI_STATUS_SUCCESS)
        return status;
    p.q = a.q, p.k = a.k, p.v = a.v, p.o = a.o, p.lse = a.lse;
    p.cu_seqlens_q = a.cu_seqlens_q, p.cu_seqlens_k = a.cu_seqlens_k;
    if ((status = check_no_aliasing(fn, p)) != FLASHSCI_STATUS_SUCCESS) return status;
    if (plan->backend == FLASHSCI_BACKEND_CPU && stream != nullptr)
        return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: stream (%p) must be NULL on the CPU backend", fn,
                    static_cast<void*>(stream));
    flashsci::KernelSelection selection;
    if ((status = flashsci::select_kernel(fn, *plan, p, &selection)) != FLASHSCI_STATUS_SUCCESS) return status;
    if (selection.workspace_bytes > 0 && (workspace == nullptr || workspace_bytes < selection.workspace_bytes))
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: workspace (%p, %zu bytes) must hold at least %zu bytes "
                    "(flashsci_plan_get_workspace_size)",
                    fn, workspace, workspace_bytes, selection.workspace_bytes);
    if (plan->backend == FLASHSCI_BACKEND_CUDA) {
        const flashsci::NamedPointer device_pointers[] = {
            {"q", a.q},
            {"k", a.k},
            {"v", a.v},
            {"o", a.o},
            {"lse", a.lse},
            {"cu_seqlens_q", a.cu_seqlens_q},
            {"cu_seqlens_k", a.cu_seqlens_k},
            {"workspace", selection.workspace_bytes > 0 ? workspace : nullptr}};
        if ((status = flashsci::check_device_pointers(fn, device_pointers, int(std::size(device_pointers)),
                                                      plan->device)) != FLASHSCI_STATUS_SUCCESS)
            return status;
    } else if (varlen) {
        // The CPU backend reads the offsets where it runs: all of them are checked before anything is written.
        if ((status = check_host_offsets(fn, "cu_seqlens_q", a.cu_seqlens_q, p.batch, "total_q", p.total_q,
                                         "max_seqlen_q", p.seqlen_q)) != FLASHSCI_STATUS_SUCCESS ||
            (status = check_host_offsets(fn, "cu_seqlens_k", a.cu_seqlens_k, p.batch, "total_k", p.total_k,
                                         "max_seqlen_k", p.seqlen_k)) != FLASHSCI_STATUS_SUCCESS)
            return status;
    }
    return flashsci::run_kernel(fn, selection, *plan, p, workspace, stream);
}

}  // namespace

extern "C" {

flashsci_status_t flashsci_plan_create(flashsci_plan_t* plan, flashsci_backend_t requested) {
    static constexpr const char* fn = "flashsci_plan_create";
    return guarded(fn, [&] {
        if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
        const int value = flashsci::passed_value(requested);
        if (value != FLASHSCI_BACKEND_AUTO && value != FLASHSCI_BACKEND_CUDA && value != FLASHSCI_BACKEND_CPU)
            return fail(FLASHSCI_STATUS_INVALID_VALUE,
                        "%s: backend (%d) must be FLASHSCI_BACKEND_AUTO (0), FLASHSCI_BACKEND_CUDA (1) or "
                        "FLASHSCI_BACKEND_CPU (2)",
                        fn, value);
        const auto backend = static_cast<flashsci_backend_t>(value);
        flashsci::DeviceInfo device{-1, 0, 0, 0};
        flashsci_backend_t resolved = FLASHSCI_BACKEND_CPU;
        if (backend == FLASHSCI_BACKEND_CUDA || (backend == FLASHSCI_BACKEND_AUTO && flashsci::cuda_available())) {
            flashsci_status_t status = flashsci::current_device(fn, &device);
            if (status != FLASHSCI_STATUS_SUCCESS && backend == FLASHSCI_BACKEND_CUDA) return status;
            if (status == FLASHSCI_STATUS_SUCCESS) resolved = FLASHSCI_BACKEND_CUDA;
        }
        auto* created = new (std::nothrow) flashsci_plan_st;
        if (created == nullptr) return fail(FLASHSCI_STATUS_OUT_OF_MEMORY, "%s: out of host memory", fn);
        created->backend = resolved;
        created->device = device.ordinal;
        created->cc_major = device.cc_major;
        created->cc_minor = device.cc_minor;
        created->num_sms = device.num_sms;
        created->forced = forced_kernel_from_environment();
        *plan = created;
        return FLASHSCI_STATUS_SUCCESS;
    });
}

flashsci_status_t flashsci_plan_destroy(flashsci_plan_t plan) {
    delete plan;
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_get_backend(flashsci_plan_t plan, flashsci_backend_t* backend) {
    static constexpr const char* fn = "flashsci_plan_get_backend";
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
    if (backend == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: backend must not be NULL", fn);
    *backend = plan->backend;
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_set_shape(flashsci_plan_t plan, int64_t batch, int64_t seqlen_q, int64_t seqlen_k,
                                          int64_t heads_q, int64_t heads_kv, int64_t head_dim) {
    static constexpr const char* fn = "flashsci_plan_set_shape";
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
    const NamedValue positive[] = {{"batch", batch},     {"seqlen_q", seqlen_q}, {"seqlen_k", seqlen_k},
                                   {"heads_q", heads_q}, {"heads_kv", heads_kv}};
    flashsci_status_t status = check_at_least_one(fn, positive);
    if (status == FLASHSCI_STATUS_SUCCESS) status = check_heads(fn, heads_q, heads_kv, head_dim);
    if (status != FLASHSCI_STATUS_SUCCESS) return status;
    if (!checked_count({batch, seqlen_q, heads_q, head_dim}, sizeof(float)) ||
        !checked_count({batch, seqlen_k, heads_kv, head_dim}, sizeof(float)))
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: batch (%lld) x seqlen x heads x head_dim (%lld) overflows a 64-bit byte count", fn,
                    static_cast<long long>(batch), static_cast<long long>(head_dim));
    apply_shape(*plan, batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim);
    kernels::Problem& s = plan->shape;
    s.q_strides = s.o_strides = contiguous_strides(seqlen_q, heads_q, head_dim);
    s.k_strides = s.v_strides = contiguous_strides(seqlen_k, heads_kv, head_dim);
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_set_varlen_shape(flashsci_plan_t plan, int64_t batch, int64_t total_q,
                                                 int64_t total_k, int64_t max_seqlen_q, int64_t max_seqlen_k,
                                                 int64_t heads_q, int64_t heads_kv, int64_t head_dim) {
    static constexpr const char* fn = "flashsci_plan_set_varlen_shape";
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
    const NamedValue positive[] = {{"batch", batch},
                                   {"total_q", total_q},
                                   {"total_k", total_k},
                                   {"max_seqlen_q", max_seqlen_q},
                                   {"max_seqlen_k", max_seqlen_k},
                                   {"heads_q", heads_q},
                                   {"heads_kv", heads_kv}};
    flashsci_status_t status = check_at_least_one(fn, positive);
    if (status == FLASHSCI_STATUS_SUCCESS) status = check_heads(fn, heads_q, heads_kv, head_dim);
    if (status != FLASHSCI_STATUS_SUCCESS) return status;
    const struct {
        const char *total_name, *max_name, *offsets;
        int64_t total, max;
    } axes[] = {{"total_q", "max_seqlen_q", "cu_seqlens_q", total_q, max_seqlen_q},
                {"total_k", "max_seqlen_k", "cu_seqlens_k", total_k, max_seqlen_k}};
    for (const auto& axis : axes) {
        if (axis.total >= kMaxTotalTokens)
            return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s (%lld) must be below 2^31: %s holds int32 offsets",
                        fn, axis.total_name, static_cast<long long>(axis.total), axis.offsets);
        if (axis.max > axis.total)
            return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s (%lld) must not exceed %s (%lld)", fn, axis.max_name,
                        static_cast<long long>(axis.max), axis.total_name, static_cast<long long>(axis.total));
    }
    // The packed tensors, and the grid of batch x max_seqlen_q rows per head the backends walk.
    if (!checked_count({1, total_q, heads_q, head_dim}, sizeof(float)) ||
        !checked_count({1, total_k, heads_kv, head_dim}, sizeof(float)) ||
        !checked_count({batch, max_seqlen_q, heads_q, head_dim}, sizeof(float)) ||
        !checked_count({batch, max_seqlen_k, heads_kv, head_dim}, sizeof(float)))
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: batch (%lld) x max_seqlen x heads x head_dim (%lld) overflows a 64-bit byte count", fn,
                    static_cast<long long>(batch), static_cast<long long>(head_dim));
    apply_shape(*plan, batch, max_seqlen_q, max_seqlen_k, heads_q, heads_kv, head_dim);
    kernels::Problem& s = plan->shape;
    s.varlen = true, s.total_q = total_q, s.total_k = total_k;
    s.q_strides = s.o_strides = {0, heads_q * head_dim, head_dim};
    s.k_strides = s.v_strides = {0, heads_kv * head_dim, head_dim};
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_set_dtype(flashsci_plan_t plan, flashsci_dtype_t dtype) {
    static constexpr const char* fn = "flashsci_plan_set_dtype";
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
    const int value = flashsci::passed_value(dtype);
    if (value != FLASHSCI_DTYPE_FLOAT16 && value != FLASHSCI_DTYPE_BFLOAT16 && value != FLASHSCI_DTYPE_FLOAT32)
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: dtype (%d) must be FLASHSCI_DTYPE_FLOAT16 (1), FLASHSCI_DTYPE_BFLOAT16 (2) or "
                    "FLASHSCI_DTYPE_FLOAT32 (3)",
                    fn, value);
    plan->dtype = static_cast<flashsci_dtype_t>(value);
    plan->has_dtype = true;
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_set_mask(flashsci_plan_t plan, flashsci_mask_t mask) {
    static constexpr const char* fn = "flashsci_plan_set_mask";
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
    const int value = flashsci::passed_value(mask);
    if (value != FLASHSCI_MASK_NONE && value != FLASHSCI_MASK_CAUSAL && value != FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT)
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: mask (%d) must be FLASHSCI_MASK_NONE (0), FLASHSCI_MASK_CAUSAL (1) or "
                    "FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT (2)",
                    fn, value);
    plan->mask = static_cast<flashsci_mask_t>(value);
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_set_softmax_scale(flashsci_plan_t plan, float scale) {
    static constexpr const char* fn = "flashsci_plan_set_softmax_scale";
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
    if (!std::isfinite(scale) || scale <= 0.0f)
        return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: scale (%g) must be finite and positive", fn, double(scale));
    plan->custom_scale = scale;
    plan->has_custom_scale = true;
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_set_window(flashsci_plan_t plan, int64_t window_left, int64_t window_right) {
    static constexpr const char* fn = "flashsci_plan_set_window";
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
    const struct {
        const char* name;
        int64_t value;
    } sides[] = {{"window_left", window_left}, {"window_right", window_right}};
    for (const auto& side : sides)
        if (side.value < -1)
            return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s (%lld) must be -1 (unbounded) or at least 0", fn,
                        side.name, static_cast<long long>(side.value));
    plan->window_left = window_left, plan->window_right = window_right;
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_set_softcap(flashsci_plan_t plan, float softcap) {
    static constexpr const char* fn = "flashsci_plan_set_softcap";
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
    if (!std::isfinite(softcap) || softcap < 0.0f)
        return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: softcap (%g) must be 0 (off) or finite and positive", fn,
                    double(softcap));
    plan->softcap = softcap;
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_set_alibi_slopes(flashsci_plan_t plan, const float* slopes) {
    static constexpr const char* fn = "flashsci_plan_set_alibi_slopes";
    return guarded(fn, [&] {
        if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
        if (slopes == nullptr) {
            turn_alibi_off(*plan);
            return FLASHSCI_STATUS_SUCCESS;
        }
        if (!plan->has_shape)
            return fail(FLASHSCI_STATUS_INVALID_VALUE,
                        "%s: the plan has no shape; call flashsci_plan_set_shape first (slopes holds heads_q values)",
                        fn);
        const int64_t heads = plan->shape.heads_q;
        for (int64_t h = 0; h < heads; ++h)
            if (!std::isfinite(slopes[h]))
                return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: slopes[%lld] (%g) must be finite", fn,
                            static_cast<long long>(h), double(slopes[h]));
        std::vector<float> host(slopes, slopes + heads);
        float* device_copy = nullptr;
        if (plan->backend == FLASHSCI_BACKEND_CUDA) {
            const flashsci_status_t status = flashsci::copy_to_device(fn, plan->device, slopes, heads, &device_copy);
            if (status != FLASHSCI_STATUS_SUCCESS) return status;
        }
        turn_alibi_off(*plan);
        plan->alibi_slopes = std::move(host);
        plan->alibi_slopes_device = device_copy;
        return FLASHSCI_STATUS_SUCCESS;
    });
}

flashsci_status_t flashsci_plan_set_strides(flashsci_plan_t plan, flashsci_tensor_t which, int64_t batch_stride,
                                            int64_t seq_stride, int64_t head_stride) {
    static constexpr const char* fn = "flashsci_plan_set_strides";
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
    const int value = flashsci::passed_value(which);
    if (value != FLASHSCI_TENSOR_Q && value != FLASHSCI_TENSOR_K && value != FLASHSCI_TENSOR_V &&
        value != FLASHSCI_TENSOR_O)
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: tensor (%d) must be FLASHSCI_TENSOR_Q (0), _K (1), _V (2) or _O (3)", fn, value);
    const auto tensor = static_cast<flashsci_tensor_t>(value);
    if (!plan->has_shape)
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: the plan has no shape; call flashsci_plan_set_shape before setting strides", fn);
    const struct {
        const char* name;
        int64_t value;
    } strides[] = {{"batch_stride", batch_stride}, {"seq_stride", seq_stride}, {"head_stride", head_stride}};
    for (const auto& s : strides)
        if (s.value < 0)
            return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s of %s (%lld) must be at least 0", fn, s.name,
                        tensor_name(tensor), static_cast<long long>(s.value));
    if (plan->shape.varlen && batch_stride != 0)
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: batch_stride of %s (%lld) must be 0 on a variable-length plan "
                    "(flashsci_plan_set_varlen_shape): cu_seqlens locate the sequences, seq_stride steps between "
                    "tokens",
                    fn, tensor_name(tensor), static_cast<long long>(batch_stride));
    const kernels::Strides candidate{batch_stride, seq_stride, head_stride};
    const Extent extent = extent_of(plan->shape, tensor);
    int64_t last = 0;
    if (!max_offset(extent, candidate, plan->shape.head_dim, &last) || !checked_add(last, 1, &last) ||
        !checked_mul(last, sizeof(float), &last))
        return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: the strides of %s (%lld, %lld, %lld) overflow a 64-bit offset",
                    fn, tensor_name(tensor), static_cast<long long>(batch_stride),
                    static_cast<long long>(seq_stride), static_cast<long long>(head_stride));
    if (tensor == FLASHSCI_TENSOR_O && strides_overlap(extent, candidate, plan->shape.head_dim))
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: the strides of o (%lld, %lld, %lld) make output elements overlap; each (batch, row, head, "
                    "feature) needs its own element",
                    fn, static_cast<long long>(batch_stride), static_cast<long long>(seq_stride),
                    static_cast<long long>(head_stride));
    strides_of(*plan, tensor) = candidate;
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_get_workspace_size(flashsci_plan_t plan, size_t* bytes) {
    static constexpr const char* fn = "flashsci_plan_get_workspace_size";
    return guarded(fn, [&] {
        kernels::Problem p;
        flashsci_status_t status = complete_problem(fn, plan, &p);
        if (status != FLASHSCI_STATUS_SUCCESS) return status;
        if (bytes == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: bytes must not be NULL", fn);
        flashsci::KernelSelection selection;
        status = flashsci::select_kernel(fn, *plan, p, &selection);
        if (status != FLASHSCI_STATUS_SUCCESS) return status;
        *bytes = selection.workspace_bytes;
        return FLASHSCI_STATUS_SUCCESS;
    });
}

flashsci_status_t flashsci_plan_get_kernel_name(flashsci_plan_t plan, const char** name) {
    static constexpr const char* fn = "flashsci_plan_get_kernel_name";
    return guarded(fn, [&] {
        kernels::Problem p;
        flashsci_status_t status = complete_problem(fn, plan, &p);
        if (status != FLASHSCI_STATUS_SUCCESS) return status;
        if (name == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: name must not be NULL", fn);
        flashsci::KernelSelection selection;
        status = flashsci::select_kernel(fn, *plan, p, &selection);
        if (status != FLASHSCI_STATUS_SUCCESS) return status;
        *name = selection.name;
        return FLASHSCI_STATUS_SUCCESS;
    });
}

flashsci_status_t flashsci_forward(flashsci_plan_t plan, const void* q, const void* k, const void* v, void* o,
                                   float* lse, void* workspace, size_t workspace_bytes, flashsci_stream_t stream) {
    static constexpr const char* fn = "flashsci_forward";
    return guarded(fn, [&] {
        return forward(fn, false, plan, {q, k, v, o, lse, nullptr, nullptr}, workspace, workspace_bytes, stream);
    });
}

flashsci_status_t flashsci_forward_varlen(flashsci_plan_t plan, const void* q, const void* k, const void* v, void* o,
                                          float* lse, const int32_t* cu_seqlens_q, const int32_t* cu_seqlens_k,
                                          void* workspace, size_t workspace_bytes, flashsci_stream_t stream) {
    static constexpr const char* fn = "flashsci_forward_varlen";
    return guarded(fn, [&] {
        return forward(fn, true, plan, {q, k, v, o, lse, cu_seqlens_q, cu_seqlens_k}, workspace, workspace_bytes,
                       stream);
    });
}

}  // extern "C"
