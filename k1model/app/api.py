"""A thin facade compatible with the seed README's API (`create_k1_model`).

    model = create_k1_model({"vocab_size": 256, "embed_dim": 64, "top_k": 3, ...})
    info = model.train_step(x, y)     # loss, updated, skipped, avg_trust, loo_computed, path, scales
    model.get_agent_status()          # name, level, parent, trust, loo_score, grad_score, updates
    model.generate(prompt_ids, max_new_tokens=50)

Behind it: `AgentTree` (the model), `K1Trainer` (the step), `MethodConfig` (the variant).
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from k1model.app.interpret import gradient_flow, render_responsibility_tree
from k1model.config import MethodConfig, ModelConfig, method_config, model_config
from k1model.errors import ConfigError
from k1model.execution import default_execution
from k1model.model import AgentTree
from k1model.train.step import K1Trainer, StepRecord

# the flat keys of the seed README: every model and method key (derived from the config classes)
_MODEL_KEYS = tuple(ModelConfig.field_names(params_only=False))
_METHOD_KEYS = tuple(MethodConfig.field_names(params_only=False))
ALLOWED_KEYS = (*_MODEL_KEYS, *_METHOD_KEYS, "seed", "device")


class K1Model:
    """One K-1 model and its trainer behind the seed README's interface (`create_k1_model`)."""
    def __init__(self, model_cfg: ModelConfig, method_cfg: MethodConfig, seed: int = 0, device: str = "cpu"):
        torch.manual_seed(seed)
        attention, _ = default_execution(device)  # the kernels `auto` means on this device
        self.model = AgentTree(model_cfg, attention=attention).to(device)
        self.trainer = K1Trainer(self.model, method_cfg, seed=seed)
        self.device = torch.device(device)
        self.last_record: StepRecord | None = None

    @property
    def agent_names(self) -> tuple[str, ...]:
        """Every agent's name, breadth-first (root first)."""
        return self.model.agent_names

    def agent(self, name: str) -> torch.nn.Module:
        """The block of the agent called `name` (its copy of every run)."""
        return self.model.agents[self.model.topology.index(name)]

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
        """One training step on a [batch, time] batch; what it decided, as a dict."""
        record = self.trainer.train_step(x.to(self.device), y.to(self.device))
        self.last_record = record
        names = self.agent_names
        return {
            "step": record.step, "loss": record.loss, "updated": record.updated, "skipped": record.skipped,
            "avg_trust": record.avg_trust, "loo_computed": record.loo_computed,
            "path": [names[k] for k in record.path],
            "culprit": None if record.culprit is None else names[record.culprit],
            "scales": {names[k]: s for k, s in enumerate(record.scales) if s > 0},
        }

    def get_agent_status(self) -> list[dict[str, Any]]:
        """Every agent of the live tree (with k1_grow: grown children included, pruned and merged ones gone)."""
        topo, tr, rec = self.trainer.topology, self.trainer, self.last_record
        loo = None if tr.latest_loo is None else tr.latest_loo.tolist()
        initial = self.model.initial_agents
        return [{
            "name": topo.names[k], "level": topo.levels[k],
            "parent": None if topo.parents[k] < 0 else topo.names[topo.parents[k]],
            "grown": k >= initial,
            "trust": float(tr.trust.values[k]), "in_cooldown": not bool(tr.trust.eligible()[k]),
            "loo_score": None if loo is None else loo[k],
            "grad_score": None if rec is None else rec.grad_scores[k],
            "updates": int(tr.update_counts[k]),
        } for k in topo.active_agents]

    def structure_events(self) -> list[dict[str, Any]]:
        """Grow, prune and merge events so far (k1_grow; empty for a tree that does not change)."""
        return [dict(e) for p in self.trainer.plugins for e in getattr(p, "events", [])]

    def responsibility_tree(self) -> str:
        """The latest step's tree as text: every live agent's score and update share, the error path."""
        if self.last_record is None:
            raise RuntimeError("no step taken yet: call train_step first")
        return render_responsibility_tree(self.trainer.topology, self.last_record)

    def gradient_flow(self) -> dict[str, float]:
        """The latest step's gradient norm per agent."""
        if self.last_record is None:
            raise RuntimeError("no step taken yet: call train_step first")
        return gradient_flow(self.trainer.topology, self.last_record)

    def generate(self, prompt_ids: torch.Tensor, max_new_tokens: int = 50, temperature: float = 1.0) -> torch.Tensor:
        """Continuations of a prompt ([time] or [batch, time] token ids)."""
        prompt = torch.as_tensor(prompt_ids, dtype=torch.long, device=self.device)
        if prompt.dim() == 1:
            return self.model.generate(prompt[None], max_new_tokens, temperature)[0]
        return self.model.generate(prompt, max_new_tokens, temperature)


def create_k1_model(config: Mapping[str, Any]) -> K1Model:
    """Build a K-1 model from the seed README's flat config dict (plus K-1's own keys)."""
    unknown = sorted(set(config) - set(ALLOWED_KEYS))
    if unknown:
        raise ConfigError(f"unknown config key(s) {unknown}; allowed keys: {', '.join(ALLOWED_KEYS)}")
    model_cfg = model_config({k: config[k] for k in _MODEL_KEYS if k in config})
    method_cfg = method_config({k: config[k] for k in _METHOD_KEYS if k in config})
    return K1Model(model_cfg, method_cfg, seed=int(config.get("seed", 0)), device=str(config.get("device", "cpu")))
