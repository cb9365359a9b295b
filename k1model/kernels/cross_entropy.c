/* Cross-entropy of the LM head's logits, forward and backward, for x86-64 with AVX2 and FMA
   (16 lanes wide with AVX-512, the same bits: wide.h).

   Why it exists: torch computes it as log_softmax, then nll_loss, and in the backward zero-fills a
   [rows, vocab] gradient, scatters into it and runs log_softmax's backward: ~2.5 ms per step at the
   model's 1024 x 256 logits (k1 bench, "where the step's time goes"). Here one pass per row each way.

   loss[r] = logsumexp(logits[r]) - logits[r, t_r], 0 for rows whose target is `ignore`;
   dlogits[r] = g[r] * (softmax(logits[r]) - onehot(t_r)), 0 for ignored rows.
   Deterministic: sums in a fixed order. Built by k1model/kernels/build.py. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "exp256.h"
#include "wide.h"

static float row_lse(const float *x, int64_t V) {
    __m256 mx = _mm256_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 8 <= V; j += 8) mx = _mm256_max_ps(mx, _mm256_loadu_ps(x + j));
    float m = hmax256(mx);
    for (; j < V; j++) m = x[j] > m ? x[j] : m;
    const __m256 mv = _mm256_set1_ps(m);
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    for (j = 0; j + 16 <= V; j += 16) {
        s0 = _mm256_add_ps(s0, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), mv)));
        s1 = _mm256_add_ps(s1, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j + 8), mv)));
    }
    for (; j + 8 <= V; j += 8) s0 = _mm256_add_ps(s0, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), mv)));
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; j < V; j++) s += expf(x[j] - m);
    return m + logf(s);
}

/* row_lse 16 lanes wide (wide.h): lanes 0-7 of the sum are s0's and lanes 8-15 s1's, so it sums in the same
   order; a maximum is the same in any order. */
static WIDE float row_lse16(const float *x, int64_t V) {
    __m512 mx = _mm512_set1_ps(-INFINITY);
    int64_t j = 0;
    for (; j + 16 <= V; j += 16) mx = _mm512_max_ps(mx, _mm512_loadu_ps(x + j));
    float m = _mm512_reduce_max_ps(mx);
    for (; j < V; j++) m = x[j] > m ? x[j] : m;
    const __m512 mv = _mm512_set1_ps(m);
    __m512 s01 = _mm512_setzero_ps();
    for (j = 0; j + 16 <= V; j += 16) s01 = _mm512_add_ps(s01, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), mv)));
    __m256 s0 = _mm512_castps512_ps256(s01);
    const __m256 s1 = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s01), 1)), m8 = _mm512_castps512_ps256(mv);
    for (; j + 8 <= V; j += 8) s0 = _mm256_add_ps(s0, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), m8)));
    float s = hsum256(_mm256_add_ps(s0, s1));
    for (; j < V; j++) s += expf(x[j] - m);
    return m + logf(s);
}

/* d[j] = g * exp(x[j] - l) for j < a multiple of 16; returns how far it got */
static WIDE int64_t scaled_probabilities16(const float *x, float l, float g, float *d, int64_t V) {
    const __m512 lv = _mm512_set1_ps(l), gv = _mm512_set1_ps(g);
    int64_t j = 0;
    for (; j + 16 <= V; j += 16)
        _mm512_storeu_ps(d + j, _mm512_mul_ps(gv, exp512(_mm512_sub_ps(_mm512_loadu_ps(x + j), lv))));
    return j;
}

int k1_cross_entropy_forward(const float *logits, const int64_t *targets, float *losses, float *lse, int64_t M,
                             int64_t V, int64_t ignore) {
    const int wide = k1_use_wide();
    for (int64_t r = 0; r < M; r++) {
        const float *x = logits + r * V;
        const int64_t t = targets[r];
        if (t == ignore) { losses[r] = 0.0f; lse[r] = 0.0f; continue; }
        if (t < 0 || t >= V) return 1;
        lse[r] = wide ? row_lse16(x, V) : row_lse(x, V);
        losses[r] = lse[r] - x[t];
    }
    return 0;
}

int k1_cross_entropy_backward(const float *logits, const int64_t *targets, const float *lse, const float *g,
                              float *dlogits, int64_t M, int64_t V, int64_t ignore) {
    const int wide = k1_use_wide();
    for (int64_t r = 0; r < M; r++) {
        const float *x = logits + r * V;
        float *d = dlogits + r * V;
        const int64_t t = targets[r];
        int64_t j = 0;
        if (t == ignore) {
            for (; j < V; j++) d[j] = 0.0f;
            continue;
        }
        const __m256 l = _mm256_set1_ps(lse[r]), gr = _mm256_set1_ps(g[r]);
        if (wide) j = scaled_probabilities16(x, lse[r], g[r], d, V);
        for (; j + 8 <= V; j += 8)
            _mm256_storeu_ps(d + j, _mm256_mul_ps(gr, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), l))));
        for (; j < V; j++) d[j] = g[r] * expf(x[j] - lse[r]);
        d[t] -= g[r];
    }
    return 0;
}
