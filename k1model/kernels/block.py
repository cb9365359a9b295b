"""The agent block as one autograd node: torch's matmuls, the native kernels for layer norm, attention and
GELU, and a hand-written backward.

Why: at the model's widths a block's ~45 small ops (forward and backward) cost as much in dispatch
and autograd bookkeeping as in arithmetic (a step of a 1-window batch still takes ~10 ms per run).
One node per block halves the ops and keeps exactly the tensors the backward needs. The function is
`Block.forward`'s: pre-LN attention and MLP, both residual, GELU (erf), no dropout.

Every matmul is the aten op eager mode would call, and the backward is the textbook one
(tests/test_kernels.py checks it against autograd through the eager block).
"""
from __future__ import annotations

from typing import Sequence

import torch

from k1model.kernels.layer_norm import ln_backward, ln_forward
from k1model.kernels.library import check, float32, library


class _NativeBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, heads: int, *w: torch.Tensor) -> torch.Tensor:
        ln1_w, ln1_b, qkv_w, qkv_b, proj_w, proj_b, ln2_w, ln2_b, fc_w, fc_b, out_w, out_b = w
        N, T, D = x.shape
        hd = D // heads
        x2 = x.reshape(N * T, D)
        h1, mean1, rstd1 = ln_forward(x2, ln1_w, ln1_b)
        qkv = torch.addmm(qkv_b, h1, qkv_w.t())
        att = x.new_empty(N * T, D)
        lse = x.new_empty(N, heads, T)
        lib = library()
        float32(qkv)  # under bf16 autocast the matmuls would not be
        check(lib.k1_attention_forward(qkv.data_ptr(), att.data_ptr(), lse.data_ptr(), N, T, heads, hd, hd ** -0.5),
              "attention")
        x1 = torch.addmm(proj_b, att, proj_w.t()).add_(x2)
        h2, mean2, rstd2 = ln_forward(x1, ln2_w, ln2_b)
        f = torch.addmm(fc_b, h2, fc_w.t())
        g = torch.empty_like(f)
        float32(f)
        lib.k1_gelu_forward(f.data_ptr(), g.data_ptr(), f.numel())
        out = torch.addmm(out_b, g, out_w.t()).add_(x1)
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
        dx1 = grad.reshape(NT, D)
        # MLP: out = x1 + gelu(ln2(x1) fc^T) out^T
        d_out_w, d_out_b = dx1.t().mm(g), dx1.sum(0)
        lib = library()
        dg = dx1.mm(out_w)
        float32(dg, f)
        lib.k1_gelu_backward(dg.data_ptr(), f.data_ptr(), dg.data_ptr(), dg.numel())  # in place: dg becomes df
        df = dg
        d_fc_w, d_fc_b = df.t().mm(h2), df.sum(0)
        dh2 = df.mm(fc_w)
        dh2, d_ln2_w, d_ln2_b = ln_backward(dh2, x1, mean2, rstd2, ln2_w, out=dh2)
        dx1 = dh2.add_(dx1)
        # attention: x1 = x + attention(ln1(x) qkv^T) proj^T
        d_proj_w, d_proj_b = dx1.t().mm(att), dx1.sum(0)
        datt = dx1.mm(proj_w)
        dqkv = torch.empty_like(qkv)
        float32(datt)
        check(lib.k1_attention_backward(qkv.data_ptr(), att.data_ptr(), lse.data_ptr(), datt.data_ptr(),
                                        dqkv.data_ptr(), N, T, heads, hd, hd ** -0.5), "attention")
        d_qkv_w, d_qkv_b = dqkv.t().mm(h1), dqkv.sum(0)
        dh1 = dqkv.mm(qkv_w)
        dh1, d_ln1_w, d_ln1_b = ln_backward(dh1, x2, mean1, rstd1, ln1_w, out=dh1)
        dx = dh1.add_(dx1).view(N, T, D)
        return (dx, None, d_ln1_w, d_ln1_b, d_qkv_w, d_qkv_b, d_proj_w, d_proj_b, d_ln2_w, d_ln2_b, d_fc_w, d_fc_b,
                d_out_w, d_out_b)


def native_block(x: torch.Tensor, heads: int, weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """One agent block on x [N, T, D] with its 12 tensors in `model.BLOCK_TENSORS` order."""
    return _NativeBlock.apply(x.float().contiguous(), heads, *weights)
