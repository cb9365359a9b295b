/* The kernels' AVX-512 paths: the switch that says whether they run (wide.c) and the 16-lane twin of exp256.h's
   exponential.

   Why: on CPUs with AVX-512 the elementwise work between the products (exponentials of attention's softmax
   and of the cross-entropy, GELU) runs in half the instructions 16 lanes wide. Every 16-lane helper does, per
   lane, exactly the arithmetic of its 8-lane twin (the same operations on the same operands, each correctly
   rounded), and sums keep their 8-lane order, so a kernel gives the same bits on either path
   (tests/test_kernels.py runs both). */
#ifndef K1_WIDE_H
#define K1_WIDE_H
#include <immintrin.h>

/* 1 when the AVX-512 paths run in this process (the CPU and the OS support them and $K1_NATIVE_AVX2 is unset;
   k1_wide switches them for tests and benchmarks), else 0 */
int k1_use_wide(void);
int k1_can_wide(void);
int k1_wide(int want);

#define WIDE __attribute__((target("avx512f,fma")))

/* exp256 of exp256.h, 16 lanes: the same clamp, range reduction and polynomial, operation for operation */
static inline WIDE __m512 exp512(__m512 x) {
    const __m512 hi = _mm512_set1_ps(88.3762626647949f), lo = _mm512_set1_ps(-88.3762626647949f);
    x = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512 fx = _mm512_roundscale_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(0.5f)),
                                     _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(0.693359375f), x);
    x = _mm512_fnmadd_ps(fx, _mm512_set1_ps(-2.12194440e-4f), x);
    __m512 y = _mm512_set1_ps(1.9875691500E-4f);
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.3981999507E-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(8.3334519073E-3f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(4.1665795894E-2f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(1.6666665459E-1f));
    y = _mm512_fmadd_ps(y, x, _mm512_set1_ps(5.0000001201E-1f));
    y = _mm512_fmadd_ps(y, _mm512_mul_ps(x, x), _mm512_add_ps(x, _mm512_set1_ps(1.0f)));
    __m512i n = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(fx), _mm512_set1_epi32(127)), 23);
    return _mm512_mul_ps(y, _mm512_castsi512_ps(n));
}

/* lanes 0 .. n-1 of a 16-lane mask (all for n >= 16, none for n <= 0) */
static inline __mmask16 lanes_below16(int n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

#endif
