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

This module is the strategy's declaration (plain data: its settings, the check that the params leave it
free slots, its variant, its paper description and its claims); its plugin is `plasticity_plugin.Plasticity`,
imported only when a run trains with it.
"""
from __future__ import annotations

from typing import Any

from k1model.config.checks import Integer, Number, setting
from k1model.config.registry import VARIANTS, Strategy
from k1model.errors import ConfigError
from k1model.method.variants import Variant


def check_slots(params: Any) -> None:
    """A variant that grows needs free agent slots."""
    growing = [v for v in params.run_variants() if "plasticity" in VARIANTS[v].plugins]
    if growing and params.model.slots_per_leaf == 0:
        n, leaves = params.model.num_agents, params.model.num_leaves
        raise ConfigError(f"variant {growing[0]} grows new agents but model.max_agents={params.model.max_agents} "
                          f"leaves no free slot: set model.max_agents to {n + leaves} ({n} initial agents + one "
                          f"slot per leaf) or more ({n} + a multiple of {leaves})")


STRATEGY = Strategy(
    name="plasticity",
    plugin="k1model.strategies.plasticity_plugin:Plasticity",
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
)
