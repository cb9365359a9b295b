"""One training step of any variant: attribute, select, update, cool down.

    forward + backward (train mode)         -> loss, all agent gradients
    fused gradient scores                    -> g (device)
    every `loo_interval` steps (LOO variants) -> batched LOO Δ (device), kept as latest; with dropout 0 it
                                                reuses the training forward's agent outputs (identical values)
    hybrid score                              -> s (device)
    ONE host sync                             -> loss and scores on the host
    selection (the variant's selector) with trust eligibility -> scales
    sparse AdamW step (lr·scale; grad=None for scale 0)
    trust update; update counts

Plugins (`plugins.py`) add a loss term before backward and see every step's record after the
update. A non-finite loss raises `NonFiniteLossError` before anything is changed.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from k1model.config import MethodConfig
from k1model.errors import NonFiniteLossError
from k1model.method.attribution import GradScorer, loo_deltas
from k1model.method.scoring import get_scorer
from k1model.method.selection import get_selector
from k1model.method.trust import Trust
from k1model.method.updates import SparseAdamW
from k1model.method.variants import get_variant
from k1model.model import AgentTree
from k1model.train.plugins import Plugin, make_plugins


@dataclass
class StepRecord:
    """Everything a step decided, by agent index (breadth-first); `names` maps indices to agents."""

    step: int
    loss: float
    grad_scores: list[float]
    scores: list[float]  # what selection used (hybrid or gradient)
    loo: list[float] | None  # Δ per agent when computed at this step
    loo_computed: bool
    eligible: list[bool]  # before this step's update
    path: list[int]  # error path (root ... culprit); empty for dense and flat_topk
    scales: list[float]
    trust: list[float]  # after this step's trust update
    names: tuple[str, ...] = field(repr=False, default=())

    @property
    def culprit(self) -> int | None:
        return self.path[-1] if self.path else None

    @property
    def updated(self) -> int:
        return sum(s > 0 for s in self.scales)

    @property
    def skipped(self) -> int:
        return len(self.scales) - self.updated

    @property
    def avg_trust(self) -> float:
        return float(np.mean(self.trust))

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("names")
        d.update(culprit=self.culprit, updated=self.updated, skipped=self.skipped, avg_trust=self.avg_trust)
        return d


class K1Trainer:
    """One run's training step: the variant's parts (scorer, selector, cooldown) and plugins around
    a fixed loop. `plugins` defaults to instances of the variant's registered plugins."""

    def __init__(self, model: AgentTree, method: MethodConfig, seed: int = 0, log_scores: bool = True,
                 plugins: list[Plugin] | None = None):
        self.model = model
        self.method = method
        self.variant = get_variant(method.variant)
        self.scoring = get_scorer(self.variant.scorer)
        self.selector = get_selector(self.variant.selector)
        self.topology = model.topology
        self.num_agents = len(model.agents)
        self.log_scores = log_scores or self.variant.selector != "all"
        self.scorer = GradScorer(model)
        self.optimizer = SparseAdamW(model, method)
        self.trust = Trust(self.num_agents, method.trust_threshold, method.trust_increase, method.trust_decay,
                           enabled=self.variant.cooldown)
        self.plugins = make_plugins(self.variant.plugins) if plugins is None else list(plugins)
        self.rng = np.random.default_rng([seed, 0x4B31])  # random_path only; data order has its own RNG
        self.step_count = 0
        self.latest_loo: torch.Tensor | None = None
        self.update_counts = np.zeros(self.num_agents, dtype=np.int64)
        self.cooled = np.zeros(self.num_agents, dtype=bool)  # has been in cooldown since last update

    def loo_due(self) -> bool:
        return self.scoring.needs_loo and self.step_count % self.method.loo_interval == 0

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> StepRecord:
        model, variant = self.model, self.variant
        model.train()
        self.optimizer.zero_grad()
        loo_due = self.loo_due()
        outs = None
        if loo_due and model.cfg.dropout == 0.0:  # the LOO reuses this forward's agent outputs (same values)
            _, loss, outs = model.forward_with_outputs(x, y)
        else:
            _, loss = model(x, y)
        objective = loss
        for plugin in self.plugins:
            term = plugin.loss_term(self, loss)
            if term is not None:
                objective = objective + term
        objective.backward()
        if self.method.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.method.grad_clip)

        loo = None
        if loo_due:
            _, loo = loo_deltas(model, x, y, outs=None if outs is None else [o.detach() for o in outs])
            self.latest_loo = loo
            del outs
        if self.log_scores:
            grad = self.scorer.scores()
            scores = self.scoring.score(grad, self.latest_loo)
            parts = [loss.detach().float().view(1), grad, scores] + ([loo.float()] if loo is not None else [])
            host = torch.cat(parts).cpu().numpy().astype(np.float64)  # the one host sync of the step
        else:
            host = loss.detach().float().view(1).cpu().numpy().astype(np.float64)
        loss_value = float(host[0])
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad()
            raise NonFiniteLossError(self.step_count, loss_value)
        n = self.num_agents
        grad_host = host[1:1 + n] if self.log_scores else np.full(n, np.nan)
        score_host = host[1 + n:1 + 2 * n] if self.log_scores else grad_host
        loo_host = host[1 + 2 * n:1 + 3 * n] if loo is not None else None

        eligible = self.trust.eligible()
        path, scales = self.selector(self.topology, score_host, eligible, self.method, self.rng)

        updated = scales > 0
        self.cooled |= ~eligible
        self.optimizer.step(scales, returning=self.cooled & updated)
        self.cooled &= ~updated
        self.trust.update(scales)
        self.update_counts += updated
        record = StepRecord(
            step=self.step_count, loss=loss_value, grad_scores=grad_host.tolist(), scores=score_host.tolist(),
            loo=None if loo_host is None else loo_host.tolist(), loo_computed=loo is not None,
            eligible=eligible.tolist(), path=path, scales=scales.tolist(), trust=self.trust.values.tolist(),
            names=self.topology.names,
        )
        self.step_count += 1
        for plugin in self.plugins:
            plugin.after_update(self, record)
        return record

    # --- checkpointing -----------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "trust": self.trust.state_dict(),
            "rng": self.rng.bit_generator.state,
            "step": self.step_count,
            "latest_loo": None if self.latest_loo is None else self.latest_loo.cpu(),
            "update_counts": self.update_counts.tolist(),
            "cooled": self.cooled.tolist(),
            "plugins": {p.name: p.state_dict() for p in self.plugins},
        }

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.trust.load_state_dict(state["trust"])
        self.rng.bit_generator.state = state["rng"]
        self.step_count = int(state["step"])
        loo = state["latest_loo"]
        self.latest_loo = None if loo is None else loo.to(next(self.model.parameters()).device)
        self.update_counts = np.asarray(state["update_counts"], dtype=np.int64)
        self.cooled = np.asarray(state["cooled"], dtype=bool)
        saved = state.get("plugins", {})
        if sorted(saved) != sorted(p.name for p in self.plugins):
            raise ValueError(f"checkpoint has plugin state for {sorted(saved)}, the run has "
                             f"{sorted(p.name for p in self.plugins)}")
        for plugin in self.plugins:
            plugin.load_state_dict(saved[plugin.name])
