/* Cross-entropy of the LM head's logits, forward and backward, for x86-64 with AVX2 and FMA.

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

int k1_cross_entropy_forward(const float *logits, const int64_t *targets, float *losses, float *lse, int64_t M,
                             int64_t V, int64_t ignore) {
    for (int64_t r = 0; r < M; r++) {
        const float *x = logits + r * V;
        const int64_t t = targets[r];
        if (t == ignore) { losses[r] = 0.0f; lse[r] = 0.0f; continue; }
        if (t < 0 || t >= V) return 1;
        lse[r] = row_lse(x, V);
        losses[r] = lse[r] - x[t];
    }
    return 0;
}

int k1_cross_entropy_backward(const float *logits, const int64_t *targets, const float *lse, const float *g,
                              float *dlogits, int64_t M, int64_t V, int64_t ignore) {
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
        for (; j + 8 <= V; j += 8)
            _mm256_storeu_ps(d + j, _mm256_mul_ps(gr, exp256(_mm256_sub_ps(_mm256_loadu_ps(x + j), l))));
        for (; j < V; j++) d[j] = g[r] * expf(x[j] - lse[r]);
        d[t] -= g[r];
    }
    return 0;
}
