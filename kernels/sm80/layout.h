// Host-side checks the sm_80 forward and backward share: 16-byte pointers, strides in whole chunks, the device's
// tile family and the head-dim buckets this build holds.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "problem.h"
#include "sm80/tiles.h"

namespace flashsci::kernels::sm80 {

constexpr int64_t kAlignment = 16;  // bytes: cp.async and the output stores move 16-byte chunks

inline bool aligned(const void* x) { return reinterpret_cast<uintptr_t>(x) % kAlignment == 0; }
// A stride in whole chunks of `elems` elements (free when the dimension has one entry).
inline bool chunk_stride(int64_t stride, int64_t extent, int64_t elems) { return extent <= 1 || stride % elems == 0; }
inline bool chunk_strides(const Strides& s, int64_t seqlen, int64_t heads, int64_t batch,
                          int64_t elems = kChunkElems) {
    return chunk_stride(s.seq, seqlen, elems) && chunk_stride(s.head, heads, elems) && chunk_stride(s.batch, batch, elems);
}

// The family of the current device: the largest whose opt-in shared memory it has.
inline Family device_family() {
    int device = 0, optin = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) != cudaSuccess)
        return Family::small;
    if (size_t(optin) >= family_smem(Family::large)) return Family::large;
    if (size_t(optin) >= family_smem(Family::medium)) return Family::medium;
    return Family::small;
}

// Head-dim buckets this build holds (CMake's FLASHSCI_SM80_HEAD_DIMS defines FLASHSCI_SM80_HD<d>).
template <int HeadDim>
inline constexpr bool kCompiled = false;
#ifdef FLASHSCI_SM80_HD64
template <>
inline constexpr bool kCompiled<64> = true;
#endif
#ifdef FLASHSCI_SM80_HD128
template <>
inline constexpr bool kCompiled<128> = true;
#endif
#ifdef FLASHSCI_SM80_HD256
template <>
inline constexpr bool kCompiled<256> = true;
#endif

}  // namespace flashsci::kernels::sm80
