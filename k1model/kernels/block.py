"""The agent block as one autograd node: torch's matmuls, the native kernels for layer norm, attention and
GELU, and a hand-written backward.

Why: at the model's widths a block's ~45 small ops (forward and backward) cost as much in dispatch
and autograd bookkeeping as in arithmetic (a step of a 1-window batch still takes ~10 ms per run).
One node per block halves the ops and keeps exactly the tensors the backward needs. The function is
`Block.forward`'s: pre-LN attention and MLP, both residual, GELU (erf), no dropout.

The matmuls are torch's (`mm`: MKL); every bias and residual add is fused into the native kernel that next
reads the product while it is in cache (the QKV bias into attention, the projection's bias and the
residual into the second norm, the MLP's first bias into GELU, its second into the residual add), and
every bias gradient into the kernel that writes the gradient it sums (k1 bench, "Native CPU kernels",
for what that saved). The backward is the textbook one (tests/test_kernels.py checks it against
autograd through the eager block).
"""
from __future__ import annotations

from typing import Sequence

import torch

from k1model.kernels.layer_norm import add_ln_forward, ln_backward, ln_forward
from k1model.kernels.library import check, float32, library


class _NativeBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, heads: int, *w: torch.Tensor) -> torch.Tensor:
        ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, out_w, out_b = w
        N, T, D = x.shape
        hd = D // heads
        x2 = x.reshape(N * T, D)
        float32(*w)  # under bf16 autocast the matmuls would not be
        lib = library()
        h1, mean1, rstd1 = ln_forward(x2, ln1_w, ln1_b)
        qkv = h1.mm(qkv_w.t())  # the biases are added by the kernels that next read each product, in cache
        att = x.new_empty(N * T, D)
        lse = x.new_empty(N, heads, T)
        float32(qkv)
        check(lib.k1_attention_forward(qkv.data_ptr(), qkv_b.data_ptr(), att.data_ptr(), lse.data_ptr(), N, T,
                                       heads, hd, hd ** -0.5), "attention")
        x1 = att.mm(proj_w.t())
        h2, mean2, rstd2 = add_ln_forward(x1, x2, proj_b, ln2_w, ln2_b)  # x1 <- x1 + proj_b + x
        f = h2.mm(fc_w.t())
        g = torch.empty_like(f)
        float32(f)
        lib.k1_gelu_bias_forward(f.data_ptr(), fc_b.data_ptr(), g.data_ptr(), f.shape[0], f.shape[1])
        out = g.mm(out_w.t())
        float32(out)
        lib.k1_add_bias_residual(out.data_ptr(), x1.data_ptr(), out_b.data_ptr(), N * T, D)
        ctx.save_for_backward(x2, h1, mean1, rstd1, qkv, att, lse, x1, h2, mean2, rstd2, f, g, *w)
        ctx.heads = heads
        return out.view(N, T, D)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x2, h1, mean1, rstd1, qkv, att, lse, x1, h2, mean2, rstd2, f, g, *w = ctx.saved_tensors
        ln1_w, _, qkv_w, _, proj_w, _, ln2_w, _, fc_w, _, out_w, _ = w
        NT, D = x2.shape
        N, heads, T = lse.shape
        hd = D // heads
        dx1 = grad.reshape(NT, D).contiguous()
        lib = library()
        # MLP: out = x1 + gelu(ln2(x1) fc^T + fc_b) out^T + out_b
        d_out_w = dx1.t().mm(g)
        d_out_b = dx1.new_empty(D)
        float32(dx1)
        check(lib.k1_column_sums(dx1.data_ptr(), d_out_b.data_ptr(), NT, D), "column sums")
        dg = dx1.mm(out_w)
        d_fc_b = dg.new_empty(dg.shape[1])
        float32(dg, f)
        check(lib.k1_gelu_bias_backward(dg.data_ptr(), f.data_ptr(), dg.data_ptr(), d_fc_b.data_ptr(), NT,
                                        dg.shape[1]), "gelu")  # in place: dg becomes df
        df = dg
        d_fc_w = df.t().mm(h2)
        dh2 = df.mm(fc_w)
        # the residual's gradient joins here; its column sums are proj_b's gradient
        dx1, d_ln2_w, d_ln2_b, d_proj_b = ln_backward(dh2, x1, mean2, rstd2, ln2_w, out=dh2, resid=dx1,
                                                      column_sums=True)
        # attention: x1 = x + attention(ln1(x) qkv^T + qkv_b) proj^T + proj_b
        d_proj_w = dx1.t().mm(att)
        datt = dx1.mm(proj_w)
        dqkv = torch.empty_like(qkv)
        d_qkv_b = qkv.new_empty(qkv.shape[1])
        float32(datt)
        check(lib.k1_attention_backward(qkv.data_ptr(), att.data_ptr(), lse.data_ptr(), datt.data_ptr(),
                                        dqkv.data_ptr(), d_qkv_b.data_ptr(), N, T, heads, hd, hd ** -0.5),
              "attention")
        d_qkv_w = dqkv.t().mm(h1)
        dh1 = dqkv.mm(qkv_w)
        dx, d_ln1_w, d_ln1_b, _ = ln_backward(dh1, x2, mean1, rstd1, ln1_w, out=dh1, resid=dx1)
        return (dx.view(N, T, D), None, d_ln1_w, d_ln1_b, d_qkv_w, d_qkv_b, d_proj_w, d_proj_b, d_ln2_w, d_ln2_b,
                d_fc_w, d_fc_b, d_out_w, d_out_b)


def native_block(x: torch.Tensor, heads: int, weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """One agent block on x [N, T, D] with its 12 tensors in `model.BLOCK_TENSORS` order."""
    return _NativeBlock.apply(x.float().contiguous(), heads, *weights)
