"""Checkpoints that never run code.

`torch.load(..., weights_only=False)` unpickles arbitrary objects, so a shared checkpoint (a DVC
remote, a colleague's run) could execute code the moment a probe opens it. Every checkpoint here
holds only tensors and plain Python values (dicts, lists, numbers, strings) and is read with
`weights_only=True`, which refuses anything else; that refusal is a `CheckpointError` naming the
file. Writes are atomic.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import torch

from k1model.errors import CheckpointError, DataError
from k1model.io import atomic_path


def save_checkpoint(path: str | Path, blob: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(blob, tmp)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint's contents; CheckpointError (naming the file) if it is missing, corrupt, or holds
    anything but tensors and plain values."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing; rerun `k1 train` for this run")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain values, which could run code when "
            f"loaded; refusing to load it ({first}). Delete it and rerun `k1 train`, and check where it came "
            "from") from None
    except Exception as err:  # noqa: BLE001 - any other failure means the file is unusable
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(err).__name__}: {err}); "
                              "delete it to restart this run from scratch") from None
    if not isinstance(blob, dict):
        raise CheckpointError(f"checkpoint {path} does not hold a checkpoint dictionary; delete it and rerun")
    return blob


def load_run_model(run_dir: str | Path, params: Any, device: str = "cpu") -> tuple[Any, dict]:
    """The trained model of a finished run (for probes) and its metrics."""
    from k1model.config import load_params
    from k1model.model import AgentTree

    params = load_params(params)
    run_dir = Path(run_dir)
    metrics_path = run_dir / "metrics.json"
    if not metrics_path.is_file():
        raise DataError(f"{run_dir} has no metrics.json: the run is missing or unfinished; run `k1 train` first")
    metrics = json.loads(metrics_path.read_text())
    path = run_dir / "checkpoint.pt"
    blob = load_checkpoint(path, map_location=device)
    try:
        model = AgentTree(params.model, attention=metrics.get("attention", "masked"), seeds=[0]).to(device)
        model.load_state_dict(blob["trainer"]["model"])
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path} does not match params ({err})") from None
    if blob.get("config_hash") != metrics.get("config_hash"):
        raise CheckpointError(f"checkpoint {path} and metrics.json disagree on the config hash; rerun the training")
    return model, metrics
