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

import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from k1model.config import MethodConfig, ModelConfig, Params, TrainConfig, config_hash, load_params, method_config
from k1model.errors import CheckpointError, ConfigError, DataError, NonFiniteLossError
from k1model.io import atomic_path, write_json
from k1model.model import AgentTree
from k1model.train.checkpoint import load_checkpoint, save_checkpoint
from k1model.train.plugins import Phase
from k1model.train.runtime import resolve_device, versions
from k1model.train.step import K1Trainer, StepRecord

CHECKPOINT_FORMAT = 2  # 2: thread count and plugin state recorded; loads with weights_only=True
LN2 = math.log(2.0)


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
    def __init__(self, params: Params | dict, data_dir: Path, variant: str, seed: int, out_dir: Path,
                 threads: int | None = None):
        if threads:
            torch.set_num_threads(threads)
        self.params = params = load_params(params)
        self.model_cfg: ModelConfig = params.model
        self.method: MethodConfig = method_config(params.method, variant)
        self.train_cfg: TrainConfig = params.train
        variants = params.experiment.variants
        if variant not in variants:
            raise ConfigError(f"variant {variant!r} is not in experiment.variants {list(variants)}")
        self.seed, self.out_dir, self.data_dir = seed, Path(out_dir), Path(data_dir)
        self.phases = list(self.train_cfg.phases or params.data.domains)
        self.device = resolve_device(self.train_cfg.device)
        manifest_path = self.data_dir / "manifest.json"
        if not manifest_path.is_file():
            raise DataError(f"no prepared data at {self.data_dir} (missing manifest.json); run `k1 prepare` first")
        manifest = json.loads(manifest_path.read_text())
        self.hash = config_hash(self.model_cfg, self.method, self.train_cfg, self.phases, seed, manifest)
        self._load_data()

    def _load_data(self) -> None:
        from k1model.data.loading import load_split
        from k1model.data.sampling import BatchSampler, eval_batches

        cfg, T = self.train_cfg, self.model_cfg.max_seq_len
        eval_domains = list(dict.fromkeys(self.phases))
        self.train_tokens = {d: load_split(self.data_dir, d, "train") for d in eval_domains}
        self.samplers = {d: BatchSampler(self.train_tokens[d], T, cfg.batch_size,
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
        blob = {"format": CHECKPOINT_FORMAT, "config_hash": self.hash, "threads": torch.get_num_threads(),
                "trainer": trainer.state_dict(), "samplers": {d: s.state_dict() for d, s in self.samplers.items()},
                "torch_rng": torch.get_rng_state(), "run": state.state_dict()}
        save_checkpoint(self.resume_path, blob)

    def load_checkpoint(self, trainer: K1Trainer, state: RunState) -> bool:
        path = self.resume_path
        if not path.exists():
            return False
        blob = load_checkpoint(path, map_location=self.device)
        if blob.get("format") != CHECKPOINT_FORMAT:
            raise CheckpointError(f"checkpoint {path} has an unknown format; delete it to restart the run")
        if blob["config_hash"] != self.hash:
            raise CheckpointError(
                f"run directory {self.out_dir} holds a run with config hash {blob['config_hash']}, but the current "
                f"params/data give {self.hash}; refusing to resume into a stale run. Delete {self.out_dir} or "
                f"choose another --out.")
        threads = torch.get_num_threads()
        if blob.get("threads") != threads:
            raise CheckpointError(
                f"run directory {self.out_dir} was started with {blob.get('threads')} torch thread(s), this process "
                f"uses {threads}; results depend on the thread count, so resuming would mix two computations. "
                f"Resume with --threads {blob.get('threads')}, or delete {self.out_dir} to restart.")
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
    def phase(self, index: int) -> Phase:
        domain = self.phases[index]
        steps = self.train_cfg.steps_per_phase
        return Phase(index=index, domain=domain, steps=steps, first_step=index * steps,
                     tokens=self.train_tokens[domain], seq_len=self.model_cfg.max_seq_len,
                     batch_size=self.train_cfg.batch_size, seed=self.seed)

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
            current = self.phase(phase)
            if step == current.first_step:
                for plugin in trainer.plugins:
                    plugin.before_phase(trainer, current)
            x, y = next(self.samplers[domain])
            for plugin in trainer.plugins:
                x, y = plugin.batch(trainer, x, y, current)
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
                for plugin in trainer.plugins:
                    plugin.after_phase(trainer, current)
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
        from k1model.analysis.cl_metrics import forgetting_summary, sparsity_summary

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
