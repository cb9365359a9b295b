"""How the model's runs and kernels execute: one run after another or folded into batched matmuls, which
kernels (torch's, or the native C kernels when asked for: `kernels_for`), and the small autograd pieces between
agents. Every choice computes the same function, and `loop` batching the same bits for a run whatever other runs
share the process. The model itself is `model.py`; it asks its `Kernels` for every operation that has a native
version and never branches on which it has.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import torch
import torch.nn.functional as F

from k1model.config.model import ModelConfig
from k1model.errors import ConfigError
from k1model.kernels import native_attention, native_block, native_cross_entropy, native_layer_norm, vector_isa

if TYPE_CHECKING:
    from torch import nn

# Two ways to run R copies, chosen by measurement per device (`k1 bench`, `train.run_batching`):
# "batched" folds the runs into batched matmuls ([R, ...] tensors, few large kernels: what a GPU
# wants); "loop" runs each run's plain 2-D kernels in turn (what a CPU wants: per-op overhead is
# small there and smaller working sets stay in cache). Both compute the same function; a run's
# numbers under "loop" do not depend on the other runs in the process at all.
RUN_BATCHING = ("batched", "loop")


def stack_runs(ts: Sequence[torch.Tensor]) -> torch.Tensor:
    """The runs' tensors along a new leading run dimension (no copy for one run)."""
    return ts[0].unsqueeze(0) if len(ts) == 1 else torch.stack(list(ts))


def per_run(fn, runs: int) -> torch.Tensor:
    """stack_runs of fn(0), ..., fn(runs - 1)."""
    return stack_runs([fn(r) for r in range(runs)])


def native_token_losses(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """One run's per-token cross-entropy by the native kernel: logits [..., V], targets [...] -> [n]."""
    return native_cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def split_runs(t: torch.Tensor) -> list[torch.Tensor]:
    """Views of each run's slice of t [R, ...]. (Indexing t[r] instead would zero-fill a full-size
    gradient per run in backward; squeeze/unbind do not.)"""
    return [t.squeeze(0)] if t.shape[0] == 1 else list(t.unbind(0))


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """x [R, ..., in] @ weight[r].T + bias[r] for every run r: one batched matmul."""
    shape = x.shape
    y = torch.baddbmm(bias.unsqueeze(1), x.reshape(shape[0], -1, shape[-1]), weight.transpose(1, 2))
    return y.view(*shape[:-1], weight.shape[1])


def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """LayerNorm over the last dim with run r's affine: x [R, ..., D], weight/bias [R, D]."""
    extra = (1,) * (x.dim() - 2)
    shape = (x.shape[0], *extra, x.shape[-1])
    return torch.addcmul(bias.view(shape), F.layer_norm(x, x.shape[-1:]), weight.view(shape))


def self_attention(qkv: torch.Tensor, heads: int, mask: torch.Tensor, kernel: str, dropout: float) -> torch.Tensor:
    """Causal self-attention of the qkv projection's output [N, T, 3·D] -> [N, T, D].

    kernel `native`: the C kernel of `k1model.kernels` (CPU, reads q, k, v in place: no copies; no
    attention dropout); `masked`: torch's SDPA with an explicit additive causal mask; `causal`: SDPA's
    is_causal path (flash kernels on GPU); `math`: the softmax written out (what torch.func's vmap
    handles without a fallback). All compute the same attention, up to rounding; `k1 bench` measures
    which is fastest."""
    if kernel == "native":
        return native_attention(qkv, heads)
    N, T, three_d = qkv.shape
    D = three_d // 3
    q, k, v = qkv.view(N, T, 3, heads, D // heads).permute(2, 0, 3, 1, 4)
    return causal_attention(q, k, v, mask, kernel, dropout).transpose(1, 2).reshape(N, T, D)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, kernel: str,
                     dropout: float) -> torch.Tensor:
    """torch's kernels on q, k, v [N, heads, T, head_dim] (see `self_attention`)."""
    T = q.shape[-2]
    if kernel == "causal":
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
    if kernel == "math":  # plain ops: what torch.func transforms (vmap) handle without a fallback
        att = torch.softmax(q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5 + mask[:T, :T], dim=-1)
        return F.dropout(att, dropout) @ v
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask[:T, :T], dropout_p=dropout)


ATTENTION_KERNELS = ("masked", "causal", "math", "native")


def native_unavailable(cfg: ModelConfig, device: torch.device | str = "cpu", precision: str = "fp32") -> str | None:
    """Why the native kernels cannot run this model here, on this device at this precision (None if they
    can): the one place every caller (auto, the trainer's checks, `k1 bench`) asks."""
    from k1model import kernels

    if torch.device(device).type != "cpu":
        return "it is a CPU kernel"
    if precision != "fp32":
        return f"it computes in float32 and train.precision is {precision}"
    if cfg.dropout > 0:
        return f"it has no attention dropout and model.dropout is {cfg.dropout}"
    return kernels.unsupported(cfg.embed_dim // cfg.num_heads) or kernels.unavailable()


def default_execution(device: torch.device | str) -> tuple[str, str]:
    """(attention kernel, run batching) that `auto` means on a device type: torch's portable kernels everywhere,
    so a run's numbers do not depend on the CPU or on a C compiler (CUDA: SDPA's causal kernel, runs batched;
    CPU: SDPA with a mask, each run's own kernels in turn). The native CPU kernels run only when a profile or
    the command line names them (`train.attention: native`)."""
    if torch.device(device).type == "cuda":
        return "causal", "batched"
    return "masked", "loop"


class Kernels:
    """torch's kernels: the portable path. `attention` is the kernel `self_attention` runs (`masked`: SDPA with
    an explicit causal mask; `causal`: SDPA's is_causal path, flash kernels on a GPU; `math`: the softmax
    written out, what torch.func's vmap transforms). The model calls these methods, one run at a time where
    the name says so."""

    def __init__(self, attention: str):
        self.attention = attention

    def describe(self) -> str:
        """Which kernels run (the `kernels` entry of a run's metrics)."""
        return f"torch ({self.attention} attention)"

    def block(self, block: Any, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """One run's agent block (`model.Block`) on x [B, T, D]."""
        return block.eager(x, mask, self.attention)

    def block_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the loop pass hands a block: its own view. The eager block uses its input twice (norm and
        residual); a view of its own makes autograd sum those two gradients before adding other children's,
        the association of the sums the stacked path has, so the same bits."""
        return x.view_as(x)

    def final_norm(self, norm: "nn.LayerNorm", y: torch.Tensor) -> torch.Tensor:
        """One run's final LayerNorm."""
        return norm(y)

    def token_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of every token: logits [R, ..., V], targets [R, ...] -> [R, n] (0 where a target is
        -100, i.e. not scored)."""
        R, V = logits.shape[0], logits.shape[-1]
        return F.cross_entropy(logits.reshape(-1, V).float(), targets.reshape(-1), reduction="none").view(R, -1)

    def token_losses_of_runs(self, logits: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """`token_losses` from per-run logits (loop batching): [R, n]."""
        return self.token_losses(stack_runs(logits), targets)

    def run_losses(self, logits: torch.Tensor, targets: torch.Tensor, batched: bool) -> torch.Tensor:
        """Mean cross-entropy per run over the scored tokens: logits [R, ..., V], targets [R, ...] -> [R]."""
        if not batched:
            return self.run_losses_of_runs(split_runs(logits), targets)
        R, V = logits.shape[0], logits.shape[-1]
        ce = F.cross_entropy(logits.reshape(-1, V).float(), targets.reshape(-1), reduction="none")
        return ce.view(R, -1).mean(1)

    def run_losses_of_runs(self, logits: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        """`run_losses` from per-run logits (loop batching): [R]."""
        return stack_runs([F.cross_entropy(lg.reshape(-1, lg.shape[-1]).float(), t.reshape(-1))
                           for lg, t in zip(logits, split_runs(targets))])


class NativeKernels(Kernels):
    """The C kernels of `k1model.kernels` (CPU, float32): the whole agent block in one call each way, the final
    norm and the cross-entropy; under `batched` run batching, attention inside torch's batched block."""

    def __init__(self) -> None:
        super().__init__("native")

    def describe(self) -> str:
        return f"native C kernels ({vector_isa()} paths)"

    def block(self, block: Any, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return native_block(x, block.num_heads, block.tensors())

    def block_input(self, x: torch.Tensor) -> torch.Tensor:
        return x  # the native block is one node that reads its input once

    def final_norm(self, norm: "nn.LayerNorm", y: torch.Tensor) -> torch.Tensor:
        return native_layer_norm(y, norm.weight, norm.bias)

    def token_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.token_losses_of_runs(split_runs(logits), targets)

    def token_losses_of_runs(self, logits: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        return stack_runs([native_token_losses(lg, t) for lg, t in zip(logits, split_runs(targets))])

    def run_losses(self, logits: torch.Tensor, targets: torch.Tensor, batched: bool) -> torch.Tensor:
        return self.run_losses_of_runs(split_runs(logits), targets)

    def run_losses_of_runs(self, logits: Sequence[torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        tokens = self.token_losses_of_runs(logits, targets)  # one C pass per run and direction
        return tokens.sum(1) / (targets.reshape(len(logits), -1) != -100).sum(1)


def kernels_for(attention: str, cfg: ModelConfig) -> Kernels:
    """The kernels named by `attention` for this model (`native`: a one-line error naming why where they cannot
    run)."""
    if attention not in ATTENTION_KERNELS:
        raise ValueError(f"attention={attention!r}; allowed: {', '.join(ATTENTION_KERNELS)}")
    if attention != "native":
        return Kernels(attention)
    why = native_unavailable(cfg)
    if why:
        raise ConfigError(f"attention 'native' cannot run here: {why}; use 'masked' (train.attention: masked)")
    return NativeKernels()


def lineage_sum(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_l weights[l] * stacked[l]: the leaf mean of a run whose lineages a merge weights. stacked [leaves, ...],
    weights [leaves] or [leaves, runs] (broadcast over the rest)."""
    w = weights.to(stacked.dtype)
    return (stacked * w.view(*w.shape, *(1,) * (stacked.dim() - w.dim()))).sum(0)


class LeafMean(torch.autograd.Function):
    """torch.stack(leaves).mean(0) with a leaner backward: autograd's would divide a gradient expanded to every
    leaf ([leaves, ...], ~4 MB a step at the default sizes) and hand each leaf a slice of it; this divides once
    and hands every leaf the same tensor. The same bits both ways (one division by the leaf count per element;
    tests/test_core.py)."""

    generate_vmap_rule = True  # torch.func's transforms (EWC's per-sequence Fisher) go through it too

    @staticmethod
    def forward(*leaves: torch.Tensor) -> torch.Tensor:
        return torch.stack(leaves).mean(0)

    @staticmethod
    def setup_context(ctx, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        ctx.count = len(inputs)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (grad / ctx.count,) * ctx.count
