"""Checkpoints that never run code.

`torch.load(..., weights_only=False)` unpickles arbitrary objects, so a shared checkpoint (a DVC
remote, a colleague's run) could execute code the moment a probe opens it. Every checkpoint here
holds only tensors and plain Python values (dicts, lists, numbers, strings) and is read with
`weights_only=True`, which refuses anything else; that refusal is a `CheckpointError` naming the
file. Writes are atomic.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from k1model.errors import CheckpointError, DamagedCheckpointError, DataError
from k1model.io import atomic_path, read_output_json, rerun_hint


#: the key under which a checkpoint records the hash of its contents (`content_sha256`), checked on load
INTEGRITY_KEY = "content_sha256"


def content_sha256(obj: Any) -> str:
    """sha256 of a checkpoint's contents: every tensor's dtype, shape and bytes, and every plain value, in the
    order of the (insertion-ordered) mappings, which saving and loading keep. A changed byte of a weight changes
    it; the zip archive alone would not notice (torch does not check its CRCs). The plain values are encoded by
    the json module's C encoder: the run log of a long run has tens of thousands of them."""
    digest = hashlib.sha256()

    def tensor(value: Any) -> str:
        if not isinstance(value, torch.Tensor):
            return f"{type(value).__name__} {value!r}"
        t = value.detach().cpu().contiguous()
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
        return f"tensor {t.dtype} {tuple(t.shape)}"

    digest.update(json.dumps(obj, default=tensor).encode())
    return digest.hexdigest()


def save_checkpoint(path: str | Path, blob: dict[str, Any]) -> None:
    """Write a checkpoint with the hash of its contents. It is serialised in memory first and written by Python,
    so a full disk is an error naming the file (torch's own writer reports only "unexpected pos")."""
    buffer = io.BytesIO()
    torch.save({**blob, INTEGRITY_KEY: content_sha256(blob)}, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getbuffer())


def checkpoint_fix(path: Path) -> str:
    """How to rebuild a damaged checkpoint: resume.pt is the state of a run in progress (the run can restart
    without it), checkpoint.pt the final state of a finished run (the run must be trained again)."""
    if path.name == "resume.pt":
        return f"delete {path} to restart that run from step 0 (or delete its run folder {path.parent})"
    return rerun_hint(path.parent)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint's contents; CheckpointError (naming the file) if it is missing, damaged (truncated, not a
    checkpoint: `DamagedCheckpointError`, saying how to rebuild it), or holds anything but tensors and
    plain values."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} is missing; rerun `k1 train` for this run")
    size = path.stat().st_size
    if size == 0 or not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        what = "it is empty" if size == 0 else f"it is not a checkpoint (truncated or overwritten: {size} bytes)"
        raise DamagedCheckpointError(f"{path} is damaged: {what}; {checkpoint_fix(path)}")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"checkpoint {path} holds objects other than tensors and plain values, which could run code when "
            f"loaded; refusing to load it ({first}). Check where it came from, and {checkpoint_fix(path)}") from None
    except Exception as err:  # noqa: BLE001 - any other failure means the file is unusable
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise DamagedCheckpointError(f"{path} is damaged: torch cannot read it ({type(err).__name__}: {first}); "
                                     f"{checkpoint_fix(path)}") from None
    if not isinstance(blob, dict):
        raise DamagedCheckpointError(f"{path} is damaged: it does not hold a checkpoint dictionary; "
                                     f"{checkpoint_fix(path)}")
    recorded = blob.pop(INTEGRITY_KEY, None)  # (checkpoints written before it existed have none)
    if recorded is not None and content_sha256(blob) != recorded:
        raise DamagedCheckpointError(f"{path} is damaged: its contents do not match the hash recorded when it was "
                                     f"written (sha256 {recorded[:12]}...): a byte changed since (a bad disk or "
                                     f"copy); {checkpoint_fix(path)}")
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
    metrics = read_output_json(metrics_path, rerun_hint(run_dir))
    path = run_dir / "checkpoint.pt"
    blob = load_checkpoint(path, map_location=device)
    # the run's own attention kernel (a ConfigError naming the fix if it cannot run here)
    model = AgentTree(params.model, attention=metrics.get("attention", "masked"), seeds=[0]).to(device)
    try:
        model.load_state_dict(blob["trainer"]["model"])
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"checkpoint {path} does not match params ({err})") from None
    if blob.get("config_hash") != metrics.get("config_hash"):
        raise CheckpointError(f"checkpoint {path} and metrics.json disagree on the config hash; rerun the training")
    return model, metrics
