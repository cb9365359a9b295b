#!/usr/bin/env python3
"""One run's forward + backward on a profile's model three ways, side by side: torch's kernels (`masked`, what
`train.attention: auto` runs on a CPU), the native C kernels (`native`, what a profile names to get them) and
the masked model through `torch.compile` (a rejected alternative).

    python benchmarks/kernel_paths.py --params params/default.yaml --rounds 40 \
        --out benchmarks/results/kernel_paths.json > benchmarks/results/kernel_paths.txt

The same one-run model (seed 0) and the same batch of the profile (train.batch_size windows of the model's
context) for every path, one torch thread. Each round times one forward + backward per path, the paths' order
rotating from round to round, so all see the same machine; the first `--warmup` rounds are not counted. The
compiled model's first call, which compiles it, is timed on its own. Reports per path the median ms per step,
the speed-up over `masked` (ratio of medians) and the median of the per-round ratios (robust to drift), and
each path's first loss (the same function up to rounding). `--no-compile` leaves torch.compile out (it takes
about a minute to compile).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch

from k1model.app.bench.measure import _cpu_model
from k1model.config import load_params
from k1model.execution import native_unavailable
from k1model.model import AgentTree


def step_of(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], float]:
    """One forward + backward of the model on (x, y); returns the loss."""
    def step() -> float:
        for p in model.parameters():
            p.grad = None
        loss = model(x, y)[1]
        loss.backward()
        return loss.item()
    return step


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params/default.yaml"))
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    torch.set_num_threads(1)
    load_start = os.getloadavg()
    params = load_params(args.params)
    cfg, batch = params.model, params.train.batch_size
    g = torch.Generator().manual_seed(0)
    w = torch.randint(0, cfg.vocab_size, (batch, cfg.max_seq_len + 1), generator=g)
    x, y = w[:, :-1].contiguous(), w[:, 1:].contiguous()
    paths: dict[str, Callable[[], float]] = {"masked": step_of(AgentTree(cfg, attention="masked", seeds=[0]), x, y)}
    why = native_unavailable(cfg)
    if why is None:
        paths["native"] = step_of(AgentTree(cfg, attention="native", seeds=[0]), x, y)
    else:
        print(f"native: not measured ({why})", file=sys.stderr)
    compile_s = None
    if not args.no_compile:
        compiled = torch.compile(AgentTree(cfg, attention="masked", seeds=[0]))
        paths["compile"] = step_of(compiled, x, y)
        t0 = time.perf_counter()
        paths["compile"]()  # compiles forward and backward
        compile_s = time.perf_counter() - t0
        print(f"torch.compile: {compile_s:.1f} s to compile", file=sys.stderr, flush=True)
    first_loss = {name: step() for name, step in paths.items()}
    names = list(paths)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(args.warmup + args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            t0 = time.perf_counter()
            paths[name]()
            elapsed = time.perf_counter() - t0
            if r >= args.warmup:
                times[name].append(elapsed)
    med = {name: statistics.median(t) for name, t in times.items()}
    paired = {name: statistics.median(m / t for m, t in zip(times["masked"], times[name])) for name in names}
    rows = [{"path": name, "median_ms": 1e3 * med[name], "speed_up": med["masked"] / med[name],
             "paired_speed_up": paired[name], "first_loss": first_loss[name], "times_s": times[name]} for name in names]
    print(f"{'path':10} {'median ms/step':>15} {'speed-up':>9} {'paired':>8} {'first loss':>11}")
    for row in rows:
        print(f"{row['path']:10} {row['median_ms']:15.1f} {row['speed_up']:8.2f}x {row['paired_speed_up']:7.2f}x "
              f"{row['first_loss']:11.6f}")
    print(f"forward + backward of one run ({', '.join(map(str, cfg.branching))} tree, width {cfg.embed_dim}, batch "
          f"{batch} x {cfg.max_seq_len}); {args.rounds} interleaved rounds, 1 thread, torch {torch.__version__}; "
          f"{_cpu_model()}" + (f"; torch.compile took {compile_s:.1f} s to compile" if compile_s is not None else "")
          + f"; load average {load_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    if args.out:
        args.out.write_text(json.dumps({"params": str(args.params), "torch": torch.__version__, "cpu": _cpu_model(),
                                        "rounds": args.rounds, "warmup": args.warmup, "compile_s": compile_s,
                                        "load_average": [load_start[0], os.getloadavg()[0]],
                                        "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
