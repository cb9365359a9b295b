/* Causal self-attention of the agent block, forward and backward, for x86-64 with AVX2 and FMA (its products and
   exponentials also 16 lanes wide with AVX-512, the same bits: wide.h and the section below).

   Why it exists: at the model's shapes (head width 16, context 64) torch's CPU attention kernels
   spend ~3 ms per agent per step (k1 bench, "attention"), most of it in per-block overheads of tiny
   matmuls; this kernel does the same computation in one pass per (sequence, head), in L1.

   It reads q, k and v straight from the qkv projection's output [N, T, 3, H, hd] and writes the
   attention output in the layout the output projection reads [N, T, H, hd], so no copies are needed
   around it. softmax(scale * q k^T + causal mask) v, with the row log-sum-exp kept for the backward
   (which recomputes the probabilities, as flash attention does). Deterministic: every sum runs in a
   fixed order; results differ from torch's kernels by rounding only (tests/test_kernels.py).

   Built by k1model/kernels/build.py with -O3 -mavx2 -mfma -ffp-contract=off. */
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "exp256.h"
#include "wide.h"

static inline __m256 lanes_below(int n) {  /* all-ones in lanes 0..n-1 */
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}

/* One 8-wide piece of a score tile: s = scale * acc, or, given the rows' D (the backward),
   s = s * (scale * acc - D_i) in place (dS = P * (dP - D) over P). */
static inline void put(float *s, __m256 acc, __m256 sc, const float *D, int i) {
    acc = _mm256_mul_ps(acc, sc);
    if (D) acc = _mm256_mul_ps(_mm256_loadu_ps(s), _mm256_sub_ps(acc, _mm256_set1_ps(D[i])));
    _mm256_storeu_ps(s, acc);
}

/* S[i, j] = scale * A[i] . B[j] (or the in-place dS form of `put` when D is given) for every 4-row block
   of i and every 16-key block j0 < (last row of the block) + 1.
   A rows at stride lda; BT = B transposed, [hd][Tp] with zero padding; S [T][Tp]. */
static void causal_scores(const float *A, int64_t lda, const float *BT, int Tp, int T, int hd, float scale,
                          const float *D, float *S) {
    const __m256 sc = _mm256_set1_ps(scale);
    for (int i0 = 0; i0 < T; i0 += 4) {
        const float *a[4];
        for (int r = 0; r < 4; r++) a[r] = A + (int64_t)(i0 + r < T ? i0 + r : T - 1) * lda;
        const int jmax = i0 + 4 < T ? i0 + 4 : T;
        for (int j0 = 0; j0 < jmax; j0 += 16) {
            __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00;
            for (int d = 0; d < hd; d++) {
                const __m256 b0 = _mm256_loadu_ps(BT + d * Tp + j0), b1 = _mm256_loadu_ps(BT + d * Tp + j0 + 8);
                __m256 x = _mm256_broadcast_ss(a[0] + d); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
                x = _mm256_broadcast_ss(a[1] + d); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
                x = _mm256_broadcast_ss(a[2] + d); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
                x = _mm256_broadcast_ss(a[3] + d); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
            }
            float *s = S + (int64_t)i0 * Tp + j0;
            put(s, c00, sc, D, i0); put(s + 8, c01, sc, D, i0);
            if (i0 + 1 < T) { put(s + Tp, c10, sc, D, i0 + 1); put(s + Tp + 8, c11, sc, D, i0 + 1); }
            if (i0 + 2 < T) { put(s + 2 * Tp, c20, sc, D, i0 + 2); put(s + 2 * Tp + 8, c21, sc, D, i0 + 2); }
            if (i0 + 3 < T) { put(s + 3 * Tp, c30, sc, D, i0 + 3); put(s + 3 * Tp + 8, c31, sc, D, i0 + 3); }
        }
    }
}

/* Out[i] = scale_i * sum_{j <= i} P[i, j] X[j] (lower triangle; P is zero above the diagonal within a 4-row block);
   scale_i = row_scale[i], or `scale` when row_scale is NULL.
   Rows of X at stride ldx; Out rows at stride ldo; hd = 8 * C. */
static void lower_rows(const float *P, int Tp, const float *X, int64_t ldx, int T, int C, float scale,
                       const float *row_scale, float *Out, int64_t ldo) {
    for (int i0 = 0; i0 < T; i0 += 4) {
        const int jmax = i0 + 4 < T ? i0 + 4 : T;
        const float *p[4];
        for (int r = 0; r < 4; r++) p[r] = P + (int64_t)(i0 + r < T ? i0 + r : T - 1) * Tp;
        for (int c = 0; c < C; c += 2) {
            const int two = c + 1 < C;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            for (int j = 0; j < jmax; j++) {
                const float *x = X + (int64_t)j * ldx + 8 * c;
                const __m256 x0 = _mm256_loadu_ps(x), x1 = two ? _mm256_loadu_ps(x + 8) : x0;
                __m256 w = _mm256_broadcast_ss(p[0] + j); a00 = _mm256_fmadd_ps(w, x0, a00); a01 = _mm256_fmadd_ps(w, x1, a01);
                w = _mm256_broadcast_ss(p[1] + j); a10 = _mm256_fmadd_ps(w, x0, a10); a11 = _mm256_fmadd_ps(w, x1, a11);
                w = _mm256_broadcast_ss(p[2] + j); a20 = _mm256_fmadd_ps(w, x0, a20); a21 = _mm256_fmadd_ps(w, x1, a21);
                w = _mm256_broadcast_ss(p[3] + j); a30 = _mm256_fmadd_ps(w, x0, a30); a31 = _mm256_fmadd_ps(w, x1, a31);
            }
            __m256 acc[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
            for (int r = 0; r < 4 && i0 + r < T; r++) {
                const __m256 sc = _mm256_set1_ps(row_scale ? row_scale[i0 + r] : scale);
                float *o = Out + (int64_t)(i0 + r) * ldo + 8 * c;
                _mm256_storeu_ps(o, _mm256_mul_ps(acc[r][0], sc));
                if (two) _mm256_storeu_ps(o + 8, _mm256_mul_ps(acc[r][1], sc));
            }
        }
    }
}

/* Out[j] = scale * sum_{i >= j} P[i, j] X[i] (the transpose: keys' gradients). */
static void upper_rows(const float *P, int Tp, const float *X, int64_t ldx, int T, int C, float scale, float *Out, int64_t ldo) {
    const __m256 sc = _mm256_set1_ps(scale);
    for (int j0 = 0; j0 < T; j0 += 4) {
        for (int c = 0; c < C; c += 2) {
            const int two = c + 1 < C;
            __m256 a00 = _mm256_setzero_ps(), a01 = a00, a10 = a00, a11 = a00, a20 = a00, a21 = a00, a30 = a00, a31 = a00;
            for (int i = j0; i < T; i++) {  /* P[i, j] is zero for j > i: the first rows add zeros */
                const float *x = X + (int64_t)i * ldx + 8 * c, *p = P + (int64_t)i * Tp + j0;
                const __m256 x0 = _mm256_loadu_ps(x), x1 = two ? _mm256_loadu_ps(x + 8) : x0;
                __m256 w = _mm256_broadcast_ss(p); a00 = _mm256_fmadd_ps(w, x0, a00); a01 = _mm256_fmadd_ps(w, x1, a01);
                w = _mm256_broadcast_ss(p + 1); a10 = _mm256_fmadd_ps(w, x0, a10); a11 = _mm256_fmadd_ps(w, x1, a11);
                w = _mm256_broadcast_ss(p + 2); a20 = _mm256_fmadd_ps(w, x0, a20); a21 = _mm256_fmadd_ps(w, x1, a21);
                w = _mm256_broadcast_ss(p + 3); a30 = _mm256_fmadd_ps(w, x0, a30); a31 = _mm256_fmadd_ps(w, x1, a31);
            }
            __m256 acc[4][2] = {{a00, a01}, {a10, a11}, {a20, a21}, {a30, a31}};
            for (int r = 0; r < 4 && j0 + r < T; r++) {
                float *o = Out + (int64_t)(j0 + r) * ldo + 8 * c;
                _mm256_storeu_ps(o, _mm256_mul_ps(acc[r][0], sc));
                if (two) _mm256_storeu_ps(o + 8, _mm256_mul_ps(acc[r][1], sc));
            }
        }
    }
}

/* XT[d][j] = X[j][d] for j < T, zero for T <= j < Tp (hd a multiple of 8) */
static void transpose_into(const float *X, int64_t ldx, int T, int hd, int Tp, float *XT) {
    const int full = T / 8 * 8;
    for (int j0 = 0; j0 < full; j0 += 8)
        for (int d0 = 0; d0 < hd; d0 += 8) transpose8(X + (int64_t)j0 * ldx + d0, ldx, XT + d0 * Tp + j0, Tp);
    for (int d = 0; d < hd; d++) {
        float *row = XT + d * Tp;
        for (int j = full; j < T; j++) row[j] = X[(int64_t)j * ldx + d];
        for (int j = T; j < Tp; j++) row[j] = 0.0f;
    }
}

/* ---- The products above, 16 lanes wide, for head widths that are a multiple of 16 (wide.h). Every output
   element is the same chain of fused multiply-adds, over the same terms in the same order, as in the 8-lane
   functions it replaces, so the bits are the same; the tiles are larger (8 rows or 32 keys) so that 8
   accumulators hide the multiply-add latency. */

static inline WIDE void put16(float *s, __m512 acc, __m512 sc, const float *D, int i) {
    acc = _mm512_mul_ps(acc, sc);
    if (D) acc = _mm512_mul_ps(_mm512_loadu_ps(s), _mm512_sub_ps(acc, _mm512_set1_ps(D[i])));
    _mm512_storeu_ps(s, acc);
}

/* causal_scores: the same 16-key tiles, two at a time where a 4-row block needs both */
static WIDE void causal_scores16(const float *A, int64_t lda, const float *BT, int Tp, int T, int hd, float scale,
                                 const float *D, float *S) {
    const __m512 sc = _mm512_set1_ps(scale);
    for (int i0 = 0; i0 < T; i0 += 4) {
        const float *a[4];
        for (int r = 0; r < 4; r++) a[r] = A + (int64_t)(i0 + r < T ? i0 + r : T - 1) * lda;
        const int jmax = i0 + 4 < T ? i0 + 4 : T;
        for (int j0 = 0; j0 < jmax; j0 += 32) {
            float *s = S + (int64_t)i0 * Tp + j0;
            if (j0 + 16 < jmax) {  /* keys j0 .. j0 + 31 */
                __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
                       c31 = c00;
                for (int d = 0; d < hd; d++) {
                    const __m512 b0 = _mm512_loadu_ps(BT + d * Tp + j0), b1 = _mm512_loadu_ps(BT + d * Tp + j0 + 16);
                    __m512 x = _mm512_set1_ps(a[0][d]); c00 = _mm512_fmadd_ps(x, b0, c00); c01 = _mm512_fmadd_ps(x, b1, c01);
                    x = _mm512_set1_ps(a[1][d]); c10 = _mm512_fmadd_ps(x, b0, c10); c11 = _mm512_fmadd_ps(x, b1, c11);
                    x = _mm512_set1_ps(a[2][d]); c20 = _mm512_fmadd_ps(x, b0, c20); c21 = _mm512_fmadd_ps(x, b1, c21);
                    x = _mm512_set1_ps(a[3][d]); c30 = _mm512_fmadd_ps(x, b0, c30); c31 = _mm512_fmadd_ps(x, b1, c31);
                }
                put16(s, c00, sc, D, i0); put16(s + 16, c01, sc, D, i0);
                if (i0 + 1 < T) { put16(s + Tp, c10, sc, D, i0 + 1); put16(s + Tp + 16, c11, sc, D, i0 + 1); }
                if (i0 + 2 < T) { put16(s + 2 * Tp, c20, sc, D, i0 + 2); put16(s + 2 * Tp + 16, c21, sc, D, i0 + 2); }
                if (i0 + 3 < T) { put16(s + 3 * Tp, c30, sc, D, i0 + 3); put16(s + 3 * Tp + 16, c31, sc, D, i0 + 3); }
            } else {  /* keys j0 .. j0 + 15 */
                __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
                for (int d = 0; d < hd; d++) {
                    const __m512 b0 = _mm512_loadu_ps(BT + d * Tp + j0);
                    c0 = _mm512_fmadd_ps(_mm512_set1_ps(a[0][d]), b0, c0);
                    c1 = _mm512_fmadd_ps(_mm512_set1_ps(a[1][d]), b0, c1);
                    c2 = _mm512_fmadd_ps(_mm512_set1_ps(a[2][d]), b0, c2);
                    c3 = _mm512_fmadd_ps(_mm512_set1_ps(a[3][d]), b0, c3);
                }
                put16(s, c0, sc, D, i0);
                if (i0 + 1 < T) put16(s + Tp, c1, sc, D, i0 + 1);
                if (i0 + 2 < T) put16(s + 2 * Tp, c2, sc, D, i0 + 2);
                if (i0 + 3 < T) put16(s + 3 * Tp, c3, sc, D, i0 + 3);
            }
        }
    }
}

/* lower_rows: two 4-row blocks at a time; the second block's rows go on over the keys the first does not reach */
static WIDE void lower_rows16(const float *P, int Tp, const float *X, int64_t ldx, int T, int hd, float scale,
                              const float *row_scale, float *Out, int64_t ldo) {
    for (int i0 = 0; i0 < T; i0 += 8) {
        const int lo = i0 + 4 < T ? i0 + 4 : T, hi = i0 + 8 < T ? i0 + 8 : T;
        const float *p[8];
        for (int r = 0; r < 8; r++) p[r] = P + (int64_t)(i0 + r < T ? i0 + r : T - 1) * Tp;
        for (int c = 0; c < hd; c += 16) {
            __m512 a[8];
            for (int r = 0; r < 8; r++) a[r] = _mm512_setzero_ps();
            int j = 0;
            for (; j < lo; j++) {
                const __m512 x = _mm512_loadu_ps(X + (int64_t)j * ldx + c);
                for (int r = 0; r < 8; r++) a[r] = _mm512_fmadd_ps(_mm512_set1_ps(p[r][j]), x, a[r]);
            }
            for (; j < hi; j++) {
                const __m512 x = _mm512_loadu_ps(X + (int64_t)j * ldx + c);
                for (int r = 4; r < 8; r++) a[r] = _mm512_fmadd_ps(_mm512_set1_ps(p[r][j]), x, a[r]);
            }
            for (int r = 0; r < 8 && i0 + r < T; r++)
                _mm512_storeu_ps(Out + (int64_t)(i0 + r) * ldo + c,
                                 _mm512_mul_ps(a[r], _mm512_set1_ps(row_scale ? row_scale[i0 + r] : scale)));
        }
    }
}

/* upper_rows: two 4-key blocks at a time; the second block's keys start at its own first row, as there */
static WIDE void upper_rows16(const float *P, int Tp, const float *X, int64_t ldx, int T, int hd, float scale,
                              float *Out, int64_t ldo) {
    const __m512 sc = _mm512_set1_ps(scale);
    for (int j0 = 0; j0 < T; j0 += 8) {
        const int mid = j0 + 4 < T ? j0 + 4 : T;
        for (int c = 0; c < hd; c += 16) {
            __m512 a[8];
            for (int k = 0; k < 8; k++) a[k] = _mm512_setzero_ps();
            int i = j0;
            for (; i < mid; i++) {
                const __m512 x = _mm512_loadu_ps(X + (int64_t)i * ldx + c);
                const float *p = P + (int64_t)i * Tp + j0;
                for (int k = 0; k < 4; k++) a[k] = _mm512_fmadd_ps(_mm512_set1_ps(p[k]), x, a[k]);
            }
            for (; i < T; i++) {
                const __m512 x = _mm512_loadu_ps(X + (int64_t)i * ldx + c);
                const float *p = P + (int64_t)i * Tp + j0;
                for (int k = 0; k < 8; k++) a[k] = _mm512_fmadd_ps(_mm512_set1_ps(p[k]), x, a[k]);
            }
            for (int k = 0; k < 8 && j0 + k < T; k++)
                _mm512_storeu_ps(Out + (int64_t)(j0 + k) * ldo + c, _mm512_mul_ps(a[k], sc));
        }
    }
}

/* Row i's probabilities in place, 16 lanes wide (wide.h; per element the arithmetic of the 8-lane loops in the
   kernels below, so the same bits): S[i, j] <- exp(S[i, j] - m[i]) for j <= i, 0 for i < j < the end of row i's
   4-row block rounded up to 16 (entries no product reads; Tp is a multiple of 16, so the row holds them). */
static inline WIDE void exp_row16(float *s, int i, float m) {
    const int nj = i + 1, end = ((i / 4) * 4 + 4 + 15) / 16 * 16;
    const __m512 mv = _mm512_set1_ps(m);
    for (int j = 0; j < end; j += 16)
        _mm512_storeu_ps(s + j, j < nj ? _mm512_maskz_mov_ps(lanes_below16(nj - j),
                                                             exp512(_mm512_sub_ps(_mm512_loadu_ps(s + j), mv)))
                                       : _mm512_setzero_ps());
}

/* The forward's softmax passes that need no sum, 8 lanes wide: rowv[i] = max_{j <= i} S[i, j], then
   S[i, j] <- exp(S[i, j] - rowv[i]) for j <= i and 0 up to the end of row i's 4-row block rounded up to 8. */
static void max_exp8(float *S, int Tp, int T, float *rowv) {
    for (int i = 0; i < T; i++) {
        const float *s = S + (int64_t)i * Tp;
        const int nj = i + 1;
        __m256 mx = _mm256_set1_ps(-INFINITY);
        for (int j = 0; j < nj; j += 8) {
            __m256 v = _mm256_loadu_ps(s + j);
            if (j + 8 > nj) v = _mm256_blendv_ps(_mm256_set1_ps(-INFINITY), v, lanes_below(nj - j));
            mx = _mm256_max_ps(mx, v);
        }
        rowv[i] = hmax256(mx);
    }
    for (int i = 0; i < T; i++) {
        float *s = S + (int64_t)i * Tp;
        const int nj = i + 1, end = ((i / 4) * 4 + 4 + 7) / 8 * 8;
        const __m256 m = _mm256_set1_ps(rowv[i]);
        for (int j = 0; j < end; j += 8) {
            __m256 p = j < nj ? exp256(_mm256_sub_ps(_mm256_loadu_ps(s + j), m)) : _mm256_setzero_ps();
            if (j + 8 > nj) p = _mm256_and_ps(p, lanes_below(nj - j));
            _mm256_storeu_ps(s + j, p);
        }
    }
}

/* The backward's probabilities P = exp(S - lse), zero above the diagonal up to the block's last 16-key tile,
   8 lanes wide. */
static void probabilities8(float *P, int Tp, int T, const float *lse) {
    for (int i = 0; i < T; i++) {
        const __m256 li = _mm256_set1_ps(lse[i]);
        float *p = P + (int64_t)i * Tp;
        const int nj = i + 1, end = ((i / 4) * 4 + 4 + 15) / 16 * 16;
        for (int j = 0; j < end; j += 8) {
            __m256 pv = j < nj ? exp256(_mm256_sub_ps(_mm256_loadu_ps(p + j), li)) : _mm256_setzero_ps();
            if (j + 8 > nj) pv = _mm256_and_ps(pv, lanes_below(nj - j));
            _mm256_storeu_ps(p + j, pv);
        }
    }
}

/* The forward's softmax passes that need no sum, 16 lanes wide: rowv[i] = max_{j <= i} S[i, j], then exp_row16. */
static WIDE void max_exp16(float *S, int Tp, int T, float *rowv) {
    for (int i = 0; i < T; i++) {
        const float *s = S + (int64_t)i * Tp;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int j = 0; j <= i; j += 16)
            mx = _mm512_max_ps(mx, _mm512_mask_blend_ps(lanes_below16(i + 1 - j), _mm512_set1_ps(-INFINITY),
                                                        _mm512_loadu_ps(s + j)));
        rowv[i] = _mm512_reduce_max_ps(mx);  /* a maximum: the same whatever the order */
    }
    for (int i = 0; i < T; i++) exp_row16(S + (int64_t)i * Tp, i, rowv[i]);
}

/* The backward's probabilities P = exp(S - lse), 16 lanes wide. */
static WIDE void probabilities16(float *P, int Tp, int T, const float *lse) {
    for (int i = 0; i < T; i++) exp_row16(P + (int64_t)i * Tp, i, lse[i]);
}

/* The 8- or 16-lane product (the same bits), by the path in force and the head width */
static void scores(int wide, const float *A, int64_t lda, const float *BT, int Tp, int T, int hd, float scale,
                   const float *D, float *S) {
    (wide ? causal_scores16 : causal_scores)(A, lda, BT, Tp, T, hd, scale, D, S);
}

static void lower(int wide, const float *P, int Tp, const float *X, int64_t ldx, int T, int hd, float scale,
                  const float *row_scale, float *Out, int64_t ldo) {
    if (wide && hd % 16 == 0) lower_rows16(P, Tp, X, ldx, T, hd, scale, row_scale, Out, ldo);
    else lower_rows(P, Tp, X, ldx, T, hd / 8, scale, row_scale, Out, ldo);
}

static void upper(int wide, const float *P, int Tp, const float *X, int64_t ldx, int T, int hd, float scale, float *Out,
                  int64_t ldo) {
    if (wide && hd % 16 == 0) upper_rows16(P, Tp, X, ldx, T, hd, scale, Out, ldo);
    else upper_rows(P, Tp, X, ldx, T, hd / 8, scale, Out, ldo);
}

static int check(int64_t T, int64_t hd) { return T >= 1 && hd >= 8 && hd <= 64 && hd % 8 == 0; }

/* qkv [N, T, 3, H, hd] -> y [N, T, H, hd], lse [N, H, T] (log-sum-exp of each row's scores, for backward).
   With bias (else NULL): the qkv projection's bias [3 D] is first added to qkv in place, one sequence at a
   time, just before its heads read it (qkv is then the projection's output as the backward needs it). */
int k1_attention_forward(float *qkv, const float *bias, float *y, float *lse, int64_t N, int64_t T, int64_t H,
                         int64_t hd, float scale) {
    if (!check(T, hd)) return 1;
    const int64_t D = H * hd, row = 3 * D;
    const int Tp = (int)((T + 15) / 16 * 16);
    float *kT = malloc(sizeof(float) * ((size_t)hd * Tp + (size_t)(T + 4) * Tp + (size_t)T));
    if (!kT) return 2;
    float *S = kT + (size_t)hd * Tp, *rowv = S + (size_t)(T + 4) * Tp;
    const int wide = k1_use_wide();
    for (int64_t n = 0; n < N; n++) {
        if (bias)
            for (int64_t t = 0; t < T; t++) {
                float *r = qkv + (n * T + t) * row;
                for (int64_t j = 0; j < row; j += 8)  /* row = 3 H hd, a multiple of 8 */
                    _mm256_storeu_ps(r + j, _mm256_add_ps(_mm256_loadu_ps(r + j), _mm256_loadu_ps(bias + j)));
            }
        for (int64_t h = 0; h < H; h++) {
            const float *q = qkv + n * T * row + h * hd;
            transpose_into(q + D, row, (int)T, (int)hd, Tp, kT);
            scores(wide, q, row, kT, Tp, (int)T, (int)hd, scale, NULL, S);
            /* softmax of row i over j <= i, in passes without a chain from row to row (the exponentials of
               many rows overlap); 1/sum is applied to the output. The sums keep the 8-lane order on both paths */
            (wide ? max_exp16 : max_exp8)(S, Tp, (int)T, rowv);
            for (int i = 0; i < T; i++) {
                const float *s = S + (int64_t)i * Tp;
                __m256 sum = _mm256_setzero_ps();
                for (int j = 0; j <= i; j += 8) sum = _mm256_add_ps(sum, _mm256_loadu_ps(s + j));
                const float l = hsum256(sum);
                lse[(n * H + h) * T + i] = rowv[i] + logf(l);
                rowv[i] = 1.0f / l;
            }
            lower(wide, S, Tp, q + 2 * D, row, (int)T, (int)hd, 1.0f, rowv, y + n * T * D + h * hd, D);
        }
    }
    free(kT);
    return 0;
}

/* Gradients: dy, y [N, T, H, hd]; dqkv [N, T, 3, H, hd] written (every element). With dbias (else NULL):
   dbias [3 D] = column sums of dqkv (the qkv projection's bias gradient), a partial per sequence, added
   in sequence order. */
int k1_attention_backward(const float *qkv, const float *y, const float *lse, const float *dy, float *dqkv,
                          float *dbias, int64_t N, int64_t T, int64_t H, int64_t hd, float scale) {
    if (!check(T, hd)) return 1;
    const int64_t D = H * hd, row = 3 * D;
    const int Tp = (int)((T + 15) / 16 * 16), C = (int)(hd / 8);
    /* one T x Tp matrix (P, then dS over it) + K^T and V^T: ~24 KB at T = 64, hd = 16, so it stays in L1 */
    float *kT = malloc(sizeof(float) * (2 * (size_t)hd * Tp + (size_t)(T + 4) * Tp + (size_t)T + 2 * (size_t)row));
    if (!kT) return 2;
    float *vT = kT + (size_t)hd * Tp, *P = vT + (size_t)hd * Tp, *rowv = P + (size_t)(T + 4) * Tp;
    float *part = rowv + T;
    const int wide = k1_use_wide();
    if (dbias) memset(dbias, 0, sizeof(float) * (size_t)row);
    for (int64_t n = 0; n < N; n++) {
        for (int64_t h = 0; h < H; h++) {
            const float *q = qkv + n * T * row + h * hd;
            const float *dyh = dy + n * T * D + h * hd, *yh = y + n * T * D + h * hd;
            float *dq = dqkv + n * T * row + h * hd;
            transpose_into(q + D, row, (int)T, (int)hd, Tp, kT);
            transpose_into(q + 2 * D, row, (int)T, (int)hd, Tp, vT);
            scores(wide, q, row, kT, Tp, (int)T, (int)hd, scale, NULL, P);
            (wide ? probabilities16 : probabilities8)(P, Tp, (int)T, lse + (n * H + h) * T);
            upper(wide, P, Tp, dyh, D, (int)T, (int)hd, 1.0f, dq + 2 * D, row);           /* dv = P^T dy       */
            for (int i = 0; i < T; i++) {  /* D_i = rowsum(dy * y) */
                __m256 acc = _mm256_setzero_ps();
                for (int c = 0; c < C; c++)
                    acc = _mm256_fmadd_ps(_mm256_loadu_ps(dyh + i * D + 8 * c), _mm256_loadu_ps(yh + i * D + 8 * c), acc);
                rowv[i] = hsum256(acc);
            }
            scores(wide, dyh, D, vT, Tp, (int)T, (int)hd, 1.0f, rowv, P);          /* P <- dS = P (dy V^T - D) */
            lower(wide, P, Tp, q + D, row, (int)T, (int)hd, scale, NULL, dq, row);         /* dq = scale dS K   */
            upper(wide, P, Tp, q, row, (int)T, (int)hd, scale, dq + D, row);               /* dk = scale dS^T Q */
        }
        if (dbias) {  /* the sequence's rows of dqkv are still in cache */
            memset(part, 0, sizeof(float) * (size_t)row);
            for (int64_t t = 0; t < T; t++) {
                const float *r = dqkv + (n * T + t) * row;
                for (int64_t j = 0; j < row; j += 8)
                    _mm256_storeu_ps(part + j, _mm256_add_ps(_mm256_loadu_ps(part + j), _mm256_loadu_ps(r + j)));
            }
            for (int64_t j = 0; j < row; j++) dbias[j] += part[j];
        }
    }
    free(kT);
    return 0;
}
