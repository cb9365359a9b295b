"""Speed and memory benchmark of every variant against `dense` (`k1 bench`).

For each tree (e.g. branching [2,2], [4,4], [4,3,2]: 7, 21, 41 agents) one process builds
one trainer per variant (same architecture, same initial weights, same batch) plus a plain
`torch.optim.AdamW` loop on a copy of the same model, and times them **interleaved**: every
repeat is one round over all of them (the starting entry rotates), so drift of a shared,
noisy machine hits every variant alike. `warmup` rounds come first and are discarded.

What one round times, per entry:

* a regular step (`train_step` with no LOO due);
* for the LOO variants (`k1_full`, `flat_topk`, `no_trust`) also a LOO step (one whose
  `step_count` is a multiple of `loo_interval`, so the batched leave-one-out runs).

A variant's step time is the **amortised** one, LOO included:

    t_amortised = ((loo_interval − 1) · median(t_step) + median(t_loo_step)) / loo_interval

and `ratio_to_dense = t_amortised / median(t_dense)`. `ratio_to_dense_paired` is the
median over rounds of the same quantity computed within one round (robust to drift).
`dense` is the trainer with every agent at scale 1 (backprop + the fused AdamW; scores are still computed);
`plain_adamw` is `zero_grad → forward → backward → AdamW.step` with nothing else, a sanity
reference for the trainer's own overhead.

Besides the step times, per tree:

* `loo`: one batched `loo_deltas` against the one-at-a-time `loo_deltas_reference`
  (N+1 forwards) on the same model and batch, interleaved; speedup, max |difference|,
  and the batched LOO's amortised share of a `k1_full` step at `loo_interval`;
* memory: the peak of torch allocations *during* one step above what was held before it
  (CPU: torch profiler memory events, which see torch's allocator, unlike tracemalloc;
  CUDA: `torch.cuda.max_memory_allocated`), plus the static bytes of parameters and
  optimiser state; the process's `ru_maxrss` is reported once for reference;
* host syncs: calls that copy a value to the host (`.item()`, `.cpu()`, `.tolist()`,
  `.numpy()`, `bool()/float()/int()` of a tensor, `.to(cpu)`) during one step, by call
  site, counted with a `TorchFunctionMode` (the same count is what would sync on CUDA;
  torch.optim's `.item()` on its CPU step counters is listed separately: no sync on CUDA);
* `optimizer`: torch's AdamW step over all parameters as a for-loop (the CPU default), `foreach`
  and `fused` (the kernel the trainer runs), same gradients: times, and which ones are bit-equal;
  (the CPU default) against `foreach=True`, interleaved, and whether both are bit-equal;
Once per benchmark, on the reference model (the params file's model and batch size, default the
default profile's), with 1 thread unless `--threads`:

* `execution`: a dense step per run for every attention kernel that runs here (native, masked,
  causal, math) x run batching
  (loop, batched), alone and with several runs in one process; the fastest choices, and the
  multi-run speedup per step (time alone / time per run in the stack);
* `efficiency`: FLOPs of a dense step (FlopCounterMode: matmuls) with the kernels `auto` picks, its
  achieved GFLOP/s, the square-matmul GFLOP/s and the GFLOP/s of the step's own matmul shapes measured
  in the same run, alternating; the share of the step its matmuls take at their own rate; where the
  step's time goes by kind of operation (`shapes.py`).

`run_benchmark(...) -> dict` does the work; `format_table(result) -> str` renders it;
`cli_bench(args)` is `k1 bench`.
"""
from __future__ import annotations

import copy
import dataclasses
import math
import os
import platform
import statistics
import time
from typing import Any, Callable, Sequence

import torch

from k1model.app.bench.experiments import efficiency_experiment, execution_experiment, optimizer_experiment
from k1model.app.bench.measure import (_cpu_model, _load, _maxrss_mb, _summary, sync, _tensor_bytes, timed,
                                       count_host_syncs, parse_trees, peak_step_memory)
from k1model.config import MethodConfig, ModelConfig
from k1model.errors import ConfigError
from k1model.method.attribution import loo_deltas, loo_deltas_reference
from k1model.method.variants import VARIANTS
from k1model.execution import default_execution
from k1model.model import AgentTree
from k1model.train.plugins import Phase, Plugin
from k1model.train.step import K1Trainer

__all__ = ["PLAIN", "VARIANT_ORDER", "bench_tree", "count_host_syncs", "format_table", "parse_trees", "run_benchmark"]

VARIANT_ORDER = ("dense", *(v for v in VARIANTS if v != "dense"))  # every registered variant, dense first

PLAIN = "plain_adamw"

TARGET_RATIO = 1.10  # k1_full amortised step / dense step, on the 21- and 41-agent trees

TARGET_LOO_SPEEDUP = 2.0  # batched LOO vs one-at-a-time, on the 41-agent tree

TARGET_TREES = (21, 41)

AMORTISATION = ("t_amortised = ((loo_interval - 1) * median(t_step) + median(t_loo_step)) / loo_interval; "
                "regular and LOO steps are timed separately, interleaved with every other variant")

class _Entry:
    """One thing timed per round: a variant's trainer (with its plugins, driven as the protocol
    drives them: the batch hook inside the timed step, EWC's Fisher set up once before timing and
    timed on its own), or the plain AdamW loop."""

    def __init__(self, name: str, model: AgentTree, method: MethodConfig, x: torch.Tensor, y: torch.Tensor):
        self.name = name
        self.x, self.y = x, y
        self.model = model
        self.interval = method.loo_interval
        self.fisher_s: float | None = None
        if name == PLAIN:
            self.trainer = None
            self.opt = torch.optim.AdamW(model.parameters(), lr=method.learning_rate, betas=method.betas,
                                         eps=method.eps, weight_decay=method.weight_decay)
            self.has_loo = False
        else:
            self.trainer = K1Trainer(model, method, seed=0)
            self.has_loo = self.trainer.variant.uses_loo
            self.phase = _bench_phase(model.cfg, x.shape[0])
            ctx = self.trainer.trainer.context(0)
            for plugin in self.trainer.plugins:
                if type(plugin).after_phase is not Plugin.after_phase:  # e.g. EWC's Fisher
                    self.fisher_s = timed(lambda: plugin.after_phase(ctx, self.phase), model.mask.device)
        self.step_times: list[float] = []
        self.loo_step_times: list[float] = []

    def _train_step(self) -> None:
        x, y = self.x, self.y
        ctx = self.trainer.trainer.context(0)
        for plugin in self.trainer.plugins:
            x, y = plugin.batch(ctx, x, y, self.phase)
        self.trainer.train_step(x, y)

    def zero_grad(self) -> None:
        """Free the previous step's gradients (as the step itself would first), so memory is measured from there."""
        (self.opt if self.trainer is None else self.trainer.optimizer).zero_grad()

    def step(self) -> None:
        """One timed training step (no LOO due, so the LOO cost is measured apart)."""
        if self.trainer is None:
            self.opt.zero_grad(set_to_none=True)
            _, loss = self.model(self.x, self.y)
            loss.backward()
            self.opt.step()
            loss.detach().item()  # what any training loop does with the loss (the trainer checks it is finite)
            return
        if self.trainer.step_count % self.interval == 0:  # make sure no LOO is due
            self.trainer.step_count += 1
        self._train_step()

    def loo_step(self) -> None:
        """One training step on which the LOO is due."""
        t = self.trainer
        t.step_count += (-t.step_count) % self.interval  # next multiple: LOO is due
        assert t.loo_due()
        self._train_step()

    def optimizer_state_mb(self) -> float:
        """The optimiser state's size in MiB."""
        if self.trainer is None:
            return _tensor_bytes(v for s in self.opt.state.values() for v in s.values()) / 2**20
        return _tensor_bytes(t for s in self.trainer.optimizer.state.values() for t in s) / 2**20

def _bench_phase(cfg: ModelConfig, batch: int) -> Phase:
    """A phase of three random-byte domains (the first of two phases, so EWC computes its Fisher)."""
    g = torch.Generator().manual_seed(7)
    tokens = {d: torch.randint(0, cfg.vocab_size, (20_000,), generator=g).numpy().astype("uint8")
              for d in ("a", "b", "c")}
    return Phase(index=0, domain="a", steps=100, first_step=0, tokens=tokens["a"], seq_len=cfg.max_seq_len,
                 batch_size=batch, seed=0, count=2, domain_tokens=tokens)


def _make_model(cfg: ModelConfig, seed: int, device: torch.device, attention: str = "masked",
                batching: str = "loop") -> AgentTree:
    return AgentTree(cfg, seeds=[seed], attention=attention, run_batching=batching).to(device)

def _batch(cfg: ModelConfig, batch: int, context: int, seed: int, device: torch.device):
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(0, cfg.vocab_size, (batch, context + 1), generator=g)
    return w[:, :-1].contiguous().to(device), w[:, 1:].contiguous().to(device)

def bench_tree(branching: tuple[int, ...], *, width: int, hidden: int, heads: int, context: int, batch: int,
               repeats: int, warmup: int, loo_interval: int, device: torch.device, seed: int = 0,
               loo_repeats: int | None = None, experiments: bool = True,
               log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Step time, LOO cost, memory and host syncs of every variant on one tree (`k1 bench`)."""
    cfg = ModelConfig(branching=tuple(branching), embed_dim=width, hidden_dim=hidden, num_heads=heads,
                      max_seq_len=context, dropout=0.0)
    x, y = _batch(cfg, batch, context, seed, device)
    attention, batching = default_execution(device)
    base = _make_model(cfg, seed, device, attention, batching)
    n = len(base.agents)
    entries: dict[str, _Entry] = {}
    for name in (*VARIANT_ORDER, PLAIN):
        method = MethodConfig(variant="dense" if name == PLAIN else name, loo_interval=loo_interval)
        model = copy.deepcopy(base)
        if name != PLAIN and "plasticity" in VARIANTS[name].plugins:  # a growing variant: one free slot per leaf
            grown = dataclasses.replace(cfg, max_agents=cfg.num_agents + cfg.num_leaves)
            model = _make_model(grown, seed, device, attention, batching)  # the same initial agents as `base`
        entries[name] = _Entry(name, model, method, x, y)
    order = list(entries)

    def one_round(r: int, record: bool) -> None:
        start = r % len(order)
        for name in order[start:] + order[:start]:
            e = entries[name]
            t = timed(e.step, device)
            if record:
                e.step_times.append(t)
            if e.has_loo:
                t = timed(e.loo_step, device)
                if record:
                    e.loo_step_times.append(t)

    t0 = time.perf_counter()
    for r in range(warmup):
        one_round(r, record=False)
    log(f"  warm-up done ({time.perf_counter() - t0:.1f} s); timing {repeats} interleaved rounds")
    for r in range(repeats):
        one_round(warmup + r, record=True)
    log(f"  rounds done ({time.perf_counter() - t0:.1f} s)")

    tokens = batch * context
    dense = entries["dense"]
    t_dense = statistics.median(dense.step_times)
    rows: dict[str, dict[str, Any]] = {}
    for name, e in entries.items():
        t_step = statistics.median(e.step_times)
        row: dict[str, Any] = {"step_s": _summary(e.step_times),
                               "loo_step_s": _summary(e.loo_step_times) if e.has_loo else None}
        if e.has_loo:
            t_loo = statistics.median(e.loo_step_times)
            t_am = ((loo_interval - 1) * t_step + t_loo) / loo_interval
            per_round = [((loo_interval - 1) * s + ls) / loo_interval for s, ls in zip(e.step_times, e.loo_step_times)]
            row["loo_share"] = (t_loo - t_step) / loo_interval / t_am
        else:
            t_am, per_round, row["loo_share"] = t_step, list(e.step_times), 0.0
        row["amortised_step_s"] = t_am
        row["ratio_to_dense"] = t_am / t_dense
        row["ratio_to_dense_paired"] = statistics.median(a / d for a, d in zip(per_round, dense.step_times))
        row["ratio_to_plain_adamw"] = t_am / statistics.median(entries[PLAIN].step_times)
        row["fisher_s_per_phase"] = e.fisher_s
        row["tokens_per_s"] = tokens / t_am
        rows[name] = row

    # host syncs and memory: one regular step and one LOO step per entry (outside the timed rounds)
    for name, e in entries.items():
        rows[name]["host_syncs"] = {"step": count_host_syncs(e.step),
                                    "loo_step": count_host_syncs(e.loo_step) if e.has_loo else None}
        e.zero_grad()
        mem_step = peak_step_memory(e.step, device)
        e.zero_grad()
        rows[name]["memory"] = {"step": mem_step,
                                "loo_step": peak_step_memory(e.loo_step, device) if e.has_loo else None,
                                "params_mb": _tensor_bytes(e.model.parameters()) / 2**20,
                                "optimizer_state_mb": e.optimizer_state_mb()}
    log(f"  syncs and memory done ({time.perf_counter() - t0:.1f} s)")

    # batched vs one-at-a-time LOO on k1_full's (trained) model and the same batch
    model = entries["k1_full"].model
    loo_repeats = loo_repeats or max(3, repeats // 2)
    full_b, fast = loo_deltas(model, x, y)
    full_r, ref = loo_deltas_reference(model, x, y)
    times: dict[str, list[float]] = {"batched": [], "reference": []}
    for r in range(loo_repeats):
        pair = [("batched", loo_deltas), ("reference", loo_deltas_reference)]
        for key, fn in (pair if r % 2 == 0 else pair[::-1]):
            times[key].append(timed(lambda: fn(model, x, y), device))
    t_b, t_r = statistics.median(times["batched"]), statistics.median(times["reference"])
    k1 = rows["k1_full"]
    loo = {"batched_s": _summary(times["batched"]), "reference_s": _summary(times["reference"]),
           "speedup": t_r / t_b, "max_abs_diff": (fast - ref).abs().max().item(),
           "full_loss_abs_diff": (full_b - full_r).abs().item(),
           "amortised_batched_s_per_step": t_b / loo_interval,
           "amortised_share_of_k1_full_step": t_b / loo_interval / k1["amortised_step_s"],
           "loo_step_minus_step_s": k1["loo_step_s"]["median"] - k1["step_s"]["median"]}
    log(f"  LOO done ({time.perf_counter() - t0:.1f} s)")

    result: dict[str, Any] = {
        "branching": list(branching), "agents": n,
        "agent_params": sum(base.agent_parameter_counts()),
        "shared_params": sum(p.numel() for p in base.shared_parameters()),
        "tokens_per_step": tokens, "variants": {k: rows[k] for k in VARIANT_ORDER}, PLAIN: rows[PLAIN], "loo": loo,
    }
    if experiments:
        exp_repeats = max(3, repeats // 2)
        result["optimizer"] = optimizer_experiment(base, entries["dense"].trainer.method, x, y, exp_repeats, device)
        log(f"  experiments done ({time.perf_counter() - t0:.1f} s)")
    return result

TARGET_MATMUL_FRACTION = 0.40  # dense step GFLOP/s / square-matmul GFLOP/s, default model
TARGET_MULTI_RUN = 2.0  # six runs in one process vs alone, per-step throughput (<= 0.5x the time)


def _targets(trees: list[dict[str, Any]], efficiency: dict | None = None,
             execution: dict | None = None) -> dict[str, Any]:
    ratio = {}
    loo = {}
    for t in trees:
        r = t["variants"]["k1_full"]
        ratio[str(t["agents"])] = {"ratio": r["ratio_to_dense"], "ratio_paired": r["ratio_to_dense_paired"],
                                   "target": TARGET_RATIO, "met": r["ratio_to_dense"] <= TARGET_RATIO,
                                   "required": t["agents"] in TARGET_TREES}
        loo[str(t["agents"])] = {"speedup": t["loo"]["speedup"], "target": TARGET_LOO_SPEEDUP,
                                 "met": t["loo"]["speedup"] >= TARGET_LOO_SPEEDUP, "required": t["agents"] == 41}
    out: dict[str, Any] = {"k1_full_amortised_over_dense": ratio, "batched_loo_speedup": loo}
    if efficiency is not None:
        f = efficiency["fraction_of_matmul"]
        out["dense_step_fraction_of_matmul"] = {"value": f, "target": TARGET_MATMUL_FRACTION,
                                                "met": f >= TARGET_MATMUL_FRACTION}
    if execution is not None:
        best = execution["fastest_multi_run"].rsplit("/", 1)[0]
        sp = execution["multi_run_speedup"][best]
        out["multi_run_step_speedup"] = {"value": sp, "choice": best, "target": TARGET_MULTI_RUN,
                                         "met": sp >= TARGET_MULTI_RUN}
    return out

def run_benchmark(trees: Sequence[Sequence[int]] = ((2, 2), (4, 4), (4, 3, 2)), *, width: int = 128,
                  hidden: int | None = None, heads: int = 4, context: int = 64, batch: int = 32, repeats: int = 10,
                  warmup: int = 3, loo_interval: int = 50, device: str = "cpu", threads: int | None = None,
                  seed: int = 0, loo_repeats: int | None = None, experiments: bool = True,
                  reference: tuple[ModelConfig, int] | None = None, multi_runs: int = 6,
                  log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time every variant against dense on each tree; see the module docstring. Returns a JSON-able dict.
    `reference` = (model config, batch size) of the execution and efficiency measurements (default:
    the default profile's model: [2, 2], width 64, 4 heads, MLP 128, context 64, batch 16)."""
    if repeats < 1:
        raise ConfigError(f"invalid value for 'repeats': {repeats}; allowed: an integer >= 1")
    if warmup < 0:
        raise ConfigError(f"invalid value for 'warmup': {warmup}; allowed: an integer >= 0")
    if loo_interval < 1:
        raise ConfigError(f"invalid value for 'loo_interval': {loo_interval}; allowed: an integer >= 1")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"invalid value for 'device': {device!r}; allowed: cpu (CUDA is not available here)")
    if threads:
        torch.set_num_threads(threads)
    hidden = hidden or 4 * width
    log = log or (lambda s: None)
    meta = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch": torch.__version__,
        "python": platform.python_version(), "platform": platform.platform(), "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(), "device": str(dev),
        "gpu": torch.cuda.get_device_name(dev) if dev.type == "cuda" else None,
        "width": width, "hidden": hidden, "heads": heads, "context": context, "batch": batch,
        "repeats": repeats, "warmup": warmup, "loo_interval": loo_interval,
        "loo_repeats": loo_repeats or max(3, repeats // 2),
        "seed": seed, "amortisation": AMORTISATION, "load_average_start": _load(),
        "variants": {k: VARIANTS[k].description for k in VARIANT_ORDER},
        "plain_adamw": "zero_grad(set_to_none) -> forward -> backward -> torch.optim.AdamW.step (defaults) -> loss.item()",
    }
    results = []
    t0 = time.perf_counter()
    for branching in trees:
        log(f"tree {list(branching)}")
        results.append(bench_tree(tuple(branching), width=width, hidden=hidden, heads=heads, context=context,
                                  batch=batch, repeats=repeats, warmup=warmup, loo_interval=loo_interval, device=dev,
                                  seed=seed, loo_repeats=loo_repeats, experiments=experiments, log=log))
    out: dict[str, Any] = {"meta": meta, "trees": results}
    if experiments:
        ref_cfg, ref_batch = reference or (ModelConfig(branching=(2, 2), embed_dim=64, num_heads=4, hidden_dim=128,
                                                       max_seq_len=64), 16)
        log(f"execution choices on the reference model (batch {ref_batch}, {multi_runs} runs per process)")
        out["execution"] = execution_experiment(ref_cfg, ref_batch, dev, max(3, repeats), runs=multi_runs)
        att, batching = default_execution(dev)
        out["efficiency"] = efficiency_experiment(ref_cfg, ref_batch, dev, max(3, repeats), att, batching)
        out["reference_model"] = {"branching": list(ref_cfg.branching), "width": ref_cfg.embed_dim,
                                  "heads": ref_cfg.num_heads, "hidden": ref_cfg.hidden_dim,
                                  "context": ref_cfg.max_seq_len, "batch": ref_batch}
    meta.update(load_average_end=_load(), wall_s=time.perf_counter() - t0, maxrss_mb=_maxrss_mb())
    out["targets"] = _targets(results, out.get("efficiency"), out.get("execution"))
    return out

def _ms(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{1000 * v:.1f}"

def format_efficiency(ef: dict[str, Any]) -> list[str]:
    """The efficiency measurement as lines of text."""
    paths = f", {ef['native_isa']} paths" if ef.get("native_isa") and ef["attention"] == "native" else ""
    lines = [f"efficiency of the dense step, attention kernel {ef['attention']}{paths} ({ef['run_batching']}), chosen by "
             f"`auto` here: {_ms(ef['step_s'])} ms, {ef['flops_per_step'] / 1e9:.2f} GFLOP of matmuls -> "
             f"{ef['achieved_gflops']:.1f} GFLOP/s ({ef['tokens_per_s']:.0f} tokens/s)",
             f"  matmul rate: {ef['matmul_gflops']:.1f} GFLOP/s square (1024^3), {ef['model_shapes_gflops']:.1f} GFLOP/s "
             f"at the model's own shapes; the step runs at {100 * ef['fraction_of_matmul']:.0f}% of the square rate, "
             f"{100 * ef['fraction_of_model_shapes']:.0f}% of its own shapes' rate; its matmuls alone would take "
             f"{100 * ef['matmul_share_of_step']:.0f}% of the step"]
    shapes = ", ".join(f"{s['name']} {s['mkn'][0]}x{s['mkn'][1]}x{s['mkn'][2]} {s['gflops']:.0f}"
                       for s in ef["matmul_shapes"])
    lines.append(f"  GFLOP/s per shape (m x k x n): {shapes}")
    if "breakdown" in ef:
        b = ef["breakdown"]
        lines.append("  where the step's time goes (profiler self time): " + ", ".join(
            f"{k} {100 * v:.0f}%" for k, v in b["share"].items()) + f"; {b['ops_per_step']:.0f} ops per step")
    return lines


def format_table(result: dict[str, Any]) -> str:
    """A `k1 bench` result as the table it prints."""
    m = result["meta"]
    lines = [f"k1 bench: width {m['width']} (MLP {m['hidden']}, {m['heads']} heads), context {m['context']}, "
             f"batch {m['batch']}, device {m['device']}, {m['threads']} threads, {m['repeats']} interleaved repeats "
             f"after {m['warmup']} warm-up; medians; LOO every {m['loo_interval']} steps, amortised in",
             f"machine: {m['cpu']} ({m['cpu_count']} cpus), torch {m['torch']}; load average "
             f"{m['load_average_start']} -> {m.get('load_average_end')}"]
    head = (f"{'variant':<12} {'step ms':>9} {'LOO step ms':>11} {'amort. ms':>9} {'x dense':>7} {'paired':>7} "
            f"{'tok/s':>8} {'LOO %':>6} {'peak MB':>8} {'LOO pk MB':>9} {'syncs':>7}")
    for t in result["trees"]:
        lines += ["", f"tree {t['branching']}: {t['agents']} agents, {t['agent_params'] / 1e6:.2f} M agent params, "
                      f"{t['tokens_per_step']} tokens/step", head, "-" * len(head)]
        for name, r in [*t["variants"].items(), (PLAIN, t[PLAIN])]:
            mem, syncs = r["memory"], r["host_syncs"]
            s = f"{syncs['step']['k1model']}"
            if syncs["loo_step"] is not None:
                s += f"/{syncs['loo_step']['k1model']}"
            loo_pk = mem["loo_step"]["peak_extra_mb"] if mem["loo_step"] else None
            pk = mem["step"]["peak_extra_mb"]
            lines.append(
                f"{name:<12} {_ms(r['step_s']['median']):>9} "
                f"{_ms(r['loo_step_s']['median'] if r['loo_step_s'] else None):>11} {_ms(r['amortised_step_s']):>9} "
                f"{r['ratio_to_dense']:>7.3f} {r['ratio_to_dense_paired']:>7.3f} {r['tokens_per_s']:>8.0f} "
                f"{100 * r['loo_share']:>6.2f} {'-' if pk is None else f'{pk:.0f}':>8} "
                f"{'-' if loo_pk is None else f'{loo_pk:.0f}':>9} {s:>7}")
        fisher = {n: r["fisher_s_per_phase"] for n, r in t["variants"].items() if r.get("fisher_s_per_phase")}
        if fisher:
            lines.append("Fisher per phase (not in the step times): "
                         + ", ".join(f"{n} {_ms(v)} ms" for n, v in fisher.items()))
        lo = t["loo"]
        lines.append(f"LOO eval: batched {_ms(lo['batched_s']['median'])} ms vs one-at-a-time "
                     f"{_ms(lo['reference_s']['median'])} ms -> {lo['speedup']:.1f}x faster "
                     f"(max |diff| {lo['max_abs_diff']:.1e}); amortised at 1/{m['loo_interval']}: "
                     f"{_ms(lo['amortised_batched_s_per_step'])} ms/step = "
                     f"{100 * lo['amortised_share_of_k1_full_step']:.2f}% of a k1_full step")
        if "optimizer" in t:
            op = t["optimizer"]["step_s"]
            lines.append(f"AdamW step, all params: for-loop {_ms(op['loop']['median'])} ms, foreach "
                         f"{_ms(op['foreach']['median'])} ms, fused {_ms(op['fused']['median'])} ms "
                         f"(fused x{t['optimizer']['fused_over_loop']:.2f}; foreach bit-equal to the loop: "
                         f"{t['optimizer']['bit_equal']}; fused max rel diff {t['optimizer']['fused_max_rel_diff']:.1e})")
    lines += ["", "columns: step = regular step; LOO step = step with the batched LOO; amort. = "
                  "((I-1)*step + LOO step)/I; x dense = amort./dense step (medians); paired = median over rounds of "
                  "the same ratio within a round; LOO % = LOO's share of the amortised step; peak MB = torch "
                  "allocations during a step above what was held before; syncs = host transfers in k1model code "
                  "(regular/LOO step)"]
    if "execution" in result:
        ex, rm = result["execution"], result["reference_model"]
        lines += ["", f"execution choices, reference model {rm['branching']} width {rm['width']} batch {rm['batch']}: "
                      f"dense step per run (ms), 1 vs {ex['runs']} runs in one process"]
        for key, row in ex["rows"].items():
            lines.append(f"  {key:<22} {_ms(row['per_run_step_s']['median']):>8}")
        lines.append(f"  fastest alone: {ex['fastest_single_run']}; fastest stacked: {ex['fastest_multi_run']}; "
                     "multi-run speedup per step: "
                     + ", ".join(f"{k} x{v:.2f}" for k, v in ex["multi_run_speedup"].items()))
        lines += format_efficiency(result["efficiency"])
    tg = result["targets"]
    ratio = ", ".join(f"{k} agents {v['ratio']:.3f} ({'met' if v['met'] else 'MISSED'})"
                      for k, v in tg["k1_full_amortised_over_dense"].items() if v["required"])
    loo = ", ".join(f"{k} agents {v['speedup']:.1f}x ({'met' if v['met'] else 'MISSED'})"
                    for k, v in tg["batched_loo_speedup"].items() if v["required"])
    lines.append(f"targets: k1_full <= {TARGET_RATIO} x dense: {ratio or 'no 21/41-agent tree in this run'}; "
                 f"batched LOO >= {TARGET_LOO_SPEEDUP}x: {loo or 'no 41-agent tree in this run'}")
    for key, label in (("dense_step_fraction_of_matmul", "dense step >= 40% of matmul rate"),
                       ("multi_run_step_speedup", "multi-run per-step speedup >= 2x")):
        if key in tg:
            lines.append(f"         {label}: {tg[key]['value']:.2f} ({'met' if tg[key]['met'] else 'MISSED'})")
    return "\n".join(lines)
