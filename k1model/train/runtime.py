"""The machine a run executes on: its device, library versions, thread count (part of a run's identity) and, on CUDA,
deterministic kernels when asked for."""
from __future__ import annotations

import importlib.metadata
import os
import platform

import torch

from k1model.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """The torch device `train.device` names (`auto`: CUDA when there is one)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {name!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return torch.device(name)


def versions() -> dict[str, str]:
    """The versions of the software a run's numbers depend on (recorded in its metrics)."""
    def v(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": v("numpy"),
            "pandas": v("pandas"), "datasets": v("datasets")}


#: glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse instead of returning it to the OS.

    A training step allocates and frees the same activation buffers every step. By default glibc
    serves large blocks with mmap and gives freed heap tops back to the OS, so every step faults the
    same memory in again: measured with 8 runs in one process (the pipeline runs 17), ~16,000 minor
    page faults and ~23 ms of system time per step, ~8 % of the step (docs/pipeline.md, "Speed").
    Keeping freed memory changes no number, only where buffers live. Returns whether it applied
    (glibc only; elsewhere nothing happens)."""
    import ctypes
    import ctypes.util

    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 1 << 30) and libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) - 1))
    except (OSError, AttributeError):
        return False


def configure_process(threads: int) -> None:
    """What every compute command (`k1 train`, `attribute`, `bench`) sets up before any work: the torch
    thread count (part of a run's identity) and glibc's memory reuse (`keep_freed_memory`)."""
    if threads < 1:
        raise ConfigError(f"--threads={threads} is not allowed: --threads must be a positive integer")
    torch.set_num_threads(threads)
    keep_freed_memory()


def deterministic_mode() -> None:
    """Bit-reproducible CUDA: deterministic kernels (an error where torch has none) and a fixed cuBLAS
    workspace. CPU runs are deterministic without it. Not bit-reproducible even then: runs on a
    different GPU model, driver or torch version, and `run_batching: batched` runs grouped differently."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
