"""The sparse optimiser step (DESIGN.md §2.3, "What a scale means").

One AdamW parameter group per agent plus one for the shared parameters. Before each
step, an agent with scale s > 0 gets lr = base_lr · s, so the scale multiplies its
*update* (Adam would normalise a scaled gradient away). An agent with scale 0 gets
`p.grad = None`: torch's AdamW then skips the parameter entirely, so its weights, both
moments, its step count and its weight decay stay bit-for-bit unchanged.
"""
from __future__ import annotations

from typing import Sequence

import torch

from k1model.config import MethodConfig
from k1model.model import AgentTree


class SparseAdamW:
    def __init__(self, model: AgentTree, method: MethodConfig):
        self.base_lr = method.learning_rate
        self.reset_moments_on_return = method.reset_moments_on_return
        groups = [{"params": model.shared_parameters(), "name": "shared"}]
        groups += [{"params": list(agent.parameters()), "name": name}
                   for name, agent in zip(model.agent_names, model.agents)]
        self.optimizer = torch.optim.AdamW(groups, lr=method.learning_rate, betas=method.betas, eps=method.eps,
                                           weight_decay=method.weight_decay)
        self.agent_groups = self.optimizer.param_groups[1:]

    def step(self, scales: Sequence[float], returning: Sequence[bool] = ()) -> None:
        """Apply one update; `returning[k]` marks agents back from cooldown (moments reset if configured)."""
        for k, (group, scale) in enumerate(zip(self.agent_groups, scales)):
            if scale <= 0.0:
                for p in group["params"]:
                    p.grad = None
                continue
            group["lr"] = self.base_lr * float(scale)
            if self.reset_moments_on_return and k < len(returning) and returning[k]:
                for p in group["params"]:
                    self.optimizer.state.pop(p, None)
        self.optimizer.step()

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)
