"""The plugin of online EWC (`k1model.strategies.ewc`, which describes the method and declares its settings,
variant and claim): the empirical Fisher with torch.func after each phase, the penalty before backward.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from k1model.model import AgentTree
from k1model.train.plugins import Phase, Plugin


def empirical_fisher(single: torch.nn.Module, params: dict[str, torch.Tensor], batches: list[tuple[torch.Tensor, torch.Tensor]],
                     chunk: int | None = None) -> dict[str, torch.Tensor]:
    """Diagonal empirical Fisher of a one-run model: mean over all sequences of the squared gradient of each
    sequence's mean cross-entropy, with `params` (name -> tensor) substituted into `single`."""
    from torch.func import functional_call, grad, vmap

    def seq_loss(p: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return functional_call(single, p, (x.unsqueeze(0), y.unsqueeze(0)))[1]

    per_seq = vmap(grad(seq_loss), in_dims=(None, 0, 0), chunk_size=chunk)
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    n = 0
    was = single.training
    single.eval()
    try:
        for x, y in batches:
            g = per_seq(params, x, y)
            for k, v in g.items():
                total[k] += v.square().sum(0)
            n += x.shape[0]
    finally:
        single.train(was)
    return {k: v / n for k, v in total.items()}


def _windows(tokens: np.ndarray, seq_len: int, batch: int, n_batches: int, rng: np.random.Generator,
             device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    offsets = np.arange(seq_len + 1)
    out = []
    for _ in range(n_batches):
        starts = rng.integers(0, len(tokens) - seq_len, size=batch)
        w = torch.from_numpy(tokens[starts[:, None] + offsets].astype(np.int64)).to(device)
        out.append((w[:, :-1], w[:, 1:]))
    return out


class EWC(Plugin):
    """Online EWC for one run: the Fisher and anchor after each phase, the penalty in every later step."""

    def __init__(self) -> None:
        self.fisher: dict[str, torch.Tensor] | None = None
        self.anchor: dict[str, torch.Tensor] | None = None
        self.phases_seen = 0
        self.fisher_seconds: list[float] = []
        self._single = None
        self._names: list[str] | None = None

    def _template(self, run) -> torch.nn.Module:
        """A one-run model of the same architecture: the graph `torch.func` evaluates with this run's weights."""
        if self._single is None:
            m = run.model
            self._single = AgentTree(m.cfg, runs=1, attention="math", seeds=[0]).to(m.mask.device)
        return self._single

    def loss_term(self, run, loss: torch.Tensor) -> torch.Tensor | None:
        if self.fisher is None:
            return None
        live = run.model.run_parameters(run.index)
        penalty = sum((self.fisher[k] * (live[k] - self.anchor[k]).square()).sum() for k in self.fisher)
        return 0.5 * run.method.ewc_lambda * penalty

    def after_phase(self, run, phase: Phase) -> None:
        if phase.index + 1 >= phase.count:
            return  # the last phase: nothing trains after it
        import time

        t0 = time.perf_counter()
        model = run.model
        # detached copies of this run's weights (one-run names; buffers such as slot states are not weights)
        params = {k: v.detach().clone() for k, v in model.run_parameters(run.index).items()}
        rng = np.random.default_rng([phase.seed, phase.index, 0x455743])
        batches = _windows(phase.tokens, phase.seq_len, phase.batch_size, run.method.fisher_batches, rng,
                           model.mask.device)
        n_params = sum(v.numel() for v in params.values())
        chunk = max(1, min(phase.batch_size, int(2e8 // max(1, n_params))))  # per-sequence grads in memory
        new = empirical_fisher(self._template(run), params, batches, chunk)
        gamma = run.method.ewc_gamma
        self.fisher = new if self.fisher is None else {k: gamma * self.fisher[k] + new[k] for k in new}
        self.anchor = params
        self.phases_seen += 1
        self.fisher_seconds.append(time.perf_counter() - t0)

    def state_dict(self) -> dict[str, Any]:
        return {"fisher": self.fisher, "anchor": self.anchor, "phases_seen": self.phases_seen,
                "fisher_seconds": list(self.fisher_seconds)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.fisher, self.anchor = state["fisher"], state["anchor"]
        self.phases_seen = int(state["phases_seen"])
        self.fisher_seconds = list(state["fisher_seconds"])
