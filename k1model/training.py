"""The continual-learning protocol behind `k1 train` (DESIGN.md §3).

Domains arrive in sequence (default prose → code → science), a fixed number of steps
each. Every `eval_interval` steps all domains are evaluated on fixed validation windows
(learning curves); at the end of every phase all domains are evaluated on fixed test
windows, giving the row R[phase, :] of the forgetting matrix (bits per byte). The
untrained model's test bpb is R0 (for forward transfer).

Robustness: outputs are written atomically; a checkpoint (model, optimiser, trust, RNGs,
sampler positions, logs so far) is written to `resume.pt` every `checkpoint_interval` steps and
at the end of each phase, so a killed run resumes from it and ends with the same metrics as an
uninterrupted one. A run directory belongs to one config hash; resuming a different
config into it is refused. A non-finite loss stops the run, naming the step, and keeps the
last good checkpoint.
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from k1model.config import (MethodConfig, ModelConfig, TrainConfig, config_hash, load_params, method_config,
                            model_config, train_config)
from k1model.errors import CheckpointError, ConfigError, DataError, NonFiniteLossError
from k1model.io import atomic_path, write_json
from k1model.trainer import K1Trainer, StepRecord
from k1model.tree import AgentTree

CHECKPOINT_FORMAT = 1
LN2 = math.log(2.0)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return torch.device(name)


@torch.no_grad()
def evaluate_bpb(model: AgentTree, batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> float:
    """Mean held-out cross-entropy in bits per byte (byte tokens, so exact)."""
    was_training = model.training
    model.eval()
    total = 0.0
    for x, y in batches:
        total += model(x.to(device), y.to(device))[1].item()
    model.train(was_training)
    return total / len(batches) / LN2


def versions() -> dict[str, str]:
    import datasets

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "datasets": datasets.__version__}


def step_row(record: StepRecord, phase: int, domain: str) -> dict[str, Any]:
    names = record.names
    row: dict[str, Any] = {
        "step": record.step, "phase": phase, "domain": domain, "loss": record.loss,
        "culprit": "" if record.culprit is None else names[record.culprit],
        "path": " > ".join(names[k] for k in record.path),
        "scales": json.dumps({names[k]: s for k, s in enumerate(record.scales) if s > 0}),
        "updated": record.updated, "skipped": record.skipped, "loo_computed": int(record.loo_computed),
        "avg_trust": record.avg_trust,
    }
    for k, name in enumerate(names):
        row[f"grad_{name}"] = record.grad_scores[k]
        row[f"score_{name}"] = record.scores[k]
        row[f"loo_{name}"] = record.loo[k] if record.loo is not None else float("nan")
        row[f"trust_{name}"] = record.trust[k]
    return row


class RunState:
    """Everything besides the trainer that a resumed run needs to continue identically."""

    def __init__(self) -> None:
        self.step_rows: list[dict[str, Any]] = []
        self.eval_rows: list[dict[str, Any]] = []
        self.R: list[list[float]] = []
        self.R0: list[float] = []
        self.sparsity_checks: list[dict[str, float]] = []
        self.wall_time_s = 0.0

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("step_rows", "eval_rows", "R", "R0", "sparsity_checks", "wall_time_s")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)


class Run:
    def __init__(self, params: dict, data_dir: Path, variant: str, seed: int, out_dir: Path,
                 threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.params = params
        self.model_cfg: ModelConfig = model_config(params["model"])
        if "variant" in (params.get("method") or {}):
            raise ConfigError("method.variant must not be set in a params file: each run's variant comes from "
                              "--variant (and experiment.variants); remove the key")
        self.method: MethodConfig = method_config(params["method"], variant)
        self.train_cfg: TrainConfig = train_config(params["train"])
        variants = params.get("experiment", {}).get("variants")
        if variants is not None and variant not in variants:
            raise ConfigError(f"variant {variant!r} is not in experiment.variants {variants}")
        self.seed, self.out_dir, self.data_dir = seed, Path(out_dir), Path(data_dir)
        self.phases = list(self.train_cfg.phases or params["data"]["domains"])
        self.device = resolve_device(self.train_cfg.device)
        manifest_path = self.data_dir / "manifest.json"
        if not manifest_path.is_file():
            raise DataError(f"no prepared data at {self.data_dir} (missing manifest.json); run `k1 prepare` first")
        manifest = json.loads(manifest_path.read_text())
        self.hash = config_hash(self.model_cfg, self.method, self.train_cfg, self.phases, seed, manifest)
        self._load_data()

    def _load_data(self) -> None:
        from k1model.data import BatchSampler, eval_batches, load_split

        cfg, T = self.train_cfg, self.model_cfg.max_seq_len
        eval_domains = list(dict.fromkeys(self.phases))
        self.samplers = {d: BatchSampler(load_split(self.data_dir, d, "train"), T, cfg.batch_size,
                                         seed=self.seed * 1000 + i) for i, d in enumerate(eval_domains)}
        self.valid = {d: eval_batches(load_split(self.data_dir, d, "valid"), T, cfg.batch_size, cfg.eval_batches)
                      for d in eval_domains}
        self.test = {d: eval_batches(load_split(self.data_dir, d, "test"), T, cfg.batch_size, cfg.eval_batches)
                     for d in eval_domains}
        self.domains = eval_domains

    # --- checkpoints -----------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        """The final checkpoint of a completed run (what the probes read)."""
        return self.out_dir / "checkpoint.pt"

    @property
    def resume_path(self) -> Path:
        """The in-progress checkpoint. Kept apart from `checkpoint.pt` because workflow managers delete a
        job's declared outputs before rerunning it, which would throw away the state to resume from."""
        return self.out_dir / "resume.pt"

    def save_checkpoint(self, trainer: K1Trainer, state: RunState) -> None:
        blob = {"format": CHECKPOINT_FORMAT, "config_hash": self.hash, "trainer": trainer.state_dict(),
                "samplers": {d: s.state_dict() for d, s in self.samplers.items()},
                "torch_rng": torch.get_rng_state(), "run": state.state_dict()}
        with atomic_path(self.resume_path) as tmp:
            torch.save(blob, tmp)

    def load_checkpoint(self, trainer: K1Trainer, state: RunState) -> bool:
        path = self.resume_path
        if not path.exists():
            return False
        try:
            blob = torch.load(path, map_location=self.device, weights_only=False)
            ok = isinstance(blob, dict) and blob.get("format") == CHECKPOINT_FORMAT
        except Exception as err:  # noqa: BLE001 - any unpickling failure means the file is unusable
            raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}: {err}); "
                                  f"delete it to restart this run from scratch") from None
        if not ok:
            raise CheckpointError(f"checkpoint {path} has an unknown format; delete it to restart the run")
        if blob["config_hash"] != self.hash:
            raise CheckpointError(
                f"run directory {self.out_dir} holds a run with config hash {blob['config_hash']}, but the current "
                f"params/data give {self.hash}; refusing to resume into a stale run. Delete {self.out_dir} or "
                f"choose another --out.")
        try:
            trainer.load_state_dict(blob["trainer"])
            for d, s in self.samplers.items():
                s.load_state_dict(blob["samplers"][d])
            torch.set_rng_state(blob["torch_rng"].cpu())
            state.load_state_dict(blob["run"])
        except (KeyError, RuntimeError, ValueError) as err:
            raise CheckpointError(f"checkpoint {path} does not match this model ({err}); delete it to restart") from None
        return True

    # --- the protocol ----------------------------------------------------------------
    def eval_all(self, model: AgentTree, which: dict) -> list[float]:
        return [evaluate_bpb(model, which[d], self.device) for d in self.domains]

    def run(self, max_steps: int | None = None, progress: bool | None = None) -> dict | None:
        metrics_path = self.out_dir / "metrics.json"
        if metrics_path.exists():
            done = json.loads(metrics_path.read_text())
            if done.get("config_hash") == self.hash and done.get("status") == "completed":
                print(f"{self.out_dir}: already complete (config hash {self.hash}); nothing to do")
                return done
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(self.seed)
        model = AgentTree(self.model_cfg).to(self.device)
        trainer = K1Trainer(model, self.method, seed=self.seed)
        state = RunState()
        resumed = self.load_checkpoint(trainer, state)
        if not resumed:
            state.R0 = self.eval_all(model, self.test)
        cfg = self.train_cfg
        total = cfg.steps_per_phase * len(self.phases)
        stop_at = total if max_steps is None else min(total, max_steps)
        start_step = trainer.step_count
        if resumed:
            print(f"{self.out_dir}: resuming at step {start_step}/{total}")
        show_bar = sys.stderr.isatty() if progress is None else progress
        bar = tqdm(total=total, initial=start_step, disable=not show_bar, desc=f"{self.method.variant} s{self.seed}")
        agent_params = [list(a.parameters()) for a in model.agents]
        n_agent_params = sum(p.numel() for ps in agent_params for p in ps)
        t0 = time.perf_counter()
        for step in range(start_step, stop_at):
            phase = step // cfg.steps_per_phase
            domain = self.phases[phase]
            x, y = next(self.samplers[domain])
            check = step % cfg.sparsity_interval == 0
            before = [[p.detach().clone() for p in ps] for ps in agent_params] if check else None
            try:
                record = trainer.train_step(x.to(self.device), y.to(self.device))
            except NonFiniteLossError as err:
                write_json(self.out_dir / "failure.json", {"status": "failed", "step": err.step, "loss": str(err.loss),
                                                           "message": str(err), "variant": self.method.variant,
                                                           "seed": self.seed, "config_hash": self.hash})
                raise
            if check:
                changed = torch.stack([sum((p.detach() != b).sum() for p, b in zip(ps, bs))
                                       for ps, bs in zip(agent_params, before)]).tolist()  # one host sync
                state.sparsity_checks.append({"step": step, "param_fraction": sum(changed) / n_agent_params,
                                              "agents_changed": sum(c > 0 for c in changed),
                                              "agents_scaled": record.updated})
            state.step_rows.append(step_row(record, phase, domain))
            bar.update(1)
            end_of_phase = (step + 1) % cfg.steps_per_phase == 0
            if (step + 1) % cfg.eval_interval == 0 or end_of_phase:
                for d, bpb in zip(self.domains, self.eval_all(model, self.valid)):
                    state.eval_rows.append({"step": step + 1, "phase_index": phase, "phase": domain, "domain": d,
                                            "bpb": bpb, "end_of_phase": int(end_of_phase)})
            if end_of_phase:
                state.R.append(self.eval_all(model, self.test))
            if not show_bar and ((step + 1) % max(1, total // 10) == 0):
                print(f"[{self.method.variant} seed {self.seed}] step {step + 1}/{total} phase {domain} "
                      f"loss {record.loss:.3f} updated {record.updated}/{len(record.scales)}", flush=True)
            if (step + 1) % cfg.checkpoint_interval == 0 or end_of_phase or step + 1 == stop_at:
                state.wall_time_s += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.save_checkpoint(trainer, state)
        bar.close()
        if trainer.step_count < total:
            print(f"{self.out_dir}: stopped at step {trainer.step_count}/{total} (--max-steps); rerun to resume")
            return None
        return self.finish(model, trainer, state, n_agent_params)

    def finish(self, model: AgentTree, trainer: K1Trainer, state: RunState, n_agent_params: int) -> dict:
        from k1model.metrics import forgetting_summary, sparsity_summary

        topo = model.topology
        steps = pd.DataFrame(state.step_rows)
        with atomic_path(self.out_dir / "steps.csv.gz") as tmp:
            steps.to_csv(tmp, index=False, compression="gzip")
        with atomic_path(self.out_dir / "evals.csv") as tmp:
            pd.DataFrame(state.eval_rows).to_csv(tmp, index=False)
        checks = pd.DataFrame(state.sparsity_checks)
        total = trainer.step_count
        counts = {name: int(c) for name, c in zip(topo.names, trainer.update_counts)}
        sparsity = sparsity_summary(checks["param_fraction"], checks["agents_changed"], len(topo))
        sparsity.update({
            "checked_steps": int(len(checks)),
            "scales_agree_with_weights": bool((checks["agents_changed"] == checks["agents_scaled"]).all()),
            "intended_agent_fraction": float(steps["updated"].mean() / len(topo)),
            "idle_step_fraction": float((steps["updated"] == 0).mean()),
            "agent_params": n_agent_params,
            "shared_params": sum(p.numel() for p in model.shared_parameters()),
        })
        scalars: dict[str, Any] = dict(forgetting_summary(state.R, state.R0))
        for d, bpb in zip(self.domains, state.R[-1]):
            scalars[f"final_bpb_{d}"] = bpb
        scalars.update({
            "sparsity_param_fraction": sparsity["sparsity_param_fraction"],
            "sparsity_agent_fraction": sparsity["sparsity_agent_fraction"],
            "idle_step_fraction": sparsity["idle_step_fraction"],
            "final_train_loss": float(steps["loss"].tail(max(1, len(steps) // 20)).mean() / LN2),
            "wall_time_s": state.wall_time_s,
            "steps_per_s": total / state.wall_time_s if state.wall_time_s > 0 else None,
        })
        metrics = {
            "status": "completed", "variant": self.method.variant, "seed": self.seed, "config_hash": self.hash,
            "agents": [{"name": n, "level": topo.levels[k], "parent": None if topo.parents[k] < 0
                        else topo.names[topo.parents[k]], "params": c}
                       for k, (n, c) in enumerate(zip(topo.names, model.agent_parameter_counts()))],
            "domains": self.domains, "phases": self.phases, "R": state.R, "R0": state.R0,
            "final_bpb": dict(zip(self.domains, state.R[-1])), "update_counts": counts, "steps": total,
            "sparsity": sparsity, "scalars": scalars, "versions": versions(), "device": str(self.device),
            "threads": torch.get_num_threads(), "wall_time_s": state.wall_time_s,
        }
        with atomic_path(self.checkpoint_path) as tmp:
            shutil.copyfile(self.resume_path, tmp)
        write_json(self.out_dir / "metrics.json", metrics)  # last: its presence means "complete"
        self.resume_path.unlink(missing_ok=True)
        (self.out_dir / "failure.json").unlink(missing_ok=True)
        return metrics


def run_training(params: dict, data_dir: Path, variant: str, seed: int, out_dir: Path, *,
                 threads: int | None = None, max_steps: int | None = None, progress: bool | None = None) -> dict | None:
    return Run(params, data_dir, variant, seed, out_dir, threads=threads).run(max_steps=max_steps, progress=progress)


def load_run_model(run_dir: Path, params: dict, device: str = "cpu") -> tuple[AgentTree, dict]:
    """The trained model of a finished run (for probes) and its metrics."""
    metrics_path = Path(run_dir) / "metrics.json"
    if not metrics_path.is_file():
        raise DataError(f"{run_dir} has no metrics.json: the run is missing or unfinished; run `k1 train` first")
    metrics = json.loads(metrics_path.read_text())
    path = Path(run_dir) / "checkpoint.pt"
    try:
        blob = torch.load(path, map_location=device, weights_only=False)
        model = AgentTree(model_config(params["model"])).to(device)
        model.load_state_dict(blob["trainer"]["model"])
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; rerun `k1 train` for this run") from None
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path} is corrupt or does not match params ({err})") from None
    if blob.get("config_hash") != metrics.get("config_hash"):
        raise CheckpointError(f"checkpoint {path} and metrics.json disagree on the config hash; rerun the training")
    return model, metrics


def cli_train(args: argparse.Namespace) -> int:
    params = load_params(args.params)
    metrics = run_training(params, args.data, args.variant, args.seed, args.out, threads=args.threads,
                           max_steps=args.max_steps)
    if metrics is not None:
        s = metrics["scalars"]
        print(f"{args.variant} seed {args.seed}: final avg bpb {s['final_avg_bpb']:.4f}, forgetting "
              f"{s['forgetting']}, agent params changed/step {s['sparsity_param_fraction']:.3f}, "
              f"wall {metrics['wall_time_s']:.1f}s")
    return 0
