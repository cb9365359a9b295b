"""Measurements the benchmark reports besides the per-variant step times: the optimiser kernels,
the execution choices (attention kernel x run batching x runs per process), and the matmul
efficiency of a dense step against the same machine's square-matmul rate."""
from __future__ import annotations

import copy
import statistics
from typing import Any, Callable

import torch

from k1model.app.bench.measure import _summary, timed
from k1model.config import MethodConfig, ModelConfig
from k1model.kernels import vector_isa
from k1model.execution import ATTENTION_KERNELS, RUN_BATCHING, native_unavailable
from k1model.model import AgentTree
from k1model.train.step import Trainer


def _interleaved(fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device,
                 per_call: dict[str, int] | None = None) -> dict[str, list[float]]:
    """Time every function once per round, rounds alternating direction; first round discarded."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats + 1):
        for name, fn in (list(fns.items()) if r % 2 == 0 else list(fns.items())[::-1]):
            t = timed(fn, device) / (per_call or {}).get(name, 1)
            if r:
                times[name].append(t)
    return times


def optimizer_experiment(model: AgentTree, method: MethodConfig, x: torch.Tensor, y: torch.Tensor,
                         repeats: int, device: torch.device) -> dict[str, Any]:
    """torch AdamW over every weight: for-loop (torch's CPU default), foreach and fused (what the
    trainer runs), same gradients; times and whether foreach/fused equal the for-loop bit for bit."""
    kinds = {"loop": dict(foreach=False), "foreach": dict(foreach=True), "fused": dict(fused=True)}
    models = {k: copy.deepcopy(model) for k in kinds}
    opts = {}
    for k, m in models.items():
        m.zero_grad(set_to_none=True)
        m(x, y)[1].backward()
        opts[k] = torch.optim.AdamW(m.parameters(), lr=method.learning_rate, betas=method.betas, eps=method.eps,
                                    weight_decay=method.weight_decay, **kinds[k])
    times = _interleaved({k: o.step for k, o in opts.items()}, repeats, device)
    med = {k: statistics.median(v) for k, v in times.items()}

    def equal(a: str, b: str) -> bool:
        return all(torch.equal(p, q) for p, q in zip(models[a].parameters(), models[b].parameters()))

    def max_rel(a: str, b: str) -> float:
        return max(((p - q).abs().max() / q.abs().max().clamp_min(1e-30)).item()
                   for p, q in zip(models[a].parameters(), models[b].parameters()))

    return {"step_s": {k: _summary(v) for k, v in times.items()},
            "foreach_over_loop": med["foreach"] / med["loop"], "fused_over_loop": med["fused"] / med["loop"],
            "bit_equal": equal("foreach", "loop"), "fused_bit_equal": equal("fused", "loop"),
            "fused_max_rel_diff": max_rel("fused", "loop"),
            # the original key: foreach vs the for-loop (kept for readers of older results)
            "foreach_over_default": med["foreach"] / med["loop"], "pays": med["fused"] < med["loop"]}


def runnable_kernels(cfg: ModelConfig, device: torch.device) -> list[str]:
    """The attention kernels that run this model on this device (`native`: a CPU that builds it)."""
    native = native_unavailable(cfg, device) is None
    return [k for k in ATTENTION_KERNELS if k != "native" or native]


def dense_trainer(cfg: ModelConfig, runs: int, attention: str, batching: str, device: torch.device,
                  precision: str = "fp32") -> Trainer:
    """`runs` dense runs (seeds 0..runs-1) in one model: the step the execution measurements time."""
    model = AgentTree(cfg, runs=runs, attention=attention, run_batching=batching, seeds=list(range(runs))).to(device)
    return Trainer(model, [MethodConfig(variant="dense", loo_interval=10**9)] * runs, list(range(runs)),
                   precision=precision)


def execution_experiment(cfg: ModelConfig, batch: int, device: torch.device, repeats: int,
                         runs: int = 6) -> dict[str, Any]:
    """Dense step time per run for every attention kernel x run batching, with 1 and `runs` runs per
    process (interleaved). `multi_run_speedup` = time of one run alone / time per run in the stack."""
    g = torch.Generator().manual_seed(0)
    w = torch.randint(0, cfg.vocab_size, (runs, batch, cfg.max_seq_len + 1), generator=g).to(device)
    x, y = w[..., :-1].contiguous(), w[..., 1:].contiguous()
    fns, per_call = {}, {}
    for attention in runnable_kernels(cfg, device):
        for batching in RUN_BATCHING:
            for R in (1, runs):
                tr = dense_trainer(cfg, R, attention, batching, device)
                key = f"{attention}/{batching}/R{R}"
                fns[key] = (lambda t=tr, R=R: t.train_step(x[:R], y[:R]))
                per_call[key] = R
    times = _interleaved(fns, repeats, device, per_call)
    med = {k: statistics.median(v) for k, v in times.items()}
    rows = {k: {"per_run_step_s": _summary(v)} for k, v in times.items()}
    best_single = min((k for k in med if k.endswith("/R1")), key=med.get)
    best_multi = min((k for k in med if k.endswith(f"/R{runs}")), key=med.get)
    speedup = {f"{a}/{b}": med[f"{a}/{b}/R1"] / med[f"{a}/{b}/R{runs}"] for a in runnable_kernels(cfg, device)
               for b in RUN_BATCHING}
    return {"runs": runs, "batch": batch, "rows": rows, "fastest_single_run": best_single,
            "fastest_multi_run": best_multi, "multi_run_speedup": speedup,
            "what": "dense training step per run (incl. scores, host sync, fused AdamW); multi_run_speedup = "
                    "single-run step / per-run step with `runs` runs in one process"}


def step_flops(cfg: ModelConfig, batch: int, x: torch.Tensor, y: torch.Tensor, device: torch.device) -> float:
    """Matmul FLOPs of one dense training step as torch's FlopCounterMode counts them (mm, addmm, bmm, baddbmm),
    on the eager block: the native block runs its matmuls inside C, where the counter cannot see them, and
    both compute the same matmuls."""
    from torch.utils.flop_counter import FlopCounterMode

    trainer = dense_trainer(cfg, 1, "masked", "loop", device)
    with FlopCounterMode(display=False) as counter:
        trainer.train_step(x, y)
    counts = counter.get_flop_counts().get("Global", {})
    return float(sum(n for op, n in counts.items() if str(op).split(".")[1] in ("mm", "addmm", "bmm", "baddbmm")))


def efficiency_experiment(cfg: ModelConfig, batch: int, device: torch.device, repeats: int,
                          attention: str, batching: str) -> dict[str, Any]:
    """The dense step (the kernels the trainer picks) against what its matmuls cost: its achieved GFLOP/s
    against the square-matmul rate and against the rate of its own matmul shapes, both measured in the same
    run; the share of the step those matmuls take at their own rate; where the rest of the time goes."""
    from k1model.app.bench.shapes import matmul_rates, step_breakdown

    tr = dense_trainer(cfg, 1, attention, batching, device)
    g = torch.Generator().manual_seed(1)
    w = torch.randint(0, cfg.vocab_size, (1, batch, cfg.max_seq_len + 1), generator=g).to(device)
    x, y = w[..., :-1].contiguous(), w[..., 1:].contiguous()
    flops = step_flops(cfg, batch, x, y, device)
    rates, steps = [], []
    for _ in range(3):  # alternate, so drift of a shared machine hits both
        rates.append(matmul_rates(cfg, batch, device, repeats=max(3, repeats // 2)))
        steps.append(statistics.median(_interleaved({"step": lambda: tr.train_step(x, y)}, repeats, device)["step"]))
    step_s = statistics.median(steps)
    square = statistics.median(r["square_gflops"] for r in rates)
    own = statistics.median(r["model_shapes_gflops"] for r in rates)
    at_own_rate = statistics.median(r["matmul_s_at_model_rates"] for r in rates)
    achieved = flops / step_s / 1e9
    out = {"flops_per_step": flops, "step_s": step_s, "achieved_gflops": achieved, "matmul_gflops": square,
           "fraction_of_matmul": achieved / square, "model_shapes_gflops": own, "fraction_of_model_shapes": achieved / own,
           "matmul_share_of_step": at_own_rate / step_s, "matmul_shapes": rates[len(rates) // 2]["shapes"],
           "attention": attention, "run_batching": batching, "tokens_per_s": batch * cfg.max_seq_len / step_s,
           "native_isa": vector_isa() if device.type == "cpu" else None,
           "counts": "FlopCounterMode: matmul FLOPs of forward + backward (attention kernels not counted); "
                     "matmul_share_of_step = the step's matmuls timed alone at their own shapes / the step"}
    if device.type == "cpu":
        out["breakdown"] = step_breakdown(tr, x, y)
    return out
