"""What every metric means: its direction (lower or higher is better), unit, table group."""
from __future__ import annotations

from typing import Iterable, NamedTuple

class MetricInfo(NamedTuple):
    """What a metric means. `direction` is "lower" or "higher" (which is better), or "none" for a
    descriptive count that is neither (reported, never tested)."""

    direction: str
    description: str
    unit: str
    group: str = "other"

METRIC_INFO: dict[str, MetricInfo] = {
    # language modelling and forgetting (metrics.py)
    "final_avg_bpb": MetricInfo("lower", "mean held-out bpb over all domains after the last phase", "bpb", "forgetting"),
    "forgetting": MetricInfo("lower", "final minus best earlier bpb, mean over all but the last domain (positive = forgetting)", "bpb", "forgetting"),
    "bwt": MetricInfo("lower", "backward transfer, mean R[T,j] − R[j,j] (positive = forgetting)", "bpb", "forgetting"),
    "fwt": MetricInfo("lower", "forward transfer, mean R[j−1,j] − R0[j] (negative = earlier phases helped)", "bpb", "forgetting"),
    "plasticity": MetricInfo("lower", "how well each domain was learned: mean R[j,j], the bpb on domain j right after its own phase", "bpb", "forgetting"),
    "agents_gain": MetricInfo("higher", "bpb the agents carry after the last phase: bpb with every agent bypassed (embedding -> final norm -> head) minus the tree's, mean over domains", "bpb", "lm"),
    "agents_gain_own_phase": MetricInfo("higher", "bpb the agents carry on each domain right after its own phase (bypassed minus tree, mean over domains)", "bpb", "lm"),
    "final_train_loss": MetricInfo("lower", "training loss over the last 5% of steps", "bits/byte", "lm"),
    "diverged": MetricInfo("none", "1 if the run diverged (a loss not finite, a held-out bpb of a trained domain above its untrained value, or the training loss at the end above its start; train/outputs.py), else 0", "flag", "other"),
    # sparsity
    "sparsity_param_fraction": MetricInfo("lower", "fraction of agent parameters changed per step (measured; lower = sparser)", "fraction", "sparsity"),
    "sparsity_agent_fraction": MetricInfo("lower", "fraction of agents with any changed parameter per step (measured; lower = sparser)", "fraction", "sparsity"),
    "idle_step_fraction": MetricInfo("lower", "fraction of steps in which no agent was updated (all in cooldown)", "fraction", "sparsity"),
    "shared_update_fraction": MetricInfo("none", "fraction of steps on which the shared weights were updated (method.shared_update)", "fraction", "sparsity"),
    # where forgetting lives (train/decomposition.py)
    "forgetting_shared": MetricInfo("lower", "bpb the shared weights carry of R[T,j] − R[j,j]: what restoring them to the end of phase j recovers, mean over j < T", "bpb", "decomposition"),
    "forgetting_agents": MetricInfo("lower", "bpb the agents carry of R[T,j] − R[j,j]: what restoring them to the end of phase j recovers, mean over j < T", "bpb", "decomposition"),
    "drift_shared": MetricInfo("none", "relative movement of the shared weights per phase after the first, ||Δθ|| / ||θ||", "ratio", "decomposition"),
    "drift_agents": MetricInfo("none", "relative movement of the live agents' weights per phase after the first, ||Δθ|| / ||θ||", "ratio", "decomposition"),
    # cost
    "wall_time_s": MetricInfo("lower", "wall-clock training time", "s", "cost"),
    "steps_per_s": MetricInfo("higher", "training throughput", "steps/s", "cost"),
    # structural plasticity (strategies/plasticity.py; runs of a profile with agent slots)
    "active_agents": MetricInfo("none", "agents of the live tree at the end (k1_grow: after its grows, prunes and merges)", "agents", "structure"),
    "active_agent_params": MetricInfo("none", "agent weights of the live tree at the end (for comparisons at equal size)", "weights", "structure"),
    "grow_events": MetricInfo("none", "kept grow events per run (a persistent culprit gained a child)", "events", "structure"),
    "prune_events": MetricInfo("none", "kept prune events per run (an agent with |LOO Δ| below the threshold bypassed)", "events", "structure"),
    "merge_events": MetricInfo("none", "kept merge events per run (two redundant sibling leaves became one)", "events", "structure"),
    "rolled_back_events": MetricInfo("none", "prunes and merges rolled back (probe loss rose by more than the tolerance)", "events", "structure"),
    # attribution probes (probes.py)
    "attr_grad_loo_spearman": MetricInfo("higher", "Spearman ρ between gradient scores and LOO Δ at LOO steps", "ρ", "attribution"),
    "attr_window_rank_corr": MetricInfo("higher", "rank correlation of agent scores between consecutive windows (stability over time)", "ρ", "attribution"),
    "attr_resample_path_agreement": MetricInfo("higher", "how often the same culprit path is chosen across resampled batches", "fraction", "attribution"),
    "attr_resample_culprit_entropy": MetricInfo("lower", "entropy of the culprit over resampled batches (0 = always the same)", "bits", "attribution"),
    "attr_fault_top1_grad": MetricInfo("higher", "planted fault: top-1 accuracy of gradient attribution", "fraction", "faults"),
    "attr_fault_top1_loo": MetricInfo("higher", "planted fault: top-1 accuracy of LOO attribution", "fraction", "faults"),
    "attr_fault_top1_hybrid": MetricInfo("higher", "planted fault: top-1 accuracy of hybrid attribution", "fraction", "faults"),
    "attr_fault_auc_grad": MetricInfo("higher", "planted fault: AUC of gradient scores for the damaged agent", "AUC", "faults"),
    "attr_fault_auc_loo": MetricInfo("higher", "planted fault: AUC of LOO scores for the damaged agent", "AUC", "faults"),
    "attr_fault_auc_hybrid": MetricInfo("higher", "planted fault: AUC of hybrid scores for the damaged agent", "AUC", "faults"),
    "attr_fault_path_hit": MetricInfo("higher", "planted fault: how often the damaged agent lies on the chosen error path", "fraction", "faults"),
    "attr_randomisation_change": MetricInfo("higher", "change of attribution when weights are randomised (sanity check; higher = depends on the model)", "1 − ρ", "attribution"),
    "loo_hurt_fraction": MetricInfo("none", "share of LOO rounds in which some live agent hurts (Δ_k < 0): the only case the hybrid weight differs from 1", "fraction", "attribution"),
    "loo_changed_fraction": MetricInfo("none", "share of steps (once a LOO is known) whose selection the hybrid weight changed against gradient scores alone", "fraction", "attribution"),
    "attr_specialisation_nmi": MetricInfo("higher", "normalised mutual information of culprit leaf × domain", "NMI", "attribution"),
    "attr_specialisation_p": MetricInfo("lower", "permutation-test p of specialisation against a shuffled-domain null", "p", "attribution"),
}

# prefix rules for families of metrics the probes may add (checked in order)
_PREFIX_RULES: tuple[tuple[str, MetricInfo], ...] = (
    ("attr_fault_top1_sibling_", MetricInfo("higher", "planted fault: top-1 accuracy among the damaged agent's siblings", "fraction", "faults")),
    ("attr_fault_top1_", MetricInfo("higher", "planted fault: top-1 accuracy", "fraction", "faults")),
    ("attr_fault_auc_", MetricInfo("higher", "planted fault: AUC", "AUC", "faults")),
    ("attr_fault_path_hit", MetricInfo("higher", "planted fault: path hit rate", "fraction", "faults")),
    ("final_bpb_", MetricInfo("lower", "final held-out bpb on one domain", "bpb", "lm")),
    ("sparsity_", MetricInfo("lower", "measured sparsity (lower = sparser)", "fraction", "sparsity")),
)

TABLE_GROUPS: dict[str, str] = {
    "forgetting": "Language modelling and forgetting (bpb; lower is better)",
    "lm": "Final held-out bpb per domain and training loss (lower is better)",
    "sparsity": "Measured update sparsity (lower = sparser)",
    "attribution": "Attribution stability",
    "faults": "Planted-fault attribution accuracy",
    "cost": "Compute cost",
    "decomposition": "Where forgetting lives: bpb carried by the shared weights and by the agents (swap test), and their drift",
    "structure": "Structural plasticity: live tree at the end and kept events per run (descriptive)",
}

#: metrics of the short comparison table the paper embeds
KEY_METRICS: tuple[str, ...] = (
    "final_avg_bpb", "forgetting", "bwt", "sparsity_param_fraction",
    "attr_fault_top1_hybrid", "attr_resample_path_agreement",
)

def metric_info(name: str) -> tuple[MetricInfo, bool]:
    """(info, known). Unknown metrics default to lower-is-better; callers note that in tables."""
    if name in METRIC_INFO:
        return METRIC_INFO[name], True
    for prefix, info in _PREFIX_RULES:
        if name.startswith(prefix):
            return info, True
    group = "attribution" if name.startswith("attr_") else "other"
    return MetricInfo("lower", "(not in METRIC_INFO; lower-is-better assumed)", "", group), False

def _metric_order(metrics: Iterable[str]) -> list[str]:
    """Registry order first (it groups related metrics), then the rest alphabetically."""
    present = set(metrics)
    known = [m for m in METRIC_INFO if m in present]
    return known + sorted(present - set(known))
