"""The variants of the study (DESIGN.md §2.4), each a composition of registered parts.

One training loop serves all of them. A variant names its selector (`selection.SELECTORS`:
who gets updated, by how much), its scorer (`scoring.SCORERS`: gradient or hybrid
gradient x LOO), whether the trust cooldown gates eligibility, and the training plugins it adds
(a strategy's plugin, `k1model.config.registry.plugin_class`: extra loss terms, batch sources, phase
hooks). Everything else (architecture, data order, optimiser, step budget, seeds) is shared.

The registry is plain data at the bottom (`k1model.config.registry.VARIANTS`, the same mapping as `VARIANTS`
here): it registers `CORE_VARIANTS` below first, then every strategy's (docs/architecture.md, "How to add a
strategy"), on first lookup. No torch at import: the run plan reads a variant's keys (`Variant.reads`).
"""
from __future__ import annotations

from dataclasses import dataclass

from k1model.config.registry import VARIANTS, get_variant, plugin_keys, register_variant
from k1model.method.scoring import get_scorer
from k1model.method.selection import SELECTOR_KEYS
from k1model.method.trust import COOLDOWN_KEYS

__all__ = ["CORE_VARIANTS", "OPTIMIZER_KEYS", "VARIANTS", "Variant", "get_variant", "register_variant"]

#: method keys every variant's optimiser reads
OPTIMIZER_KEYS = ("learning_rate", "weight_decay", "betas", "eps", "grad_clip", "shared_update")


@dataclass(frozen=True)
class Variant:
    """A variant: which selector and scorer choose the update, whether the trust cooldown gates it, and the
    plugins (strategies) it adds to the training loop."""

    name: str
    selector: str  # key of k1model.method.selection.SELECTORS
    scorer: str  # key of k1model.method.scoring.SCORERS
    cooldown: bool  # the trust cooldown gates eligibility (trust is tracked either way)
    plugins: tuple[str, ...] = ()  # names of registered plugins (a strategy's plugin has the strategy's name)
    description: str = ""

    def reads(self) -> frozenset[str]:
        """The method keys that can change this variant's training: the optimiser's, its selector's,
        its scorer's, the cooldown's (when it gates) and its plugins'. A sweep point that only
        changes keys outside this set is the same run as the base point for this variant."""
        keys = set(OPTIMIZER_KEYS) | set(SELECTOR_KEYS[self.selector]) | set(get_scorer(self.scorer).keys)
        if self.cooldown:
            keys |= set(COOLDOWN_KEYS)
        for name in self.plugins:
            keys |= set(plugin_keys(name))
        return frozenset(keys)

    @property
    def uses_loo(self) -> bool:
        """The scorer needs leave-one-out deltas (so the trainer computes them every loo_interval steps)."""
        return get_scorer(self.scorer).needs_loo


#: the core variants (DESIGN.md §2.4), registered first; the continual-learning baselines and k1_grow come with
#: their strategies (k1model/strategies)
CORE_VARIANTS = (
    Variant("k1_full", "drilldown", "hybrid", True, (),
            "drill-down + proportional scales + trust + hybrid (gradient + LOO) scores"),
    Variant("flat_topk", "topk", "hybrid", True, (),
            "no hierarchy: the K highest-scoring eligible agents get scale 1 (K = tree depth)"),
    Variant("no_trust", "drilldown", "hybrid", False, (), "k1_full without the trust cooldown"),
    Variant("no_loo", "drilldown", "gradient", True, (), "k1_full with gradient-only scores"),
    Variant("dense", "all", "gradient", False, (), "every agent at scale 1 every step: ordinary backprop"),
    Variant("random_path", "random_path", "gradient", True, (),
            "control: a uniformly random eligible child at each level, same scales and trust as k1_full"),
    Variant("throttled", "throttled", "gradient", False, (),
            "control: dense whose agents are all updated on a random share of steps (method.throttle_share, "
            "K-1's agent update rate), the shared weights as in K-1: K-1's rate of updates without its choice"),
)
