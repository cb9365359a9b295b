"""The plugin of structural plasticity (`k1model.strategies.plasticity`, which describes the grow, prune and
merge rules and declares the settings, variant and claims): it changes a run's slot states after each step.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch

from k1model.method.selection import drill_down
from k1model.topology import ACTIVE, INACTIVE, MERGED, PRUNED
from k1model.train.plugins import Phase, Plugin

#: a grow must leave the probe loss unchanged to within this (it is exact by construction)
GROW_EXACTNESS = 1e-6


class Plasticity(Plugin):
    """Grow, prune and merge one run's tree after each step (the rules: `k1model.strategies.plasticity`)."""

    def __init__(self) -> None:
        self.blamed: list[int] = []  # the blamed leaf of each step of the current window
        self.quiet: dict[int, int] = {}  # agent -> consecutive LOO rounds with |Δ| < prune_threshold
        self.similar: dict[tuple[int, int], int] = {}  # sibling pair -> consecutive rounds above merge_similarity
        self.probe: tuple[torch.Tensor, torch.Tensor] | None = None
        self.rng: np.random.Generator | None = None
        self.events: list[dict[str, Any]] = []
        self.sizes: list[dict[str, int]] = []

    # --- hooks ----------------------------------------------------------------------------
    def before_phase(self, run, phase: Phase) -> None:
        if self.rng is None:
            self.rng = np.random.default_rng([phase.seed, 0x47524F57])
        T, B = phase.seq_len, phase.batch_size
        starts = self.rng.integers(0, len(phase.tokens) - T, size=B)
        windows = torch.from_numpy(np.stack([phase.tokens[s:s + T + 1] for s in starts]).astype(np.int64))
        self._add_probe(run, windows[:, :-1], windows[:, 1:])

    def after_update(self, run, record) -> None:
        if self.probe is None and run.batch is not None:  # no phases (the facade): the first batch
            self._add_probe(run, *run.batch)
        if not self.sizes:
            self._record_size(run, record.step)
        self._maybe_grow(run, record)
        if record.loo_computed:
            self._maybe_prune(run, record)
            self._maybe_merge(run, record)

    def summary(self, run) -> dict[str, Any]:
        kept = Counter(e["kind"] for e in self.events if e["kept"])
        return {"structure_events": self.events, "structure_sizes": self.sizes,
                "scalars": {"grow_events": kept["grow"], "prune_events": kept["prune"], "merge_events": kept["merge"],
                            "rolled_back_events": sum(not e["kept"] for e in self.events)}}

    # --- the rules ------------------------------------------------------------------------
    def _maybe_grow(self, run, record) -> None:
        model, r, method = run.model, run.index, run.method
        live = model.run_topology(r)
        path = drill_down(live, np.asarray(record.scores), model.active_mask(r))
        self.blamed = (self.blamed + [path[-1]])[-method.grow_window:]
        if len(self.blamed) < method.grow_window:
            return
        leaf, count = max(Counter(self.blamed).items(), key=lambda kv: (kv[1], -kv[0]))
        if count < method.grow_share * method.grow_window:
            return
        self.blamed = []
        slot = free_slot(model.topology, model.slot_states(r), leaf)
        if slot is None:
            return
        states = model.slot_states(r)
        states[slot] = ACTIVE
        before = self._probe_loss(run)
        model.set_structure(r, states)
        after = self._probe_loss(run)
        if abs(after - before) > GROW_EXACTNESS:
            raise RuntimeError(f"growing {model.topology.names[slot]} changed the probe loss from {before} to {after}; "
                               "a new slot must leave the tree's output unchanged (zero residual projections)")
        self._record(run, record.step, "grow", [leaf, slot], before, after, True,
                     blamed_share=count / method.grow_window)

    def _maybe_prune(self, run, record) -> None:
        model, r, method = run.model, run.index, run.method
        active, updates = model.active_mask(r), run.run.update_counts
        for k, delta in enumerate(record.loo):
            judged = k > 0 and active[k] and (k < model.initial_agents or updates[k] > 0)
            self.quiet[k] = self.quiet.get(k, 0) + 1 if judged and abs(delta) < method.prune_threshold else 0
        for k in [k for k, n in sorted(self.quiet.items()) if n >= method.prune_rounds]:
            self.quiet[k] = 0
            if model.active_mask(r)[k]:
                states = model.slot_states(r)
                states[k] = PRUNED
                self._try(run, record.step, "prune", [k], states, None, loo=float(record.loo[k]))

    def _maybe_merge(self, run, record) -> None:
        model, r, method = run.model, run.index, run.method
        pairs = sibling_leaf_pairs(model.run_topology(r))
        if not pairs:
            self.similar = {}
            return
        outs = self._probe_outputs(run)
        parents = model.run_topology(r).parents
        similarity = pair_similarities(outs, parents, pairs)  # one host sync for every pair
        counts = {pair: self.similar.get(pair, 0) + 1 for pair, s in zip(pairs, similarity) if s > method.merge_similarity}
        self.similar = dict(counts)
        for (a, b), n in sorted(counts.items()):
            if n < method.merge_rounds or not (model.active_mask(r)[a] and model.active_mask(r)[b]):
                continue
            self.similar[(a, b)] = 0
            keep, drop = (a, b) if abs(record.loo[a]) >= abs(record.loo[b]) else (b, a)
            states, weights = model.slot_states(r), model.lineage_weights(r)
            states[drop] = MERGED
            lineage = lineage_index(model.topology)
            mine = [lineage[leaf] for leaf in model.topology.leaves if _under(model.topology, leaf, keep)]
            theirs = [lineage[leaf] for leaf in model.topology.leaves if _under(model.topology, leaf, drop)]
            weights[mine[0]] += weights[theirs].sum()
            weights[theirs] = 0.0
            self._try(run, record.step, "merge", [keep, drop], states, weights,
                      similarity=similarity[pairs.index((a, b))])

    # --- snapshot, validation, records ---------------------------------------------------
    def _try(self, run, step: int, kind: str, agents: list[int], states: np.ndarray, weights: np.ndarray | None,
             **why: Any) -> None:
        """Apply a prune or merge; keep it if the probe loss rose by at most structure_tolerance, else restore."""
        snap = snapshot(run, agents)
        before = self._probe_loss(run)
        run.model.set_structure(run.index, states, weights)
        after = self._probe_loss(run)
        kept = after - before <= run.method.structure_tolerance
        if not kept:
            restore(run, snap)
        self._record(run, step, kind, agents, before, after, kept, **why)

    def _record(self, run, step: int, kind: str, agents: list[int], before: float, after: float, kept: bool,
                **why: Any) -> None:
        names = run.model.topology.names
        self.events.append({"step": int(step), "kind": kind, "agents": [names[k] for k in agents],
                            "loss_before": float(before), "loss_after": float(after), "kept": bool(kept),
                            **{k: float(v) for k, v in why.items()}})
        if kept:
            self._record_size(run, step + 1)

    def _record_size(self, run, step: int) -> None:
        self.sizes.append({"step": int(step), "active_agents": int(run.model.active_mask(run.index).sum()),
                           "active_agent_params": run.model.active_parameter_count(run.index)})

    # --- the probe batch ------------------------------------------------------------------
    def _add_probe(self, run, x: torch.Tensor, y: torch.Tensor) -> None:
        device = run.model.mask.device
        x, y = x.to(device).long(), y.to(device).long()
        self.probe = (x, y) if self.probe is None else (torch.cat([self.probe[0], x]), torch.cat([self.probe[1], y]))

    @torch.no_grad()
    def _probe_forward(self, run) -> tuple[torch.Tensor, list[torch.Tensor]]:
        model, (x, y) = run.model, self.probe
        was = model.training
        model.eval()
        try:
            R = model.runs
            _, loss, outs = model.forward_with_outputs(x.expand(R, *x.shape), y.expand(R, *y.shape))
        finally:
            model.train(was)
        return loss[run.index], [o[run.index] for o in outs]

    def _probe_loss(self, run) -> float:
        return float(self._probe_forward(run)[0])

    def _probe_outputs(self, run) -> list[torch.Tensor]:
        return self._probe_forward(run)[1]

    # --- state ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"blamed": list(self.blamed), "quiet": [[k, n] for k, n in self.quiet.items()],
                "similar": [[a, b, n] for (a, b), n in self.similar.items()],
                "probe": None if self.probe is None else [t.cpu().clone() for t in self.probe],
                "rng": None if self.rng is None else self.rng.bit_generator.state,
                "events": [dict(e) for e in self.events], "sizes": [dict(s) for s in self.sizes]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.blamed = [int(k) for k in state["blamed"]]
        self.quiet = {int(k): int(n) for k, n in state["quiet"]}
        self.similar = {(int(a), int(b)): int(n) for a, b, n in state["similar"]}
        self.probe = None if state["probe"] is None else (state["probe"][0], state["probe"][1])
        self.rng = None
        if state["rng"] is not None:
            self.rng = np.random.default_rng()
            self.rng.bit_generator.state = state["rng"]
        self.events = [dict(e) for e in state["events"]]
        self.sizes = [dict(s) for s in state["sizes"]]


# --- pure helpers on the topology ---------------------------------------------------------
def free_slot(static, states: np.ndarray, leaf: int) -> int | None:
    """The first inactive slot below a live leaf, reached through agents that pass through (pruned
    ones); activating it leaves the output exactly unchanged. None when its chain is used up."""
    found = []
    stack = list(static.children[leaf])
    while stack:
        c = stack.pop()
        if states[c] == INACTIVE:
            found.append(c)
        elif states[c] == PRUNED:
            stack.extend(static.children[c])
    return min(found) if found else None


def sibling_leaf_pairs(live) -> list[tuple[int, int]]:
    """Pairs of live leaves with the same live parent (the merge candidates)."""
    leaves = set(live.leaves)
    pairs = []
    for k in live.active_agents:
        kids = [c for c in live.children[k] if c in leaves]
        pairs += [(a, b) for i, a in enumerate(kids) for b in kids[i + 1:]]
    return pairs


def contribution_similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of two agents' contributions over the whole probe batch (on the device)."""
    a, b = a.double().flatten(), b.double().flatten()
    return a @ b / (a.norm() * b.norm()).clamp_min(1e-30)


def pair_similarities(outs: list[torch.Tensor], parents: tuple[int, ...], pairs: list[tuple[int, int]]) -> list[float]:
    """For sibling pairs (a, b): the similarity of what each adds to their common input (its live parent's output)."""
    values = [contribution_similarity(outs[a] - outs[parents[a]], outs[b] - outs[parents[a]]) for a, b in pairs]
    return torch.stack(values).tolist()


def lineage_index(static) -> dict[int, int]:
    """Static leaf (chain end) -> its position in the lineage weights."""
    return {leaf: i for i, leaf in enumerate(static.leaves)}


def _under(static, leaf: int, agent: int) -> bool:
    return leaf == agent or agent in static.ancestors(leaf)


# --- snapshot --------------------------------------------------------------------------------
def snapshot(run, agents: list[int]) -> dict[str, Any]:
    """Exact copies of what a prune or merge may change: the run's slot states and lineage weights,
    and the involved agents' weights and optimiser state."""
    model, r = run.model, run.index
    params = [p for k in agents for p in model.agent_parameters(k, r)]
    opt = run.trainer.optimizer
    return {"states": model.slot_states(r), "weights": model.lineage_weights(r),
            "params": [p.detach().clone() for p in params],
            "opt": [[t.clone() for t in opt.state[p]] for p in params], "agents": list(agents)}


@torch.no_grad()
def restore(run, snap: dict[str, Any]) -> None:
    """Put a run's structure, weights and optimiser state back to a `snapshot`."""
    model, r = run.model, run.index
    model.set_structure(r, snap["states"], snap["weights"])
    params = [p for k in snap["agents"] for p in model.agent_parameters(k, r)]
    opt = run.trainer.optimizer
    for p, saved, state in zip(params, snap["params"], snap["opt"]):
        p.copy_(saved)
        for live, kept in zip(opt.state[p], state):
            live.copy_(kept)
