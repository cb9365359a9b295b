/* Matrix products of the agent block, for x86-64 with AVX2 and FMA, and AVX-512 where the CPU has it.

   Why it exists: at the block's shapes (1024 rows, inner dimension 64 to 192, or weight gradients that
   reduce over 1024 rows into a 64 x 192 result) MKL's sgemm spends ~20 % of its time packing operands
   and clearing the output on AMD cores, where this register-blocked kernel, which reads the operands where
   they lie and writes each output once, runs at ~90 GFLOP/s against MKL's ~70 (benchmarks/README.md). On
   Intel cores with AVX-512, MKL runs at ~200 GFLOP/s at these shapes and the AVX2 tiles at ~115, so there the
   kernel runs 16-wide tiles (tile16 below) with the same arithmetic.

   C [M, N] = sum_k A(m, k) B[k, N]: A(m, k) is A[m * lda + k], or A[k * lda + m] when a_t (a transposed
   operand, as in a weight gradient dY^T X); B and C are row-major. Every output element is one chain of
   fused multiply-adds over k in increasing order, starting from zero, whatever M, N, K, the blocking and the
   vector width (a chain interrupted between k-blocks is stored to C in float32 and picked up again exactly):
   the result is deterministic, independent of alignment, and the same bits with AVX2 or AVX-512
   (tests/test_kernels.py compares the two). Built by k1model/kernels/build.py. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "exp256.h"
#include "wide.h"

#define ROWS 6    /* a tile: 6 rows x 16 columns in 12 accumulators */
#define COLS 16
#define KBLOCK 256 /* k-block: a 16-column panel of B (16 KB) stays in L1 while the rows stream past */

/* One tile: C[r, 0:16] (+)= sum_{k < K} A(r, k) B[k, 0:16] for r < rows (rows <= 6); with acc the chains
   go on from C's values. sa_m, sa_k: strides of A along m and k. */
static inline void tile(const float *A, int64_t sa_m, int64_t sa_k, const float *B, int64_t ldb, float *C,
                        int64_t ldc, int64_t K, int rows, int acc) {
    __m256 c[ROWS][2];
    const float *a[ROWS];
    for (int r = 0; r < ROWS; r++) {
        a[r] = A + (r < rows ? r : 0) * sa_m;  /* rows past the end read row 0 and are not stored */
        c[r][0] = c[r][1] = _mm256_setzero_ps();
        if (acc && r < rows) {
            c[r][0] = _mm256_loadu_ps(C + r * ldc);
            c[r][1] = _mm256_loadu_ps(C + r * ldc + 8);
        }
    }
    __m256 c00 = c[0][0], c01 = c[0][1], c10 = c[1][0], c11 = c[1][1], c20 = c[2][0], c21 = c[2][1],
           c30 = c[3][0], c31 = c[3][1], c40 = c[4][0], c41 = c[4][1], c50 = c[5][0], c51 = c[5][1];
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5];
    for (int64_t k = 0; k < K; k++) {
        const __m256 b0 = _mm256_loadu_ps(B + k * ldb), b1 = _mm256_loadu_ps(B + k * ldb + 8);
        const int64_t o = k * sa_k;
        __m256 x;
        x = _mm256_broadcast_ss(a0 + o); c00 = _mm256_fmadd_ps(x, b0, c00); c01 = _mm256_fmadd_ps(x, b1, c01);
        x = _mm256_broadcast_ss(a1 + o); c10 = _mm256_fmadd_ps(x, b0, c10); c11 = _mm256_fmadd_ps(x, b1, c11);
        x = _mm256_broadcast_ss(a2 + o); c20 = _mm256_fmadd_ps(x, b0, c20); c21 = _mm256_fmadd_ps(x, b1, c21);
        x = _mm256_broadcast_ss(a3 + o); c30 = _mm256_fmadd_ps(x, b0, c30); c31 = _mm256_fmadd_ps(x, b1, c31);
        x = _mm256_broadcast_ss(a4 + o); c40 = _mm256_fmadd_ps(x, b0, c40); c41 = _mm256_fmadd_ps(x, b1, c41);
        x = _mm256_broadcast_ss(a5 + o); c50 = _mm256_fmadd_ps(x, b0, c50); c51 = _mm256_fmadd_ps(x, b1, c51);
    }
    const __m256 out[ROWS][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    for (int r = 0; r < rows; r++) {
        _mm256_storeu_ps(C + r * ldc, out[r][0]);
        _mm256_storeu_ps(C + r * ldc + 8, out[r][1]);
    }
}

/* The AVX-512 tile: C[r, 0:32] (+)= sum_{k < K} A(r, k) B[k, 0:32] for r < rows (rows <= 8), 16 accumulators of
   16 floats; the same chains as `tile`, two of its column blocks at once. */
#define WIDE_ROWS 8
#define WIDE_COLS 32
#define WIDE_STEP(r)                                                                         \
    x = _mm512_set1_ps(a##r[o]);                                                             \
    c##r##0 = _mm512_fmadd_ps(x, b0, c##r##0);                                               \
    c##r##1 = _mm512_fmadd_ps(x, b1, c##r##1);
static WIDE void tile16(const float *A, int64_t sa_m, int64_t sa_k, const float *B, int64_t ldb, float *C,
                        int64_t ldc, int64_t K, int rows, int acc) {
    const float *a[WIDE_ROWS];
    __m512 c[WIDE_ROWS][2];
    for (int r = 0; r < WIDE_ROWS; r++) {
        a[r] = A + (r < rows ? r : 0) * sa_m;  /* rows past the end read row 0 and are not stored */
        c[r][0] = c[r][1] = _mm512_setzero_ps();
        if (acc && r < rows) {
            c[r][0] = _mm512_loadu_ps(C + r * ldc);
            c[r][1] = _mm512_loadu_ps(C + r * ldc + 16);
        }
    }
    __m512 c00 = c[0][0], c01 = c[0][1], c10 = c[1][0], c11 = c[1][1], c20 = c[2][0], c21 = c[2][1],
           c30 = c[3][0], c31 = c[3][1], c40 = c[4][0], c41 = c[4][1], c50 = c[5][0], c51 = c[5][1],
           c60 = c[6][0], c61 = c[6][1], c70 = c[7][0], c71 = c[7][1];
    const float *a0 = a[0], *a1 = a[1], *a2 = a[2], *a3 = a[3], *a4 = a[4], *a5 = a[5], *a6 = a[6], *a7 = a[7];
    for (int64_t k = 0; k < K; k++) {
        const __m512 b0 = _mm512_loadu_ps(B + k * ldb), b1 = _mm512_loadu_ps(B + k * ldb + 16);
        const int64_t o = k * sa_k;
        __m512 x;
        WIDE_STEP(0) WIDE_STEP(1) WIDE_STEP(2) WIDE_STEP(3) WIDE_STEP(4) WIDE_STEP(5) WIDE_STEP(6) WIDE_STEP(7)
    }
    const __m512 out[WIDE_ROWS][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                                      {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
    for (int r = 0; r < rows; r++) {
        _mm512_storeu_ps(C + r * ldc, out[r][0]);
        _mm512_storeu_ps(C + r * ldc + 16, out[r][1]);
    }
}

/* The columns [j, j + 32) x all rows, for k in [k0, k0 + kc), with the AVX-512 tiles. */
static WIDE void wide_panel(const float *Ak, int64_t sa_m, int64_t sa_k, const float *Bk, int64_t ldb, float *C,
                            int64_t ldc, int64_t M, int64_t kc, int acc) {
    for (int64_t i = 0; i < M; i += WIDE_ROWS)
        tile16(Ak + i * sa_m, sa_m, sa_k, Bk, ldb, C + i * ldc, ldc, kc,
               M - i < WIDE_ROWS ? (int)(M - i) : WIDE_ROWS, acc);
}


/* C [M, N] = op(A) B (see the top of the file); lda, ldb, ldc: row strides. Returns 1 on a bad shape. */
int k1_gemm(const float *A, int a_t, int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc, int64_t M,
            int64_t N, int64_t K) {
    if (M < 0 || N < 0 || K < 0) return 1;
    if (M == 0 || N == 0) return 0;
    const int64_t sa_m = a_t ? 1 : lda, sa_k = a_t ? lda : 1;
    if (K == 0) {
        for (int64_t i = 0; i < M; i++) memset(C + i * ldc, 0, sizeof(float) * (size_t)N);
        return 0;
    }
    float panel[KBLOCK * COLS], part[ROWS * COLS];  /* a last panel narrower than 16: zero-padded copies */
    int64_t j = 0;
    if (k1_use_wide())  /* 32-column panels with the AVX-512 tiles; what is left (under 32 columns) as below */
        for (; j + WIDE_COLS <= N; j += WIDE_COLS)
            for (int64_t k0 = 0; k0 < K; k0 += KBLOCK)
                wide_panel(A + k0 * sa_k, sa_m, sa_k, B + k0 * ldb + j, ldb, C + j, ldc, M,
                           K - k0 < KBLOCK ? K - k0 : KBLOCK, k0 > 0);
    for (; j < N; j += COLS) {
        const int64_t nr = N - j < COLS ? N - j : COLS;
        for (int64_t k0 = 0; k0 < K; k0 += KBLOCK) {
            const int64_t kc = K - k0 < KBLOCK ? K - k0 : KBLOCK;
            const float *Ak = A + k0 * sa_k;
            if (nr == COLS) {
                for (int64_t i = 0; i < M; i += ROWS)
                    tile(Ak + i * sa_m, sa_m, sa_k, B + k0 * ldb + j, ldb, C + i * ldc + j, ldc, kc,
                         M - i < ROWS ? (int)(M - i) : ROWS, k0 > 0);
                continue;
            }
            memset(panel, 0, sizeof(panel));
            for (int64_t k = 0; k < kc; k++) memcpy(panel + k * COLS, B + (k0 + k) * ldb + j, sizeof(float) * (size_t)nr);
            for (int64_t i = 0; i < M; i += ROWS) {
                const int rows = M - i < ROWS ? (int)(M - i) : ROWS;
                memset(part, 0, sizeof(part));
                if (k0 > 0)
                    for (int r = 0; r < rows; r++) memcpy(part + r * COLS, C + (i + r) * ldc + j, sizeof(float) * (size_t)nr);
                tile(Ak + i * sa_m, sa_m, sa_k, panel, COLS, part, COLS, kc, rows, k0 > 0);
                for (int r = 0; r < rows; r++) memcpy(C + (i + r) * ldc + j, part + r * COLS, sizeof(float) * (size_t)nr);
            }
        }
    }
    return 0;
}

/* T [cols, rows] = X [rows, cols]^T (the block's weights, so that its forward products read them row-major);
   8 x 8 blocks in registers, the edges element by element */
void k1_transpose(const float *X, int64_t rows, int64_t cols, float *T) {
    const int64_t r8 = rows / 8 * 8, c8 = cols / 8 * 8;
    for (int64_t r0 = 0; r0 < r8; r0 += 8)
        for (int64_t c0 = 0; c0 < c8; c0 += 8) transpose8(X + r0 * cols + c0, cols, T + c0 * rows + r0, (int)rows);
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = r < r8 ? c8 : 0; c < cols; c++) T[c * rows + r] = X[r * cols + c];
}
