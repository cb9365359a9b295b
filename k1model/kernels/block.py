"""The agent block as one autograd node: torch's own ops for norms, matmuls and GELU, the native kernel
for attention, and a hand-written backward.

Why: at the model's widths a block's ~45 small ops (forward and backward) cost as much in dispatch
and autograd bookkeeping as in arithmetic (a step of a 1-window batch still takes ~10 ms per run).
One node per block halves the ops and keeps exactly the tensors the backward needs. The function is
`Block.forward`'s: pre-LN attention and MLP, both residual, GELU (erf), no dropout.

Every matmul, norm and GELU is the aten op eager mode would call, and the backward is the textbook
one (tests/test_kernels.py checks it against autograd through the eager block).
"""
from __future__ import annotations

from typing import Sequence

import torch

from k1model.kernels.library import check, library

aten = torch.ops.aten
EPS = 1e-5  # nn.LayerNorm's default


class _NativeBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, heads: int, *w: torch.Tensor) -> torch.Tensor:
        ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, out_w, out_b = w
        N, T, D = x.shape
        hd = D // heads
        x2 = x.reshape(N * T, D)
        h1, mean1, rstd1 = aten.native_layer_norm(x2, [D], ln1_w, ln1_b, EPS)
        qkv = torch.addmm(qkv_b, h1, qkv_w.t())
        att = x.new_empty(N * T, D)
        lse = x.new_empty(N, heads, T)
        check(library().k1_attention_forward(qkv.data_ptr(), att.data_ptr(), lse.data_ptr(), N, T, heads, hd, hd ** -0.5),
              "attention")
        x1 = torch.addmm(proj_b, att, proj_w.t()).add_(x2)
        h2, mean2, rstd2 = aten.native_layer_norm(x1, [D], ln2_w, ln2_b, EPS)
        f = torch.addmm(fc_b, h2, fc_w.t())
        g = aten.gelu(f)
        out = torch.addmm(out_b, g, out_w.t()).add_(x1)
        ctx.save_for_backward(x2, h1, mean1, rstd1, qkv, att, lse, x1, h2, mean2, rstd2, f, g, *w)
        ctx.heads = heads
        return out.view(N, T, D)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x2, h1, mean1, rstd1, qkv, att, lse, x1, h2, mean2, rstd2, f, g, *w = ctx.saved_tensors
        ln1_w, ln1_b, qkv_w, _, proj_w, _, ln2_w, ln2_b, fc_w, _, out_w, _ = w
        NT, D = x2.shape
        N, heads, T = lse.shape
        hd = D // heads
        dx1 = grad.reshape(NT, D)
        # MLP: out = x1 + gelu(ln2(x1) fc^T) out^T
        d_out_w, d_out_b = dx1.t().mm(g), dx1.sum(0)
        df = aten.gelu_backward(dx1.mm(out_w), f)
        d_fc_w, d_fc_b = df.t().mm(h2), df.sum(0)
        dh2, d_ln2_w, d_ln2_b = aten.native_layer_norm_backward(df.mm(fc_w), x1, [D], mean2, rstd2, ln2_w, ln2_b,
                                                                [True, True, True])
        dx1 = dh2.add_(dx1)
        # attention: x1 = x + attention(ln1(x) qkv^T) proj^T
        d_proj_w, d_proj_b = dx1.t().mm(att), dx1.sum(0)
        datt = dx1.mm(proj_w)
        dqkv = torch.empty_like(qkv)
        check(library().k1_attention_backward(qkv.data_ptr(), att.data_ptr(), lse.data_ptr(), datt.data_ptr(),
                                              dqkv.data_ptr(), N, T, heads, hd, hd ** -0.5), "attention")
        d_qkv_w, d_qkv_b = dqkv.t().mm(h1), dqkv.sum(0)
        dh1, d_ln1_w, d_ln1_b = aten.native_layer_norm_backward(dqkv.mm(qkv_w), x2, [D], mean1, rstd1, ln1_w, ln1_b,
                                                                [True, True, True])
        dx = dh1.add_(dx1).view(N, T, D)
        return (dx, None, d_ln1_w, d_ln1_b, d_qkv_w, d_qkv_b, d_proj_w, d_proj_b, d_ln2_w, d_ln2_b, d_fc_w, d_fc_b,
                d_out_w, d_out_b)


def native_block(x: torch.Tensor, heads: int, weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """One agent block on x [N, T, D] with its 12 tensors in `model.BLOCK_TENSORS` order."""
    return _NativeBlock.apply(x.float().contiguous(), heads, *weights)
