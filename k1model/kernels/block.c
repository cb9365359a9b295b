/* The agent block, forward and backward, in one call each: the products by gemm.c and this folder's kernels
   for everything between them.

   Why: at the model's widths a block called op by op from Python pays ~0.5 ms per block and step in
   dispatch, allocation and glue (a block on one sequence took 0.75 ms for 0.26 ms of arithmetic), and
   its backward's temporaries landed in fresh, cold memory. Here a block is two C calls; the backward's
   temporaries live in one per-thread workspace that stays in cache from block to block.

   The function is `Block.forward`'s: x1 = x + proj(attention(qkv(ln1(x)))), out = x1 + out(gelu(fc(ln2(x1)))).
   tests/test_kernels.py checks it bit for bit against the same kernels called one by one, and against
   autograd through the eager block. */
#define _POSIX_C_SOURCE 200112L  /* posix_memalign under -std=c99 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* the other kernels of this library (attention.c, gelu.c, layer_norm.c) */
int k1_attention_forward(float *qkv, const float *bias, float *y, float *lse, int64_t N, int64_t T, int64_t H,
                         int64_t hd, float scale);
int k1_attention_backward(const float *qkv, const float *y, const float *lse, const float *dy, float *dqkv,
                          float *dbias, int64_t N, int64_t T, int64_t H, int64_t hd, float scale);
void k1_gelu_bias_forward(float *f, const float *b, float *g, int64_t rows, int64_t n);
int k1_gelu_bias_backward_output(const float *dy, const float *x, float *dx, float *db, float *g, int64_t rows,
                                 int64_t n);
int k1_layer_norm_forward(const float *x, const float *w, const float *b, float *y, float *mean, float *rstd,
                          int64_t rows, int64_t D, float eps);
int k1_add_layer_norm_forward(float *x, const float *resid, const float *bias, const float *w, const float *b,
                              float *y, float *mean, float *rstd, int64_t rows, int64_t D, float eps);
void k1_layer_norm_apply(const float *x, const float *mean, const float *rstd, const float *w, const float *b,
                         float *y, int64_t rows, int64_t D);
void k1_add_bias_residual(float *a, const float *resid, const float *bias, int64_t rows, int64_t D);
int k1_column_sums(const float *m, float *colsum, int64_t rows, int64_t D);
int k1_layer_norm_backward(const float *dy, const float *x, const float *mean, const float *rstd, const float *w,
                           float *dx, float *dw, float *db, int64_t rows, int64_t D, const float *resid,
                           float *colsum);

int k1_gemm(const float *A, int a_t, int64_t lda, const float *B, int64_t ldb, float *C, int64_t ldc, int64_t M,
            int64_t N, int64_t K);
void k1_transpose(const float *X, int64_t rows, int64_t cols, float *T);

/* C [M, N] = op(A) B with B row-major [K, N]; op(A) is A [M, K], or A stored as [K, M] when a_t (gemm.c) */
static void mm(const float *A, int a_t, const float *B, float *C, int64_t M, int64_t N, int64_t K) {
    k1_gemm(A, a_t, a_t ? M : K, B, N, C, N, M, N, K);
}

/* buffers start on 64-byte boundaries */
static int64_t pad16(int64_t n) { return (n + 15) / 16 * 16; }

/* What the forward keeps for the backward, in one buffer of k1_block_saved_floats floats: qkv [NT, 3D] (bias
   added), att [NT, D], x1 [NT, D], f [NT, Hd] (bias added), lse [N, heads, T], mean1, rstd1, mean2, rstd2 [NT].
   The norms' outputs h1, h2 and gelu's output g are not kept: the backward recomputes them bit for bit from
   x, x1, f and the kept statistics (k1_layer_norm_apply, k1_gelu_bias_backward_output), which costs less than
   writing them to memory that has left the cache by the time the backward reads it. */
typedef struct { float *qkv, *att, *x1, *f, *lse, *mean1, *rstd1, *mean2, *rstd2; } Saved;

int64_t k1_block_saved_floats(int64_t N, int64_t T, int64_t D, int64_t Hd, int64_t heads) {
    const int64_t NT = N * T;
    return pad16(NT * 3 * D) + 2 * pad16(NT * D) + pad16(NT * Hd) + pad16(N * heads * T) + 4 * pad16(NT);
}

static Saved carve(float *base, int64_t N, int64_t T, int64_t D, int64_t Hd, int64_t heads) {
    const int64_t NT = N * T;
    Saved s;
    float *p = base;
    s.qkv = p; p += pad16(NT * 3 * D);
    s.att = p; p += pad16(NT * D);
    s.x1 = p; p += pad16(NT * D);
    s.f = p; p += pad16(NT * Hd);
    s.lse = p; p += pad16(N * heads * T);
    s.mean1 = p; p += pad16(NT);
    s.rstd1 = p; p += pad16(NT);
    s.mean2 = p; p += pad16(NT);
    s.rstd2 = p;
    return s;
}

/* Temporaries (the norms' outputs, gelu's, the backward's gradients): one workspace per thread, grown when a
   larger block needs it, never freed (a few MB), so they stay in cache from one call to the next. */
static __thread float *workspace = NULL;
static __thread int64_t workspace_floats = 0;

static float *scratch(int64_t floats) {
    if (floats > workspace_floats) {
        free(workspace);
        workspace = NULL;
        workspace_floats = 0;
        if (posix_memalign((void **)&workspace, 64, sizeof(float) * (size_t)floats)) return NULL;
        workspace_floats = floats;
    }
    return workspace;
}

/* The block's 12 tensors, in model.BLOCK_TENSORS order. */
enum { LN1_W, LN1_B, QKV_W, QKV_B, PROJ_W, PROJ_B, LN2_W, LN2_B, FC_W, FC_B, OUT_W, OUT_B, NUM_TENSORS };

/* x [N, T, D] -> out [N, T, D]; saved: a buffer of k1_block_saved_floats floats. */
int k1_block_forward(const float *x, const float *const *w, float *saved, float *out, int64_t N, int64_t T,
                     int64_t D, int64_t Hd, int64_t heads, float scale, float eps) {
    const int64_t NT = N * T;
    Saved s = carve(saved, N, T, D, Hd, heads);
    float *h = scratch(pad16(NT * D) + pad16(NT * Hd) + pad16(3 * D * D) + pad16(D * D) + 2 * pad16(D * Hd));
    if (!h) return 2;  /* h1, then h2 */
    float *g = h + pad16(NT * D), *qkv_t = g + pad16(NT * Hd), *proj_t = qkv_t + pad16(3 * D * D),
          *fc_t = proj_t + pad16(D * D), *out_t = fc_t + pad16(D * Hd);
    /* the weights transposed, so that every product reads its right operand row-major */
    k1_transpose(w[QKV_W], 3 * D, D, qkv_t);
    k1_transpose(w[PROJ_W], D, D, proj_t);
    k1_transpose(w[FC_W], Hd, D, fc_t);
    k1_transpose(w[OUT_W], D, Hd, out_t);
    int rc = k1_layer_norm_forward(x, w[LN1_W], w[LN1_B], h, s.mean1, s.rstd1, NT, D, eps);
    if (rc) return rc;
    mm(h, 0, qkv_t, s.qkv, NT, 3 * D, D);  /* the biases are added by the kernels that next read each product */
    if ((rc = k1_attention_forward(s.qkv, w[QKV_B], s.att, s.lse, N, T, heads, D / heads, scale))) return rc;
    mm(s.att, 0, proj_t, s.x1, NT, D, D);
    if ((rc = k1_add_layer_norm_forward(s.x1, x, w[PROJ_B], w[LN2_W], w[LN2_B], h, s.mean2, s.rstd2, NT, D, eps)))
        return rc;  /* x1 <- x1 + proj_b + x */
    mm(h, 0, fc_t, s.f, NT, Hd, D);
    k1_gelu_bias_forward(s.f, w[FC_B], g, NT, Hd);
    mm(g, 0, out_t, out, NT, D, Hd);
    k1_add_bias_residual(out, s.x1, w[OUT_B], NT, D);
    return 0;
}

/* From grad = dL/d out [N, T, D] (contiguous): dx [N, T, D] and the 12 tensors' gradients dw (written). */
int k1_block_backward(const float *grad, const float *x, const float *const *w, const float *saved, float *dx,
                      float *const *dw, int64_t N, int64_t T, int64_t D, int64_t Hd, int64_t heads, float scale) {
    const int64_t NT = N * T;
    const Saved s = carve((float *)saved, N, T, D, Hd, heads);
    float *dg = scratch(2 * pad16(NT * Hd) + 3 * pad16(NT * D) + pad16(NT * 3 * D));
    if (!dg) return 2;
    float *g = dg + pad16(NT * Hd), *h = g + pad16(NT * Hd), *dx1 = h + pad16(NT * D), *datt = dx1 + pad16(NT * D),
          *dqkv = datt + pad16(NT * D);
    int rc;
    /* MLP: out = x1 + gelu(ln2(x1) fc^T + fc_b) out^T + out_b */
    mm(grad, 0, w[OUT_W], dg, NT, Hd, D);
    if ((rc = k1_gelu_bias_backward_output(dg, s.f, dg, dw[FC_B], g, NT, Hd))) return rc;  /* dg becomes df; g */
    mm(grad, 1, g, dw[OUT_W], D, Hd, NT);
    if ((rc = k1_column_sums(grad, dw[OUT_B], NT, D))) return rc;
    k1_layer_norm_apply(s.x1, s.mean2, s.rstd2, w[LN2_W], w[LN2_B], h, NT, D);  /* h2 */
    mm(dg, 1, h, dw[FC_W], Hd, D, NT);
    mm(dg, 0, w[FC_W], dx1, NT, D, Hd);
    /* the residual's gradient joins here; its column sums are proj_b's gradient */
    if ((rc = k1_layer_norm_backward(dx1, s.x1, s.mean2, s.rstd2, w[LN2_W], dx1, dw[LN2_W], dw[LN2_B], NT, D, grad,
                                     dw[PROJ_B]))) return rc;
    /* attention: x1 = x + attention(ln1(x) qkv^T + qkv_b) proj^T + proj_b */
    mm(dx1, 1, s.att, dw[PROJ_W], D, D, NT);
    mm(dx1, 0, w[PROJ_W], datt, NT, D, D);
    if ((rc = k1_attention_backward(s.qkv, s.att, s.lse, datt, dqkv, dw[QKV_B], N, T, heads, D / heads, scale)))
        return rc;
    k1_layer_norm_apply(x, s.mean1, s.rstd1, w[LN1_W], w[LN1_B], h, NT, D);  /* h1 */
    mm(dqkv, 1, h, dw[QKV_W], 3 * D, D, NT);
    mm(dqkv, 0, w[QKV_W], dx, NT, D, 3 * D);
    return k1_layer_norm_backward(dx, x, s.mean1, s.rstd1, w[LN1_W], dx, dw[LN1_W], dw[LN1_B], NT, D, dx1, NULL);
}
