"""`method:` the K-1 update rule (DESIGN.md §2.2-2.4) and the optimiser it scales, and the settings the
strategies register (`k1model.config.registry`: EWC's, replay's, structural plasticity's, ...)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

import k1model.config.registry as registry
from k1model.config.checks import Boolean, Integer, ListOf, Nullable, Number, OneOf, setting
from k1model.config.extensible import ExtensibleSection

#: when the shared weights are updated (method.shared_update; k1model/method/updates.py)
SHARED_UPDATES = ("every_step", "with_agents", "frozen_after_first_phase")

@dataclass(frozen=True, init=False)
class MethodConfig(ExtensibleSection):
    """The K-1 update rule and the optimiser it scales, then every registered strategy's settings (e.g.
    `ewc_lambda` of k1model/strategies/ewc.py). `variant` is not a params key: each run's variant comes
    from `experiment.variants` (or `k1 train --variant`)."""

    SECTION = "method"
    DESCRIPTION = "the update rule and the optimiser (k1 train)"

    variant: str = setting("k1_full", OneOf(registry.variant_names), "the variant", in_params=False)
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
    throttle_share: float = setting(0.1, Number(0.0, 1.0),
                                    "throttled control: the share of steps on which its agents are updated (all "
                                    "of them, like dense); set to K-1's agent update rate (1 - its idle step "
                                    "fraction); 1.0 = dense")
    reset_moments_on_return: bool = setting(False, Boolean(),
                                            "reset an agent's Adam moments when it returns from cooldown")
    grad_clip: float | None = setting(None, Nullable(Number(0.0, open_low=True)),
                                      "clip the global gradient norm (null = off)")
    shared_update: str = setting("every_step", OneOf(SHARED_UPDATES),
                                 "when the shared weights (embedding, positions, final norm, head) are updated: "
                                 "every_step (DESIGN.md §2.1); with_agents: only on steps that update an agent, "
                                 "at the full learning rate; frozen_after_first_phase: trained in the first "
                                 "domain only (where forgetting lives: DESIGN.md §11)")
    # the settings of the strategies (EWC, replay, structural plasticity, ...) follow: each strategy declares
    # its own in its declaration (k1model/strategies/*.py), and `registered()` collects them from the registry

    #: keys added after runs were committed: left out of a run's config hash while at their default, so adding
    #: them kept every earlier run's hash (and its completeness and resume) unchanged
    HASH_OMITTED_AT_DEFAULT = ("throttle_share",)

    def hash_dict(self) -> dict[str, Any]:
        """What a run's config hash covers: every setting but the later keys that sit at their default."""
        out = self.to_dict()
        for key in self.HASH_OMITTED_AT_DEFAULT:
            if out.get(key) == getattr(type(self)(), key):
                del out[key]
        return out

    @classmethod
    def registered(cls) -> Mapping[str, Any]:
        """The settings the registered strategies add (ewc_lambda, replay_fraction, ...)."""
        return registry.settings(cls.SECTION)

    def path_scale(self, distance_from_culprit: int) -> float:
        """Scale for the agent `distance` steps above the culprit; the last value repeats."""
        return self.path_scales[min(distance_from_culprit, len(self.path_scales) - 1)]


registry.reserve(MethodConfig.SECTION, [f.name for f in dataclasses.fields(MethodConfig)])
