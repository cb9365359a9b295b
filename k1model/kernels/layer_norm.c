/* LayerNorm over the last dimension, forward and backward, for x86-64 with AVX2 and FMA.

   Why it exists: at the agents' width (64) torch's CPU layer norm and its backward spend most of
   their time per row and per call rather than per element (k1 bench, "where the step's time goes");
   here one pass over the rows each way, the weight and bias gradients accumulated in registers.

   Forward: mean and biased variance per row (two passes over the row, in L1), rstd = 1/sqrt(var + eps),
   y = (x - mean) * rstd * w + b; mean and rstd are kept for the backward.
   Backward: xhat = (x - mean) * rstd, g = dy * w,
   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), dw = sum_rows dy * xhat, db = sum_rows dy.
   Deterministic: fixed summation order. Built by k1model/kernels/build.py. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "exp256.h"

#define MAXD 4096

int k1_layer_norm_forward(const float *x, const float *w, const float *b, float *y, float *mean, float *rstd,
                          int64_t rows, int64_t D, float eps) {
    if (D < 1 || D > MAXD) return 1;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * D;
        float *yr = y + r * D;
        __m256 s = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 8 <= D; j += 8) s = _mm256_add_ps(s, _mm256_loadu_ps(xr + j));
        float sum = hsum256(s);
        for (; j < D; j++) sum += xr[j];
        const float mu = sum / (float)D;
        const __m256 m = _mm256_set1_ps(mu);
        __m256 q = _mm256_setzero_ps();
        for (j = 0; j + 8 <= D; j += 8) {
            const __m256 c = _mm256_sub_ps(_mm256_loadu_ps(xr + j), m);
            q = _mm256_fmadd_ps(c, c, q);
        }
        float sq = hsum256(q);
        for (; j < D; j++) sq += (xr[j] - mu) * (xr[j] - mu);
        const float rs = 1.0f / sqrtf(sq / (float)D + eps);
        const __m256 rv = _mm256_set1_ps(rs);
        for (j = 0; j + 8 <= D; j += 8) {
            const __m256 h = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + j), m), rv);
            _mm256_storeu_ps(yr + j, _mm256_fmadd_ps(h, _mm256_loadu_ps(w + j), _mm256_loadu_ps(b + j)));
        }
        for (; j < D; j++) yr[j] = (xr[j] - mu) * rs * w[j] + b[j];
        mean[r] = mu;
        rstd[r] = rs;
    }
    return 0;
}

/* dx [rows, D] (may be dy itself: every row is read before it is written); dw, db [D] written */
int k1_layer_norm_backward(const float *dy, const float *x, const float *mean, const float *rstd, const float *w,
                           float *dx, float *dw, float *db, int64_t rows, int64_t D) {
    if (D < 1 || D > MAXD) return 1;
    float acc_w[MAXD], acc_b[MAXD], g[MAXD], h[MAXD];
    memset(acc_w, 0, sizeof(float) * D);
    memset(acc_b, 0, sizeof(float) * D);
    const float inv_d = 1.0f / (float)D;
    for (int64_t r = 0; r < rows; r++) {
        const float *dyr = dy + r * D, *xr = x + r * D;
        const __m256 m = _mm256_set1_ps(mean[r]), rv = _mm256_set1_ps(rstd[r]);
        __m256 sg = _mm256_setzero_ps(), sgh = _mm256_setzero_ps();
        int64_t j = 0;
        for (; j + 8 <= D; j += 8) {
            const __m256 d = _mm256_loadu_ps(dyr + j);
            const __m256 hv = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + j), m), rv);
            const __m256 gv = _mm256_mul_ps(d, _mm256_loadu_ps(w + j));
            _mm256_storeu_ps(h + j, hv);
            _mm256_storeu_ps(g + j, gv);
            sg = _mm256_add_ps(sg, gv);
            sgh = _mm256_fmadd_ps(gv, hv, sgh);
            _mm256_storeu_ps(acc_w + j, _mm256_fmadd_ps(d, hv, _mm256_loadu_ps(acc_w + j)));
            _mm256_storeu_ps(acc_b + j, _mm256_add_ps(d, _mm256_loadu_ps(acc_b + j)));
        }
        float sum_g = hsum256(sg), sum_gh = hsum256(sgh);
        for (; j < D; j++) {
            h[j] = (xr[j] - mean[r]) * rstd[r];
            g[j] = dyr[j] * w[j];
            sum_g += g[j];
            sum_gh += g[j] * h[j];
            acc_w[j] += dyr[j] * h[j];
            acc_b[j] += dyr[j];
        }
        const float mg = sum_g * inv_d, mgh = sum_gh * inv_d;
        float *dxr = dx + r * D;
        const __m256 mgv = _mm256_set1_ps(mg), mghv = _mm256_set1_ps(mgh);
        for (j = 0; j + 8 <= D; j += 8) {
            const __m256 t = _mm256_fnmadd_ps(_mm256_loadu_ps(h + j), mghv, _mm256_sub_ps(_mm256_loadu_ps(g + j), mgv));
            _mm256_storeu_ps(dxr + j, _mm256_mul_ps(rv, t));
        }
        for (; j < D; j++) dxr[j] = rstd[r] * (g[j] - mg - h[j] * mgh);
    }
    memcpy(dw, acc_w, sizeof(float) * D);
    memcpy(db, acc_b, sizeof(float) * D);
    return 0;
}
