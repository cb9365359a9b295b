"""This code against another checkout of the project, side by side in one run (`k1 bench --versus TREE`).

Two worker processes, one per source tree (`PYTHONPATH=TREE`), each build the dense step that tree's
`k1 train` would run on a params file's model and batch: its own default kernels (`auto`, or what
the params pin), its own process setup (thread count; memory reuse where the tree has it), the same
seeds and the same batches. The parent asks them for one step at a time, alternating which goes
first, so the two see the same machine; each worker times its own step. Per number of runs per
process: the median time per run-step of each tree, their ratio, and the median of the ratios
within a round (robust to drift). The workers' first-step losses are reported too: the same model
and batch give the same loss up to the kernels' rounding.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from k1model.app.bench.measure import _summary
from k1model.errors import ConfigError

# runs in the worker, against whichever k1model its PYTHONPATH holds (older trees included)
WORKER = r'''
import json, os, sys, time
import torch
import k1model
import k1model.strategies  # noqa: F401  (older trees register their variants on import; newer ones on first lookup)
from k1model.config import load_params, method_config
from k1model.model import AgentTree
# where the worker's own tree has it (an editable install of another tree would answer a plain try-import)
if os.path.exists(os.path.join(os.path.dirname(k1model.__file__), "execution.py")):
    from k1model.execution import default_execution
else:  # a tree from before k1model/execution.py
    from k1model.model import default_execution
from k1model.train.step import Trainer
spec = json.loads(sys.argv[1])
try:
    from k1model.train.runtime import configure_process
    configure_process(spec["threads"])
except ImportError:  # a tree from before configure_process: threads only, as its k1 train did
    torch.set_num_threads(spec["threads"])
params = load_params(spec["params"])
cfg = params.model
try:
    attention, batching = default_execution("cpu", cfg)
except TypeError:  # older signature
    attention, batching = default_execution("cpu")
attention = attention if params.train.attention == "auto" else params.train.attention
batching = batching if params.train.run_batching == "auto" else params.train.run_batching
trainers, batches = {}, {}
g = torch.Generator().manual_seed(0)
for R in spec["runs"]:
    model = AgentTree(cfg, runs=R, attention=attention, run_batching=batching, seeds=list(range(R)))
    trainers[R] = Trainer(model, [method_config(params.method, spec["variant"])] * R, list(range(R)))
    w = torch.randint(0, cfg.vocab_size, (R, params.train.batch_size, cfg.max_seq_len + 1), generator=g)
    batches[R] = (w[..., :-1].contiguous(), w[..., 1:].contiguous())
print(json.dumps({"attention": attention, "run_batching": batching, "torch": torch.__version__,
                  "k1model": k1model.__file__}), flush=True)
for line in sys.stdin:
    R = int(line)
    t0 = time.perf_counter()
    records = trainers[R].train_step(*batches[R])
    print(json.dumps({"s": time.perf_counter() - t0, "loss": records[0].loss}), flush=True)
'''


class _Worker:
    def __init__(self, tree: Path, spec: dict[str, Any]):
        env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(spec["threads"])}
        self.proc = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(spec)], cwd=tree, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.info = self._read(f"starting the worker of {tree}")

    def _read(self, what: str) -> dict[str, Any]:
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read()[-2000:]
            raise ConfigError(f"bench --versus: {what} failed:\n{err}")
        return json.loads(line)

    def step(self, runs: int) -> dict[str, Any]:
        """Ask the worker for one timed step of `runs` runs."""
        self.proc.stdin.write(f"{runs}\n")
        self.proc.stdin.flush()
        return self._read(f"a step of {runs} run(s)")

    def close(self) -> None:
        """End the worker process."""
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=60)


def versus_experiment(reference: Path, params_file: Path, runs: Sequence[int] = (1, 17), variant: str = "dense",
                      repeats: int = 20, warmup: int = 3, threads: int = 1,
                      log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Time this tree's step against `reference`'s (see the module docstring)."""
    log = log or (lambda s: None)
    this = Path(__file__).resolve().parents[3]
    reference = Path(reference).resolve()
    if not (reference / "k1model" / "__init__.py").is_file():
        raise ConfigError(f"--versus {str(reference)!r} is not a checkout of this project (no k1model/ in it); "
                          "make one with: git worktree add /tmp/k1-main main")
    params_file = Path(params_file).resolve()
    spec = {"params": str(params_file), "runs": list(runs), "variant": variant, "threads": threads}
    log(f"versus: starting workers ({reference} and {this})")
    workers = {"reference": _Worker(reference, spec), "this": _Worker(this, spec)}
    times: dict[str, dict[int, list[float]]] = {k: {R: [] for R in runs} for k in workers}
    first_loss: dict[str, dict[int, float]] = {k: {} for k in workers}
    try:
        for rnd in range(warmup + repeats):
            for i, R in enumerate(runs):
                order = list(workers) if (rnd + i) % 2 == 0 else list(workers)[::-1]
                for name in order:
                    out = workers[name].step(R)
                    first_loss[name].setdefault(R, out["loss"])
                    if rnd >= warmup:
                        times[name][R].append(out["s"] / R)
            if rnd >= warmup and (rnd - warmup + 1) % 5 == 0:
                log(f"versus: {rnd - warmup + 1}/{repeats} rounds")
    finally:
        for w in workers.values():
            w.close()
    rows = {}
    for R in runs:
        ref, new = times["reference"][R], times["this"][R]
        rows[str(R)] = {"reference_s_per_run_step": _summary(ref), "this_s_per_run_step": _summary(new),
                        "speedup": statistics.median(ref) / statistics.median(new),
                        "speedup_paired": statistics.median(a / b for a, b in zip(ref, new)),
                        "first_step_loss": {"reference": first_loss["reference"][R], "this": first_loss["this"][R]}}
    return {"reference_tree": str(reference), "this_tree": str(this), "params": str(params_file), "variant": variant,
            "threads": threads, "repeats": repeats, "warmup": warmup,
            "kernels": {k: w.info for k, w in workers.items()}, "runs": rows,
            "what": "time per run-step of the params' dense step (train_step: forward, backward, scores, host sync, "
                    "sparse AdamW), each tree's own default kernels and process setup, alternating"}


def format_versus(result: dict[str, Any]) -> str:
    """A `k1 bench --versus` result as the table it prints."""
    k = result["kernels"]
    lines = [f"side by side: this tree ({result['this_tree']}; attention {k['this']['attention']}, "
             f"{k['this']['run_batching']}) vs {result['reference_tree']} (attention {k['reference']['attention']}, "
             f"{k['reference']['run_batching']}); {result['variant']} step of {result['params']}, "
             f"{result['threads']} thread(s), {result['repeats']} alternating rounds after {result['warmup']} warm-up",
             f"{'runs/process':>12} {'reference ms':>13} {'this ms':>9} {'speed-up':>9} {'paired':>7} {'first-step loss ref / this':>28}"]
    for R, row in result["runs"].items():
        ref, new = row["reference_s_per_run_step"]["median"], row["this_s_per_run_step"]["median"]
        loss = row["first_step_loss"]
        lines.append(f"{R:>12} {1000 * ref:>13.1f} {1000 * new:>9.1f} {row['speedup']:>8.2f}x {row['speedup_paired']:>6.2f}x "
                     f"{loss['reference']:>13.6f} / {loss['this']:.6f}")
    lines.append("ms = median time per run-step (a step of R runs in one process / R)")
    return "\n".join(lines)
