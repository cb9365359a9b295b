"""The agent block as one autograd node whose forward and backward are one C call each (`block.c`).

Why: at the model's widths a block called op by op from Python spends as long in dispatch, allocation and
autograd bookkeeping as in arithmetic (a block on one token: ~90 us forward, ~9 us of it in C). Here the
matmuls are `gemm.c`'s (AVX2 or AVX-512 tiles, the same bits), every bias and residual add is fused into
the native kernel that next reads the product while it is in cache, the backward's temporaries live in a
workspace that stays in cache, and the norms' and GELU's outputs are recomputed in the backward rather than
kept (k1 bench, "Native CPU kernels", for what each saved). The function is `Block.forward`'s: pre-LN
attention and MLP, both residual, GELU (erf), no dropout. tests/test_kernels.py checks it bit for bit against
the same ops called one by one from torch, and against autograd through the eager block.
"""
from __future__ import annotations

import ctypes
from typing import Sequence

import torch

from k1model.kernels.layer_norm import EPS
from k1model.kernels.library import check, float32, library

_Pointers = ctypes.c_void_p * 12


def _forward(x: torch.Tensor, heads: int, w: Sequence[torch.Tensor], pointers: ctypes.Array
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, what the backward needs) for x [N, T, D]."""
    N, T, D = x.shape
    hidden = w[8].shape[0]
    lib = library()
    saved = x.new_empty(lib.k1_block_saved_floats(N, T, D, hidden, heads))
    out = torch.empty_like(x)
    check(lib.k1_block_forward(x.data_ptr(), pointers, saved.data_ptr(), out.data_ptr(), N, T, D, hidden, heads,
                               (D // heads) ** -0.5, EPS), "block")
    return out, saved


class _NativeBlock(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, heads: int, pointers: ctypes.Array, *w: torch.Tensor) -> torch.Tensor:
        out, saved = _forward(x, heads, w, pointers)
        ctx.save_for_backward(x, saved)
        # the weights are read again by the backward through `pointers`: keep them alive, and refuse a backward
        # after one was changed in place (what save_for_backward would check, without its per-tensor cost)
        ctx.heads, ctx.weights, ctx.pointers = heads, w, pointers
        ctx.versions = [t._version for t in w]
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, saved = ctx.saved_tensors
        w = ctx.weights
        if [t._version for t in w] != ctx.versions:
            raise RuntimeError("a weight of an agent block was modified in place between its forward and its "
                               "backward; compute the loss again after changing weights")
        N, T, D = x.shape
        grad = grad.contiguous()
        float32(grad)
        dx = torch.empty_like(x)
        dw = [torch.empty_like(t) for t in w]
        check(library().k1_block_backward(grad.data_ptr(), x.data_ptr(), ctx.pointers, saved.data_ptr(),
                                          dx.data_ptr(), _Pointers(*[t.data_ptr() for t in dw]), N, T, D,
                                          w[8].shape[0], ctx.heads, (D // ctx.heads) ** -0.5), "block")
        return (dx, None, None, *dw)


def native_block(x: torch.Tensor, heads: int, weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """One agent block on x [N, T, D] with its 12 tensors in `model.BLOCK_TENSORS` order (one autograd node;
    without one when no gradient is wanted, e.g. evaluation)."""
    if torch.is_autocast_enabled("cpu"):  # it would compute in float32 what autocast asked in bf16: refuse
        raise RuntimeError("the native kernels compute in float32 and cannot run under bf16 autocast (use "
                           "train.attention: masked)")
    x = x.float().contiguous()
    float32(x, *weights)  # raw pointers: contiguous float32 CPU tensors only, of the shapes the C code assumes
    D, hidden = x.shape[-1], weights[8].shape[0]
    if x.dim() != 3 or [tuple(t.shape) for t in weights] != [(D,), (D,), (3 * D, D), (3 * D,), (D, D), (D,), (D,), (D,),
                                                             (hidden, D), (hidden,), (D, hidden), (D,)]:
        raise ValueError(f"native_block takes x [N, T, D] and the 12 tensors in model.BLOCK_TENSORS order; got x "
                         f"{tuple(x.shape)} and {[tuple(t.shape) for t in weights]}")
    pointers = _Pointers(*[t.data_ptr() for t in weights])
    if torch.is_grad_enabled() and (x.requires_grad or any(t.requires_grad for t in weights)):
        return _NativeBlock.apply(x, heads, pointers, *weights)
    return _forward(x, heads, weights, pointers)[0]
