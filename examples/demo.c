/*
 * demo — one realistic attention forward through libflashsci, checked and timed.
 *
 * It asks for an AUTO plan, reports the backend it got, fills random inputs,
 * times flashsci_forward (CUDA events on a GPU, a monotonic clock on the CPU;
 * median of several runs after warm-up), checks a sample of output rows and
 * their log-sum-exp against a naive fp64 reference, and prints the error, the
 * time and TFLOP/s. It exits non-zero on any failure.
 *
 *   usage: flashsci_demo [--cpu] [--causal] [--dtype fp16|bf16|fp32]
 *
 * GPU problem: batch 2, seqlen 1024, 16 heads, head_dim 128, bf16.
 * CPU problem: batch 1, seqlen 512, 8 heads, head_dim 64, fp32.
 *
 * Built with FLASHSCI_DEMO_CUDA=1 (CMake option FLASHSCI_CUDA) it allocates
 * device memory through the CUDA runtime; without it, it needs no CUDA header.
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#define _POSIX_C_SOURCE 200809L

#include <flashsci.h>

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#if FLASHSCI_DEMO_CUDA
#include <cuda_runtime_api.h>
#endif

enum { WARMUP_RUNS = 3, TIMED_RUNS = 10, SAMPLE_ROWS = 24 };

/* Largest |O - O_ref| allowed, by dtype: output rounding plus fp32 accumulation. */
static const double O_TOL_FP32 = 1e-5;
static const double O_TOL_16BIT = 1e-2;
/* Largest |lse - lse_ref|: lse is fp32 whatever the input type, and about log(seqlen_k). */
static const double LSE_TOL = 1e-3;

#define CHECK(call)                                                                             \
    do {                                                                                        \
        flashsci_status_t status_ = (call);                                                     \
        if (status_ != FLASHSCI_STATUS_SUCCESS) {                                               \
            fprintf(stderr, "demo: %s failed: %s: %s\n", #call, flashsci_status_string(status_), \
                    flashsci_last_error());                                                     \
            return 1;                                                                           \
        }                                                                                       \
    } while (0)

#if FLASHSCI_DEMO_CUDA
#define CUDA_CHECK(call)                                                                          \
    do {                                                                                          \
        cudaError_t err_ = (call);                                                                \
        if (err_ != cudaSuccess) {                                                                \
            fprintf(stderr, "demo: %s failed: %s\n", #call, cudaGetErrorString(err_));            \
            return 1;                                                                             \
        }                                                                                         \
    } while (0)
#endif

/* ---- element conversions (round to nearest even) ------------------------------------- */

static uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static uint16_t float_to_bf16(float f) {
    uint32_t u = float_bits(f);
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static float bf16_to_float(uint16_t h) { return bits_float((uint32_t)h << 16); }

static uint16_t float_to_fp16(float f) {
    const uint32_t u = float_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7fffffffu;
    if (a >= 0x477ff000u) return sign | 0x7c00u;                           /* >= 65520: inf */
    if (a < 0x38800000u) return sign | (uint16_t)lrintf(fabsf(f) * 16777216.0f); /* < 2^-14: subnormal */
    return sign | (uint16_t)(((a + 0xfffu + ((a >> 13) & 1u)) >> 13) - (112u << 10));
}

static float fp16_to_float(uint16_t h) {
    const float sign = (h & 0x8000u) ? -1.0f : 1.0f;
    const int exponent = (h >> 10) & 0x1f;
    const int mantissa = h & 0x3ff;
    if (exponent == 0) return sign * ldexpf((float)mantissa, -24);
    if (exponent == 31) return mantissa ? NAN : sign * INFINITY;
    return sign * ldexpf((float)(1024 + mantissa), exponent - 25);
}

static size_t dtype_bytes(flashsci_dtype_t dtype) { return dtype == FLASHSCI_DTYPE_FLOAT32 ? 4 : 2; }

static const char* dtype_name(flashsci_dtype_t dtype) {
    return dtype == FLASHSCI_DTYPE_FLOAT16 ? "fp16" : dtype == FLASHSCI_DTYPE_BFLOAT16 ? "bf16" : "fp32";
}

/* Stores `value` as element i of `buf` and returns the value actually stored. */
static float store(void* buf, size_t i, flashsci_dtype_t dtype, float value) {
    if (dtype == FLASHSCI_DTYPE_FLOAT32) {
        ((float*)buf)[i] = value;
        return value;
    }
    uint16_t h = dtype == FLASHSCI_DTYPE_BFLOAT16 ? float_to_bf16(value) : float_to_fp16(value);
    ((uint16_t*)buf)[i] = h;
    return dtype == FLASHSCI_DTYPE_BFLOAT16 ? bf16_to_float(h) : fp16_to_float(h);
}

static double load(const void* buf, size_t i, flashsci_dtype_t dtype) {
    if (dtype == FLASHSCI_DTYPE_FLOAT32) return ((const float*)buf)[i];
    uint16_t h = ((const uint16_t*)buf)[i];
    return dtype == FLASHSCI_DTYPE_BFLOAT16 ? bf16_to_float(h) : fp16_to_float(h);
}

/* ---- random inputs ------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double uniform01(void) { /* xorshift64*, in (0, 1) */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return ((double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) + 0.5) / 9007199254740992.0;
}

static float normal(void) { /* Box-Muller: unit Gaussian scores, like trained q/k */
    return (float)(sqrt(-2.0 * log(uniform01())) * cos(6.283185307179586 * uniform01()));
}

/* Fills `host` (count elements of dtype) with N(0,1) values; `exact` gets what was stored. */
static void fill_normal(void* host, float* exact, size_t count, flashsci_dtype_t dtype) {
    for (size_t i = 0; i < count; ++i) exact[i] = store(host, i, dtype, normal());
}

/* ---- the problem --------------------------------------------------------------------- */

typedef struct {
    int64_t batch, seqlen_q, seqlen_k, heads_q, heads_kv, head_dim;
    flashsci_dtype_t dtype;
    flashsci_mask_t mask;
} problem_t;

static size_t q_count(const problem_t* p) { return (size_t)(p->batch * p->seqlen_q * p->heads_q * p->head_dim); }
static size_t kv_count(const problem_t* p) { return (size_t)(p->batch * p->seqlen_k * p->heads_kv * p->head_dim); }

/* Output row (b, i, h) and its lse in fp64, straight from the definition (contiguous BSHD). */
static void reference_row(const problem_t* p, const float* q, const float* k, const float* v, int64_t b,
                          int64_t i, int64_t h, double* out, double* lse) {
    const int64_t d = p->head_dim, kvh = h / (p->heads_q / p->heads_kv);
    const double scale = 1.0 / sqrt((double)d);
    int64_t last = p->seqlen_k - 1;
    if (p->mask == FLASHSCI_MASK_CAUSAL) last = i < last ? i : last;
    if (p->mask == FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT && i + p->seqlen_k - p->seqlen_q < last)
        last = i + p->seqlen_k - p->seqlen_q;
    for (int64_t c = 0; c < d; ++c) out[c] = 0.0;
    *lse = -INFINITY;
    if (last < 0) return;
    double* s = malloc((size_t)(last + 1) * sizeof *s);
    if (!s) return;
    const float* qrow = q + ((b * p->seqlen_q + i) * p->heads_q + h) * d;
    double m = -INFINITY, l = 0.0;
    for (int64_t j = 0; j <= last; ++j) { /* s_j = scale · q·k_j */
        const float* krow = k + ((b * p->seqlen_k + j) * p->heads_kv + kvh) * d;
        double dot = 0.0;
        for (int64_t c = 0; c < d; ++c) dot += (double)qrow[c] * krow[c];
        s[j] = scale * dot;
        if (s[j] > m) m = s[j];
    }
    for (int64_t j = 0; j <= last; ++j) { /* O = Σ exp(s_j - m) v_j / l */
        const float* vrow = v + ((b * p->seqlen_k + j) * p->heads_kv + kvh) * d;
        const double e = exp(s[j] - m);
        l += e;
        for (int64_t c = 0; c < d; ++c) out[c] += e * vrow[c];
    }
    for (int64_t c = 0; c < d; ++c) out[c] /= l;
    *lse = m + log(l);
    free(s);
}

static int compare_doubles(const void* a, const void* b) {
    const double x = *(const double*)a, y = *(const double*)b;
    return (x > y) - (x < y);
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static void usage(const char* argv0) {
    fprintf(stderr, "usage: %s [--cpu] [--causal] [--dtype fp16|bf16|fp32]\n", argv0);
}

int main(int argc, char** argv) {
    flashsci_backend_t requested = FLASHSCI_BACKEND_AUTO;
    flashsci_mask_t mask = FLASHSCI_MASK_NONE;
    int dtype_arg = 0; /* 0: the backend's default */
    for (int a = 1; a < argc; ++a) {
        if (!strcmp(argv[a], "--cpu")) {
            requested = FLASHSCI_BACKEND_CPU;
        } else if (!strcmp(argv[a], "--causal")) {
            mask = FLASHSCI_MASK_CAUSAL;
        } else if (!strcmp(argv[a], "--dtype") && a + 1 < argc) {
            const char* name = argv[++a];
            dtype_arg = !strcmp(name, "fp16")   ? FLASHSCI_DTYPE_FLOAT16
                        : !strcmp(name, "bf16") ? FLASHSCI_DTYPE_BFLOAT16
                        : !strcmp(name, "fp32") ? FLASHSCI_DTYPE_FLOAT32
                                                : -1;
            if (dtype_arg < 0) {
                usage(argv[0]);
                return 2;
            }
        } else {
            usage(argv[0]);
            return 2;
        }
    }

    printf("libflashsci %s (header %d, library %d)\n", flashsci_version_string(), FLASHSCI_VERSION,
           flashsci_version());
    if (flashsci_version() != FLASHSCI_VERSION) {
        fprintf(stderr, "demo: header and library versions differ\n");
        return 1;
    }

    flashsci_plan_t plan = NULL;
    CHECK(flashsci_plan_create(&plan, requested));
    flashsci_backend_t backend;
    CHECK(flashsci_plan_get_backend(plan, &backend));
    const int on_gpu = backend == FLASHSCI_BACKEND_CUDA;
#if !FLASHSCI_DEMO_CUDA
    if (on_gpu) {
        fprintf(stderr, "demo: the plan chose CUDA but this demo was built without CUDA (FLASHSCI_CUDA=OFF)\n");
        return 1;
    }
#endif
    printf("backend: %s%s\n", on_gpu ? "CUDA" : "CPU", requested == FLASHSCI_BACKEND_AUTO ? " (AUTO)" : "");

    problem_t p;
    if (on_gpu)
        p = (problem_t){2, 1024, 1024, 16, 16, 128, FLASHSCI_DTYPE_BFLOAT16, mask};
    else
        p = (problem_t){1, 512, 512, 8, 8, 64, FLASHSCI_DTYPE_FLOAT32, mask};
    if (dtype_arg) p.dtype = (flashsci_dtype_t)dtype_arg;
    CHECK(flashsci_plan_set_shape(plan, p.batch, p.seqlen_q, p.seqlen_k, p.heads_q, p.heads_kv, p.head_dim));
    CHECK(flashsci_plan_set_dtype(plan, p.dtype));
    CHECK(flashsci_plan_set_mask(plan, p.mask));
    size_t workspace_bytes = 0;
    CHECK(flashsci_plan_get_workspace_size(plan, &workspace_bytes));
    const char* kernel = NULL;
    CHECK(flashsci_plan_get_kernel_name(plan, &kernel));
    printf("problem: batch %lld, seqlen %lld, heads %lld, head_dim %lld, %s, %s\n", (long long)p.batch,
           (long long)p.seqlen_q, (long long)p.heads_q, (long long)p.head_dim, dtype_name(p.dtype),
           p.mask == FLASHSCI_MASK_NONE ? "no mask" : "causal");
    printf("kernel: %s, workspace %zu bytes\n", kernel, workspace_bytes);

    const size_t esize = dtype_bytes(p.dtype), nq = q_count(&p), nkv = kv_count(&p);
    const size_t nlse = (size_t)(p.batch * p.heads_q * p.seqlen_q);
    void *hq = malloc(nq * esize), *hk = malloc(nkv * esize), *hv = malloc(nkv * esize), *ho = malloc(nq * esize);
    float *xq = malloc(nq * sizeof(float)), *xk = malloc(nkv * sizeof(float)), *xv = malloc(nkv * sizeof(float));
    float* hlse = malloc(nlse * sizeof(float));
    if (!hq || !hk || !hv || !ho || !xq || !xk || !xv || !hlse) {
        fprintf(stderr, "demo: out of host memory\n");
        return 1;
    }
    fill_normal(hq, xq, nq, p.dtype);
    fill_normal(hk, xk, nkv, p.dtype);
    fill_normal(hv, xv, nkv, p.dtype);

    /* Pointers handed to flashsci_forward: host memory, or device copies. */
    void *q = hq, *k = hk, *v = hv, *o = ho, *workspace = NULL;
    float* lse = hlse;
    double times[TIMED_RUNS];

    if (!on_gpu) {
        if (workspace_bytes && !(workspace = malloc(workspace_bytes))) {
            fprintf(stderr, "demo: out of host memory\n");
            return 1;
        }
        for (int r = 0; r < WARMUP_RUNS + TIMED_RUNS; ++r) {
            const double t0 = now_ms();
            CHECK(flashsci_forward(plan, q, k, v, o, lse, workspace, workspace_bytes, NULL));
            if (r >= WARMUP_RUNS) times[r - WARMUP_RUNS] = now_ms() - t0;
        }
        free(workspace);
    }
#if FLASHSCI_DEMO_CUDA
    else {
        cudaStream_t cuda_stream;
        cudaEvent_t start[TIMED_RUNS], stop[TIMED_RUNS];
        CUDA_CHECK(cudaStreamCreateWithFlags(&cuda_stream, cudaStreamNonBlocking));
        flashsci_stream_t stream = (flashsci_stream_t)cuda_stream;
        CUDA_CHECK(cudaMalloc(&q, nq * esize));
        CUDA_CHECK(cudaMalloc(&k, nkv * esize));
        CUDA_CHECK(cudaMalloc(&v, nkv * esize));
        CUDA_CHECK(cudaMalloc(&o, nq * esize));
        CUDA_CHECK(cudaMalloc((void**)&lse, nlse * sizeof(float)));
        if (workspace_bytes) CUDA_CHECK(cudaMalloc(&workspace, workspace_bytes));
        CUDA_CHECK(cudaMemcpy(q, hq, nq * esize, cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(k, hk, nkv * esize, cudaMemcpyHostToDevice));
        CUDA_CHECK(cudaMemcpy(v, hv, nkv * esize, cudaMemcpyHostToDevice));
        for (int r = 0; r < TIMED_RUNS; ++r) {
            CUDA_CHECK(cudaEventCreate(&start[r]));
            CUDA_CHECK(cudaEventCreate(&stop[r]));
        }
        for (int r = 0; r < WARMUP_RUNS; ++r)
            CHECK(flashsci_forward(plan, q, k, v, o, lse, workspace, workspace_bytes, stream));
        for (int r = 0; r < TIMED_RUNS; ++r) {
            CUDA_CHECK(cudaEventRecord(start[r], cuda_stream));
            CHECK(flashsci_forward(plan, q, k, v, o, lse, workspace, workspace_bytes, stream));
            CUDA_CHECK(cudaEventRecord(stop[r], cuda_stream));
        }
        CUDA_CHECK(cudaStreamSynchronize(cuda_stream));
        for (int r = 0; r < TIMED_RUNS; ++r) {
            float ms;
            CUDA_CHECK(cudaEventElapsedTime(&ms, start[r], stop[r]));
            times[r] = ms;
            CUDA_CHECK(cudaEventDestroy(start[r]));
            CUDA_CHECK(cudaEventDestroy(stop[r]));
        }
        CUDA_CHECK(cudaMemcpy(ho, o, nq * esize, cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaMemcpy(hlse, lse, nlse * sizeof(float), cudaMemcpyDeviceToHost));
        CUDA_CHECK(cudaFree(q));
        CUDA_CHECK(cudaFree(k));
        CUDA_CHECK(cudaFree(v));
        CUDA_CHECK(cudaFree(o));
        CUDA_CHECK(cudaFree(lse));
        CUDA_CHECK(cudaFree(workspace));
        CUDA_CHECK(cudaStreamDestroy(cuda_stream));
    }
#endif
    CHECK(flashsci_plan_destroy(plan));

    /* Check a spread of rows, always including the first and last query row. */
    double o_err = 0.0, lse_err = 0.0;
    double* ref = malloc((size_t)p.head_dim * sizeof *ref);
    if (!ref) {
        fprintf(stderr, "demo: out of host memory\n");
        return 1;
    }
    for (int r = 0; r < SAMPLE_ROWS; ++r) {
        const int64_t b = r % p.batch, h = (r * 7) % p.heads_q;
        const int64_t i = r == 0 ? 0 : r == 1 ? p.seqlen_q - 1 : (int64_t)(uniform01() * (double)p.seqlen_q);
        double ref_lse;
        reference_row(&p, xq, xk, xv, b, i, h, ref, &ref_lse);
        const size_t row = (size_t)(((b * p.seqlen_q + i) * p.heads_q + h) * p.head_dim);
        for (int64_t c = 0; c < p.head_dim; ++c) {
            const double e = fabs(load(ho, row + (size_t)c, p.dtype) - ref[c]);
            if (!(e <= o_err)) o_err = e; /* NaN sticks */
        }
        const double e = fabs((double)hlse[(b * p.heads_q + h) * p.seqlen_q + i] - ref_lse);
        if (!(e <= lse_err)) lse_err = e;
    }
    free(ref);

    qsort(times, TIMED_RUNS, sizeof times[0], compare_doubles);
    const double ms = 0.5 * (times[(TIMED_RUNS - 1) / 2] + times[TIMED_RUNS / 2]);
    double flops = 4.0 * (double)p.batch * (double)p.heads_q * (double)p.seqlen_q * (double)p.seqlen_k *
                   (double)p.head_dim;
    if (p.mask != FLASHSCI_MASK_NONE) flops *= 0.5;
    const double o_tol = p.dtype == FLASHSCI_DTYPE_FLOAT32 ? O_TOL_FP32 : O_TOL_16BIT;
    printf("checked %d rows against fp64: max |O - ref| = %.3g (tolerance %.0e), max |lse - ref| = %.3g (tolerance %.0e)\n",
           SAMPLE_ROWS, o_err, o_tol, lse_err, LSE_TOL);
    printf("time: %.3f ms (median of %d after %d warm-up), %.3g TFLOP/s\n", ms, TIMED_RUNS, WARMUP_RUNS,
           flops / (ms * 1e-3) / 1e12);

    free(hq);
    free(hk);
    free(hv);
    free(ho);
    free(xq);
    free(xk);
    free(xv);
    free(hlse);
    if (!(o_err <= o_tol) || !(lse_err <= LSE_TOL)) {
        fprintf(stderr, "demo: FAILED: error above tolerance\n");
        return 1;
    }
    printf("demo: OK\n");
    return 0;
}
