"""`method:` the K-1 update rule (DESIGN.md §2.2-2.4) and the optimiser it scales."""
from __future__ import annotations

from dataclasses import dataclass

from k1model.config.checks import Boolean, Integer, ListOf, Nullable, Number, OneOf, Section, setting


#: when the shared weights are updated (method.shared_update; k1model/method/updates.py)
SHARED_UPDATES = ("every_step", "with_agents", "frozen_after_first_phase")


def _variant_names() -> list[str]:
    from k1model.method.variants import VARIANTS  # the registry (no torch): read when checking

    return list(VARIANTS)


@dataclass(frozen=True)
class MethodConfig(Section):
    """The K-1 update rule and the optimiser it scales. `variant` is not a params key: each run's
    variant comes from `experiment.variants` (or `k1 train --variant`)."""

    SECTION = "method"
    DESCRIPTION = "the update rule and the optimiser (k1 train)"

    variant: str = setting("k1_full", OneOf(_variant_names), "the variant", in_params=False)
    learning_rate: float = setting(3e-3, Number(0.0, open_low=True), "AdamW learning rate (scale 1.0)")
    weight_decay: float = setting(0.01, Number(0.0), "AdamW decoupled weight decay")
    betas: tuple[float, float] = setting((0.9, 0.95), ListOf(Number(0.0, 1.0, open_high=True), 2, 2),
                                         "AdamW betas")
    eps: float = setting(1e-8, Number(0.0, open_low=True), "AdamW epsilon")
    trust_threshold: float = setting(0.7, Number(0.0, 1.0), "an agent with trust above this is in cooldown")
    trust_increase: float = setting(0.1, Number(0.0, 1.0), "trust gained by an update")
    trust_decay: float = setting(0.995, Number(0.0, 1.0, open_low=True), "trust multiplier per step")
    trust_rule: str = setting("per_update", OneOf(("per_update", "proportional")),
                              "per_update: +trust_increase per update; proportional: +trust_increase x the update's scale")
    loo_interval: int = setting(50, Integer(1), "leave-one-out every that many steps")
    path_scales: tuple[float, ...] = setting((1.0, 0.15, 0.05), ListOf(Number(0.0, 1.0), min_len=1),
                                             "update scales: culprit, parent, further ancestors (last repeats)")
    top_k: int | None = setting(None, Nullable(Integer(1)), "flat_topk's K; null = tree depth")
    scale_mode: str = setting("fixed", OneOf(("fixed", "gradient")),
                              "fixed: path_scales; gradient: scales proportional to the path agents' scores")
    reset_moments_on_return: bool = setting(False, Boolean(),
                                            "reset an agent's Adam moments when it returns from cooldown")
    grad_clip: float | None = setting(None, Nullable(Number(0.0, open_low=True)),
                                      "clip the global gradient norm (null = off)")
    shared_update: str = setting("every_step", OneOf(SHARED_UPDATES),
                                 "when the shared weights (embedding, positions, final norm, head) are updated: "
                                 "every_step (DESIGN.md §2.1); with_agents: only on steps that update an agent, "
                                 "at the full learning rate; frozen_after_first_phase: trained in the first "
                                 "domain only (where forgetting lives: DESIGN.md §11)")
    # --- EWC (k1model/strategies/ewc.py; variant ewc) -----------------------------------------
    ewc_lambda: float = setting(10.0, Number(0.0), "EWC penalty strength lambda (0 = off; default: the pilot of "
                                "params/pilot_baselines.yaml on the validation split; results swing by orders of "
                                "magnitude with it, so the study tunes it)")
    ewc_gamma: float = setting(1.0, Number(0.0, 1.0, open_low=True),
                               "online EWC decay of the old Fisher after each phase: F <- gamma F + F_new")
    fisher_batches: int = setting(4, Integer(1), "training batches of a phase for its empirical Fisher")
    # --- experience replay (k1model/strategies/replay.py; variants replay, k1_replay) ----------
    replay_buffer: int = setting(1000, Integer(1), "reservoir capacity in training windows")
    replay_fraction: float = setting(0.5, Number(0.0, 1.0, open_high=True),
                                     "share of every batch drawn from the buffer (batch size unchanged; default: the "
                                     "pilot of params/pilot_baselines.yaml)")
    # --- structural plasticity (k1model/strategies/plasticity.py; variant k1_grow; slots: model.max_agents)
    grow_window: int = setting(100, Integer(1), "steps over which the blamed leaf is counted for a grow")
    grow_share: float = setting(0.5, Number(0.0, 1.0, open_low=True),
                                "a live leaf blamed on at least this share of a full window gains a child")
    prune_threshold: float = setting(0.001, Number(0.0),
                                     "|LOO delta| (nats per byte) below which an agent counts as doing nothing")
    prune_rounds: int = setting(4, Integer(1), "consecutive LOO rounds below prune_threshold before a prune")
    merge_similarity: float = setting(0.95, Number(-1.0, 1.0, open_low=True),
                                      "cosine similarity of two sibling leaves' contributions on the probe batch "
                                      "above which they count as redundant")
    merge_rounds: int = setting(4, Integer(1), "consecutive LOO rounds above merge_similarity before a merge")
    structure_tolerance: float = setting(0.01, Number(0.0),
                                         "a prune or merge that raises the probe loss (nats per byte) by more is "
                                         "rolled back")

    def path_scale(self, distance_from_culprit: int) -> float:
        """Scale for the agent `distance` steps above the culprit; the last value repeats."""
        return self.path_scales[min(distance_from_culprit, len(self.path_scales) - 1)]
