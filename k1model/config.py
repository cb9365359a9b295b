"""Configuration objects and their validation.

Every value a user can set is validated here, once, with an error that names the key,
the bad value and what is allowed. Dataclasses are frozen so a config can be hashed
into the run directory and compared on resume.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from k1model.errors import ConfigError
from k1model.variants import VARIANTS

DEFAULT_ROLE_NAMES: dict[int, tuple[str, ...]] = {
    1: ("language", "logic", "pattern", "context"),
    2: ("basic", "advanced", "edge", "complex"),
}


def _fail(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"invalid value for '{key}': {value!r}; allowed: {allowed}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the agent tree (DESIGN.md §2.1)."""

    vocab_size: int = 256
    embed_dim: int = 64
    num_heads: int = 4
    hidden_dim: int = 128  # MLP width of every agent block
    max_seq_len: int = 64
    branching: tuple[int, ...] = (4, 4)
    dropout: float = 0.0
    role_names: Mapping[int, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_ROLE_NAMES))

    def __post_init__(self) -> None:
        for key in ("vocab_size", "embed_dim", "num_heads", "hidden_dim", "max_seq_len"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _fail(key, value, "an integer >= 1")
        branching = tuple(self.branching) if isinstance(self.branching, (list, tuple)) else self.branching
        if not isinstance(branching, tuple) or not branching or not all(
            isinstance(b, int) and not isinstance(b, bool) and b >= 1 for b in branching
        ):
            raise _fail("branching", self.branching, "a non-empty list of integers >= 1, e.g. [4, 4] or [4, 3, 2]")
        object.__setattr__(self, "branching", branching)
        if self.embed_dim % self.num_heads:
            raise _fail(
                "embed_dim", self.embed_dim, f"a multiple of num_heads={self.num_heads} (width must divide into heads)"
            )
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise _fail("dropout", self.dropout, "a number in [0, 1)")
        roles = {int(k): tuple(str(n) for n in v) for k, v in dict(self.role_names or {}).items()}
        for level, names in roles.items():
            if len(set(names)) != len(names) or any(not n or "/" in n for n in names):
                raise _fail(f"role_names[{level}]", list(names), "distinct non-empty names without '/'")
        object.__setattr__(self, "role_names", roles)

    @property
    def num_agents(self) -> int:
        total, width = 1, 1
        for b in self.branching:
            width *= b
            total += width
        return total

    @property
    def depth(self) -> int:
        """Number of agents on a full root-to-leaf path."""
        return len(self.branching) + 1


@dataclass(frozen=True)
class MethodConfig:
    """The K-1 update rule (DESIGN.md §2.2-2.4) and the optimiser it scales."""

    variant: str = "k1_full"
    learning_rate: float = 3e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    trust_threshold: float = 0.7
    trust_increase: float = 0.1
    trust_decay: float = 0.995
    loo_interval: int = 50
    path_scales: tuple[float, ...] = (1.0, 0.15, 0.05)
    top_k: int | None = None  # flat_topk's K; None = tree depth (sparsity-matched to a full path)
    scale_mode: str = "fixed"  # fixed | gradient
    reset_moments_on_return: bool = False
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise _fail("variant", self.variant, ", ".join(VARIANTS))
        if not (isinstance(self.learning_rate, (int, float)) and math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise _fail("learning_rate", self.learning_rate, "a finite number > 0")
        if not (isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0):
            raise _fail("weight_decay", self.weight_decay, "a number >= 0")
        betas = tuple(self.betas)
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise _fail("betas", self.betas, "two numbers in [0, 1)")
        object.__setattr__(self, "betas", betas)
        if not (isinstance(self.trust_threshold, (int, float)) and 0.0 <= self.trust_threshold <= 1.0):
            raise _fail("trust_threshold", self.trust_threshold, "a number in [0, 1]")
        if not (isinstance(self.trust_increase, (int, float)) and 0.0 <= self.trust_increase <= 1.0):
            raise _fail("trust_increase", self.trust_increase, "a number in [0, 1]")
        if not (isinstance(self.trust_decay, (int, float)) and 0.0 < self.trust_decay <= 1.0):
            raise _fail("trust_decay", self.trust_decay, "a number in (0, 1]")
        if not isinstance(self.loo_interval, int) or isinstance(self.loo_interval, bool) or self.loo_interval < 1:
            raise _fail("loo_interval", self.loo_interval, "an integer >= 1 (LOO every that many steps)")
        scales = tuple(float(s) for s in self.path_scales)
        if not scales or not all(0.0 <= s <= 1.0 for s in scales):
            raise _fail("path_scales", self.path_scales, "a non-empty list of numbers in [0, 1], culprit first")
        object.__setattr__(self, "path_scales", scales)
        if self.top_k is not None and (not isinstance(self.top_k, int) or self.top_k < 1):
            raise _fail("top_k", self.top_k, "null (= tree depth) or an integer >= 1")
        if self.scale_mode not in ("fixed", "gradient"):
            raise _fail("scale_mode", self.scale_mode, "fixed, gradient")
        if self.grad_clip is not None and not (self.grad_clip > 0):
            raise _fail("grad_clip", self.grad_clip, "null or a number > 0")

    def path_scale(self, distance_from_culprit: int) -> float:
        """Scale for the agent `distance` steps above the culprit; the last value repeats."""
        return self.path_scales[min(distance_from_culprit, len(self.path_scales) - 1)]


@dataclass(frozen=True)
class TrainConfig:
    """The continual-learning protocol of `k1 train` (DESIGN.md §3)."""

    batch_size: int = 16
    steps_per_phase: int = 300
    eval_interval: int = 50
    eval_batches: int = 8
    checkpoint_interval: int = 100
    sparsity_interval: int = 10
    phases: tuple[str, ...] | None = None  # domain order; None = data.domains in order
    device: str = "cpu"

    def __post_init__(self) -> None:
        for key in ("batch_size", "steps_per_phase", "eval_interval", "eval_batches", "checkpoint_interval",
                    "sparsity_interval"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise _fail(key, value, "an integer >= 1")
        if self.device not in ("cpu", "cuda", "auto") and not str(self.device).startswith("cuda:"):
            raise _fail("device", self.device, "cpu, cuda, cuda:N, auto")
        if self.phases is not None:
            object.__setattr__(self, "phases", tuple(self.phases))


def _build(cls: type, section: str, values: Mapping[str, Any] | None, renames: Mapping[str, str] = {}) -> Any:
    values = dict(values or {})
    allowed = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        key = renames.get(key, key)
        if key not in allowed:
            raise ConfigError(f"unknown key '{section}.{key}'; allowed keys: {', '.join(allowed)}")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except ConfigError as err:
        raise ConfigError(f"{section}: {err}") from None
    except TypeError as err:  # wrong type that slipped past the checks (e.g. a string for a number)
        raise ConfigError(f"{section}: {err}") from None


def model_config(values: Mapping[str, Any] | None) -> ModelConfig:
    return _build(ModelConfig, "model", values)


def method_config(values: Mapping[str, Any] | None, variant: str | None = None) -> MethodConfig:
    values = dict(values or {})
    if variant is not None:
        values["variant"] = variant
    return _build(MethodConfig, "method", values)


def train_config(values: Mapping[str, Any] | None) -> TrainConfig:
    return _build(TrainConfig, "train", values)


REQUIRED_SECTIONS = ("data", "model", "method", "train", "experiment", "analysis")


def load_params(path: str | Path, required: Sequence[str] = REQUIRED_SECTIONS) -> dict[str, Any]:
    """Read a params YAML and check its sections; each section is validated by its owner.
    A command that needs only some sections passes them as `required`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"params file not found: {path}; pass an existing YAML such as params/default.yaml")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"params file {path} is not valid YAML: {err}") from None
    if not isinstance(params, dict):
        raise ConfigError(f"params file {path} must hold a mapping with sections {', '.join(REQUIRED_SECTIONS)}")
    unknown = sorted(set(params) - set(REQUIRED_SECTIONS))
    if unknown:
        raise ConfigError(f"unknown params section(s) {unknown} in {path}; allowed: {', '.join(REQUIRED_SECTIONS)}")
    missing = [s for s in required if s not in params]
    if missing:
        raise ConfigError(f"params file {path} lacks section(s) {missing}")
    return params


def config_hash(*parts: Any) -> str:
    """Stable short hash of config objects/dicts: a run directory belongs to exactly one hash."""

    def plain(obj: Any) -> Any:
        if dataclasses.is_dataclass(obj):
            return {k: plain(v) for k, v in dataclasses.asdict(obj).items()}
        if isinstance(obj, Mapping):
            return {str(k): plain(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
        if isinstance(obj, (list, tuple)):
            return [plain(v) for v in obj]
        return obj

    blob = json.dumps([plain(p) for p in parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
