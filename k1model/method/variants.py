"""The variants of the study (DESIGN.md §2.4), each a composition of registered parts.

One training loop serves all of them. A variant names its selector (`selection.SELECTORS`:
who gets updated, by how much), its scorer (`scoring.SCORERS`: gradient or hybrid
gradient x LOO), whether the trust cooldown gates eligibility, and the training plugins it adds
(`k1model.train.plugins`: extra loss terms, batch sources, phase hooks). Everything else
(architecture, data order, optimiser, step budget, seeds) is shared.

The registry itself is plain data at the bottom (`k1model.config.registry.VARIANTS`, the same dict as
`VARIANTS` here), so the config layer validates variant names without importing this layer. The core
variants are registered below; a strategy registers its own with the strategy (`register_strategy`,
docs/architecture.md, "How to add a strategy"). No torch at import.
"""
from __future__ import annotations

from dataclasses import dataclass

from k1model.config.registry import VARIANTS, get_variant, register_variant

__all__ = ["OPTIMIZER_KEYS", "VARIANTS", "Variant", "get_variant", "register_variant"]


@dataclass(frozen=True)
class Variant:
    name: str
    selector: str  # key of k1model.method.selection.SELECTORS
    scorer: str  # key of k1model.method.scoring.SCORERS
    cooldown: bool  # the trust cooldown gates eligibility (trust is tracked either way)
    plugins: tuple[str, ...] = ()  # keys of k1model.train.plugins.PLUGINS
    description: str = ""

    def reads(self) -> frozenset[str]:
        """The method keys that can change this variant's training: the optimiser's, its selector's,
        its scorer's, the cooldown's (when it gates) and its plugins'. A sweep point that only
        changes keys outside this set is the same run as the base point for this variant."""
        from k1model.method.scoring import get_scorer
        from k1model.method.selection import SELECTOR_KEYS
        from k1model.method.trust import COOLDOWN_KEYS
        from k1model.train.plugins import plugin_keys

        keys = set(OPTIMIZER_KEYS) | set(SELECTOR_KEYS[self.selector]) | set(get_scorer(self.scorer).keys)
        if self.cooldown:
            keys |= set(COOLDOWN_KEYS)
        for name in self.plugins:
            keys |= set(plugin_keys(name))
        return frozenset(keys)

    @property
    def uses_loo(self) -> bool:
        """The scorer needs leave-one-out deltas (so the trainer computes them every loo_interval steps)."""
        from k1model.method.scoring import get_scorer

        return get_scorer(self.scorer).needs_loo


#: method keys every variant's optimiser reads
OPTIMIZER_KEYS = ("learning_rate", "weight_decay", "betas", "eps", "grad_clip", "shared_update")

# the core variants (DESIGN.md §2.4); the continual-learning baselines and k1_grow come with their strategies
for _v in (
    Variant("k1_full", "drilldown", "hybrid", True, (),
            "drill-down + proportional scales + trust + hybrid (gradient + LOO) scores"),
    Variant("flat_topk", "topk", "hybrid", True, (),
            "no hierarchy: the K highest-scoring eligible agents get scale 1 (K = tree depth)"),
    Variant("no_trust", "drilldown", "hybrid", False, (), "k1_full without the trust cooldown"),
    Variant("no_loo", "drilldown", "gradient", True, (), "k1_full with gradient-only scores"),
    Variant("dense", "all", "gradient", False, (), "every agent at scale 1 every step: ordinary backprop"),
    Variant("random_path", "random_path", "gradient", True, (),
            "control: a uniformly random eligible child at each level, same scales and trust as k1_full"),
):
    register_variant(_v)
