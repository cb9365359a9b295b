"""Cross-entropy per row by the native kernel (`cross_entropy.c`), as one autograd node.

`native_cross_entropy(logits [M, V], targets [M])` -> per-row losses [M]: logsumexp(logits[r]) −
logits[r, t_r], 0 for rows whose target is `ignore_index`. The mean (over the rows that count) is
left to the caller, so it is F.cross_entropy's `reduction="none"`, to rounding.
"""
from __future__ import annotations

import torch

from k1model.kernels.library import check, float32, library


class _NativeCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits: torch.Tensor, targets: torch.Tensor, ignore_index: int) -> torch.Tensor:
        M, V = logits.shape
        float32(logits)
        losses = logits.new_empty(M)
        lse = logits.new_empty(M)
        check(library().k1_cross_entropy_forward(logits.data_ptr(), targets.data_ptr(), losses.data_ptr(),
                                                 lse.data_ptr(), M, V, ignore_index), "cross-entropy")
        ctx.save_for_backward(logits, targets, lse)
        ctx.ignore_index = ignore_index
        return losses

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        logits, targets, lse = ctx.saved_tensors
        M, V = logits.shape
        grad = grad.float().contiguous()
        dlogits = torch.empty_like(logits)
        check(library().k1_cross_entropy_backward(logits.data_ptr(), targets.data_ptr(), lse.data_ptr(),
                                                  grad.data_ptr(), dlogits.data_ptr(), M, V, ctx.ignore_index),
              "cross-entropy")
        return dlogits, None, None


def native_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Per-row cross-entropy of logits [M, V] against targets [M] (see the module docstring)."""
    if logits.device.type != "cpu" or logits.dim() != 2 or targets.shape != logits.shape[:1]:
        raise ValueError(f"native cross-entropy needs CPU logits [M, V] and targets [M]; got {tuple(logits.shape)}, "
                         f"{tuple(targets.shape)} on {logits.device}")
    return _NativeCrossEntropy.apply(logits.float().contiguous(), targets.to(torch.int64).contiguous(), int(ignore_index))
