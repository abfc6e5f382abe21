#include "dispatch.h"

#include <algorithm>

#include "cpu/cpu_attention.h"
#include "cpu/cpu_backward.h"
#include "cuda_device.h"
#include "error.h"

#ifdef FLASHSCI_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "general/general.h"
#ifdef FLASHSCI_HAVE_DECODE
#include "decode/decode.h"
#endif
#ifdef FLASHSCI_HAVE_SM90
#include "sm90/sm90.h"
#endif
#ifdef FLASHSCI_HAVE_SM80
#include "sm80/sm80.h"
#endif
#endif

namespace flashsci {
namespace {

constexpr const char* kGeneralName = "cuda_general";
constexpr const char* kGeneralBackwardName = "cuda_general_backward";

#ifdef FLASHSCI_HAVE_CUDA
// The decoding kernel exists where some built architecture has sm_80's instructions (CMakeLists.txt).
#ifdef FLASHSCI_HAVE_DECODE
bool decode_runs(const flashsci_plan_st& plan, const kernels::Problem& p) {
    return kernels::decode::supports(p, plan.cc_major);
}
bool decode_preferred(const flashsci_plan_st& plan, const kernels::Problem& p) {
    return kernels::decode::preferred(p, plan.num_sms);
}
#else
bool decode_runs(const flashsci_plan_st&, const kernels::Problem&) { return false; }
bool decode_preferred(const flashsci_plan_st&, const kernels::Problem&) { return false; }
#endif

// The head dims the Hopper path of this build runs, for messages.
const char* sm90_head_dims() {
#ifdef FLASHSCI_HAVE_SM90
    return kernels::sm90::head_dims_text();
#else
    return "none in this build";
#endif
}

bool sm90_runs(const flashsci_plan_st& plan, const kernels::Problem& p) {
#ifdef FLASHSCI_HAVE_SM90
    return kernels::sm90::supports(p, plan.cc_major, plan.cc_minor);
#else
    (void)plan, (void)p;
    return false;
#endif
}

// The sm_80 forward exists where some built architecture has sm_80's instructions (CMakeLists.txt).
bool sm80_runs(const flashsci_plan_st& plan, const kernels::Problem& p) {
#ifdef FLASHSCI_HAVE_SM80
    return kernels::sm80::supports(p, plan.cc_major);
#else
    (void)plan, (void)p;
    return false;
#endif
}

// The sm_80 backward where it runs (fp16/bf16, aligned, compute capability 8.0+, Hopper included), else the general
// one; FLASHSCI_KERNEL=sm80 or general forces either, other values leave the choice as is.
flashsci_status_t select_backward(const char* function, const flashsci_plan_st& plan, const kernels::Problem& p,
                                  const kernels::Gradients& g, KernelSelection* selection) {
#ifdef FLASHSCI_HAVE_SM80
    const bool sm80 = plan.forced != ForcedKernel::general && kernels::sm80::supports_backward(p, g, plan.cc_major);
    if (plan.forced == ForcedKernel::sm80 && !sm80)
        return fail(FLASHSCI_STATUS_NOT_SUPPORTED,
                    "%s: FLASHSCI_KERNEL=sm80 forces the sm_80 backward, which cannot run this problem (it needs %s)",
                    function, kernels::sm80::backward_requirements());
    // The workspace fits the general backward too: a plan's size is queried before its pointers are known, and a
    // call whose pointers turn out misaligned runs the general one with that workspace.
    if (sm80) {
        *selection = {KernelKind::sm80_backward, kernels::sm80::backward_kernel_name(p),
                      std::max(kernels::sm80::backward_workspace_bytes(p, g, plan.num_sms),
                               kernels::general::backward_workspace_bytes(p, g, plan.num_sms))};
        return FLASHSCI_STATUS_SUCCESS;
    }
#else
    if (plan.forced == ForcedKernel::sm80)
        return fail(FLASHSCI_STATUS_NOT_SUPPORTED,
                    "%s: FLASHSCI_KERNEL=sm80 forces the sm_80 backward, which this build lacks (it needs an "
                    "architecture of 80 or later in FLASHSCI_CUDA_ARCHITECTURES and FLASHSCI_SM80_HEAD_DIMS)",
                    function);
#endif
    *selection = {KernelKind::cuda_general_backward, kGeneralBackwardName,
                  kernels::general::backward_workspace_bytes(p, g, plan.num_sms)};
    return FLASHSCI_STATUS_SUCCESS;
}

#endif

}  // namespace

flashsci_status_t select_kernel(const char* function, const flashsci_plan_st& plan, const kernels::Problem& p,
                                KernelSelection* selection, const kernels::Gradients* backward) {
    if (plan.backend == FLASHSCI_BACKEND_CPU) {
        // The CPU path: FLASHSCI_CPU_ISA, or the fastest this CPU has (cpu/cpu_isa.h).
        cpu::Isa isa;
        const char* unusable = nullptr;
        if (!cpu::chosen_isa(&isa, &unusable))
            return fail(FLASHSCI_STATUS_NOT_SUPPORTED,
                        "%s: FLASHSCI_CPU_ISA=%s names no CPU path this machine can run (reference, portable, "
                        "avx2 with FMA and F16C, avx512 with AVX-512F; this CPU's fastest is %s)",
                        function, unusable, cpu::kernel_name(cpu::best_isa()));
        *selection = backward != nullptr ? KernelSelection{KernelKind::cpu_backward, cpu::backward_kernel_name(isa), 0}
                                         : KernelSelection{KernelKind::cpu, cpu::kernel_name(isa), 0};
        return FLASHSCI_STATUS_SUCCESS;
    }
#ifdef FLASHSCI_HAVE_CUDA
    if (backward != nullptr) return select_backward(function, plan, p, *backward, selection);
    const bool fast = plan.forced != ForcedKernel::general && plan.forced != ForcedKernel::sm80 && sm90_runs(plan, p);
    if (plan.forced == ForcedKernel::sm90 && !fast)
        return fail(FLASHSCI_STATUS_NOT_SUPPORTED,
                    "%s: FLASHSCI_KERNEL=sm90 forces the Hopper path, which cannot run this problem (it needs "
                    "compute capability 9.0, fp16/bf16, head_dim %s, 16-byte aligned pointers and strides)",
                    function, sm90_head_dims());
    // Few query rows per kv head (decoding): the split-key kernel, unless the Hopper path runs it and has work
    // enough to fill the GPU without splitting.
    const bool decode = plan.forced != ForcedKernel::general && plan.forced != ForcedKernel::sm90 &&
                        plan.forced != ForcedKernel::sm80 &&
                        decode_runs(plan, p) &&
                        (plan.forced == ForcedKernel::decode || !fast || decode_preferred(plan, p));
    if (plan.forced == ForcedKernel::decode && !decode)
        return fail(FLASHSCI_STATUS_NOT_SUPPORTED,
                    "%s: FLASHSCI_KERNEL=decode forces the decoding kernel, which cannot run this problem (it needs "
                    "compute capability 8.0+, fp16/bf16, (heads_q / heads_kv) * seqlen_q <= 16, and k and v "
                    "16-byte aligned with strides in multiples of 8 elements, in a build for sm_80 or later)",
                    function);
#ifdef FLASHSCI_HAVE_DECODE
    if (decode) {
        *selection = {KernelKind::decode, kernels::decode::kernel_name(p),
                      kernels::decode::workspace_bytes(p, plan.num_sms)};
        return FLASHSCI_STATUS_SUCCESS;
    }
#endif
#ifdef FLASHSCI_HAVE_SM90
    if (fast) {
        *selection = {KernelKind::sm90, kernels::sm90::kernel_name(p), kernels::sm90::workspace_bytes(p)};
        return FLASHSCI_STATUS_SUCCESS;
    }
#endif
    // Every other problem the sm_80 forward runs (any GPU of compute capability 8.0+); the general kernel the rest.
    const bool sm80 = (plan.forced == ForcedKernel::none || plan.forced == ForcedKernel::sm80) && sm80_runs(plan, p);
#ifdef FLASHSCI_HAVE_SM80
    if (plan.forced == ForcedKernel::sm80 && !sm80)
        return fail(FLASHSCI_STATUS_NOT_SUPPORTED,
                    "%s: FLASHSCI_KERNEL=sm80 forces the sm_80 forward, which cannot run this problem (it needs %s)",
                    function, kernels::sm80::requirements());
    if (sm80) {
        *selection = {KernelKind::sm80, kernels::sm80::kernel_name(p), kernels::sm80::workspace_bytes(p)};
        return FLASHSCI_STATUS_SUCCESS;
    }
#else
    if (plan.forced == ForcedKernel::sm80)
        return fail(FLASHSCI_STATUS_NOT_SUPPORTED,
                    "%s: FLASHSCI_KERNEL=sm80 forces the sm_80 forward, which this build lacks (it needs an "
                    "architecture of 80 or later in FLASHSCI_CUDA_ARCHITECTURES and FLASHSCI_SM80_HEAD_DIMS)",
                    function);
    (void)sm80;
#endif
    *selection = {KernelKind::cuda_general, kGeneralName, 0};
    return FLASHSCI_STATUS_SUCCESS;
#else
    (void)p, (void)backward;
    return fail(FLASHSCI_STATUS_NOT_SUPPORTED, "%s: this build of libflashsci has no CUDA backend", function);
#endif
}

flashsci_status_t run_kernel(const char* function, const KernelSelection& selection, const flashsci_plan_st& plan,
                             const kernels::Problem& p, void* workspace, flashsci_stream_t stream,
                             const kernels::Gradients* backward) {
    if (selection.kind == KernelKind::cpu) {
        cpu::forward(p, cpu::isa_of_kernel_name(selection.name));
        return FLASHSCI_STATUS_SUCCESS;
    }
    if (selection.kind == KernelKind::cpu_backward) {
        cpu::backward(p, *backward, cpu::isa_of_kernel_name(selection.name));
        return FLASHSCI_STATUS_SUCCESS;
    }
#ifdef FLASHSCI_HAVE_CUDA
    const CurrentDevice scope(plan.device);
    if (scope.error() != cudaSuccess)
        return fail(FLASHSCI_STATUS_DEVICE_ERROR, "%s: cannot make the plan's device %d current: %s", function,
                    plan.device, cudaGetErrorString(scope.error()));
    auto cuda_stream = reinterpret_cast<cudaStream_t>(stream);
    cudaError_t err = cudaSuccess;
    switch (selection.kind) {
        case KernelKind::cuda_general: err = kernels::general::launch(p, cuda_stream); break;
        case KernelKind::cuda_general_backward:
            err = kernels::general::launch_backward(p, *backward, workspace, plan.num_sms, cuda_stream);
            break;
#ifdef FLASHSCI_HAVE_SM80
        case KernelKind::sm80_backward:
            err = kernels::sm80::launch_backward(p, *backward, workspace, plan.num_sms, cuda_stream);
            break;
#endif
#ifdef FLASHSCI_HAVE_DECODE
        case KernelKind::decode: err = kernels::decode::launch(p, workspace, plan.num_sms, cuda_stream); break;
#endif
#ifdef FLASHSCI_HAVE_SM90
        case KernelKind::sm90:
            // A NaN or an infinity in a masked key's V reaches rows that never see it on the tensor cores: the
            // general kernel, exact there, redoes the (sequence, kv head) pairs the fast path flags.
            err = kernels::sm90::launch(p, workspace, plan.num_sms, cuda_stream);
            if (const int* redo = kernels::sm90::redo_flags(p, workspace); err == cudaSuccess && redo)
                err = kernels::general::launch_redo(p, redo, plan.num_sms, cuda_stream);
            break;
#endif
#ifdef FLASHSCI_HAVE_SM80
        case KernelKind::sm80:
            // As on the Hopper path: rows a masked key's non-finite V may have reached are redone exactly.
            err = kernels::sm80::launch(p, workspace, cuda_stream);
            if (const int* redo = kernels::sm80::redo_flags(p, workspace); err == cudaSuccess && redo)
                err = kernels::general::launch_redo(p, redo, plan.num_sms, cuda_stream);
            break;
#endif
        default:
            return fail(FLASHSCI_STATUS_INTERNAL_ERROR, "%s: selected kernel %s is not in this build", function,
                        selection.name);
    }
    (void)workspace;
    if (err != cudaSuccess)
        return fail(FLASHSCI_STATUS_DEVICE_ERROR, "%s: launching %s failed: %s", function, selection.name,
                    cudaGetErrorString(err));
    return FLASHSCI_STATUS_SUCCESS;
#else
    (void)plan, (void)workspace, (void)stream, (void)backward;
    return fail(FLASHSCI_STATUS_INTERNAL_ERROR, "%s: selected kernel %s is not in this build", function,
                selection.name);
#endif
}

}  // namespace flashsci
