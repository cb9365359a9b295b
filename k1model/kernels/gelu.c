/* GELU (the erf form, as torch's default) forward and backward, for x86-64 with AVX2 and FMA
   (the block's bias forms also 16 lanes wide with AVX-512, the same bits: wide.h).

   Why it exists: torch's CPU gelu and gelu_backward take ~2 ns per element at the MLP's
   1024 x 128 activations (k1 bench, "where the step's time goes": ~6 % of a step); here one
   vectorised pass each way.

   gelu(x) = x * Phi(x),  Phi(x) = (1 + erf(x / sqrt 2)) / 2
   gelu'(x) = Phi(x) + x * phi(x),  phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
   erfc by Abramowitz & Stegun 7.1.26 (erf within 1.5e-7 absolute), the formula torch's own vectorised
   erf uses; Phi's left tail is taken as erfc/2 directly, without torch's 1 + erf cancellation.
   Built by k1model/kernels/build.py. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "exp256.h"
#include "wide.h"

/* Phi(x) and, when dens is not NULL, phi(x) for 8 floats */
static inline __m256 cdf256(__m256 x, __m256 *dens) {
    const __m256 one = _mm256_set1_ps(1.0f), half = _mm256_set1_ps(0.5f);
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    const __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));  /* x / sqrt 2 */
    const __m256 az = _mm256_andnot_ps(sign_mask, z);
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, one));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    const __m256 e = exp256(_mm256_mul_ps(_mm256_xor_ps(az, sign_mask), az));  /* exp(-z^2) */
    const __m256 tail = _mm256_mul_ps(half, _mm256_mul_ps(p, e));               /* erfc(|z|) / 2 */
    if (dens) *dens = _mm256_mul_ps(e, _mm256_set1_ps(0.39894228040143268f));  /* exp(-x^2/2) / sqrt(2 pi) */
    /* Phi = 1 - erfc(|z|)/2 for z >= 0, erfc(|z|)/2 for z < 0 (no cancellation in the left tail) */
    return _mm256_blendv_ps(_mm256_sub_ps(one, tail), tail, z);
}

/* cdf256, 16 lanes: the same operations lane by lane (wide.h) */
static inline WIDE __m512 cdf512(__m512 x, __m512 *dens) {
    const __m512 one = _mm512_set1_ps(1.0f), half = _mm512_set1_ps(0.5f);
    const __m512i sign = _mm512_set1_epi32((int)0x80000000u);
    const __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(0.70710678118654752f));
    const __m512 az = _mm512_castsi512_ps(_mm512_andnot_si512(sign, _mm512_castps_si512(z)));
    const __m512 t = _mm512_div_ps(one, _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), az, one));
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    p = _mm512_mul_ps(p, t);
    const __m512 e = exp512(_mm512_mul_ps(_mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(az), sign)), az));
    const __m512 tail = _mm512_mul_ps(half, _mm512_mul_ps(p, e));
    if (dens) *dens = _mm512_mul_ps(e, _mm512_set1_ps(0.39894228040143268f));
    /* blendv256's choice: by z's sign bit */
    return _mm512_mask_blend_ps(_mm512_test_epi32_mask(_mm512_castps_si512(z), sign), _mm512_sub_ps(one, tail), tail);
}

/* One row of k1_gelu_bias_forward 16 lanes at a time; returns how far it got (a multiple of 16). */
static WIDE int64_t gelu_bias_row16(float *fr, const float *b, float *gr, int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_add_ps(_mm512_loadu_ps(fr + i), _mm512_loadu_ps(b + i));
        _mm512_storeu_ps(fr + i, v);
        _mm512_storeu_ps(gr + i, _mm512_mul_ps(v, cdf512(v, NULL)));
    }
    return i;
}

/* One row of k1_gelu_bias_backward_output 16 lanes at a time; returns how far it got. */
static WIDE int64_t gelu_backward_row16(const float *dyr, const float *xr, float *dxr, float *gr, float *part,
                                        int64_t n) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m512 v = _mm512_loadu_ps(xr + i);
        __m512 dens;
        const __m512 cdf = cdf512(v, &dens);
        const __m512 d = _mm512_mul_ps(_mm512_loadu_ps(dyr + i), _mm512_fmadd_ps(v, dens, cdf));
        if (gr) _mm512_storeu_ps(gr + i, _mm512_mul_ps(v, cdf));
        _mm512_storeu_ps(dxr + i, d);
        _mm512_storeu_ps(part + i, _mm512_add_ps(_mm512_loadu_ps(part + i), d));
    }
    return i;
}

static inline float cdf1(float x, float *dens) {
    const float z = x * 0.70710678118654752f;
    if (dens) *dens = expf(-z * z) * 0.39894228040143268f;
    return 0.5f * (1.0f + erff(z));
}

void k1_gelu_forward(const float *x, float *y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        _mm256_storeu_ps(y + i, _mm256_mul_ps(v, cdf256(v, NULL)));
    }
    for (; i < n; i++) y[i] = x[i] * cdf1(x[i], NULL);
}

/* dx = dy * gelu'(x) */
void k1_gelu_backward(const float *dy, const float *x, float *dx, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        __m256 dens;
        const __m256 cdf = cdf256(v, &dens);
        _mm256_storeu_ps(dx + i, _mm256_mul_ps(_mm256_loadu_ps(dy + i), _mm256_fmadd_ps(v, dens, cdf)));
    }
    for (; i < n; i++) {
        float dens;
        const float cdf = cdf1(x[i], &dens);
        dx[i] = dy[i] * (cdf + x[i] * dens);
    }
}

/* The MLP's first bias fused in: f <- f + b (rows of width n, f is the matmul's product), g = gelu(f). */
void k1_gelu_bias_forward(float *f, const float *b, float *g, int64_t rows, int64_t n) {
    const int wide = k1_use_wide();
    for (int64_t r = 0; r < rows; r++) {
        float *fr = f + r * n, *gr = g + r * n;
        int64_t i = wide ? gelu_bias_row16(fr, b, gr, n) : 0;
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_add_ps(_mm256_loadu_ps(fr + i), _mm256_loadu_ps(b + i));
            _mm256_storeu_ps(fr + i, v);
            _mm256_storeu_ps(gr + i, _mm256_mul_ps(v, cdf256(v, NULL)));
        }
        for (; i < n; i++) {
            fr[i] += b[i];
            gr[i] = fr[i] * cdf1(fr[i], NULL);
        }
    }
}

/* dx = dy * gelu'(x) as k1_gelu_backward (dx may be dy), and db = column sums of dx (the bias gradient),
   summed in blocks of 64 rows (a partial per block, then added): fixed order. n <= 4096.
   With g (else NULL): g = gelu(x) as well, the forward's output bit for bit (the block's backward
   recomputes it here, where Phi(x) is at hand, rather than keep it). */
int k1_gelu_bias_backward_output(const float *dy, const float *x, float *dx, float *db, float *g, int64_t rows,
                                 int64_t n) {
    if (n < 1 || n > 4096) return 1;
    float part[4096];
    memset(db, 0, sizeof(float) * n);
    memset(part, 0, sizeof(float) * n);
    const int wide = k1_use_wide();
    for (int64_t r = 0; r < rows; r++) {
        const float *dyr = dy + r * n, *xr = x + r * n;
        float *dxr = dx + r * n;
        int64_t i = wide ? gelu_backward_row16(dyr, xr, dxr, g ? g + r * n : NULL, part, n) : 0;
        for (; i + 8 <= n; i += 8) {
            const __m256 v = _mm256_loadu_ps(xr + i);
            __m256 dens;
            const __m256 cdf = cdf256(v, &dens);
            const __m256 d = _mm256_mul_ps(_mm256_loadu_ps(dyr + i), _mm256_fmadd_ps(v, dens, cdf));
            if (g) _mm256_storeu_ps(g + r * n + i, _mm256_mul_ps(v, cdf));
            _mm256_storeu_ps(dxr + i, d);
            _mm256_storeu_ps(part + i, _mm256_add_ps(_mm256_loadu_ps(part + i), d));
        }
        for (; i < n; i++) {
            float dens;
            const float cdf = cdf1(xr[i], &dens);
            if (g) g[r * n + i] = xr[i] * cdf;
            dxr[i] = dyr[i] * (cdf + xr[i] * dens);
            part[i] += dxr[i];
        }
        if ((r + 1) % 64 == 0 || r + 1 == rows) {
            for (i = 0; i < n; i++) db[i] += part[i];
            memset(part, 0, sizeof(float) * n);
        }
    }
    return 0;
}

int k1_gelu_bias_backward(const float *dy, const float *x, float *dx, float *db, int64_t rows, int64_t n) {
    return k1_gelu_bias_backward_output(dy, x, dx, db, NULL, rows, n);
}
