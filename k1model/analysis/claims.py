"""The claims the study declares: hypotheses of the K-1 idea (a variant beats a reference on a metric, or beats
chance) and design constants that are measured, not tested. The core claims are here; each strategy declares
its own (`Strategy.claims`, k1model/config/registry.py). `k1 aggregate` tests them (`claim_tests.py`,
`study_claims.py`) and the paper states what the numbers say about them (`k1model.report.claims`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from k1model.config.registry import STRATEGIES

__all__ = ["CORE_CLAIMS", "Claim", "all_claims", "paired_claims"]


@dataclass(frozen=True)
class Claim:
    """A hypothesis of the K-1 idea: `variant` beats `reference` on `metric`.

    With reference "chance" the variant's CI is compared with the chance level of the metric
    (1 / number of agents for top-1 fault accuracy), since no other variant is the baseline.
    """

    name: str
    metric: str
    variant: str
    reference: str
    statement: str
    kind: str = "test"  # "property": a design constant, reported as measured, never tested


#: the claims about the core variants; each strategy declares its own (`Strategy.claims`), see `all_claims`
CORE_CLAIMS: tuple[Claim, ...] = (
    Claim("less_forgetting", "forgetting", "k1_full", "dense",
          "sparse, attribution-guided updates forget less than dense backpropagation"),
    Claim("lm_quality", "final_avg_bpb", "k1_full", "dense",
          "K-1 ends with a lower average bpb over all domains than dense backpropagation"),
    Claim("attribution_not_sparsity", "forgetting", "k1_full", "random_path",
          "choosing the path by attribution forgets less than a random path of the same sparsity"),
    Claim("sparse_updates", "sparsity_param_fraction", "k1_full", "dense",
          "K-1 changes a smaller fraction of agent parameters per step than dense training", kind="property"),
    Claim("fault_finding", "attr_fault_top1_hybrid", "k1_full", "chance",
          "hybrid attribution names a planted faulty agent (top-1) more often than chance"),
)


def all_claims() -> tuple[Claim, ...]:
    """Every claim the paper tests: the core claims, then each registered strategy's (DESIGN.md §7, §9), in
    registration order."""
    return CORE_CLAIMS + tuple(Claim(**c) for s in STRATEGIES.values() for c in s.claims)


def paired_claims() -> tuple[Claim, ...]:
    """The claims about a paired comparison (the ones re-tested per order and after tuning; properties included)."""
    return tuple(c for c in all_claims() if c.reference != "chance")


def __getattr__(name: str) -> Any:  # CLAIMS, PAIRED_CLAIMS: collected from the registry when read
    if name == "CLAIMS":
        return all_claims()
    if name == "PAIRED_CLAIMS":
        return paired_claims()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
