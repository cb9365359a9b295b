"""`analysis:` statistics (`k1 aggregate`, figures, paper) and attribution probes (`k1 attribute`)."""
from __future__ import annotations

from dataclasses import dataclass

from k1model.config.checks import Boolean, Integer, ListOf, MapOf, Nullable, Number, OneOf, Section, Text, setting
from k1model.config.experiment import VARIANT

#: the tests behind "significant" statements, and which p-values are Holm-corrected together
TEST_NAMES: dict[str, str] = {
    "wilcoxon": "Wilcoxon signed-rank (paired)",
    "ttest_paired": "paired t-test",
    "welch": "Welch t-test (unpaired)",
}
HOLM_FAMILIES: dict[str, str] = {
    "reference": "all comparisons (every variant × every metric) against one reference, per test",
    "reference_metric": "the comparisons of every variant against one reference on one metric, per test",
}
PROBES = "probes"  # the group of keys `k1 attribute` reads (besides rng_seed)
_POSITIVE = Nullable(Number(0.0, open_low=True))
METRIC = Text(r"[a-z0-9_]+", "a metric name")
#: equivalence margins used when a params file declares none (bits per byte): a difference of 0.05 bpb
#: in average bpb or forgetting is about 1 % of a byte model's bpb, below what the study calls a change
#: the reference floors by name (k1model.analysis.ngram: n = 1 .. 7)
FLOOR_NAMES = ("unigram", "bigram", "trigram", "4-gram", "5-gram", "6-gram", "7-gram")
DEFAULT_EQUIVALENCE_MARGINS = {"final_avg_bpb": 0.05, "forgetting": 0.05, "bwt": 0.05}


@dataclass(frozen=True)
class AnalysisConfig(Section):
    """`analysis:` the statistics of `k1 aggregate` and the attribution probes of `k1 attribute`."""
    SECTION = "analysis"
    DESCRIPTION = ("statistics (k1 aggregate, figures, paper) and attribution probes (k1 attribute); "
                   "rng_seed seeds both")

    rng_seed: int = setting(0, Integer(0), "seed of every bootstrap and probe", group=PROBES)
    # --- statistics (k1 aggregate)
    bootstrap_resamples: int = setting(2000, Integer(1), "bootstrap resamples per CI")
    confidence: float = setting(0.95, Number(0.0, 1.0, True, True),
                                "CI level; 1 - confidence is the significance level of every test")
    allow_failed: bool = setting(False, Boolean(),
                                 "aggregate without failed runs (they are listed, never silently dropped)")
    references: tuple[str, ...] = setting(("k1_full", "dense"), ListOf(VARIANT, min_len=1, unique=True),
                                          "variants every other variant is compared against (paired tests)")
    primary_test: str = setting("wilcoxon", OneOf(tuple(TEST_NAMES)),
                                "the test behind every 'significant' statement (Holm-adjusted)")
    holm_family: str = setting("reference_metric", OneOf(tuple(HOLM_FAMILIES)),
                               "which p-values are Holm-corrected together: reference_metric = every variant "
                               "against one reference on one metric; reference = every variant x every metric")
    equivalence_margins: dict[str, float] = setting(
        check=MapOf(METRIC, Number(0.0, open_low=True), "a mapping metric -> margin > 0 (in the metric's units)"),
        factory=lambda: dict(DEFAULT_EQUIVALENCE_MARGINS),
        doc="TOST equivalence margin m per metric, declared before any run: a claim that is not significant is "
            "'equivalent within ±m' when the Holm-adjusted TOST p is below alpha; metrics without a margin get "
            "no TOST")
    forgetting_reference: str = setting("dense", VARIANT,
                                        "the reference whose forgetting decides whether the benchmark forgets at "
                                        "all (the validity check of every forgetting claim)")
    forgetting_margin: float = setting(0.2, Number(0.0, open_low=True),
                                       "bpb; the benchmark forgets when the reference's mean forgetting is at least "
                                       "this with its interval above 0; otherwise forgetting claims are "
                                       "'untestable on this benchmark'")
    competence_floor: str = setting("trigram", OneOf(FLOOR_NAMES),
                                    "the n-gram floor the reference (forgetting_reference) must reach on every "
                                    "domain right after its phase (R[j][j], interval at or below the floor's "
                                    "held-out bpb); otherwise every claim of the profile is 'not competent'")
    floor_orders: int = setting(5, Integer(1, 7), "k1 floors: byte n-gram reference floors of orders 1 to this, "
                                "fitted on each domain's training split (held-out bpb on valid and test)")
    # --- attribution probes (k1 attribute)
    probe_batch_size: int | None = setting(None, Nullable(Integer(1)), "null = train.batch_size", group=PROBES)
    resample_batches: int = setting(12, Integer(2), "fresh batches for the resampling stability of the culprit path",
                                    group=PROBES)
    fault_agents: int | None = setting(None, Nullable(Integer(1)),
                                       "null = plant a fault in every agent; an integer caps the fault set",
                                       group=PROBES)
    fault_batches: int = setting(2, Integer(1), "fixed validation batches per planted fault", group=PROBES)
    fault_loss_increase: float | None = setting(0.3, _POSITIVE, "nats; every planted fault is calibrated to raise "
                                                "the loss this much", group=PROBES)
    fault_noise: float | None = setting(None, _POSITIVE, "fixed noise amplitude (units of the weight RMS) "
                                        "instead of calibration", group=PROBES)
    randomisation_batches: int = setting(4, Integer(1), "batches of the cascading randomisation check",
                                         group=PROBES)
    windows: int = setting(10, Integer(2), "windows of the step log for the rank stability over time",
                           group=PROBES)
    window_steps: int | None = setting(None, Nullable(Integer(1)),
                                       "null = `windows` equal parts; an integer = windows of that many steps",
                                       group=PROBES)
    permutations: int = setting(1000, Integer(1), "permutations of the specialisation test", group=PROBES)

    def validate(self) -> None:
        if FLOOR_NAMES.index(self.competence_floor) + 1 > self.floor_orders:
            raise self.invalid("competence_floor", f"a floor of order <= analysis.floor_orders "
                                                   f"({self.floor_orders}): raise floor_orders or pick a lower floor")
        if self.fault_loss_increase is None and self.fault_noise is None:
            raise self.invalid("fault_loss_increase", "a number > 0 when analysis.fault_noise is null: with both "
                                                      "null no fault can be planted (fault_loss_increase calibrates "
                                                      "the damage, fault_noise fixes it)")

    @property
    def alpha(self) -> float:
        """Significance level of every "significant" statement: 1 − confidence."""
        return round(1.0 - self.confidence, 12)

    @classmethod
    def probe_keys(cls) -> list[str]:
        """The keys `k1 attribute` reads: a change to them reruns the probes, not training."""
        return cls.keys_in_group(PROBES)
