"""LayerNorm over the last dimension by the native kernel (`layer_norm.c`).

`ln_forward` / `ln_backward` are the two passes (what the agent block calls inside its own node);
`native_layer_norm(x, weight, bias)` is the same as one autograd node, `F.layer_norm` with an affine
to rounding (the final norm before the LM head uses it).
"""
from __future__ import annotations

import torch

from k1model.kernels.library import check, float32, library

EPS = 1e-5  # nn.LayerNorm's default


def ln_forward(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float = EPS
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x [rows, D] contiguous float32 -> (y, mean [rows], rstd [rows])."""
    rows, D = x.shape
    float32(x, weight, bias)
    y, mean, rstd = torch.empty_like(x), x.new_empty(rows), x.new_empty(rows)
    check(library().k1_layer_norm_forward(x.data_ptr(), weight.data_ptr(), bias.data_ptr(), y.data_ptr(),
                                          mean.data_ptr(), rstd.data_ptr(), rows, D, eps), "layer norm")
    return y, mean, rstd


def add_ln_forward(x: torch.Tensor, resid: torch.Tensor, bias: torch.Tensor, weight: torch.Tensor,
                   ln_bias: torch.Tensor, eps: float = EPS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """x <- (x + bias) + resid in place (x [rows, D], a matmul's product), then `ln_forward` of it."""
    rows, D = x.shape
    float32(x, resid, bias, weight, ln_bias)
    y, mean, rstd = torch.empty_like(x), x.new_empty(rows), x.new_empty(rows)
    check(library().k1_add_layer_norm_forward(x.data_ptr(), resid.data_ptr(), bias.data_ptr(), weight.data_ptr(),
                                              ln_bias.data_ptr(), y.data_ptr(), mean.data_ptr(), rstd.data_ptr(),
                                              rows, D, eps), "layer norm")
    return y, mean, rstd


def ln_backward(dy: torch.Tensor, x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, weight: torch.Tensor,
                out: torch.Tensor | None = None, resid: torch.Tensor | None = None, column_sums: bool = False
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Gradients (dx, dweight, dbias, column sums of dx or None) from dy [rows, D] (contiguous); `out` may be
    dy itself (in place); `resid` (a residual branch's gradient) is added to dx."""
    rows, D = x.shape
    float32(dy, x, weight, *([resid] if resid is not None else []))
    dx = torch.empty_like(x) if out is None else out
    dw, db = weight.new_empty(D), weight.new_empty(D)
    sums = weight.new_empty(D) if column_sums else None
    check(library().k1_layer_norm_backward(dy.data_ptr(), x.data_ptr(), mean.data_ptr(), rstd.data_ptr(),
                                           weight.data_ptr(), dx.data_ptr(), dw.data_ptr(), db.data_ptr(), rows, D,
                                           None if resid is None else resid.data_ptr(),
                                           None if sums is None else sums.data_ptr()), "layer norm")
    return dx, dw, db, sums


class _NativeLayerNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x2 = x.reshape(-1, x.shape[-1])
        y, mean, rstd = ln_forward(x2, weight, bias)
        ctx.save_for_backward(x2, mean, rstd, weight)
        return y.view(x.shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x2, mean, rstd, weight = ctx.saved_tensors
        dx, dw, db, _ = ln_backward(grad.reshape(x2.shape).contiguous(), x2, mean, rstd, weight)
        return dx.view(grad.shape), dw, db


def native_layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """LayerNorm of x [..., D] with an affine (eps 1e-5), one autograd node."""
    return _NativeLayerNorm.apply(x.float().contiguous(), weight, bias)
