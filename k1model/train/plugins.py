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

`run` is a `k1model.train.step.RunContext`: the trainer, the run's row index, its method settings, its
weights (`run.parameters()`, the run's own tensors of the multi-run model) and the step count. A plugin
instance belongs to one run, even when many runs train in one process. A strategy names its plugin class in
its declaration ("module:Class", `k1model.config.registry.Strategy`), which gives it its name and keys; a
plugin on its own is registered with `k1model.config.registry.register_plugin` (its `name` is what
`Variant.plugins` lists). Hooks must not touch RNG streams they do not own: a plugin that samples keeps its
own generator in its state.

A leaf module: it imports nothing of k1model, so a strategy's plugin module depends on no layer through it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["Phase", "Plugin"]


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
    """The hooks of the training loop a strategy overrides (see the module docstring); `run` is the run's
    `k1model.train.step.RunContext`, `record` its `k1model.train.step.StepRecord` of the step."""

    name: ClassVar[str] = ""
    keys: ClassVar[tuple[str, ...]] = ()  # the method keys it reads (a strategy's plugin: set by its registration)

    def before_phase(self, run: Any, phase: Phase) -> None:
        """A phase begins (before its first batch)."""

    def batch(self, run: Any, x: "torch.Tensor", y: "torch.Tensor",
              phase: Phase) -> tuple["torch.Tensor", "torch.Tensor"]:
        """The batch the step will train on; return it unchanged or a new one of the same shape."""
        return x, y

    def loss_term(self, run: Any, loss: "torch.Tensor") -> "torch.Tensor | None":
        """A term added to the loss before backward (None: nothing)."""
        return None

    def after_update(self, run: Any, record: Any) -> None:
        """After the optimiser step and the trust update of a step."""

    def after_phase(self, run: Any, phase: Phase) -> None:
        """A phase ended (after its last step and its evaluation)."""

    def summary(self, run: Any) -> Mapping[str, Any]:
        """What the plugin adds to the run's metrics.json when the run completes: top-level entries,
        and under "scalars" numbers the analysis reports for every run."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The plugin's state, saved in the run's checkpoint (tensors and plain values only)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved (a resumed run continues exactly)."""
        if state:
            raise ValueError(f"plugin {self.name!r} has no state, but the checkpoint holds {sorted(state)}")
