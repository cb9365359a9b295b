"""Plugins: how a strategy extends the fixed training loop (Avalanche-style hooks).

The step (`step.Trainer.train_step`) and the protocol (`protocol.RunGroup`) call every plugin of
a run at fixed points; a plugin overrides only the hooks it needs:

    protocol  before_phase(run, phase)              a domain's phase begins
              batch(run, x, y, phase) -> (x, y)     the run's batch ([batch, time]): e.g. replay mixes in
                                                    old windows; same shape out
    step      loss_term(run, loss) -> Tensor|None   added to the run's loss before backward (e.g. EWC)
              after_update(run, record)             after the optimiser step and the trust update
    protocol  after_phase(run, phase)               a phase ended, after its evaluation (e.g. EWC's Fisher)
              summary(run) -> dict                  added to metrics.json when the run completes (e.g. the
                                                    structural events of k1_grow)
    state     state_dict() / load_state_dict(state) saved in the run's checkpoint; tensors and plain
                                                    Python values only (checkpoints load with
                                                    weights_only=True)

`run` is a `step.RunContext`: the trainer, the run's row index, its method settings, its weights
(`run.parameters()`, the run's own tensors of the multi-run model) and the step count. A
plugin instance belongs to one run, even when many runs train in one process. A strategy's plugin
is registered with its strategy (`k1model.config.registry.register_strategy`: its name and keys come
from there); a plugin on its own with `@register_plugin` (its `name` is what `Variant.plugins` lists).
Both land in `PLUGINS` (the registry at the bottom, `k1model.config.registry.PLUGINS`). Hooks must not
touch RNG streams they do not own: a plugin that samples keeps its own generator in its state.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from k1model.config.registry import PLUGINS, register_plugin

__all__ = ["PLUGINS", "Phase", "Plugin", "make_plugins", "plugin_keys", "register_plugin"]

if TYPE_CHECKING:
    import torch

    from k1model.train.step import RunContext, StepRecord


@dataclass(frozen=True)
class Phase:
    """One phase of the protocol: a domain trained for `steps` steps, with its training tokens."""

    index: int
    domain: str
    steps: int
    first_step: int
    tokens: np.ndarray  # the domain's training split (byte tokens)
    seq_len: int
    batch_size: int
    seed: int  # the run's seed
    count: int = 1  # phases of the run
    domain_tokens: Mapping[str, np.ndarray] = field(default_factory=dict)  # every domain of the run, in order


class Plugin:
    name: ClassVar[str] = ""
    keys: ClassVar[tuple[str, ...]] = ()  # the method keys it reads (a strategy's plugin: set by its registration)

    def before_phase(self, run: "RunContext", phase: Phase) -> None:
        """A phase begins (before its first batch)."""

    def batch(self, run: "RunContext", x: "torch.Tensor", y: "torch.Tensor",
              phase: Phase) -> tuple["torch.Tensor", "torch.Tensor"]:
        """The batch the step will train on; return it unchanged or a new one of the same shape."""
        return x, y

    def loss_term(self, run: "RunContext", loss: "torch.Tensor") -> "torch.Tensor | None":
        """A term added to the loss before backward (None: nothing)."""
        return None

    def after_update(self, run: "RunContext", record: "StepRecord") -> None:
        """After the optimiser step and the trust update of a step."""

    def after_phase(self, run: "RunContext", phase: Phase) -> None:
        """A phase ended (after its last step and its evaluation)."""

    def summary(self, run: "RunContext") -> Mapping[str, Any]:
        """What the plugin adds to the run's metrics.json when the run completes: top-level entries,
        and under "scalars" numbers the analysis reports for every run."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            raise ValueError(f"plugin {self.name!r} has no state, but the checkpoint holds {sorted(state)}")


def plugin_keys(name: str) -> tuple[str, ...]:
    """The method keys plugin `name` reads (a strategy's: its settings and `reads`)."""
    try:
        return PLUGINS[name].keys
    except KeyError:
        raise ValueError(f"unknown plugin {name!r}; registered: {', '.join(PLUGINS) or 'none'}") from None


def make_plugins(names: tuple[str, ...], **kwargs: Any) -> list[Plugin]:
    """Instances of the named plugins for one run (keyword arguments go to each constructor)."""
    out = []
    for name in names:
        try:
            cls = PLUGINS[name]
        except KeyError:
            raise ValueError(f"unknown plugin {name!r}; registered: {', '.join(PLUGINS) or 'none'}") from None
        out.append(cls(**kwargs))
    return out
