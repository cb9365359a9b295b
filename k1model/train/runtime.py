"""The machine a run executes on: its device, library versions and thread count (part of a run's identity)."""
from __future__ import annotations

import importlib.metadata
import platform

import torch

from k1model.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return torch.device(name)


def versions() -> dict[str, str]:
    def v(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": v("numpy"),
            "pandas": v("pandas"), "datasets": v("datasets")}
