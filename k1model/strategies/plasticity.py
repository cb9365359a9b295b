"""Structural plasticity as a plugin (DESIGN.md §9; the seeds' Phase 3): variant `k1_grow`.

The tensors are static: the model pre-allocates `model.max_agents` agent slots (a chain below
every initial leaf, `k1model.topology`), and this plugin only changes a run's slot states. An agent
that is not active passes its input through, is never computed, scored, selected, updated or
counted, and its weights and optimiser state stay exactly as they were.

After every step (`after_update`), on the run's live tree:

* **Grow.** The *blamed leaf* of a step is the end of the drill-down on that step's scores over
  the live tree, ignoring the trust cooldown (who the attribution says is wrong, whether or not it
  may be updated). When one live leaf was blamed on at least `grow_share` of the last `grow_window`
  steps, the first free slot below it becomes active: its child. A slot's residual projections
  are zero from initialisation, so the child's output equals its input and the tree computes
  exactly the same function: the probe loss may not change by more than 1e-6 (checked; an error
  otherwise). The window then starts afresh.
* **Prune** (at each LOO round of the run): an active agent other than the root whose |LOO Δ|
  stayed below `prune_threshold` for `prune_rounds` consecutive rounds is bypassed for good.
  A grown child not yet updated (its Δ is exactly 0: it passes its input through) is not judged.
* **Merge** (at each LOO round): two live sibling leaves whose contributions on the probe batch
  (output minus their common input) had a cosine similarity above `merge_similarity` for
  `merge_rounds` consecutive rounds become one: the one with the larger |Δ| survives unchanged and
  takes over the other's weight in the output mean; the other is bypassed for good. (Averaging two
  independently initialised blocks' weights would not average their functions; the survivor
  already computes what both did.)
* **Validation with a snapshot.** A prune or merge that raises the probe loss by more than
  `structure_tolerance` (nats per byte) is rolled back: the run's slot states, lineage weights and
  the involved agents' weights and optimiser state are restored exactly from the snapshot.

The probe batch is fixed: `train.batch_size` training windows of each domain drawn when its phase
begins, with the plugin's own generator (the training stream is untouched); without phases (the
`create_k1_model` facade) the first training batch. Every event is recorded (step, kind, agents,
probe loss before/after in nats per byte, kept) with the live tree's size after it; both go to the
run's metrics.json (`structure_events`, `structure_sizes`).

The whole strategy is this module: the plugin, and (at the end) its registration with its settings,
the check that the params leave it free slots, its variant, its paper description and its claims.
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import torch

from k1model.config.checks import Integer, Number, setting
from k1model.config.registry import VARIANTS, Strategy, register_strategy
from k1model.errors import ConfigError
from k1model.method.variants import Variant
from k1model.topology import ACTIVE, INACTIVE, MERGED, PRUNED
from k1model.train.plugins import Phase, Plugin

#: a grow must leave the probe loss unchanged to within this (it is exact by construction)
GROW_EXACTNESS = 1e-6


class Plasticity(Plugin):
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
        from k1model.method.selection import drill_down

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
    model, r = run.model, run.index
    model.set_structure(r, snap["states"], snap["weights"])
    params = [p for k in snap["agents"] for p in model.agent_parameters(k, r)]
    opt = run.trainer.optimizer
    for p, saved, state in zip(params, snap["params"], snap["opt"]):
        p.copy_(saved)
        for live, kept in zip(opt.state[p], state):
            live.copy_(kept)


def check_slots(params: Any) -> None:
    """A variant that grows needs free agent slots."""
    growing = [v for v in params.run_variants() if "plasticity" in VARIANTS[v].plugins]
    if growing and params.model.slots_per_leaf == 0:
        n, leaves = params.model.num_agents, params.model.num_leaves
        raise ConfigError(f"variant {growing[0]} grows new agents but model.max_agents={params.model.max_agents} "
                          f"leaves no free slot: set model.max_agents to {n + leaves} ({n} initial agents + one "
                          f"slot per leaf) or more ({n} + a multiple of {leaves})")


register_strategy(Strategy(
    name="plasticity",
    plugin=Plasticity,
    settings={
        "grow_window": setting(100, Integer(1), "steps over which the blamed leaf is counted for a grow"),
        "grow_share": setting(0.5, Number(0.0, 1.0, open_low=True),
                              "a live leaf blamed on at least this share of a full window gains a child"),
        "prune_threshold": setting(0.001, Number(0.0),
                                   "|LOO delta| (nats per byte) below which an agent counts as doing nothing"),
        "prune_rounds": setting(4, Integer(1), "consecutive LOO rounds below prune_threshold before a prune"),
        "merge_similarity": setting(0.95, Number(-1.0, 1.0, open_low=True),
                                    "cosine similarity of two sibling leaves' contributions on the probe batch "
                                    "above which they count as redundant"),
        "merge_rounds": setting(4, Integer(1), "consecutive LOO rounds above merge_similarity before a merge"),
        "structure_tolerance": setting(0.01, Number(0.0),
                                       "a prune or merge that raises the probe loss (nats per byte) by more is "
                                       "rolled back"),
    },
    reads=("loo_interval",),
    variants=(Variant("k1_grow", "drilldown", "hybrid", True, ("plasticity",),
                      "k1_full + structural plasticity: persistent culprits grow a child, idle agents are pruned, "
                      "redundant siblings merge"),),
    checks=(check_slots,),
    paper_section="structure",  # its own section of the paper (k1model/report/structure_sections.py)
    paper=("`k1_grow` is `k1_full` with a tree that changes itself. The model holds {model.max_agents} agent slots "
           "({model.num_agents} initial agents and a chain of {model.slots_per_leaf} slot(s) below every leaf); a "
           "slot that is not active passes its input through and is never computed, scored, selected, updated or "
           "counted. **Grow:** a live leaf blamed (the drill-down end on the step's scores, ignoring the cooldown) "
           "on at least {method.grow_share:g} of the last {method.grow_window} steps gains a child whose residual "
           "projections are zero, so the tree's output is unchanged (checked on a fixed probe batch to 1e-6). "
           "**Prune:** an agent whose |LOO Δ| stayed below {method.prune_threshold:g} nats for "
           "{method.prune_rounds} consecutive LOO rounds is bypassed for good. **Merge:** two sibling leaves whose "
           "contributions on the probe batch had a cosine similarity above {method.merge_similarity:g} for "
           "{method.merge_rounds} rounds become one (the survivor takes over the other's weight in the output "
           "mean). A prune or merge that raises the probe loss by more than {method.structure_tolerance:g} nats is "
           "rolled back exactly from a snapshot."),
    claims=({"name": "grow_forgets_less", "metric": "forgetting", "variant": "k1_grow", "reference": "k1_full",
             "statement": "a tree that grows, prunes and merges (k1_grow) forgets less than the fixed tree "
                          "(k1_full)"},
            {"name": "grow_lm_quality", "metric": "final_avg_bpb", "variant": "k1_grow", "reference": "k1_full",
             "statement": "k1_grow ends with a lower average bpb than the fixed tree (k1_full)"}),
))
