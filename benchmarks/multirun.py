#!/usr/bin/env python3
"""Many runs in one process vs one process per run, end to end through `k1 train` (issue: throughput).

    python benchmarks/multirun.py --params params/default.yaml --runs 6 --out benchmarks/results/multirun.json

Prepares the params' data once, then trains the same `--runs` runs (the first variants x seeds of
the params) two ways, each with 1 torch thread and one process at a time (so both use one core):
  alone:    one `k1 train` process per run, one after the other;
  together: one `k1 train --variant a,b,... --seed ...` process for all of them.
Reports wall times and CPU times (user + system of the `k1` processes; on a shared machine the steadier
of the two) of the whole processes, start-up included, their ratios, and the largest difference between
the two ways of every run's R matrix (bpb). Repeats alternate the order. "alone" is what the pipeline
does since issue 28 (one job per run), "together" what it did before (runs_per_job runs in one job).
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def k1(*args: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "k1model", *args], check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def children_cpu_s() -> float:
    """User + system CPU seconds of every finished child process so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=Path, default=Path("params/default.yaml"))
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    params = yaml.safe_load(args.params.read_text())
    pairs = [(v, s) for s in params["experiment"]["seeds"] for v in params["experiment"]["variants"]][:args.runs]
    variants = sorted({v for v, _ in pairs}, key=[v for v, _ in pairs].index)
    seeds = sorted({s for _, s in pairs})
    pairs = [(v, s) for v in variants for s in seeds]  # the cartesian set `k1 train` takes
    work = Path(tempfile.mkdtemp(prefix="k1-multirun-"))
    try:
        data = work / "data"
        k1("prepare", "--params", str(args.params), "--out", str(data))
        times: dict[str, list[float]] = {"alone": [], "together": []}
        cpu: dict[str, list[float]] = {"alone": [], "together": []}
        worst = 0.0
        for rep in range(args.repeats):
            for way in (("alone", "together") if rep % 2 == 0 else ("together", "alone")):
                root = work / f"{way}{rep}"
                t0, c0 = time.perf_counter(), children_cpu_s()
                if way == "alone":
                    for v, s in pairs:
                        k1("train", "--params", str(args.params), "--data", str(data), "--variant", v, "--seed",
                           str(s), "--out", str(root / v / f"seed{s}"), "--threads", "1")
                else:
                    k1("train", "--params", str(args.params), "--data", str(data), "--variant", ",".join(variants),
                       "--seed", ",".join(map(str, seeds)), "--out", str(root / "{variant}" / "seed{seed}"),
                       "--threads", "1")
                times[way].append(time.perf_counter() - t0)
                cpu[way].append(children_cpu_s() - c0)
                print(f"{way:8s} {times[way][-1]:7.1f} s wall, {cpu[way][-1]:7.1f} s CPU ({len(pairs)} runs)",
                      flush=True)
            for v, s in pairs:
                ra = json.loads((work / f"alone{rep}" / v / f"seed{s}" / "metrics.json").read_text())["R"]
                rt = json.loads((work / f"together{rep}" / v / f"seed{s}" / "metrics.json").read_text())["R"]
                worst = max(worst, max(abs(a - b) for ra_i, rt_i in zip(ra, rt) for a, b in zip(ra_i, rt_i)))
        alone, together = statistics.median(times["alone"]), statistics.median(times["together"])
        cpu_alone, cpu_together = statistics.median(cpu["alone"]), statistics.median(cpu["together"])
        result = {"params": str(args.params), "runs": [f"{v}/seed{s}" for v, s in pairs], "times_s": times,
                  "cpu_s": cpu, "alone_cpu_s": cpu_alone, "together_cpu_s": cpu_together,
                  "alone_extra_cpu_s_per_run": (cpu_alone - cpu_together) / len(pairs),
                  "alone_s": alone, "together_s": together, "together_over_alone": together / alone,
                  "target": 0.5, "met": together / alone <= 0.5, "max_abs_R_diff_bpb": worst,
                  "R_target": 2e-3, "R_met": worst <= 2e-3}
        print(f"CPU: together / alone = {cpu_together / cpu_alone:.3f}; one process per run costs "
              f"{result['alone_extra_cpu_s_per_run']:.2f} CPU-s more per run")
        print(f"together / alone = {together / alone:.3f} (target <= 0.5: {'met' if result['met'] else 'MISSED'}); "
              f"worst R difference {worst:.2e} bpb (target <= 2e-3: {'met' if result['R_met'] else 'MISSED'})")
        if args.out:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=2) + "\n")
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
