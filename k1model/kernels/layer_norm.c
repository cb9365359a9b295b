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

/* one row's output from its mean and rstd: y = (x - mean) * rstd * w + b */
static inline void ln_apply_row(const float *xr, float mu, float rs, const float *w, const float *b, float *yr,
                                int64_t D) {
    const __m256 m = _mm256_set1_ps(mu), rv = _mm256_set1_ps(rs);
    int64_t j = 0;
    for (; j + 8 <= D; j += 8) {
        const __m256 h = _mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(xr + j), m), rv);
        _mm256_storeu_ps(yr + j, _mm256_fmadd_ps(h, _mm256_loadu_ps(w + j), _mm256_loadu_ps(b + j)));
    }
    for (; j < D; j++) yr[j] = (xr[j] - mu) * rs * w[j] + b[j];
}

/* one row: y = (x - mean) * rstd * w + b */
static inline void ln_row(const float *xr, const float *w, const float *b, float *yr, float *mean, float *rstd,
                          int64_t D, float eps) {
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
    ln_apply_row(xr, mu, rs, w, b, yr, D);
    *mean = mu;
    *rstd = rs;
}

/* y = (x - mean) * rstd * w + b again from the kept mean and rstd: the forward's y bit for bit (the block's
   backward recomputes its norms' outputs rather than keep them) */
void k1_layer_norm_apply(const float *x, const float *mean, const float *rstd, const float *w, const float *b,
                         float *y, int64_t rows, int64_t D) {
    for (int64_t r = 0; r < rows; r++) ln_apply_row(x + r * D, mean[r], rstd[r], w, b, y + r * D, D);
}

int k1_layer_norm_forward(const float *x, const float *w, const float *b, float *y, float *mean, float *rstd,
                          int64_t rows, int64_t D, float eps) {
    if (D < 1 || D > MAXD) return 1;
    for (int64_t r = 0; r < rows; r++) ln_row(x + r * D, w, b, y + r * D, mean + r, rstd + r, D, eps);
    return 0;
}

/* a <- (a + bias) + resid, rows of width D (the block's output: the MLP's product, its bias, the residual) */
void k1_add_bias_residual(float *a, const float *resid, const float *bias, int64_t rows, int64_t D) {
    for (int64_t r = 0; r < rows; r++) {
        float *ar = a + r * D;
        const float *rr = resid + r * D;
        int64_t j = 0;
        for (; j + 8 <= D; j += 8)
            _mm256_storeu_ps(ar + j, _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(ar + j), _mm256_loadu_ps(bias + j)),
                                                   _mm256_loadu_ps(rr + j)));
        for (; j < D; j++) ar[j] = (ar[j] + bias[j]) + rr[j];
    }
}

/* The block's second norm with the residual before it: x <- (x + bias) + resid in place (x is the output
   projection's product), then the norm of x; one pass while each row is in L1. */
int k1_add_layer_norm_forward(float *x, const float *resid, const float *bias, const float *w, const float *b,
                              float *y, float *mean, float *rstd, int64_t rows, int64_t D, float eps) {
    if (D < 1 || D > MAXD) return 1;
    for (int64_t r = 0; r < rows; r++) {
        k1_add_bias_residual(x + r * D, resid + r * D, bias, 1, D);
        ln_row(x + r * D, w, b, y + r * D, mean + r, rstd + r, D, eps);
    }
    return 0;
}

/* colsum[j] = sum over rows of m[r, j], in blocks of 64 rows (a partial per block, then added): fixed order */
int k1_column_sums(const float *m, float *colsum, int64_t rows, int64_t D) {
    if (D < 1 || D > MAXD) return 1;
    memset(colsum, 0, sizeof(float) * D);
    float part[MAXD];
    for (int64_t r0 = 0; r0 < rows; r0 += 64) {
        memset(part, 0, sizeof(float) * D);
        const int64_t r1 = r0 + 64 < rows ? r0 + 64 : rows;
        for (int64_t r = r0; r < r1; r++) {
            const float *mr = m + r * D;
            int64_t j = 0;
            for (; j + 8 <= D; j += 8)
                _mm256_storeu_ps(part + j, _mm256_add_ps(_mm256_loadu_ps(part + j), _mm256_loadu_ps(mr + j)));
            for (; j < D; j++) part[j] += mr[j];
        }
        for (int64_t j = 0; j < D; j++) colsum[j] += part[j];
    }
    return 0;
}

/* dx [rows, D] (may be dy itself: every row is read before it is written); dw, db [D] written.
   With resid (else NULL): dx += resid (a residual branch's gradient joining here; may also be dx's
   memory). With colsum (else NULL): colsum = column sums of the final dx, as k1_column_sums (the bias
   gradient of the layer that produced x). */
int k1_layer_norm_backward(const float *dy, const float *x, const float *mean, const float *rstd, const float *w,
                           float *dx, float *dw, float *db, int64_t rows, int64_t D, const float *resid,
                           float *colsum) {
    if (D < 1 || D > MAXD) return 1;
    float acc_w[MAXD], acc_b[MAXD], g[MAXD], h[MAXD], part[MAXD];
    memset(acc_w, 0, sizeof(float) * D);
    memset(acc_b, 0, sizeof(float) * D);
    if (colsum) {
        memset(colsum, 0, sizeof(float) * D);
        memset(part, 0, sizeof(float) * D);
    }
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
        const float *rr = resid ? resid + r * D : NULL;
        for (j = 0; j + 8 <= D; j += 8) {
            const __m256 t = _mm256_fnmadd_ps(_mm256_loadu_ps(h + j), mghv, _mm256_sub_ps(_mm256_loadu_ps(g + j), mgv));
            __m256 v = _mm256_mul_ps(rv, t);
            if (rr) v = _mm256_add_ps(v, _mm256_loadu_ps(rr + j));
            _mm256_storeu_ps(dxr + j, v);
            if (colsum) _mm256_storeu_ps(part + j, _mm256_add_ps(_mm256_loadu_ps(part + j), v));
        }
        for (; j < D; j++) {
            float v = rstd[r] * (g[j] - mg - h[j] * mgh);
            if (rr) v += rr[j];
            dxr[j] = v;
            if (colsum) part[j] += v;
        }
        if (colsum && ((r + 1) % 64 == 0 || r + 1 == rows)) {
            for (j = 0; j < D; j++) colsum[j] += part[j];
            memset(part, 0, sizeof(float) * D);
        }
    }
    memcpy(dw, acc_w, sizeof(float) * D);
    memcpy(db, acc_b, sizeof(float) * D);
    return 0;
}
