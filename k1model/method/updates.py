"""The sparse optimiser step (DESIGN.md §2.3, "What a scale means"), for every run of a model.

AdamW with decoupled weight decay, applied by torch's fused kernel (`torch._fused_adamw_`, what
`torch.optim.AdamW(fused=True)` runs) to exactly the weights being updated: the shared weights of
every live run at the run's learning rate (on the steps its `method.shared_update` allows), and
agent k of run r at lr_r · scale_rk when scale_rk > 0. Tensors are grouped by their hyperparameters, so a step is a handful of kernel calls.

A scale multiplies the agent's *update* (its learning rate), never its gradient (Adam would
normalise a scaled gradient away). An agent that is not updated is not passed to the kernel at
all, so its weights, both moments, its step counts and its weight decay stay bit-for-bit
unchanged. Every tensor keeps its own step count, as `torch.optim.AdamW` does.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np
import torch

from k1model.config import MethodConfig
from k1model.model import AgentTree


class SparseAdamW:
    """AdamW over exactly the (run, agent) groups a step updates, each at its scale; the rest untouched."""
    def __init__(self, model: AgentTree, methods: Sequence[MethodConfig]):
        if len(methods) != model.runs:
            raise ValueError(f"{len(methods)} method configs for {model.runs} runs")
        self.methods = list(methods)
        self.groups = [model.run_groups(r) for r in range(model.runs)]  # [run][0 = shared, 1 + agent] -> tensors
        self.state: dict[torch.nn.Parameter, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        params = [p for run in self.groups for group in run for p in group]
        # every tensor's step count is one element of `steps` (a 0-d view), so a step advances the counts of the
        # tensors it updates with one indexed add instead of one small op per tensor (~3 us each on a CPU)
        self.steps = torch.zeros(len(params), dtype=torch.float32, device=params[0].device)
        self.position: dict[torch.nn.Parameter, int] = {}
        for i, p in enumerate(params):
            self.position[p] = i
            self.state[p] = (torch.zeros_like(p, memory_format=torch.preserve_format),
                             torch.zeros_like(p, memory_format=torch.preserve_format), self.steps[i])

    @torch.no_grad()
    def step(self, scales: np.ndarray, live: Sequence[bool], returning: np.ndarray | None = None,
             shared: Sequence[bool] | None = None) -> None:
        """One update. `scales` [runs, agents] (host); `live[r]` False skips run r entirely;
        `returning[r, k]` marks agents back from cooldown (moments reset if that run asks for it);
        `shared[r]` False leaves run r's shared weights and their optimiser state untouched this step
        (method.shared_update; default: updated at full rate)."""
        batches: dict[tuple[float, ...], list[torch.nn.Parameter]] = defaultdict(list)
        for r, m in enumerate(self.methods):
            if not live[r]:
                continue
            hyper = (m.weight_decay, m.betas[0], m.betas[1], m.eps)
            if shared is None or shared[r]:
                batches[(m.learning_rate, *hyper)] += self.groups[r][0]  # shared: at the run's full rate
            for k in np.flatnonzero(scales[r] > 0.0):
                if m.reset_moments_on_return and returning is not None and returning[r, k]:
                    self.reset(r, int(k))
                batches[(m.learning_rate * float(scales[r, k]), *hyper)] += self.groups[r][int(k) + 1]
        for (lr, wd, beta1, beta2, eps), params in batches.items():
            states = [self.state[p] for p in params]
            steps = [s[2] for s in states]
            index = torch.tensor([self.position[p] for p in params], device=self.steps.device)
            self.steps.index_add_(0, index, torch.ones(len(params), device=self.steps.device))
            torch._fused_adamw_(params, [p.grad for p in params], [s[0] for s in states], [s[1] for s in states], [],
                                steps, amsgrad=False, lr=lr, beta1=beta1, beta2=beta2, weight_decay=wd, eps=eps,
                                maximize=False, grad_scale=None, found_inf=None)

    @torch.no_grad()
    def reset(self, r: int, agent: int) -> None:
        """Fresh Adam state for agent `agent` of run r (moments and step counts to zero)."""
        for p in self.groups[r][agent + 1]:
            for t in self.state[p]:
                t.zero_()

    def zero_grad(self) -> None:
        """Drop every gradient (set to None)."""
        for p in self.state:
            p.grad = None

    def run_state_dict(self, r: int) -> dict[str, list[torch.Tensor]]:
        """Run r's optimiser state (moments and step counts), for its checkpoint."""
        states = [self.state[p] for group in self.groups[r] for p in group]
        return {"exp_avg": [s[0].clone() for s in states], "exp_avg_sq": [s[1].clone() for s in states],
                "steps": [s[2].clone() for s in states]}

    @torch.no_grad()
    def load_run_state_dict(self, r: int, state: dict[str, list[torch.Tensor]]) -> None:
        """Put a `run_state_dict` back into run r."""
        params = [p for group in self.groups[r] for p in group]
        for i, key in enumerate(("exp_avg", "exp_avg_sq", "steps")):
            saved = state[key]
            if len(saved) != len(params) or any(s.shape != self.state[p][i].shape for s, p in zip(saved, params)):
                raise ValueError(f"optimiser state {key!r} does not match the model")
            for s, p in zip(saved, params):
                self.state[p][i].copy_(s)
