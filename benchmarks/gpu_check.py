#!/usr/bin/env python3
"""The GPU check: everything the paper profile needs to know about a GPU, in one call of a few minutes.

    bash benchmarks/gpu_check.sh                      # on the GPU machine (installs, then runs this)
    python benchmarks/gpu_check.py --device cuda --out-dir benchmarks/results/gpu_check
    python benchmarks/gpu_check.py --device cpu --tiny --out-dir /tmp/gc   # the smoke mode the tests run

Four parts, each timed, each written to `gpu_check.json` (everything) and `gpu_check.txt` (a summary):

1. `k1 bench` on the paper profile's model (every variant against dense, LOO cost, peak memory);
2. loop vs batched execution of R = 1, 8, 32, 64 dense runs in one process (per-run step time,
   peak memory, and whether the two give the same loss);
3. bf16 autocast vs fp32 (step time, loss after a few steps);
4. a shortened paper-profile training through `k1 prepare` + `k1 train` (the paper's model, method
   and train settings; the embedded offline corpus, so no data has to be handed over; a few steps
   per phase), which shows that the whole training path runs on the device.

A part that fails is recorded with its error and the others go on; the exit status is 1 if any part
failed. `--tiny` shrinks every size so the CPU smoke test takes seconds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "params" / "paper.yaml"
TINY_MODEL = {"branching": [2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16, "max_agents": 5}


def _peak_mb(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None


def _paper_model(tiny: bool) -> dict:
    model = yaml.safe_load(PAPER.read_text())["model"]
    return {**model, **TINY_MODEL} if tiny else model


def part_bench(device: str, tiny: bool, out: Path) -> dict[str, Any]:
    """`k1 bench` on the paper profile's tree and width (a subprocess: exactly the command users run)."""
    m = _paper_model(tiny)
    tree = ",".join(map(str, m["branching"]))
    args = [sys.executable, "-m", "k1model", "bench", "--device", device, "--trees", tree,
            "--width", str(m["embed_dim"]), "--context", str(m["max_seq_len"]),
            "--batch", "2" if tiny else "16", "--repeats", "2" if tiny else "10",
            "--warmup", "1" if tiny else "3", "--multi-runs", "2" if tiny else "8",
            "--out", str(out / "bench.json")]
    if not tiny:
        args += ["--params", str(PAPER)]
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    (out / "bench.txt").write_text(done.stdout)
    if done.returncode:
        raise RuntimeError(f"k1 bench failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    bench = json.loads((out / "bench.json").read_text())
    return {"command": " ".join(args[1:]), "table": "bench.txt", "targets": bench.get("targets"),
            "trees": [{"branching": t["branching"], "agents": t["agents"],
                       "x_dense": {v: r["ratio_to_dense"] for v, r in t["variants"].items()}} for t in bench["trees"]]}


def _dense(cfg, runs: int, batching: str, precision: str, device: torch.device):
    """Dense trainer with the attention kernel `k1 train` picks on this device (CUDA: SDPA's causal kernel)."""
    from k1model.app.bench.experiments import dense_trainer
    from k1model.execution import default_execution

    return dense_trainer(cfg, runs, default_execution(device)[0], batching, device, precision)


def _batch(cfg, runs: int, batch: int, device: torch.device, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(0, cfg.vocab_size, (runs, batch, cfg.max_seq_len + 1), generator=g).to(device)
    return w[..., :-1].contiguous(), w[..., 1:].contiguous()


def _median_step(step: Callable[[], Any], device: torch.device, repeats: int, warmup: int) -> float:
    from k1model.app.bench.measure import timed

    for _ in range(warmup):
        step()
    return statistics.median(timed(step, device) for _ in range(repeats))


def part_batching(device: torch.device, tiny: bool, runs: list[int], repeats: int) -> dict[str, Any]:
    """Per-run dense step time of `loop` (each run's own kernels) vs `batched` (bmm over runs)."""
    from k1model.config import ModelConfig

    cfg = ModelConfig(**_paper_model(tiny))
    batch = 2 if tiny else 16
    rows = []
    for R in runs:
        x, y = _batch(cfg, R, batch, device)
        row: dict[str, Any] = {"runs": R}
        losses = {}
        for batching in ("loop", "batched"):
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            tr = None  # (an out-of-memory error can come before it is built)
            try:
                tr = _dense(cfg, R, batching, "fp32", device)
                losses[batching] = [float(r.loss) for r in tr.train_step(x, y)]
                t = _median_step(lambda: tr.train_step(x, y), device, repeats, 1)
                row[batching] = {"per_run_step_s": t / R, "peak_mb": _peak_mb(device)}
            except torch.cuda.OutOfMemoryError as err:  # a size that does not fit is a result, not a failure
                row[batching] = {"error": f"out of memory: {err}".splitlines()[0]}
            del tr
        if all("per_run_step_s" in row[b] for b in ("loop", "batched")):
            row["batched_speedup"] = row["loop"]["per_run_step_s"] / row["batched"]["per_run_step_s"]
            row["first_loss_max_abs_diff"] = max(abs(a - b) for a, b in zip(losses["loop"], losses["batched"]))
        rows.append(row)
    return {"batch": batch, "rows": rows,
            "what": "dense training step per run, R runs in one process; batched_speedup = loop / batched"}


def part_precision(device: torch.device, tiny: bool, steps: int, repeats: int) -> dict[str, Any]:
    """bf16 autocast vs fp32: step time, and the loss after `steps` identical steps."""
    from k1model.config import ModelConfig

    cfg = ModelConfig(**_paper_model(tiny))
    out: dict[str, Any] = {}
    for precision in ("fp32", "bf16"):
        tr = _dense(cfg, 1, "loop", precision, device)
        loss = None
        for k in range(steps):
            x, y = _batch(cfg, 1, 2 if tiny else 16, device, seed=k)
            record = tr.train_step(x, y)
            loss = float(record[0].loss)
        x, y = _batch(cfg, 1, 2 if tiny else 16, device)
        out[precision] = {"step_s": _median_step(lambda: tr.train_step(x, y), device, repeats, 1),
                          f"loss_after_{steps}_steps": loss}
    out["bf16_speedup"] = out["fp32"]["step_s"] / out["bf16"]["step_s"]
    out["loss_diff"] = abs(out["bf16"][f"loss_after_{steps}_steps"] - out["fp32"][f"loss_after_{steps}_steps"])
    return out


def part_training(device: str, tiny: bool, out: Path) -> dict[str, Any]:
    """The paper profile shortened: its model, method and train settings on the embedded corpus."""
    params = yaml.safe_load(PAPER.read_text())
    params["data"] = {"source": "embedded", "domains": ["prose", "code", "science"], "max_bytes": 200000,
                      "valid_fraction": 0.05, "test_fraction": 0.05}
    params["model"] = _paper_model(tiny)
    steps = 3 if tiny else 40
    params["train"].update(device=device, steps_per_phase=steps, eval_interval=steps, eval_batches=2,
                           checkpoint_interval=steps, sparsity_interval=max(1, steps // 4))
    params["experiment"] = {"variants": ["k1_full", "dense"], "seeds": [0], "orders": [["prose", "code", "science"]]}
    for section in ("tuning", "sweep"):
        params.pop(section, None)
    work = Path(tempfile.mkdtemp(prefix="k1_gpu_check_"))
    pfile = work / "paper_short.yaml"
    pfile.write_text(yaml.safe_dump(params, sort_keys=False))
    k1 = [sys.executable, "-m", "k1model"]
    t0 = time.perf_counter()
    for args in (["prepare", "--params", str(pfile), "--out", str(work / "data")],
                 ["train", "--params", str(pfile), "--data", str(work / "data"), "--variant", "k1_full,dense",
                  "--seed", "0", "--out", str(work / "runs" / "{variant}")]):
        done = subprocess.run(k1 + args, capture_output=True, text=True, check=False)
        with (out / "training.log").open("a") as log:
            log.write(done.stdout + done.stderr)
        if done.returncode:
            raise RuntimeError(f"k1 {args[0]} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    runs = {}
    for v in ("k1_full", "dense"):
        m = json.loads((work / "runs" / v / "metrics.json").read_text())
        runs[v] = {"final_avg_bpb": m["scalars"]["final_avg_bpb"], "device": m.get("device"),
                   "precision": m.get("precision"), "wall_time_s": m.get("wall_time_s")}
    return {"steps_per_phase": steps, "wall_s": time.perf_counter() - t0, "runs": runs, "params": str(pfile)}


def summary_text(result: dict[str, Any]) -> str:
    lines = [f"K-1 GPU check: device {result['device']} ({result.get('gpu') or 'no GPU'}), torch {result['torch']}, "
             f"{result['wall_s']:.0f}s in all"]
    for name, part in result["parts"].items():
        head = f"[{name}] {part['status']} in {part['wall_s']:.1f}s"
        if part["status"] != "ok":
            lines.append(f"{head}: {part['error']}")
            continue
        lines.append(head)
        r = part["result"]
        if name == "bench":
            for t in r["trees"]:
                lines.append(f"  tree {t['branching']} ({t['agents']} agents), step time x dense: "
                             + ", ".join(f"{v} {x:.2f}" for v, x in t["x_dense"].items()))
        elif name == "batching":
            for row in r["rows"]:
                cells = []
                for b in ("loop", "batched"):
                    c = row[b]
                    cells.append(f"{b} {c['error']}" if "error" in c else
                                 f"{b} {1000 * c['per_run_step_s']:.2f} ms/run"
                                 + (f" ({c['peak_mb']:.0f} MB)" if c.get("peak_mb") is not None else ""))
                extra = (f", batched x{row['batched_speedup']:.2f}, first-loss diff {row['first_loss_max_abs_diff']:.1e}"
                         if "batched_speedup" in row else "")
                lines.append(f"  R={row['runs']:<3} " + ", ".join(cells) + extra)
        elif name == "precision":
            lines.append(f"  fp32 {1000 * r['fp32']['step_s']:.2f} ms, bf16 {1000 * r['bf16']['step_s']:.2f} ms "
                         f"(x{r['bf16_speedup']:.2f}); loss difference after the warm-up steps {r['loss_diff']:.2e}")
        elif name == "training":
            lines.append(f"  {r['steps_per_phase']} steps per phase: "
                         + ", ".join(f"{v} final avg bpb {x['final_avg_bpb']:.3f} on {x['device']}"
                                     for v, x in r["runs"].items()))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (the smoke mode)")
    ap.add_argument("--out-dir", default=str(ROOT / "benchmarks" / "results" / "gpu_check"))
    ap.add_argument("--runs", default="1,8,32,64", help="runs per process of the loop-vs-batched part")
    ap.add_argument("--tiny", action="store_true", help="tiny sizes (CPU smoke test, seconds)")
    ap.add_argument("--parts", default="bench,batching,precision,training")
    args = ap.parse_args(argv)
    try:
        runs = [int(r) for r in args.runs.split(",")]
    except ValueError:
        ap.error(f"--runs {args.runs!r}: expected comma-separated integers, e.g. 1,8,32,64")
    parts = args.parts.split(",")
    unknown = sorted(set(parts) - {"bench", "batching", "precision", "training"})
    if unknown:
        ap.error(f"--parts: unknown part {unknown[0]!r}; allowed: bench, batching, precision, training")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available here (torch {torch.__version__}); "
                 "use --device cpu --tiny for the smoke mode")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    result: dict[str, Any] = {"device": str(device), "torch": torch.__version__, "tiny": args.tiny,
                              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "parts": {}}
    repeats = 2 if args.tiny else 10
    jobs = {"bench": lambda: part_bench(args.device, args.tiny, out),
            "batching": lambda: part_batching(device, args.tiny, runs, repeats),
            "precision": lambda: part_precision(device, args.tiny, 3 if args.tiny else 20, repeats),
            "training": lambda: part_training(args.device, args.tiny, out)}
    t_all = time.perf_counter()
    for name in parts:
        print(f"gpu check: {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            entry = {"status": "ok", "result": jobs[name]()}
        except Exception as err:  # recorded, the other parts go on; the exit status says so
            entry = {"status": "failed", "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc()}
        entry["wall_s"] = time.perf_counter() - t0
        result["parts"][name] = entry
    result["wall_s"] = time.perf_counter() - t_all
    tmp = out / "gpu_check.json.tmp"
    tmp.write_text(json.dumps(result, indent=2, default=str))
    os.replace(tmp, out / "gpu_check.json")
    text = summary_text(result)
    (out / "gpu_check.txt").write_text(text)
    print(text, end="")
    return int(any(p["status"] != "ok" for p in result["parts"].values()))


if __name__ == "__main__":
    sys.exit(main())
