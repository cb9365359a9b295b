"""What the analysis reads from a params file: the runs it expects (`experiment`) and its keys
(`analysis`), as one read-only view over the validated `Params` (no second copy of any key)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from k1model.analysis.intervals import INTERVAL_METHODS
from k1model.analysis.power import POWER
from k1model.config import HOLM_FAMILIES, Params, load_params
from k1model.errors import K1Error


@dataclass(frozen=True)
class AnalysisSettings:
    params: Params

    @property
    def variants(self) -> tuple[str, ...]:
        return self.params.experiment.variants

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.params.experiment.seeds

    @property
    def scheme(self) -> str:
        """experiment.init_seed: what makes a unit of analysis (`units.py`)."""
        return self.params.experiment.init_seed

    @property
    def order_blocks(self) -> bool:
        """Whether paired comparisons block on the order: listed orders yes, drawn orders no (`units.py`)."""
        from k1model.analysis.units import orders_are_blocks

        return orders_are_blocks(self.params)

    def __getattr__(self, key: str) -> Any:  # rng_seed, bootstrap_resamples, confidence, alpha, references, ...
        if key.startswith("__"):
            raise AttributeError(key)
        return getattr(self.params.analysis, key)

    def as_dict(self) -> dict[str, Any]:
        a = self.params.analysis
        return {
            "variants": list(self.variants), "seeds": list(self.seeds), "init_seed": self.scheme,
            "rng_seed": a.rng_seed,
            "bootstrap_resamples": a.bootstrap_resamples, "confidence": a.confidence,
            "alpha": a.alpha, "allow_failed": a.allow_failed,
            "references": list(a.references), "primary_test": a.primary_test,
            "holm_family": a.holm_family,
            "holm_family_meaning": HOLM_FAMILIES[a.holm_family],
            "intervals": dict(INTERVAL_METHODS),
            "bootstrap": "percentile, stratified by variant: only the probability-of-improvement CI (descriptive)",
            "holm_family_claims": "the declared claims tested, as specified and tuned together (verdicts); "
                                  "holm_family applies to the exploratory comparisons tables",
            "equivalence_margins": dict(a.equivalence_margins), "power": POWER,
            "power_level": "alpha / m for a Holm family of m tests (the first step of Holm's procedure)",
            "forgetting_reference": a.forgetting_reference, "forgetting_margin": a.forgetting_margin,
        }


def load_analysis_config(params: str | Path | Mapping[str, Any] | Params) -> AnalysisSettings:
    """The analysis view of a params file (path, mapping or Params); at least 2 seeds are needed."""
    p = load_params(params, required=("experiment", "analysis"))
    seeds = p.experiment.seeds
    units = len(seeds) * (len(p.orders) if p.experiment.init_seed == "per_order" else 1)
    if units < 2:
        raise K1Error(
            f"params: experiment.seeds has {len(seeds)} seed(s) ({list(seeds)}) in {len(p.orders)} order(s) "
            f"(init_seed {p.experiment.init_seed}): {units} initialisation(s) per variant; across-run statistics "
            "need at least 2 (3 seeds in the default profile, ≥ 10 initialisations for the paper)")
    return AnalysisSettings(p)
