"""Causal self-attention by the native kernel (`attention.c`), as one autograd node.

`native_attention(qkv, heads)` takes the qkv projection's output [N, T, 3·D] (q, k, v of every head
side by side, as `Block.qkv` writes them) and returns softmax(q kᵀ/√hd + causal mask) v as [N, T, D],
the layout the output projection reads. The same function as torch's SDPA with a causal mask, to
rounding; no attention dropout. Float32 on the CPU; head widths that are multiples of 8 up to 64.
"""
from __future__ import annotations

import torch

from k1model.kernels.library import check, float32, library

MAX_HEAD_WIDTH = 64


def unsupported(head_width: int) -> str | None:
    """Why the kernel cannot run agents of this head width (None if it can)."""
    if head_width % 8 or not 8 <= head_width <= MAX_HEAD_WIDTH:
        return f"head width {head_width} (embed_dim / num_heads) is not a multiple of 8 between 8 and {MAX_HEAD_WIDTH}"
    return None


class _NativeAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, qkv: torch.Tensor, heads: int) -> torch.Tensor:
        N, T, three_d = qkv.shape
        D = three_d // 3
        hd = D // heads
        y = qkv.new_empty(N, T, D)
        lse = qkv.new_empty(N, heads, T)
        check(library().k1_attention_forward(qkv.data_ptr(), None, y.data_ptr(), lse.data_ptr(), N, T, heads, hd,
                                             hd ** -0.5), "attention")
        ctx.save_for_backward(qkv, y, lse)
        ctx.heads = heads
        return y

    @staticmethod
    def backward(ctx, dy: torch.Tensor) -> tuple[torch.Tensor, None]:
        qkv, y, lse = ctx.saved_tensors
        N, T, three_d = qkv.shape
        hd = three_d // 3 // ctx.heads
        dy = dy.contiguous()
        float32(dy)
        dqkv = torch.empty_like(qkv)
        check(library().k1_attention_backward(qkv.data_ptr(), y.data_ptr(), lse.data_ptr(), dy.data_ptr(),
                                              dqkv.data_ptr(), None, N, T, ctx.heads, hd, hd ** -0.5), "attention")
        return dqkv, None


def native_attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Causal self-attention of qkv [N, T, 3·D] -> [N, T, D] (see the module docstring)."""
    if qkv.device.type != "cpu":
        raise ValueError(f"the native attention kernel runs on the CPU; this tensor is on {qkv.device}")
    if qkv.dim() != 3 or qkv.shape[-1] % (3 * heads):
        raise ValueError(f"qkv must be [N, T, 3 * heads * head_width]; got {tuple(qkv.shape)} for {heads} heads")
    why = unsupported(qkv.shape[-1] // 3 // heads)
    if why:
        raise ValueError(f"the native attention kernel cannot run this model: {why}")
    return _NativeAttention.apply(qkv.float().contiguous(), heads)
