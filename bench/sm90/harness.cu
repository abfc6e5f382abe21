// Standalone check and timing of the sm_90a forward: random inputs, poisoned outputs, a naive
// fp32 reference kernel, then median cudaEvent timings at the bench grid.
//   harness check   : correctness table
//   harness small   : a few small shapes (for compute-sanitizer)
//   harness time    : TFLOP/s at batch·seqlen = 16384, heads = 2048 / head_dim
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "sm90/sm90.h"

using namespace flashsci::kernels;

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        cudaError_t e_ = (x);                                                                      \
        if (e_ != cudaSuccess) {                                                                   \
            std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #x, cudaGetErrorString(e_)); \
            std::exit(1);                                                                          \
        }                                                                                          \
    } while (0)

__device__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ float to_f(__half x) { return __half2float(x); }
template <typename T>
__device__ T from_f(float x);
template <>
__device__ __nv_bfloat16 from_f(float x) { return __float2bfloat16(x); }
template <>
__device__ __half from_f(float x) { return __float2half(x); }

// Normal(0, sigma) samples from a counter hash (Box-Muller), so every call draws fresh data.
template <typename T>
__global__ void fill_normal(T* x, size_t n, uint64_t seed, float sigma) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
        uint64_t z = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        z ^= z >> 31;
        const float u1 = (float((z >> 40) & 0xFFFFFF) + 1.f) / 16777217.f;
        const float u2 = float(z & 0xFFFFFF) / 16777216.f;
        x[i] = from_f<T>(sigma * sqrtf(-2.f * logf(u1)) * cospif(2.f * u2));
    }
}

__global__ void fill_u16(uint16_t* x, size_t n, uint16_t v) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) x[i] = v;
}
__global__ void fill_f32(float* x, size_t n, float v) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) x[i] = v;
}

constexpr int kRefThreads = 128;
constexpr int kRefPad = 16;  // slack after the scores: compute-sanitizer saw a vectorised read run past them

// One block per (row, head, batch): scores in shared memory, fp32 throughout.
template <typename T>
__global__ void reference(Problem p, int64_t diag, float* out, float* lse) {
    extern __shared__ float sc[];
    __shared__ float red[kRefThreads];
    const int i = blockIdx.x, h = blockIdx.y, b = blockIdx.z;
    const int hk = h / (p.heads_q / p.heads_kv);
    const T* q = static_cast<const T*>(p.q) + b * p.q_strides.batch + i * p.q_strides.seq + h * p.q_strides.head;
    for (int j = threadIdx.x; j < p.seqlen_k; j += blockDim.x) {
        const T* k = static_cast<const T*>(p.k) + b * p.k_strides.batch + j * p.k_strides.seq + hk * p.k_strides.head;
        float acc = 0.f;
        for (int d = 0; d < p.head_dim; ++d) acc += to_f(q[d]) * to_f(k[d]);
        const bool visible = p.mask == Mask::none || j <= i + diag;
        sc[j] = visible ? acc * p.scale : -INFINITY;
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int j = threadIdx.x; j < p.seqlen_k; j += blockDim.x) mx = fmaxf(mx, sc[j]);
    red[threadIdx.x] = mx;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s /= 2) {
        if (threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
        __syncthreads();
    }
    mx = red[0];
    __syncthreads();
    float sum = 0.f;
    for (int j = threadIdx.x; j < p.seqlen_k; j += blockDim.x) {
        const float e = mx == -INFINITY ? 0.f : expf(sc[j] - mx);
        sc[j] = e;
        sum += e;
    }
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s /= 2) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    sum = red[0];
    const int64_t row = (int64_t(b) * p.seqlen_q + i) * p.heads_q + h;
    for (int d = threadIdx.x; d < p.head_dim; d += blockDim.x) {
        float acc = 0.f;
        for (int j = 0; j < p.seqlen_k; ++j) {
            const T* v = static_cast<const T*>(p.v) + b * p.v_strides.batch + j * p.v_strides.seq + hk * p.v_strides.head;
            acc += sc[j] * to_f(v[d]);
        }
        out[row * p.head_dim + d] = sum > 0.f ? acc / sum : 0.f;
    }
    if (threadIdx.x == 0) lse[(int64_t(b) * p.heads_q + h) * p.seqlen_q + i] = sum > 0.f ? mx + logf(sum) : -INFINITY;
}

template <typename T>
__global__ void compare(Problem p, const float* ref, double* acc /* [sq err, sq ref, max abs, bad] */) {
    const int64_t rows = p.batch * p.seqlen_q * p.heads_q;
    double e2 = 0, r2 = 0, mx = 0, bad = 0;
    for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; idx < rows * p.head_dim;
         idx += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = idx / p.head_dim, d = idx % p.head_dim;
        const int64_t h = r % p.heads_q, i = (r / p.heads_q) % p.seqlen_q, b = r / (p.heads_q * p.seqlen_q);
        const float o = to_f(static_cast<const T*>(p.o)[b * p.o_strides.batch + i * p.o_strides.seq + h * p.o_strides.head + d]);
        const float x = ref[idx];
        if (!(std::isfinite(o))) {
            bad += 1;
            continue;
        }
        e2 += double(o - x) * (o - x);
        r2 += double(x) * x;
        mx = fmax(mx, fabs(double(o - x)));
    }
    atomicAdd(&acc[0], e2);
    atomicAdd(&acc[1], r2);
    atomicAdd(&acc[3], bad);
    // max via CAS on the bit pattern (non-negative doubles order like their bits)
    unsigned long long* m = reinterpret_cast<unsigned long long*>(&acc[2]);
    unsigned long long old = *m;
    while (__longlong_as_double(old) < mx) {
        const unsigned long long prev = atomicCAS(m, old, __double_as_longlong(mx));
        if (prev == old) break;
        old = prev;
    }
}

struct Case {
    int batch, sq, sk, hq, hkv, hd;
    Mask mask;
    Element el;
    int pad = 0;  // extra elements per (row, head): non-contiguous strides
    float sigma = 1.f;
};

const char* mask_name(Mask m) {
    return m == Mask::none ? "none" : m == Mask::causal_top_left ? "causal_tl" : "causal_br";
}

constexpr size_t kWorkspaceBytes = 256;

struct Buffers {
    void *q, *k, *v, *o;
    float *lse, *ref, *ref_lse;
    double* acc;
    void* workspace;  // sm90::workspace_bytes() is a few bytes at most
    size_t elems;
};

Buffers alloc(size_t elems, size_t rows) {
    Buffers b{};
    b.elems = elems;
    CHECK(cudaMalloc(&b.q, elems * 2));
    CHECK(cudaMalloc(&b.k, elems * 2));
    CHECK(cudaMalloc(&b.v, elems * 2));
    CHECK(cudaMalloc(&b.o, elems * 2));
    CHECK(cudaMalloc(&b.lse, rows * 4));
    CHECK(cudaMalloc(&b.ref, elems * 4));
    CHECK(cudaMalloc(&b.ref_lse, rows * 4));
    CHECK(cudaMalloc(&b.acc, 4 * sizeof(double)));
    CHECK(cudaMalloc(&b.workspace, kWorkspaceBytes));
    return b;
}

Problem make_problem(const Case& c, const Buffers& buf) {
    Problem p{};
    p.q = buf.q, p.k = buf.k, p.v = buf.v, p.o = buf.o, p.lse = buf.lse;
    p.batch = c.batch, p.seqlen_q = c.sq, p.seqlen_k = c.sk, p.heads_q = c.hq, p.heads_kv = c.hkv, p.head_dim = c.hd;
    const int64_t rq = int64_t(c.hq) * (c.hd + c.pad), rk = int64_t(c.hkv) * (c.hd + c.pad);
    p.q_strides = {c.sq * rq, rq, c.hd + c.pad};
    p.o_strides = p.q_strides;
    p.k_strides = {c.sk * rk, rk, c.hd + c.pad};
    p.v_strides = p.k_strides;
    p.scale = 1.f / std::sqrt(float(c.hd));
    p.mask = c.mask;
    p.element = c.el;
    return p;
}

size_t q_elems(const Case& c) { return size_t(c.batch) * c.sq * c.hq * (c.hd + c.pad); }
size_t k_elems(const Case& c) { return size_t(c.batch) * c.sk * c.hkv * (c.hd + c.pad); }

template <typename T>
void fill_inputs(const Case& c, const Buffers& b, uint64_t seed) {
    fill_normal<T><<<1024, 256>>>(static_cast<T*>(b.q), q_elems(c), seed * 3 + 1, c.sigma);
    fill_normal<T><<<1024, 256>>>(static_cast<T*>(b.k), k_elems(c), seed * 3 + 2, c.sigma);
    fill_normal<T><<<1024, 256>>>(static_cast<T*>(b.v), k_elems(c), seed * 3 + 3, 1.f);
    CHECK(cudaGetLastError());
}

int num_sms() {
    int dev = 0, n = 0;
    CHECK(cudaGetDevice(&dev));
    CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev));
    return n;
}

template <typename T>
bool check_case(const Case& c, const Buffers& b, uint64_t seed) {
    const Problem p = make_problem(c, b);
    fill_inputs<T>(c, b, seed);
    const size_t rows = size_t(c.batch) * c.sq * c.hq;
    fill_u16<<<1024, 256>>>(static_cast<uint16_t*>(b.o), q_elems(c), 0x7FFF);  // NaN in both bf16 and fp16
    fill_f32<<<1024, 256>>>(b.lse, rows, NAN);
    if (!sm90::supports(p, 9, 0) || sm90::workspace_bytes(p) > kWorkspaceBytes) {
        std::printf("%-44s UNSUPPORTED\n", "");
        return false;
    }
    CHECK(sm90::launch(p, b.workspace, num_sms(), 0));
    CHECK(cudaGetLastError());
    CHECK(cudaDeviceSynchronize());
    reference<T><<<dim3(c.sq, c.hq, c.batch), kRefThreads, (c.sk + kRefPad) * sizeof(float)>>>(p, causal_diagonal(p), b.ref, b.ref_lse);
    CHECK(cudaGetLastError());
    CHECK(cudaMemset(b.acc, 0, 4 * sizeof(double)));
    compare<T><<<512, 256>>>(p, b.ref, b.acc);
    CHECK(cudaGetLastError());
    double acc[4];
    CHECK(cudaMemcpy(acc, b.acc, sizeof acc, cudaMemcpyDeviceToHost));
    std::vector<float> lse(rows), ref_lse(rows);
    CHECK(cudaMemcpy(lse.data(), b.lse, rows * 4, cudaMemcpyDeviceToHost));
    CHECK(cudaMemcpy(ref_lse.data(), b.ref_lse, rows * 4, cudaMemcpyDeviceToHost));
    double lse_err = 0;
    int lse_bad = 0;
    for (size_t i = 0; i < rows; ++i) {
        if (std::isinf(ref_lse[i])) {
            lse_bad += !(std::isinf(lse[i]) && lse[i] < 0);
        } else if (!std::isfinite(lse[i])) {
            ++lse_bad;
        } else {
            lse_err = std::max(lse_err, double(std::fabs(lse[i] - ref_lse[i])));
        }
    }
    const double rel = acc[1] > 0 ? std::sqrt(acc[0] / acc[1]) : std::sqrt(acc[0]);
    const bool ok = acc[3] == 0 && lse_bad == 0 && rel < 1e-2 && lse_err < 1e-2;
    std::printf("b%d sq%-5d sk%-5d hq%-2d hkv%-2d d%-3d %-9s %-4s pad%d s%.0f  rel %.2e  max %.2e  lse %.2e  bad %g/%d  %s\n",
                c.batch, c.sq, c.sk, c.hq, c.hkv, c.hd, mask_name(c.mask), c.el == Element::bf16 ? "bf16" : "f16", c.pad,
                c.sigma, rel, acc[2], lse_err, acc[3], lse_bad, ok ? "ok" : "FAIL");
    return ok;
}

bool check(const std::vector<Case>& cases) {
    size_t elems = 0, rows = 0;
    for (const Case& c : cases) {
        elems = std::max({elems, q_elems(c), k_elems(c)});
        rows = std::max(rows, size_t(c.batch) * c.sq * c.hq);
    }
    Buffers b = alloc(elems, rows);
    bool ok = true;
    uint64_t seed = 12345;
    for (const Case& c : cases) ok &= c.el == Element::bf16 ? check_case<__nv_bfloat16>(c, b, ++seed) : check_case<__half>(c, b, ++seed);
    return ok;
}

std::vector<Case> check_cases() {
    using M = Mask;
    const Element bf = Element::bf16, h = Element::f16;
    std::vector<Case> v = {
        {2, 1024, 1024, 4, 4, 128, M::none, bf},
        {1, 1, 1, 2, 2, 128, M::none, bf},
        {1, 17, 17, 2, 2, 128, M::none, bf},
        {1, 127, 129, 2, 2, 128, M::none, bf},
        {1, 129, 127, 2, 2, 128, M::none, bf},
        {2, 1000, 1000, 3, 3, 128, M::none, bf},
        {2, 1000, 1000, 3, 3, 128, M::causal_top_left, bf},
        {2, 1000, 1000, 3, 3, 128, M::causal_bottom_right, bf},
        {1, 700, 300, 2, 2, 128, M::causal_bottom_right, bf},
        {1, 300, 700, 2, 2, 128, M::causal_bottom_right, bf},
        {1, 300, 700, 2, 2, 128, M::causal_top_left, bf},
        {1, 700, 300, 2, 2, 128, M::causal_top_left, bf},
        {2, 513, 777, 8, 2, 128, M::none, bf},
        {2, 513, 777, 8, 1, 128, M::causal_top_left, bf},
        {1, 1024, 1024, 4, 4, 128, M::none, bf, 8},
        {1, 1024, 1024, 4, 4, 128, M::none, bf, 0, 4.f},
        {2, 1024, 1024, 4, 4, 128, M::none, h},
        {1, 1000, 1000, 4, 2, 128, M::causal_bottom_right, h},
        {2, 1024, 1024, 4, 4, 64, M::none, bf},
        {1, 1000, 999, 4, 2, 64, M::causal_top_left, bf},
        {1, 333, 1001, 4, 4, 64, M::causal_bottom_right, h},
        {1, 1, 1, 2, 2, 64, M::none, h},
        {2, 1024, 1024, 4, 4, 256, M::none, bf},
        {1, 1000, 999, 4, 2, 256, M::causal_top_left, bf},
        {1, 1001, 333, 4, 4, 256, M::causal_bottom_right, h},
        {1, 77, 1, 2, 2, 256, M::none, h},
        {1, 4096, 4096, 2, 2, 128, M::causal_top_left, bf},
        {1, 1024, 12000, 8, 8, 128, M::causal_bottom_right, bf},  // two L2 sections of the causal order
        {3, 2048, 2048, 16, 16, 64, M::causal_top_left, h},      // many tiles: dynamic scheduling
    };
    return v;
}

std::vector<Case> small_cases() {
    using M = Mask;
    return {{1, 200, 300, 2, 1, 128, M::causal_bottom_right, Element::bf16},
            {1, 130, 70, 2, 2, 64, M::none, Element::f16},
            {1, 150, 170, 2, 2, 256, M::causal_top_left, Element::bf16}};
}

template <typename T>
float time_case(const Case& c, const Buffers& b, int reps) {
    const Problem p = make_problem(c, b);
    fill_inputs<T>(c, b, 777);
    if (!sm90::supports(p, 9, 0) || sm90::workspace_bytes(p) > kWorkspaceBytes) return -1.f;
    const int sms = num_sms();
    for (int i = 0; i < 3; ++i) CHECK(sm90::launch(p, b.workspace, sms, 0));
    CHECK(cudaDeviceSynchronize());
    std::vector<float> ms;
    cudaEvent_t e0, e1;
    CHECK(cudaEventCreate(&e0));
    CHECK(cudaEventCreate(&e1));
    for (int i = 0; i < reps; ++i) {
        CHECK(cudaEventRecord(e0));
        CHECK(sm90::launch(p, b.workspace, sms, 0));
        CHECK(cudaEventRecord(e1));
        CHECK(cudaEventSynchronize(e1));
        float t;
        CHECK(cudaEventElapsedTime(&t, e0, e1));
        ms.push_back(t);
    }
    std::sort(ms.begin(), ms.end());
    return ms[ms.size() / 2];
}

void time_grid(int argc, char** argv) {
    std::vector<int> dims = {64, 128, 256}, seqs = {512, 1024, 2048, 4096, 8192, 16384};
    Element el = Element::bf16;
    int heads = 0, group = 1;  // heads 0: 2048 / head_dim; group: query heads per kv head
    for (int i = 2; i < argc; ++i) {
        if (!std::strcmp(argv[i], "f16")) el = Element::f16;
        if (!std::strncmp(argv[i], "d=", 2)) dims = {std::atoi(argv[i] + 2)};
        if (!std::strncmp(argv[i], "s=", 2)) seqs = {std::atoi(argv[i] + 2)};
        if (!std::strncmp(argv[i], "h=", 2)) heads = std::atoi(argv[i] + 2);
        if (!std::strncmp(argv[i], "g=", 2)) group = std::atoi(argv[i] + 2);
    }
    const size_t elems = size_t(16384) * std::max(2048, heads * 256);
    Buffers b = alloc(elems, size_t(16384) * std::max(32, heads));
    for (int d : dims)
        for (int causal = 0; causal < 2; ++causal)
            for (int s : seqs) {
                const int hq = heads ? heads : 2048 / d;
                const Case c{16384 / s, s, s, hq, hq / group, d, causal ? Mask::causal_top_left : Mask::none, el};
                const float ms = el == Element::bf16 ? time_case<__nv_bfloat16>(c, b, 20) : time_case<__half>(c, b, 20);
                const double flops = 4.0 * c.batch * c.hq * double(s) * s * d / (causal ? 2 : 1);
                std::printf("TIME d=%d causal=%d s=%d %s ms=%.4f tflops=%.1f hq=%d hkv=%d\n", d, causal, s,
                            el == Element::bf16 ? "bf16" : "f16", ms, flops / ms / 1e9, c.hq, c.hkv);
            }
}

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "check";
    if (mode == "time") {
        time_grid(argc, argv);
        return 0;
    }
    const bool ok = check(mode == "small" ? small_cases() : check_cases());
    std::printf("%s\n", ok ? "ALL OK" : "SOME FAILED");
    return ok ? 0 : 1;
}
