// The C ABI: argument validation, plan state, and the hand-off to select_kernel().
#include <flashsci.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
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
        case FLASHSCI_TENSOR_O: return plan.shape.o_strides;
        case FLASHSCI_TENSOR_DO: return plan.gradients.dout_strides;
        case FLASHSCI_TENSOR_DQ: return plan.gradients.dq_strides;
        case FLASHSCI_TENSOR_DK: return plan.gradients.dk_strides;
        case FLASHSCI_TENSOR_DV: break;
    }
    return plan.gradients.dv_strides;
}

bool is_valid_tensor(int value) { return value >= FLASHSCI_TENSOR_Q && value <= FLASHSCI_TENSOR_DV; }

// The tensors a call writes: two of their elements must never share an address.
bool is_output(flashsci_tensor_t tensor) {
    return tensor == FLASHSCI_TENSOR_O || tensor == FLASHSCI_TENSOR_DQ || tensor == FLASHSCI_TENSOR_DK ||
           tensor == FLASHSCI_TENSOR_DV;
}

// The rows a tensor's strides must reach: [batch, seqlen, heads], or [total, heads] (one "sequence") varlen.
// K, V and their gradients have the keys' rows and heads; Q, O, dO and dQ the queries'.
Extent extent_of(const kernels::Problem& s, flashsci_tensor_t tensor) {
    if (tensor == FLASHSCI_TENSOR_K || tensor == FLASHSCI_TENSOR_V || tensor == FLASHSCI_TENSOR_DK ||
        tensor == FLASHSCI_TENSOR_DV)
        return s.varlen ? Extent{1, s.total_k, s.heads_kv} : Extent{s.batch, s.seqlen_k, s.heads_kv};
    return s.varlen ? Extent{1, s.total_q, s.heads_q} : Extent{s.batch, s.seqlen_q, s.heads_q};
}

// Floats of the LSE: [batch, heads_q, seqlen_q], or [heads_q, total_q] varlen.
int64_t lse_elements(const kernels::Problem& s) {
    return s.varlen ? s.heads_q * s.total_q : s.batch * s.heads_q * s.seqlen_q;
}

const char* tensor_name(flashsci_tensor_t tensor) {
    static constexpr const char* names[] = {"q", "k", "v", "o", "dout", "dq", "dk", "dv"};
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

kernels::Precision precision_of(flashsci_precision_t precision) {
    switch (precision) {
        case FLASHSCI_PRECISION_TF32: return kernels::Precision::tf32;
        case FLASHSCI_PRECISION_IEEE: return kernels::Precision::ieee;
        case FLASHSCI_PRECISION_DEFAULT: break;
    }
    return kernels::Precision::fp32_level;
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
    p->precision = precision_of(plan->precision);
    return FLASHSCI_STATUS_SUCCESS;
}

// The entry points of one operation: the dense one and the variable-length one.
struct EntryPoints {
    const char *dense, *varlen;
};
constexpr EntryPoints kForward{"flashsci_forward", "flashsci_forward_varlen"};
constexpr EntryPoints kBackward{"flashsci_backward", "flashsci_backward_varlen"};

// complete_problem() for a call of `entry`, whose plan must be dense or variable-length as the call is.
flashsci_status_t complete_call_problem(const char* function, const EntryPoints& entry, bool varlen,
                                        const flashsci_plan_st* plan, kernels::Problem* p) {
    flashsci_status_t status =
        complete_problem(function, plan, p, varlen ? "flashsci_plan_set_varlen_shape" : "flashsci_plan_set_shape");
    if (status != FLASHSCI_STATUS_SUCCESS) return status;
    if (p->varlen && !varlen)
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: the plan has a variable-length shape (flashsci_plan_set_varlen_shape); call %s with its "
                    "cu_seqlens, or flashsci_plan_set_shape for a dense batch",
                    function, entry.varlen);
    if (!p->varlen && varlen)
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: the plan has a dense shape (flashsci_plan_set_shape); call %s, or "
                    "flashsci_plan_set_varlen_shape for a variable-length batch",
                    function, entry.dense);
    return FLASHSCI_STATUS_SUCCESS;
}

struct ByteRange {
    uintptr_t begin, end;  // [begin, end); empty (never overlapping) for an absent pointer
    bool overlaps(const ByteRange& other) const { return begin < other.end && other.begin < end; }
};

ByteRange byte_range(const void* base, const Extent& e, const kernels::Strides& s, int64_t head_dim,
                     int64_t element_bytes) {
    int64_t last = 0;
    max_offset(e, s, head_dim, &last);  // cannot overflow: checked when shape and strides were set
    auto begin = reinterpret_cast<uintptr_t>(base);
    return {begin, begin + uintptr_t(last + 1) * uintptr_t(element_bytes)};
}

ByteRange flat_range(const void* base, int64_t count, int64_t element_bytes) {
    auto begin = reinterpret_cast<uintptr_t>(base);
    return {begin, begin + uintptr_t(base == nullptr ? 0 : count) * uintptr_t(element_bytes)};
}

// The bytes one of p's tensors reaches from `base` under `strides`.
ByteRange tensor_range(const kernels::Problem& p, flashsci_tensor_t tensor, const void* base,
                       const kernels::Strides& strides) {
    return byte_range(base, extent_of(p, tensor), strides, p.head_dim, kernels::element_bytes(p.element));
}

// The offsets of a varlen problem; nothing for a dense one.
ByteRange offsets_range(const kernels::Problem& p, const int32_t* cu_seqlens) {
    return flat_range(cu_seqlens, p.varlen ? p.batch + 1 : 0, kOffsetBytes);
}

struct NamedRange {
    const char* name;
    ByteRange range;
};

// Each output must overlap no input and no other output: what a call writes must not change what it reads.
template <size_t Outputs, size_t Inputs>
flashsci_status_t check_outputs_apart(const char* function, const NamedRange (&outputs)[Outputs],
                                      const NamedRange (&inputs)[Inputs]) {
    for (size_t o = 0; o < Outputs; ++o) {
        for (size_t earlier = 0; earlier < o; ++earlier)
            if (outputs[o].range.overlaps(outputs[earlier].range))
                return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s overlaps %s; each output needs its own memory",
                            function, outputs[o].name, outputs[earlier].name);
        for (const NamedRange& input : inputs)
            if (outputs[o].range.overlaps(input.range))
                return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s overlaps %s; the output needs its own memory",
                            function, outputs[o].name, input.name);
    }
    return FLASHSCI_STATUS_SUCCESS;
}

// An enumerator argument, as passed (`value`), must be one of `allowed`; `expected` names them with their values.
flashsci_status_t check_one_of(const char* function, const char* name, int value, std::initializer_list<int> allowed,
                               const char* expected) {
    if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return FLASHSCI_STATUS_SUCCESS;
    return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s (%d) must be %s", function, name, value, expected);
}

struct TensorPointer {
    const char* name;
    const void* pointer;
    int64_t alignment;  // bytes: the element's size
    bool may_be_null;
};

// Each pointer not NULL (unless it may be) and aligned to its element.
flashsci_status_t check_pointers(const char* function, const TensorPointer* pointers, size_t count) {
    for (size_t i = 0; i < count; ++i) {
        const TensorPointer& t = pointers[i];
        if (t.pointer == nullptr && t.may_be_null) continue;
        if (t.pointer == nullptr)
            return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s must not be NULL", function, t.name);
        if (reinterpret_cast<uintptr_t>(t.pointer) % uintptr_t(t.alignment) != 0)
            return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: %s (%p) must be aligned to its %lld-byte element type",
                        function, t.name, t.pointer, static_cast<long long>(t.alignment));
    }
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t check_cpu_stream(const char* function, const flashsci_plan_st& plan, flashsci_stream_t stream) {
    if (plan.backend == FLASHSCI_BACKEND_CPU && stream != nullptr)
        return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: stream (%p) must be NULL on the CPU backend", function,
                    static_cast<void*>(stream));
    return FLASHSCI_STATUS_SUCCESS;
}

// The caller's workspace against what the selected kernel needs; `size_function` tells that size.
flashsci_status_t check_workspace(const char* function, const flashsci::KernelSelection& selection, void* workspace,
                                  size_t workspace_bytes, const char* size_function) {
    if (selection.workspace_bytes > 0 && (workspace == nullptr || workspace_bytes < selection.workspace_bytes))
        return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: workspace (%p, %zu bytes) must hold at least %zu bytes (%s)",
                    function, workspace, workspace_bytes, selection.workspace_bytes, size_function);
    return FLASHSCI_STATUS_SUCCESS;
}

// Host offsets of a varlen call on the CPU, all read before anything is written: name[0] == 0, then for each
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

// Where a call's memory must be. CUDA: every pointer on the plan's device, as far as the driver can tell
// (`pointers` lists them, NULL ones skipped). CPU: a varlen problem's offsets, all read here before anything is
// written, since the CPU backend reads them where it runs.
flashsci_status_t check_placement(const char* function, const flashsci_plan_st& plan, const kernels::Problem& p,
                                  const flashsci::NamedPointer* pointers, int count) {
    if (plan.backend == FLASHSCI_BACKEND_CUDA)
        return flashsci::check_device_pointers(function, pointers, count, plan.device);
    if (!p.varlen) return FLASHSCI_STATUS_SUCCESS;
    flashsci_status_t status = check_host_offsets(function, "cu_seqlens_q", p.cu_seqlens_q, p.batch, "total_q",
                                                  p.total_q, "max_seqlen_q", p.seqlen_q);
    if (status != FLASHSCI_STATUS_SUCCESS) return status;
    return check_host_offsets(function, "cu_seqlens_k", p.cu_seqlens_k, p.batch, "total_k", p.total_k,
                              "max_seqlen_k", p.seqlen_k);
}

// dO and dQ laid out as the queries, dK and dV as the keys: the new shape's default (contiguous) strides.
void set_gradient_strides_like_inputs(flashsci_plan_st& plan) {
    kernels::Gradients& g = plan.gradients;
    g.dout_strides = g.dq_strides = plan.shape.q_strides;
    g.dk_strides = g.dv_strides = plan.shape.k_strides;
}

// The forward's and the backward's common tail: the outputs apart from the inputs, the stream, the kernel and
// its workspace (`size_function` tells its size), where the memory is (`tensors` and the workspace), then the
// run. `gradients` is NULL for a forward.
template <size_t Outputs, size_t Inputs, size_t Tensors>
flashsci_status_t check_and_run(const char* fn, flashsci_plan_t plan, const kernels::Problem& p,
                                const kernels::Gradients* gradients, const NamedRange (&outputs)[Outputs],
                                const NamedRange (&inputs)[Inputs], const flashsci::NamedPointer (&tensors)[Tensors],
                                const char* size_function, void* workspace, size_t workspace_bytes,
                                flashsci_stream_t stream) {
    flashsci_status_t status;
    if ((status = check_outputs_apart(fn, outputs, inputs)) != FLASHSCI_STATUS_SUCCESS ||
        (status = check_cpu_stream(fn, *plan, stream)) != FLASHSCI_STATUS_SUCCESS)
        return status;
    flashsci::KernelSelection selection;
    if ((status = flashsci::select_kernel(fn, *plan, p, &selection, gradients)) != FLASHSCI_STATUS_SUCCESS ||
        (status = check_workspace(fn, selection, workspace, workspace_bytes, size_function)) !=
            FLASHSCI_STATUS_SUCCESS)
        return status;
    flashsci::NamedPointer placed[Tensors + 1];
    std::copy(std::begin(tensors), std::end(tensors), placed);
    placed[Tensors] = {"workspace", selection.workspace_bytes > 0 ? workspace : nullptr};
    if ((status = check_placement(fn, *plan, p, placed, int(std::size(placed)))) != FLASHSCI_STATUS_SUCCESS)
        return status;
    return flashsci::run_kernel(fn, selection, *plan, p, workspace, stream, gradients);
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
    flashsci_status_t status = complete_call_problem(fn, kForward, varlen, plan, &p);
    if (status != FLASHSCI_STATUS_SUCCESS) return status;
    const int64_t bytes = kernels::element_bytes(p.element);
    const TensorPointer pointers[] = {{"q", a.q, bytes, false},
                                      {"k", a.k, bytes, false},
                                      {"v", a.v, bytes, false},
                                      {"o", a.o, bytes, false},
                                      {"lse", a.lse, kLseBytes, true},
                                      {"cu_seqlens_q", a.cu_seqlens_q, kOffsetBytes, false},  // the last two: varlen
                                      {"cu_seqlens_k", a.cu_seqlens_k, kOffsetBytes, false}};
    if ((status = check_pointers(fn, pointers, std::size(pointers) - (varlen ? 0 : 2))) != FLASHSCI_STATUS_SUCCESS)
        return status;
    p.q = a.q, p.k = a.k, p.v = a.v, p.o = a.o, p.lse = a.lse;
    p.cu_seqlens_q = a.cu_seqlens_q, p.cu_seqlens_k = a.cu_seqlens_k;
    const NamedRange outputs[] = {{"o", tensor_range(p, FLASHSCI_TENSOR_O, p.o, p.o_strides)},
                                  {"lse", flat_range(p.lse, lse_elements(p), kLseBytes)}};
    const NamedRange inputs[] = {{"q", tensor_range(p, FLASHSCI_TENSOR_Q, p.q, p.q_strides)},
                                 {"k", tensor_range(p, FLASHSCI_TENSOR_K, p.k, p.k_strides)},
                                 {"v", tensor_range(p, FLASHSCI_TENSOR_V, p.v, p.v_strides)},
                                 {"cu_seqlens_q", offsets_range(p, p.cu_seqlens_q)},
                                 {"cu_seqlens_k", offsets_range(p, p.cu_seqlens_k)}};
    const flashsci::NamedPointer tensors[] = {{"q", a.q},
                                              {"k", a.k},
                                              {"v", a.v},
                                              {"o", a.o},
                                              {"lse", a.lse},
                                              {"cu_seqlens_q", a.cu_seqlens_q},
                                              {"cu_seqlens_k", a.cu_seqlens_k}};
    return check_and_run(fn, plan, p, nullptr, outputs, inputs, tensors, "flashsci_plan_get_workspace_size",
                         workspace, workspace_bytes, stream);
}

// The pointers of one backward: the inputs q, k, v, o, dout, lse, the gradients dq, dk, dv, and a varlen
// backward's offsets.
struct BackwardArgs {
    const void *q, *k, *v, *o, *dout;
    const float* lse;
    void *dq, *dk, *dv;
    const int32_t *cu_seqlens_q, *cu_seqlens_k;
};

// flashsci_backward and flashsci_backward_varlen: the forward's checks for the backward's tensors, then the kernel.
flashsci_status_t backward(const char* fn, bool varlen, flashsci_plan_t plan, const BackwardArgs& a,
                           void* workspace, size_t workspace_bytes, flashsci_stream_t stream) {
    kernels::Problem p;
    flashsci_status_t status = complete_call_problem(fn, kBackward, varlen, plan, &p);
    if (status != FLASHSCI_STATUS_SUCCESS) return status;
    const int64_t bytes = kernels::element_bytes(p.element);
    const TensorPointer pointers[] = {{"q", a.q, bytes, false},
                                      {"k", a.k, bytes, false},
                                      {"v", a.v, bytes, false},
                                      {"o", a.o, bytes, false},
                                      {"dout", a.dout, bytes, false},
                                      {"lse", a.lse, kLseBytes, false},
                                      {"dq", a.dq, bytes, false},
                                      {"dk", a.dk, bytes, false},
                                      {"dv", a.dv, bytes, false},
                                      {"cu_seqlens_q", a.cu_seqlens_q, kOffsetBytes, false},  // the last two: varlen
                                      {"cu_seqlens_k", a.cu_seqlens_k, kOffsetBytes, false}};
    if ((status = check_pointers(fn, pointers, std::size(pointers) - (varlen ? 0 : 2))) != FLASHSCI_STATUS_SUCCESS)
        return status;
    // The forward's outputs are the backward's inputs: the kernels read o and lse and never write them.
    p.q = a.q, p.k = a.k, p.v = a.v, p.o = const_cast<void*>(a.o), p.lse = const_cast<float*>(a.lse);
    p.cu_seqlens_q = a.cu_seqlens_q, p.cu_seqlens_k = a.cu_seqlens_k;
    kernels::Gradients g = plan->gradients;
    g.dout = a.dout, g.dq = a.dq, g.dk = a.dk, g.dv = a.dv;
    const NamedRange outputs[] = {{"dq", tensor_range(p, FLASHSCI_TENSOR_DQ, g.dq, g.dq_strides)},
                                  {"dk", tensor_range(p, FLASHSCI_TENSOR_DK, g.dk, g.dk_strides)},
                                  {"dv", tensor_range(p, FLASHSCI_TENSOR_DV, g.dv, g.dv_strides)}};
    const NamedRange inputs[] = {{"q", tensor_range(p, FLASHSCI_TENSOR_Q, p.q, p.q_strides)},
                                 {"k", tensor_range(p, FLASHSCI_TENSOR_K, p.k, p.k_strides)},
                                 {"v", tensor_range(p, FLASHSCI_TENSOR_V, p.v, p.v_strides)},
                                 {"o", tensor_range(p, FLASHSCI_TENSOR_O, p.o, p.o_strides)},
                                 {"dout", tensor_range(p, FLASHSCI_TENSOR_DO, g.dout, g.dout_strides)},
                                 {"lse", flat_range(p.lse, lse_elements(p), kLseBytes)},
                                 {"cu_seqlens_q", offsets_range(p, p.cu_seqlens_q)},
                                 {"cu_seqlens_k", offsets_range(p, p.cu_seqlens_k)}};
    const flashsci::NamedPointer tensors[] = {{"q", a.q},
                                              {"k", a.k},
                                              {"v", a.v},
                                              {"o", a.o},
                                              {"dout", a.dout},
                                              {"lse", a.lse},
                                              {"dq", a.dq},
                                              {"dk", a.dk},
                                              {"dv", a.dv},
                                              {"cu_seqlens_q", a.cu_seqlens_q},
                                              {"cu_seqlens_k", a.cu_seqlens_k}};
    return check_and_run(fn, plan, p, &g, outputs, inputs, tensors, "flashsci_plan_get_backward_workspace_size",
                         workspace, workspace_bytes, stream);
}

// flashsci_plan_get_workspace_size and flashsci_plan_get_backward_workspace_size: the selected kernel's need.
flashsci_status_t workspace_size(const char* fn, flashsci_plan_t plan, bool backward, size_t* bytes) {
    kernels::Problem p;
    flashsci_status_t status = complete_problem(fn, plan, &p);
    if (status != FLASHSCI_STATUS_SUCCESS) return status;
    if (bytes == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: bytes must not be NULL", fn);
    flashsci::KernelSelection selection;
    status = flashsci::select_kernel(fn, *plan, p, &selection, backward ? &plan->gradients : nullptr);
    if (status != FLASHSCI_STATUS_SUCCESS) return status;
    *bytes = selection.workspace_bytes;
    return FLASHSCI_STATUS_SUCCESS;
}

}  // namespace

extern "C" {

flashsci_status_t flashsci_plan_create(flashsci_plan_t* plan, flashsci_backend_t requested) {
    static constexpr const char* fn = "flashsci_plan_create";
    return guarded(fn, [&] {
        if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
        const int value = flashsci::passed_value(requested);
        const flashsci_status_t status = check_one_of(
            fn, "backend", value, {FLASHSCI_BACKEND_AUTO, FLASHSCI_BACKEND_CUDA, FLASHSCI_BACKEND_CPU},
            "FLASHSCI_BACKEND_AUTO (0), FLASHSCI_BACKEND_CUDA (1) or FLASHSCI_BACKEND_CPU (2)");
        if (status != FLASHSCI_STATUS_SUCCESS) return status;
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
    set_gradient_strides_like_inputs(*plan);
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
    set_gradient_strides_like_inputs(*plan);
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_set_dtype(flashsci_plan_t plan, flashsci_dtype_t dtype) {
    static constexpr const char* fn = "flashsci_plan_set_dtype";
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
    const int value = flashsci::passed_value(dtype);
    const flashsci_status_t status =
        check_one_of(fn, "dtype", value, {FLASHSCI_DTYPE_FLOAT16, FLASHSCI_DTYPE_BFLOAT16, FLASHSCI_DTYPE_FLOAT32},
                     "FLASHSCI_DTYPE_FLOAT16 (1), FLASHSCI_DTYPE_BFLOAT16 (2) or FLASHSCI_DTYPE_FLOAT32 (3)");
    if (status != FLASHSCI_STATUS_SUCCESS) return status;
    plan->dtype = static_cast<flashsci_dtype_t>(value);
    plan->has_dtype = true;
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_set_mask(flashsci_plan_t plan, flashsci_mask_t mask) {
    static constexpr const char* fn = "flashsci_plan_set_mask";
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
    const int value = flashsci::passed_value(mask);
    const flashsci_status_t status =
        check_one_of(fn, "mask", value, {FLASHSCI_MASK_NONE, FLASHSCI_MASK_CAUSAL, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT},
                     "FLASHSCI_MASK_NONE (0), FLASHSCI_MASK_CAUSAL (1) or FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT (2)");
    if (status != FLASHSCI_STATUS_SUCCESS) return status;
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
    if (!is_valid_tensor(value))
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: tensor (%d) must be FLASHSCI_TENSOR_Q (0), _K (1), _V (2), _O (3), _DO (4), _DQ (5), "
                    "_DK (6) or _DV (7)",
                    fn, value);
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
    if (is_output(tensor) && strides_overlap(extent, candidate, plan->shape.head_dim))
        return fail(FLASHSCI_STATUS_INVALID_VALUE,
                    "%s: the strides of %s (%lld, %lld, %lld) make output elements overlap; each (batch, row, head, "
                    "feature) needs its own element",
                    fn, tensor_name(tensor), static_cast<long long>(batch_stride), static_cast<long long>(seq_stride),
                    static_cast<long long>(head_stride));
    strides_of(*plan, tensor) = candidate;
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_set_precision(flashsci_plan_t plan, flashsci_precision_t precision) {
    static constexpr const char* fn = "flashsci_plan_set_precision";
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
    const int value = flashsci::passed_value(precision);
    const flashsci_status_t status = check_one_of(
        fn, "precision", value, {FLASHSCI_PRECISION_DEFAULT, FLASHSCI_PRECISION_TF32, FLASHSCI_PRECISION_IEEE},
        "FLASHSCI_PRECISION_DEFAULT (0), FLASHSCI_PRECISION_TF32 (1) or FLASHSCI_PRECISION_IEEE (2)");
    if (status != FLASHSCI_STATUS_SUCCESS) return status;
    plan->precision = static_cast<flashsci_precision_t>(value);
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_set_deterministic(flashsci_plan_t plan, int deterministic) {
    static constexpr const char* fn = "flashsci_plan_set_deterministic";
    if (plan == nullptr) return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: plan must not be NULL", fn);
    if (deterministic != 0 && deterministic != 1)
        return fail(FLASHSCI_STATUS_INVALID_VALUE, "%s: deterministic (%d) must be 0 or 1", fn, deterministic);
    plan->gradients.deterministic = deterministic == 1;
    return FLASHSCI_STATUS_SUCCESS;
}

flashsci_status_t flashsci_plan_get_workspace_size(flashsci_plan_t plan, size_t* bytes) {
    static constexpr const char* fn = "flashsci_plan_get_workspace_size";
    return guarded(fn, [&] { return workspace_size(fn, plan, false, bytes); });
}

flashsci_status_t flashsci_plan_get_backward_workspace_size(flashsci_plan_t plan, size_t* bytes) {
    static constexpr const char* fn = "flashsci_plan_get_backward_workspace_size";
    return guarded(fn, [&] { return workspace_size(fn, plan, true, bytes); });
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

flashsci_status_t flashsci_backward(flashsci_plan_t plan, const void* q, const void* k, const void* v, const void* o,
                                    const void* dout, const float* lse, void* dq, void* dk, void* dv, void* workspace,
                                    size_t workspace_bytes, flashsci_stream_t stream) {
    static constexpr const char* fn = "flashsci_backward";
    return guarded(fn, [&] {
        return backward(fn, false, plan, {q, k, v, o, dout, lse, dq, dk, dv, nullptr, nullptr}, workspace,
                        workspace_bytes, stream);
    });
}

flashsci_status_t flashsci_backward_varlen(flashsci_plan_t plan, const void* q, const void* k, const void* v,
                                           const void* o, const void* dout, const float* lse, void* dq, void* dk,
                                           void* dv, const int32_t* cu_seqlens_q, const int32_t* cu_seqlens_k,
                                           void* workspace, size_t workspace_bytes, flashsci_stream_t stream) {
    static constexpr const char* fn = "flashsci_backward_varlen";
    return guarded(fn, [&] {
        return backward(fn, true, plan, {q, k, v, o, dout, lse, dq, dk, dv, cu_seqlens_q, cu_seqlens_k}, workspace,
                        workspace_bytes, stream);
    });
}

}  // extern "C"
