/*
 * The smallest complete C program: causal attention on the CPU backend with its LSE.
 *
 *   cc -std=c99 attention.c $(pkg-config --cflags --libs flashsci) -o attention
 *   ./attention        (PKG_CONFIG_PATH=<prefix>/lib/pkgconfig for a private install;
 *                       LD_LIBRARY_PATH=$(pkg-config --variable=libdir flashsci) to run it)
 *
 * SPDX-License-Identifier: BSD-3-Clause
 */
#include <flashsci.h>

#include <stdio.h>
#include <stdlib.h>

enum { BATCH = 1, SEQLEN = 64, HEADS_Q = 4, HEADS_KV = 2, HEAD_DIM = 32 };

/* Every call returns a status; on failure the thread's message says what was wrong. */
#define TRY(call)                                                                                       \
    do {                                                                                                \
        flashsci_status_t s_ = (call);                                                                  \
        if (s_ != FLASHSCI_STATUS_SUCCESS) {                                                            \
            fprintf(stderr, "%s: %s: %s\n", #call, flashsci_status_string(s_), flashsci_last_error());  \
            return 1;                                                                                   \
        }                                                                                               \
    } while (0)

int main(void) {
    static float q[BATCH * SEQLEN * HEADS_Q * HEAD_DIM], o[BATCH * SEQLEN * HEADS_Q * HEAD_DIM];
    static float k[BATCH * SEQLEN * HEADS_KV * HEAD_DIM], v[BATCH * SEQLEN * HEADS_KV * HEAD_DIM];
    static float lse[BATCH * HEADS_Q * SEQLEN];
    for (size_t i = 0; i < sizeof q / sizeof q[0]; ++i) q[i] = (float)rand() / RAND_MAX - 0.5f;
    for (size_t i = 0; i < sizeof k / sizeof k[0]; ++i) k[i] = (float)rand() / RAND_MAX - 0.5f;
    for (size_t i = 0; i < sizeof v / sizeof v[0]; ++i) v[i] = (float)rand() / RAND_MAX - 0.5f;

    printf("libflashsci %s\n", flashsci_version_string());
    flashsci_plan_t plan;
    TRY(flashsci_plan_create(&plan, FLASHSCI_BACKEND_CPU));
    TRY(flashsci_plan_set_shape(plan, BATCH, SEQLEN, SEQLEN, HEADS_Q, HEADS_KV, HEAD_DIM)); /* GQA 4:2 */
    TRY(flashsci_plan_set_dtype(plan, FLASHSCI_DTYPE_FLOAT32));
    TRY(flashsci_plan_set_mask(plan, FLASHSCI_MASK_CAUSAL));
    TRY(flashsci_forward(plan, q, k, v, o, lse, NULL, 0, NULL));

    /* A bad call fails with a status and a message, and writes nothing. */
    flashsci_status_t s = flashsci_plan_set_shape(plan, BATCH, SEQLEN, SEQLEN, HEADS_Q, 3, HEAD_DIM);
    printf("heads_kv = 3 -> %s: %s\n", flashsci_status_string(s), flashsci_last_error());
    TRY(flashsci_plan_destroy(plan));

    /* Row 0 sees only key 0, so its output is v[0] of its kv head, exactly. */
    printf("o[0][0] = %.6f (v[0][0] = %.6f), lse[head 0][row %d] = %.4f\n", o[0], v[0], SEQLEN - 1,
           lse[SEQLEN - 1]);
    return o[0] == v[0] && s == FLASHSCI_STATUS_INVALID_VALUE ? 0 : 1;
}
