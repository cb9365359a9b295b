"""What a run records while it trains (step log, evaluations, R matrix, sparsity checks) and the
files it leaves in its run directory: metrics.json, steps.csv.gz, evals.csv, checkpoint.pt
(and failure.json when its loss stopped being finite)."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from k1model.io import atomic_path, write_json
from k1model.train.step import StepRecord

LN2 = math.log(2.0)


def step_row(record: StepRecord, phase: int, domain: str) -> dict[str, Any]:
    """One row of steps.csv.gz: a step's record of one run, flattened per agent."""
    names = record.names
    row: dict[str, Any] = {
        "step": record.step, "phase": phase, "domain": domain, "loss": record.loss,
        "culprit": "" if record.culprit is None else names[record.culprit],
        "path": " > ".join(names[k] for k in record.path),
        "scales": json.dumps({names[k]: s for k, s in enumerate(record.scales) if s > 0}),
        "updated": record.updated, "skipped": record.skipped, "loo_computed": int(record.loo_computed),
        "avg_trust": record.avg_trust, "shared_updated": int(record.shared_updated),
        "loo_changed": float("nan") if record.loo_changed is None else int(record.loo_changed),
        "loo_hurt": float("nan") if record.loo_hurt is None else int(record.loo_hurt),
    }
    nan = float("nan")
    if record.active is not None:  # a model with agent slots: how big the live tree is
        row["active_agents"] = record.num_active
    for k, name in enumerate(names):
        live = record.active is None or record.active[k]  # not an agent of the live tree: no numbers
        row[f"grad_{name}"] = record.grad_scores[k] if live else nan
        row[f"score_{name}"] = record.scores[k] if live else nan
        row[f"loo_{name}"] = record.loo[k] if record.loo is not None and live else nan
        row[f"trust_{name}"] = record.trust[k] if live else nan
    return row


class RunLog:
    """Everything besides the trainer that a resumed run needs to continue identically."""

    FIELDS = ("step_rows", "eval_rows", "R", "R0", "R_valid", "R0_valid", "R_shared", "sparsity_checks",
              "wall_time_s", "snapshots", "drift")

    def __init__(self) -> None:
        self.step_rows: list[dict[str, Any]] = []
        self.eval_rows: list[dict[str, Any]] = []
        self.R: list[list[float]] = []  # test bpb after each phase
        self.R0: list[float] = []
        self.R_valid: list[list[float]] = []  # validation bpb after each phase (for tuning)
        self.R0_valid: list[float] = []
        # test bpb after each phase with every agent bypassed (embedding -> final norm -> head): R_shared - R is
        # what the agents carry
        self.R_shared: list[list[float]] = []
        self.sparsity_checks: list[dict[str, float]] = []
        self.wall_time_s = 0.0
        # the forgetting decomposition (train/decomposition.py): weights at phase ends ("init" = before the
        # first step) while they are still needed, and how far each part moved per phase
        self.snapshots: dict[str, list[list[Any]]] = {}
        self.drift: list[dict[str, Any]] = []

    def state_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.FIELDS}

    def load_state_dict(self, state: dict) -> None:
        for k in self.FIELDS:  # R_shared is absent from the state of runs started before it was recorded
            setattr(self, k, state[k] if k != "R_shared" else state.get(k, []))


def write_run_outputs(out_dir: Path, log: RunLog) -> pd.DataFrame:
    """steps.csv.gz and evals.csv; returns the step table."""
    steps = pd.DataFrame(log.step_rows)
    with atomic_path(out_dir / "steps.csv.gz") as tmp:
        steps.to_csv(tmp, index=False, compression="gzip")
    with atomic_path(out_dir / "evals.csv") as tmp:
        pd.DataFrame(log.eval_rows).to_csv(tmp, index=False)
    return steps


def finish_run(out_dir: Path, resume_path: Path, log: RunLog, metrics: dict[str, Any]) -> dict[str, Any]:
    """The final files of a completed run: checkpoint.pt, then metrics.json last (its presence means done)."""
    with atomic_path(out_dir / "checkpoint.pt") as tmp:
        shutil.copyfile(resume_path, tmp)
    write_json(out_dir / "metrics.json", metrics)
    resume_path.unlink(missing_ok=True)
    (out_dir / "failure.json").unlink(missing_ok=True)
    return metrics


RUN_FILES = ("steps.csv.gz", "evals.csv", "checkpoint.pt")  # metrics.json is written last: its presence means done


def copy_run(source: Path, out_dir: Path, metrics: dict[str, Any]) -> dict[str, Any]:
    """A completed run copied to `out_dir`: what training it again would write, bit for bit (the same config
    hash is the same computation: each run's kernels are its own, whatever the other runs of its process).
    metrics.json says where it was copied from; it is written last, as after training."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:
        with atomic_path(out_dir / name) as tmp:
            shutil.copyfile(source / name, tmp)
    metrics = {**metrics, "copied_from": str(source)}
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def record_failure(out_dir: Path, resume_path: Path, log: RunLog, info: dict[str, Any]) -> dict[str, Any]:
    """A run whose loss stopped being finite: failure.json, the log so far, the last good checkpoint
    as checkpoint.pt (the resumable state stays), and metrics.json with status "failed", so a
    pipeline sees every output of the job and goes on; the analysis lists the run as failed."""
    write_json(out_dir / "failure.json", info)
    write_run_outputs(out_dir, log)
    if resume_path.exists():
        with atomic_path(out_dir / "checkpoint.pt") as tmp:
            shutil.copyfile(resume_path, tmp)
    from k1model.cl_metrics import DIVERGENCE_RULE

    metrics = {**info, "status": "failed", "error": info["message"],
               "divergence": {"diverged": True, "reasons": [f"loss not finite ({info.get('loss')}) at step "
                                                            f"{info.get('step')}"], "rule": DIVERGENCE_RULE}}
    write_json(out_dir / "metrics.json", metrics)
    return metrics


def _mean_or_none(column: pd.Series | None) -> float | None:
    """Mean of the defined entries (NaN = not applicable at that step); None when none is defined."""
    if column is None or column.notna().sum() == 0:
        return None
    return float(column.dropna().mean())


def agents_gain(R: list[list[float]], R_shared: list[list[float]]) -> dict[str, float | None]:
    """How much the agents carry: bpb with every agent bypassed minus the tree's bpb, on every domain after the
    last phase (`agents_gain`) and on each domain right after its own phase (`agents_gain_own_phase`); means
    over domains. Near 0: the shared embedding and head alone do what the tree does (a byte-statistics model)."""
    if len(R_shared) != len(R):  # a run started before R_shared was recorded
        return {"agents_gain": None, "agents_gain_own_phase": None}
    tree, alone = np.asarray(R, dtype=float), np.asarray(R_shared, dtype=float)
    return {"agents_gain": float((alone[-1] - tree[-1]).mean()),
            "agents_gain_own_phase": float((np.diag(alone) - np.diag(tree)).mean())}


def run_metrics(log: RunLog, steps: pd.DataFrame, *, identity: dict[str, Any], agents: list[dict[str, Any]],
                update_counts: dict[str, int], n_agents: int, agent_params: int, shared_params: int,
                extra: dict[str, Any], more_scalars: dict[str, Any] | None = None) -> dict[str, Any]:
    """metrics.json of a completed run: R matrices, scalars (what `k1 aggregate` reads), sparsity."""
    from k1model.cl_metrics import divergence, forgetting_summary, sparsity_summary

    checks = pd.DataFrame(log.sparsity_checks)
    live = "agents_active" in checks  # a model with agent slots: fractions of the live tree at each step
    sparsity = sparsity_summary(checks["param_fraction"], checks["agents_changed"],
                                checks["agents_active"] if live else n_agents)
    sparsity.update({
        "checked_steps": int(len(checks)),
        "scales_agree_with_weights": bool((checks["agents_changed"] == checks["agents_scaled"]).all()),
        "intended_agent_fraction": float((steps["updated"] / steps["active_agents"]).mean()
                                         if live and steps["active_agents"].nunique() > 1
                                         else steps["updated"].mean() / (steps["active_agents"].iloc[0] if live
                                                                         else n_agents)),
        "idle_step_fraction": float((steps["updated"] == 0).mean()),
        "agent_params": agent_params,
        "shared_params": shared_params,
    })
    domains = identity["domains"]
    diverged = divergence(log.R, log.R0, steps["loss"].to_numpy(float), list(domains))
    scalars: dict[str, Any] = dict(forgetting_summary(log.R, log.R0))
    for d, bpb in zip(domains, log.R[-1]):
        scalars[f"final_bpb_{d}"] = bpb
    scalars.update(agents_gain(log.R, log.R_shared))
    total = len(steps)
    scalars.update({
        "sparsity_param_fraction": sparsity["sparsity_param_fraction"],
        "sparsity_agent_fraction": sparsity["sparsity_agent_fraction"],
        "idle_step_fraction": sparsity["idle_step_fraction"],
        "shared_update_fraction": float(steps["shared_updated"].mean()) if "shared_updated" in steps else None,
        # what the LOO does (LOO scorers; null elsewhere): rounds in which some agent hurts, and steps whose
        # selection the hybrid weight changed against gradient scores alone
        "loo_hurt_fraction": _mean_or_none(steps.get("loo_hurt")),
        "loo_changed_fraction": _mean_or_none(steps.get("loo_changed")),
        "final_train_loss": float(steps["loss"].tail(max(1, len(steps) // 20)).mean() / LN2),
        "diverged": float(diverged["diverged"]),  # a flag (1 = diverged) the tidy table carries
        "wall_time_s": log.wall_time_s,
        "steps_per_s": total / log.wall_time_s if log.wall_time_s > 0 else None,
        **(more_scalars or {}),  # e.g. the live tree's size, structural events (structural plasticity)
    })
    return {
        "status": "completed", **identity, "agents": agents,
        "R": log.R, "R0": log.R0, "R_valid": log.R_valid, "R0_valid": log.R0_valid, "R_shared": log.R_shared,
        # validation-split numbers are kept out of `scalars` (what the analysis reports): choices such
        # as tuning read only these, never the test split
        "validation": forgetting_summary(log.R_valid, log.R0_valid),
        "final_bpb": dict(zip(domains, log.R[-1])), "update_counts": update_counts, "steps": total,
        "sparsity": sparsity, "divergence": diverged, "scalars": scalars, **extra, "wall_time_s": log.wall_time_s,
    }
