/*
 * An external program built against an installed libflashsci (pkg-config or
 * find_package): checks the library's version against the header, runs the CPU
 * backend on a tiny GQA problem with bottom-right causal masking, and checks
 * every output row and its LSE against a naive reference. Exit 0 on success.
 */
#include <flashsci.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { BATCH = 2, SEQ_Q = 5, SEQ_K = 7, HEADS_Q = 4, HEADS_KV = 2, DIM = 16 };
#define Q_COUNT (BATCH * SEQ_Q * HEADS_Q * DIM)
#define KV_COUNT (BATCH * SEQ_K * HEADS_KV * DIM)
static const double TOLERANCE = 1e-5;

#define CHECK(call)                                                                          \
    do {                                                                                     \
        flashsci_status_t s_ = (call);                                                       \
        if (s_ != FLASHSCI_STATUS_SUCCESS) {                                                 \
            fprintf(stderr, "consumer: %s: %s: %s\n", #call, flashsci_status_string(s_),      \
                    flashsci_last_error());                                                  \
            return 1;                                                                        \
        }                                                                                    \
    } while (0)

static float q[Q_COUNT], k[KV_COUNT], v[KV_COUNT], o[Q_COUNT], lse[BATCH * HEADS_Q * SEQ_Q];

int main(void) {
    printf("consumer: header %d, library %d (%s)\n", FLASHSCI_VERSION, flashsci_version(), flashsci_version_string());
    if (flashsci_version() != FLASHSCI_VERSION) {
        fprintf(stderr, "consumer: version mismatch\n");
        return 1;
    }
    unsigned seed = 12345;
    for (int i = 0; i < Q_COUNT; ++i) q[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 16384.0f - 1.0f;
    for (int i = 0; i < KV_COUNT; ++i) k[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 16384.0f - 1.0f;
    for (int i = 0; i < KV_COUNT; ++i) v[i] = (float)((seed = seed * 1103515245u + 12345u) >> 16 & 0x7fff) / 16384.0f - 1.0f;

    flashsci_plan_t plan;
    CHECK(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU));
    CHECK(flashsci_plan_set_shape(plan, BATCH, SEQ_Q, SEQ_K, HEADS_Q, HEADS_KV, DIM));
    CHECK(flashsci_plan_set_dtype(plan, FLASHSCI_DTYPE_FLOAT32));
    CHECK(flashsci_plan_set_mask(plan, FLASHSCI_MASK_CAUSAL_BOTTOM_RIGHT));
    CHECK(flashsci_forward(plan, q, k, v, o, lse, NULL, 0, NULL));
    CHECK(flashsci_plan_destroy(plan));

    double worst = 0.0;
    const double scale = 1.0 / sqrt((double)DIM);
    for (int b = 0; b < BATCH; ++b)
        for (int h = 0; h < HEADS_Q; ++h)
            for (int i = 0; i < SEQ_Q; ++i) {
                const int kvh = h / (HEADS_Q / HEADS_KV), last = i + SEQ_K - SEQ_Q; /* keys 0..last */
                const float* qi = q + ((b * SEQ_Q + i) * HEADS_Q + h) * DIM;
                double s[SEQ_K], m = -INFINITY, l = 0.0, ref[DIM] = {0};
                for (int j = 0; j <= last; ++j) {
                    const float* kj = k + ((b * SEQ_K + j) * HEADS_KV + kvh) * DIM;
                    double dot = 0.0;
                    for (int d = 0; d < DIM; ++d) dot += (double)qi[d] * kj[d];
                    s[j] = scale * dot;
                    m = s[j] > m ? s[j] : m;
                }
                for (int j = 0; j <= last; ++j) {
                    const float* vj = v + ((b * SEQ_K + j) * HEADS_KV + kvh) * DIM;
                    const double p = exp(s[j] - m);
                    l += p;
                    for (int d = 0; d < DIM; ++d) ref[d] += p * vj[d];
                }
                const float* oi = o + ((b * SEQ_Q + i) * HEADS_Q + h) * DIM;
                for (int d = 0; d < DIM; ++d) {
                    const double e = fabs(oi[d] - ref[d] / l);
                    worst = e <= worst ? worst : e;
                }
                const double e = fabs(lse[(b * HEADS_Q + h) * SEQ_Q + i] - (m + log(l)));
                worst = e <= worst ? worst : e;
            }
    printf("consumer: max error %.3g (tolerance %.0e)\n", worst, TOLERANCE);
    if (!(worst <= TOLERANCE)) {
        fprintf(stderr, "consumer: FAILED\n");
        return 1;
    }
    printf("consumer: OK\n");
    return 0;
}
