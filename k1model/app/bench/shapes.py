"""Where a dense step's time goes, and what its matmuls could cost at the machine's own rate.

* `gemm_shapes(cfg, batch)`: every matmul of a dense step (forward, input and weight gradients of
  every agent's four linear layers and of the tied LM head) as (m, k, n) and how often it runs.
* `matmul_rates(...)`: each of those shapes timed alone (`a @ b`, random operands, interleaved with
  a 1024² square matmul), so the step can be compared with what its matmuls cost at their own shapes,
  not only with the square rate.
* `step_breakdown(...)`: torch.profiler's self time per step by kind of operation: matmuls,
  the native agent blocks (their matmuls included), attention (torch's SDPA), norms and activations, other ops.
"""
from __future__ import annotations

import statistics
from typing import Any

import torch

from k1model.app.bench.measure import sync, timed
from k1model.config import ModelConfig


def gemm_shapes(cfg: ModelConfig, batch: int) -> list[dict[str, Any]]:
    """The matmuls of one dense step of one run: name, (m, k, n) of C[m, n] = A[m, k] B[k, n], count."""
    M, D, H, V = batch * cfg.max_seq_len, cfg.embed_dim, cfg.hidden_dim, cfg.vocab_size
    agents = cfg.num_agents
    layers = {"qkv": (D, 3 * D), "proj": (D, D), "fc": (D, H), "out": (H, D)}
    shapes = []
    for name, (fan_in, fan_out) in layers.items():
        shapes += [{"name": f"{name} forward", "mkn": (M, fan_in, fan_out), "count": agents},
                   {"name": f"{name} input grad", "mkn": (M, fan_out, fan_in), "count": agents},
                   {"name": f"{name} weight grad", "mkn": (fan_out, M, fan_in), "count": agents}]
    shapes += [{"name": "head forward", "mkn": (M, D, V), "count": 1},
               {"name": "head input grad", "mkn": (M, V, D), "count": 1},
               {"name": "head weight grad", "mkn": (V, M, D), "count": 1}]
    for s in shapes:
        m, k, n = s["mkn"]
        s["flops"] = 2 * m * k * n * s["count"]
    return shapes


def matmul_rates(cfg: ModelConfig, batch: int, device: torch.device, repeats: int = 10,
                 square: int = 1024) -> dict[str, Any]:
    """GFLOP/s of every matmul shape of the step and of a square matmul, timed alone, interleaved (medians)."""
    shapes = gemm_shapes(cfg, batch)
    g = torch.Generator().manual_seed(0)
    distinct = sorted({s["mkn"] for s in shapes})
    operands = {mkn: (torch.randn(mkn[0], mkn[1], generator=g).to(device), torch.randn(mkn[1], mkn[2], generator=g).to(device))
                for mkn in distinct + [(square, square, square)]}
    for a, b in operands.values():
        a @ b
    sync(device)
    times: dict[tuple, list[float]] = {mkn: [] for mkn in operands}
    for r in range(repeats):
        for mkn in (list(operands) if r % 2 == 0 else list(operands)[::-1]):
            a, b = operands[mkn]
            n = max(1, int(2e8 // (2 * mkn[0] * mkn[1] * mkn[2])))  # ~0.2 GFLOP per timing
            times[mkn].append(timed(lambda: [a @ b for _ in range(n)], device) / n)
    rate = {mkn: 2 * mkn[0] * mkn[1] * mkn[2] / statistics.median(t) / 1e9 for mkn, t in times.items()}
    total_flops = sum(s["flops"] for s in shapes)
    seconds = sum(s["flops"] / (rate[s["mkn"]] * 1e9) for s in shapes)
    return {"shapes": [{**s, "mkn": list(s["mkn"]), "gflops": rate[s["mkn"]]} for s in shapes],
            "square_gflops": rate[(square, square, square)], "model_shapes_gflops": total_flops / seconds / 1e9,
            "matmul_flops_per_step": total_flops, "matmul_s_at_model_rates": seconds}


#: profiler op names by kind (substrings, lower case); the first kind that matches wins
KINDS = (("native agent blocks (their matmuls included)", ("nativeblock",)),
         ("matmul", ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul")),
         ("attention", ("attention", "nativeblock")),
         ("norms and activations", ("layer_norm", "gelu", "softmax", "cross_entropy", "nll_loss")),
         ("optimiser and scores", ("adam", "foreach", "norm")))


def step_breakdown(trainer: Any, x: torch.Tensor, y: torch.Tensor, steps: int = 5) -> dict[str, Any]:
    """Self CPU time per step by kind of operation (torch.profiler; the native block's C time, its matmuls
    included, is counted in its autograd node). CPU only."""
    from torch.profiler import ProfilerActivity, profile

    trainer.train_step(x, y)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step(x, y)
    by_kind: dict[str, float] = {k: 0.0 for k, _ in KINDS}
    by_kind["other"] = 0.0
    ops = 0
    for event in prof.key_averages():
        name = event.key.lower()
        kind = next((k for k, keys in KINDS if any(s in name for s in keys)), "other")
        by_kind[kind] += event.self_cpu_time_total / 1e6 / steps
        ops += event.count
    total = sum(by_kind.values())
    return {"s_per_step": by_kind, "share": {k: v / total for k, v in by_kind.items()}, "profiled_s_per_step": total,
            "ops_per_step": ops / steps,
            "note": "torch.profiler self time (with the profiler's own overhead); the native agent blocks' nodes "
                    "hold all their C time, their matmuls included (sgemm called from C is not an aten op)"}
