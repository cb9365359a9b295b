/* GELU (the erf form, as torch's default) forward and backward, for x86-64 with AVX2 and FMA.

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

#include "exp256.h"

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
