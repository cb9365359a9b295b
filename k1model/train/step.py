"""One training step of any variant, for every run of a model at once.

    forward + backward (train mode; all runs in one batched pass)  -> loss per run, all agent gradients
    plugins' loss terms (e.g. EWC) are added before backward
    every `loo_interval` steps (runs with a LOO scorer)             -> batched LOO Δ, kept as each run's latest;
                                                                       with dropout 0 it reuses the training
                                                                       forward's agent outputs
    gradient norms [runs, agents] and each run's scores             -> on the device
    ONE host sync for all runs                                      -> losses, gradient norms, scores, LOO
    per run, on the host: trust eligibility, the variant's selector -> path and scales
    sparse AdamW over exactly the rows with scale > 0 (+ each live run's shared row, when
                                                                       its method.shared_update allows)
    per run: trust update, update counts, plugins' after_update

Runs never mix: a run's gradients, decisions and updates depend only on its own weights and batch.
A run whose loss is not finite is marked failed at that step (nothing of it is updated) and
skipped from then on; the other runs go on. `K1Trainer` is the one-run view used by the API.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from k1model.config import MethodConfig
from k1model.config.registry import plugin_class
from k1model.errors import NonFiniteLossError
from k1model.method.attribution import GradScorer, loo_deltas
from k1model.method.scoring import get_scorer
from k1model.method.selection import get_selector
from k1model.method.trust import Trust
from k1model.method.updates import SparseAdamW
from k1model.method.variants import get_variant
from k1model.model import AgentTree
from k1model.train.plugins import Plugin

PRECISIONS = ("fp32", "bf16")


def make_plugins(names: Sequence[str]) -> list[Plugin]:
    """New instances of the named plugins for one run (each strategy's plugin is imported on first use)."""
    out = []
    for name in names:
        cls = plugin_class(name)
        if not issubclass(cls, Plugin):
            raise TypeError(f"plugin {name!r} ({cls.__module__}.{cls.__qualname__}) is not a "
                            "k1model.train.plugins.Plugin subclass")
        out.append(cls())
    return out
#: the generator a counterfactual selection gets: selectors of LOO variants never draw, and the run's own
#: generator must not advance for a choice that is not taken
_NO_DRAWS = np.random.default_rng(0)


@dataclass
class StepRecord:
    """Everything a step decided for one run, by agent index (breadth-first); `names` maps indices to agents."""

    step: int
    loss: float
    grad_scores: list[float]
    scores: list[float]  # what selection used (hybrid or gradient)
    loo: list[float] | None  # Δ per agent when computed at this step
    loo_computed: bool
    eligible: list[bool]  # before this step's update
    path: list[int]  # error path (root ... culprit); empty for selectors without one
    scales: list[float]
    trust: list[float]  # after this step's trust update
    names: tuple[str, ...] = field(repr=False, default=())
    active: list[bool] | None = None  # agents of the run's live tree at this step (None = every agent)
    shared_updated: bool = True  # the shared weights were updated at this step (method.shared_update)
    # LOO scorers, once a LOO is known: did the hybrid weight change the selection against gradient scores
    # alone (same eligibility)? and, at a LOO step, did any live agent hurt (Δ_k < 0)? None otherwise
    loo_changed: bool | None = None
    loo_hurt: bool | None = None

    @property
    def culprit(self) -> int | None:
        """The agent at the end of the error path (None without a path)."""
        return self.path[-1] if self.path else None

    @property
    def updated(self) -> int:
        """How many agents the step updated."""
        return sum(s > 0 for s in self.scales)

    @property
    def num_active(self) -> int:
        """How many agents the run's live tree has."""
        return len(self.scales) if self.active is None else sum(self.active)

    @property
    def skipped(self) -> int:
        """Active agents the step left alone."""
        return self.num_active - self.updated

    @property
    def avg_trust(self) -> float:
        """Mean trust of the live tree's agents after the step."""
        if self.active is None:
            return float(np.mean(self.trust))
        return float(np.mean([t for t, a in zip(self.trust, self.active) if a]))

    def as_dict(self) -> dict:
        """The record as the plain dict the step log keeps, with the derived counts."""
        d = asdict(self)
        d.pop("names")
        d.update(culprit=self.culprit, updated=self.updated, skipped=self.skipped, avg_trust=self.avg_trust)
        return d


class RunState:
    """One run of the stack: its method and variant parts, trust, RNG, counts, latest LOO, plugins."""

    def __init__(self, index: int, method: MethodConfig, seed: int, num_agents: int, plugins: list[Plugin] | None):
        self.index = index
        self.method = method
        self.seed = seed
        self.variant = get_variant(method.variant)
        self.scoring = get_scorer(self.variant.scorer)
        self.selector = get_selector(self.variant.selector)
        self.trust = Trust(num_agents, method.trust_threshold, method.trust_increase, method.trust_decay,
                           enabled=self.variant.cooldown, rule=method.trust_rule)
        self.rng = np.random.default_rng([seed, 0x4B31])  # selectors that draw (random_path); data has its own
        self.latest_loo: torch.Tensor | None = None
        self.update_counts = np.zeros(num_agents, dtype=np.int64)
        self.cooled = np.zeros(num_agents, dtype=bool)  # has been in cooldown since its last update
        self.plugins = make_plugins(self.variant.plugins) if plugins is None else list(plugins)
        self.failure: dict[str, Any] | None = None  # set when the run's loss stopped being finite

    @property
    def live(self) -> bool:
        """The run has not failed (its losses are finite so far)."""
        return self.failure is None

    def loo_due(self, step: int) -> bool:
        """The run computes LOO deltas at this step (its scorer needs them, every loo_interval)."""
        return self.live and self.scoring.needs_loo and step % self.method.loo_interval == 0


@dataclass(frozen=True)
class RunContext:
    """What a plugin hook sees of its run: the trainer, the run's row index and state."""

    trainer: "Trainer"
    index: int

    @property
    def run(self) -> RunState:
        """The run's state in the trainer."""
        return self.trainer.runs[self.index]

    @property
    def model(self) -> AgentTree:
        """The (multi-run) model the run lives in."""
        return self.trainer.model

    @property
    def method(self) -> MethodConfig:
        """The run's method settings."""
        return self.run.method

    @property
    def step(self) -> int:
        """Steps taken so far."""
        return self.trainer.step_count

    def parameters(self) -> list[torch.nn.Parameter]:
        """This run's weights (shared first, then every agent's), as the model holds them."""
        return [p for group in self.model.run_groups(self.index) for p in group]

    @property
    def batch(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The run's batch of the latest step ([batch, time] inputs and targets), None before the first."""
        last = self.trainer.last_batch
        return None if last is None else (last[0][self.index], last[1][self.index])


class Trainer:
    """Trains the runs of one model (`model.runs` rows) in lockstep; see the module docstring."""

    def __init__(self, model: AgentTree, methods: Sequence[MethodConfig], seeds: Sequence[int], *,
                 plugins: Sequence[list[Plugin] | None] | None = None, precision: str = "fp32"):
        if len(methods) != model.runs or len(seeds) != model.runs:
            raise ValueError(f"{len(methods)} methods and {len(seeds)} seeds for a model of {model.runs} runs")
        if precision not in PRECISIONS:
            raise ValueError(f"precision={precision!r}; allowed: {', '.join(PRECISIONS)}")
        self.model = model
        self.num_agents = len(model.agents)  # every agent of the static topology (slots included)
        plugins = plugins or [None] * model.runs
        self.runs = [RunState(r, m, s, self.num_agents, p) for r, (m, s, p) in enumerate(zip(methods, seeds, plugins))]
        self.optimizer = SparseAdamW(model, methods)
        self.scorer = GradScorer(model)
        self.precision = precision
        self.step_count = 0
        self.phase = 0  # index of the current domain (the protocol sets it; method.shared_update reads it)
        self.last_batch: tuple[torch.Tensor, torch.Tensor] | None = None

    def context(self, r: int) -> RunContext:
        """What run r's plugins see (`RunContext`)."""
        return RunContext(self, r)

    def shared_due(self, r: int, scales: np.ndarray) -> bool:
        """Whether run r's shared weights are updated at this step (method.shared_update; `self.phase` is
        the index of the current domain, set by the protocol)."""
        rule = self.runs[r].method.shared_update
        if rule == "with_agents":
            return bool((scales > 0).any())
        if rule == "frozen_after_first_phase":
            return self.phase == 0
        return True

    def _autocast(self):  # bf16 autocast for matmuls; losses, norms and the optimiser stay fp32
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(device_type=self.model.mask.device.type, dtype=torch.bfloat16)

    def _clip(self) -> None:
        """Per run: scale the run's gradients so their global norm is at most method.grad_clip."""
        clips = [run.method.grad_clip for run in self.runs]
        if all(c is None for c in clips):
            return
        for r, clip in enumerate(clips):  # as torch.nn.utils.clip_grad_norm_, per run
            if clip is not None:
                torch.nn.utils.clip_grad_norm_([p for g in self.model.run_groups(r) for p in g], clip)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> list[StepRecord | None]:
        """One step of every run; x, y [runs, batch, time]. None for runs that have failed."""
        model, runs, n = self.model, self.runs, self.num_agents
        if not model.training:  # nn.Module.train() walks every submodule (~1,300 with 17 runs): only when needed
            model.train()
        self.optimizer.zero_grad()
        self.last_batch = (x, y)
        loo_runs = [r for r, run in enumerate(runs) if run.loo_due(self.step_count)]
        keep_outs = bool(loo_runs) and model.cfg.dropout == 0.0  # LOO reuses this forward's outputs
        with self._autocast():
            _, losses, outs = model.forward_with_outputs(x, y, keep_logits=False, keep_outputs=keep_outs)
        objective = losses.sum()
        for r, run in enumerate(runs):
            for plugin in run.plugins if run.live else ():
                term = plugin.loss_term(self.context(r), losses[r])
                if term is not None:
                    objective = objective + term
        objective.backward()
        self._clip()
        loo = None
        if loo_runs:
            with self._autocast():
                _, loo = loo_deltas(model, x, y, outs=[o.detach() for o in outs] if keep_outs else None)
            loo = loo.float()
            for r in loo_runs:
                runs[r].latest_loo = loo[r]
        del outs
        grad = self.scorer.scores()
        scores = grad.clone()
        for r, run in enumerate(runs):  # every run's scores from its variant's registered scorer
            loo_r = run.latest_loo if run.scoring.needs_loo else None
            if loo_r is not None and model.has_slots:  # over the live tree only (e.g. the mean |Δ| of hybrid)
                live = model.active_index(r)
                scores[r] = 0.0
                scores[r, live] = run.scoring.score(grad[r, live], loo_r[live])
            else:
                scores[r] = run.scoring.score(grad[r], loo_r)
        parts = [losses.detach().float().view(-1), grad.view(-1), scores.view(-1)] + ([loo.view(-1)] if loo is not None else [])
        host = torch.cat(parts).cpu().numpy().astype(np.float64)  # the one host sync of the step
        R = len(runs)
        loss_h, grad_h = host[:R], host[R:R + R * n].reshape(R, n)
        score_h = host[R + R * n:R + 2 * R * n].reshape(R, n)
        loo_h = host[R + 2 * R * n:].reshape(R, n) if loo is not None else None

        scales = np.zeros((R, n))
        returning = np.zeros((R, n), dtype=bool)
        decided: dict[int, tuple[list[int], np.ndarray, np.ndarray]] = {}
        loo_effect: dict[int, tuple[bool, bool | None]] = {}  # run -> (selection changed by the LOO, an agent hurts)
        for r, run in enumerate(runs):
            if not run.live:
                continue
            if not math.isfinite(loss_h[r]):
                run.failure = {"step": self.step_count, "loss": float(loss_h[r])}
                continue
            active = model.active_mask(r)  # only agents of the run's live tree (all without slots)
            eligible = run.trust.eligible() & active
            path, scales[r] = run.selector(model.run_topology(r), score_h[r], eligible, run.method, run.rng)
            scales[r][~active] = 0.0
            if run.scoring.needs_loo and run.latest_loo is not None:  # what the LOO changed: the same choice on
                _, alt = run.selector(model.run_topology(r), grad_h[r], eligible, run.method, _NO_DRAWS)  # g alone
                alt[~active] = 0.0
                loo_effect[r] = (not np.array_equal(alt, scales[r]),
                                 bool((loo_h[r][active] < 0).any()) if r in loo_runs and loo_h is not None else None)
            updated = scales[r] > 0
            run.cooled |= ~eligible
            returning[r] = run.cooled & updated
            run.cooled &= ~updated
            decided[r] = (path, eligible, active)
        shared = [self.shared_due(r, scales[r]) for r in range(R)]
        self.optimizer.step(scales, live=[r in decided for r in range(R)], returning=returning, shared=shared)
        records: list[StepRecord | None] = [None] * R
        for r, (path, eligible, active) in decided.items():
            run = runs[r]
            run.trust.update(scales[r])
            run.update_counts += scales[r] > 0
            records[r] = StepRecord(
                step=self.step_count, loss=float(loss_h[r]), grad_scores=grad_h[r].tolist(), scores=score_h[r].tolist(),
                loo=loo_h[r].tolist() if r in loo_runs else None, loo_computed=r in loo_runs,
                eligible=eligible.tolist(), path=path, scales=scales[r].tolist(), trust=run.trust.values.tolist(),
                names=model.topology.names, active=active.tolist() if model.has_slots else None,
                shared_updated=shared[r], loo_changed=loo_effect.get(r, (None, None))[0],
                loo_hurt=loo_effect.get(r, (None, None))[1])
        if decided:  # a step no run could take (every live loss non-finite) does not count
            self.step_count += 1
        for r, record in enumerate(records):
            if record is not None:
                for plugin in runs[r].plugins:
                    plugin.after_update(self.context(r), record)
        return records

    # --- checkpointing, one run at a time -------------------------------------------------
    def run_state_dict(self, r: int) -> dict[str, Any]:
        """Everything of run r a resumed run needs: tensors and plain values only (weights_only-safe)."""
        run = self.runs[r]
        return {
            "model": self.model.run_state(r),
            "optimizer": self.optimizer.run_state_dict(r),
            "trust": run.trust.state_dict(),
            "rng": run.rng.bit_generator.state,
            "step": self.step_count,
            "latest_loo": None if run.latest_loo is None else run.latest_loo.detach().cpu().clone(),
            "update_counts": run.update_counts.tolist(),
            "cooled": run.cooled.tolist(),
            "plugins": {p.name: p.state_dict() for p in run.plugins},
            "failure": run.failure,
        }

    def load_run_state_dict(self, r: int, state: dict[str, Any]) -> None:
        """Put a `run_state_dict` back into run r (every run of a trainer is at the same step)."""
        run = self.runs[r]
        self.model.load_run_state(r, state["model"])
        self.optimizer.load_run_state_dict(r, state["optimizer"])
        run.trust.load_state_dict(state["trust"])
        run.rng.bit_generator.state = state["rng"]
        if r and int(state["step"]) != self.step_count:
            raise ValueError(f"run {r} is at step {state['step']}, the others at {self.step_count}")
        self.step_count = int(state["step"])
        loo = state["latest_loo"]
        run.latest_loo = None if loo is None else loo.to(self.model.mask.device)
        run.update_counts = np.asarray(state["update_counts"], dtype=np.int64)
        run.cooled = np.asarray(state["cooled"], dtype=bool)
        run.failure = state.get("failure")
        saved = state.get("plugins", {})
        if sorted(saved) != sorted(p.name for p in run.plugins):
            raise ValueError(f"checkpoint has plugin state for {sorted(saved)}, the run has "
                             f"{sorted(p.name for p in run.plugins)}")
        for plugin in run.plugins:
            plugin.load_state_dict(saved[plugin.name])


class K1Trainer:
    """A single run: the `Trainer` of a one-run model, with 2-D batches and one record per step.

    A non-finite loss raises `NonFiniteLossError` (the step was not applied)."""

    def __init__(self, model: AgentTree, method: MethodConfig, seed: int = 0, plugins: list[Plugin] | None = None,
                 precision: str = "fp32"):
        if model.runs != 1:
            raise ValueError(f"K1Trainer trains one run; the model has {model.runs} (use Trainer)")
        self.trainer = Trainer(model, [method], [seed], plugins=[plugins], precision=precision)
        self.model = model
        self.num_agents = len(model.agents)
        self.optimizer = self.trainer.optimizer

    @property
    def topology(self):
        """The run's live tree (the initial tree unless structural plasticity changed it)."""
        return self.model.run_topology(0)

    @property
    def run(self) -> RunState:
        """The run's state."""
        return self.trainer.runs[0]

    method = property(lambda self: self.run.method)
    variant = property(lambda self: self.run.variant)
    trust = property(lambda self: self.run.trust)
    rng = property(lambda self: self.run.rng)
    plugins = property(lambda self: self.run.plugins)
    update_counts = property(lambda self: self.run.update_counts)
    cooled = property(lambda self: self.run.cooled)
    latest_loo = property(lambda self: self.run.latest_loo)

    @property
    def step_count(self) -> int:
        """Steps taken so far."""
        return self.trainer.step_count

    @step_count.setter
    def step_count(self, value: int) -> None:
        self.trainer.step_count = value

    def loo_due(self) -> bool:
        """The run computes LOO deltas at the next step."""
        return self.run.loo_due(self.step_count)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> StepRecord:
        """One step on a [batch, time] batch (a non-finite loss raises NonFiniteLossError)."""
        record = self.trainer.train_step(x.unsqueeze(0), y.unsqueeze(0))[0]
        if record is None:
            failure = self.run.failure or {}
            self.run.failure = None  # the API may fix the model and go on
            raise NonFiniteLossError(int(failure.get("step", self.step_count)), float(failure.get("loss", math.nan)))
        return record

    def state_dict(self) -> dict[str, Any]:
        return self.trainer.run_state_dict(0)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.trainer.load_run_state_dict(0, state)
