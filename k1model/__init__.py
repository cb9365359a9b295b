"""K-1: a tree of transformer agents trained with hierarchical error attribution and sparse,
trust-gated, proportional updates. See DESIGN.md and docs/architecture.md.

The public names below are imported on first use (PEP 562), so `import k1model.config` (what the
pipeline does at start-up) does not pay for torch. The registry of variants and strategies fills itself on
its first lookup (`k1model.config.registry`), so `k1model.load_params` and `k1model.VARIANTS` know every
registered key and variant.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_PUBLIC = {
    "AgentTree": "k1model.model",
    "K1Model": "k1model.app.api",
    "create_k1_model": "k1model.app.api",
    "K1Trainer": "k1model.train.step",
    "StepRecord": "k1model.train.step",
    "MethodConfig": "k1model.config",
    "ModelConfig": "k1model.config",
    "TrainConfig": "k1model.config",
    "Params": "k1model.config",
    "load_params": "k1model.config",
    "VARIANTS": "k1model.method.variants",
    "Variant": "k1model.method.variants",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'k1model' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_PUBLIC])
