"""The manuscript behind `k1 paper`: `PAPERDIR/paper.md` and `PAPERDIR/numbers.json`.

The text is generated only from `RESULTS/summary.json`, `RESULTS/tables/*.md`, the
params file and `DATA/manifest.json` (figures are linked from `RESULTS/figures/`, listed
by its `figures.json`). Every sentence about a result is derived from the numbers: a
difference is called significant only if the Holm-adjusted p of the primary test is
below α = 1 − confidence; otherwise the paper says "no significant difference", and a
significant difference in the unexpected direction is reported as contradicting the claim.

Every number quoted in the prose is registered with its key path in summary.json and
written to `numbers.json` ({id: {source: [...], value, text}}), so a test can check the
paper against the results. The output has no timestamps: same inputs, same bytes.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from k1model.config import ModelConfig
from k1model.errors import DataError, K1Error
from k1model.io import write_json, write_text
from k1model.analysis.aggregate import load_summary
from k1model.analysis.settings import load_analysis_config
from k1model.config import HOLM_FAMILIES, TEST_NAMES
from k1model.report.tables import fmt_num, fmt_p

__all__ = ["Numbers", "Claim", "CLAIMS", "render_paper"]

#: tables embedded in the results section, in order (name → heading)
RESULT_TABLES: tuple[tuple[str, str], ...] = (
    ("forgetting", "Language modelling and forgetting"),
    ("lm", "Per-domain bpb and training loss"),
    ("sparsity", "Update sparsity"),
    ("attribution", "Attribution stability"),
    ("faults", "Planted faults"),
    ("cost", "Compute cost"),
    ("comparisons_key", "Key paired comparisons"),
)


class Numbers:
    """Quotes numbers from summary.json and remembers where each came from."""

    def __init__(self, summary: Mapping[str, Any]):
        self.summary = summary
        self.entries: dict[str, dict[str, Any]] = {}

    def get(self, *path: str) -> Any:
        node: Any = self.summary
        for key in path:
            if not isinstance(node, Mapping) or key not in node:
                return None
            node = node[key]
        return node

    def q(self, *path: str, p: bool = False) -> str:
        """The formatted number at `path` (recorded in numbers.json); "n/a" if absent or null."""
        value = self.get(*path)
        text = fmt_p(value) if p else fmt_num(value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.entries[".".join(path)] = {"source": list(path), "value": value, "text": text}
        return text

    def ci(self, variant: str, metric: str) -> str:
        """"mean [lo, hi]" of a metric for a variant."""
        mean = self.q(variant, metric, "mean")
        if self.get(variant, metric, "ci_low") is None:
            return mean
        return f"{mean} [{self.q(variant, metric, 'ci_low')}, {self.q(variant, metric, 'ci_high')}]"


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


CLAIMS: tuple[Claim, ...] = (
    Claim("less_forgetting", "forgetting", "k1_full", "dense",
          "sparse, attribution-guided updates forget less than dense backpropagation"),
    Claim("lm_quality", "final_avg_bpb", "k1_full", "dense",
          "K-1 ends with a lower average bpb over all domains than dense backpropagation"),
    Claim("attribution_not_sparsity", "forgetting", "k1_full", "random_path",
          "choosing the path by attribution forgets less than a random path of the same sparsity"),
    Claim("sparse_updates", "sparsity_param_fraction", "k1_full", "dense",
          "K-1 changes a smaller fraction of agent parameters per step than dense training"),
    Claim("fault_finding", "attr_fault_top1_hybrid", "k1_full", "chance",
          "hybrid attribution names a planted faulty agent (top-1) more often than chance"),
)


def _comparison(nums: Numbers, a: str, b: str, references: Sequence[str]) -> tuple[str, str] | None:
    """(reference, variant) keys under summary.comparisons for the pair a, b.

    The pair's entry is taken from the family of whichever of the two comes first in
    analysis.references (the same choice as the key-comparisons table).
    """
    comps = nums.get("comparisons") or {}
    for ref in references:
        if ref == a and b in (comps.get(a) or {}):
            return a, b
        if ref == b and a in (comps.get(b) or {}):
            return b, a
    return None


_TEST_SHORT = {"wilcoxon": "Wilcoxon", "ttest_paired": "paired t", "welch": "Welch t"}


def _overlap(nums: Numbers, a: str, b: str, metric: str) -> bool | None:
    lo_a, hi_a = nums.get(a, metric, "ci_low"), nums.get(a, metric, "ci_high")
    lo_b, hi_b = nums.get(b, metric, "ci_low"), nums.get(b, metric, "ci_high")
    if None in (lo_a, hi_a, lo_b, hi_b):
        return None
    return not (hi_a < lo_b or hi_b < lo_a)


def _chance_sentence(nums: Numbers, claim: Claim, cfg: Any, chance: float | None) -> tuple[str, str, str]:
    """A one-variant claim against a chance level: decided by whether the bootstrap CI excludes it."""
    stats_ = nums.get(claim.variant, claim.metric)
    if claim.variant not in nums.summary:
        text = f"{claim.variant} is not in experiment.variants, so this was not tested."
        return "not measured", text, f"The claim that {claim.statement} was not tested: {text}"
    if not stats_ or not stats_.get("n") or chance is None:
        text = f"`{claim.metric}` was not measured for {claim.variant}, so this could not be tested."
        return "not measured", text, f"The claim that {claim.statement} could not be tested: {text}"
    value = f"{claim.variant} {nums.ci(claim.variant, claim.metric)} vs chance {fmt_num(chance)}"
    lo, hi = stats_.get("ci_low"), stats_.get("ci_high")
    conf = f"{cfg.confidence:.0%}"
    if lo is not None and lo > chance:
        return "supported", f"above chance ({value}).", (
            f"{claim.variant}'s {claim.metric} was above chance: {value} (the {conf} bootstrap CI excludes chance), "
            f"which supports the claim that {claim.statement}.")
    if hi is not None and hi < chance:
        return "contradicted", f"below chance ({value}).", (
            f"{claim.variant}'s {claim.metric} was below chance: {value} (the {conf} bootstrap CI excludes chance), "
            f"which contradicts the claim that {claim.statement}.")
    return "no significant difference", f"not distinguishable from chance ({value}).", (
        f"There was no significant difference between {claim.variant}'s {claim.metric} and chance ({value}; the "
        f"{conf} bootstrap CI includes chance); the claim that {claim.statement} is not supported by these runs.")


def _claim_sentence(nums: Numbers, claim: Claim, cfg: Any, chance: float | None = None) -> tuple[str, str, str]:
    """(status, short, long) for one claim, all derived from summary.json.

    status ∈ supported, contradicted, no significant difference, not measured.
    """
    if claim.reference == "chance":
        return _chance_sentence(nums, claim, cfg, chance)
    info = nums.get("metrics", claim.metric) or {}
    unit = info.get("unit", "")
    unit_s = f" {unit}" if unit and unit not in ("fraction", "p") else ""
    absent = [v for v in (claim.variant, claim.reference) if v not in nums.summary]
    if absent:
        text = f"{' and '.join(absent)} {'is' if len(absent) == 1 else 'are'} not in experiment.variants, so this was not tested."
        return "not measured", text, f"The claim that {claim.statement} was not tested: {text}"
    a_stats, b_stats = nums.get(claim.variant, claim.metric), nums.get(claim.reference, claim.metric)
    if not a_stats or not b_stats or not a_stats.get("n") or not b_stats.get("n"):
        missing = [v for v, s in ((claim.variant, a_stats), (claim.reference, b_stats)) if not s or not s.get("n")]
        text = f"`{claim.metric}` was not measured for {', '.join(missing)}, so this could not be tested."
        return "not measured", text, f"The claim that {claim.statement} could not be tested: {text}"
    keys = _comparison(nums, claim.variant, claim.reference, cfg.references)
    a_txt, b_txt = nums.ci(claim.variant, claim.metric), nums.ci(claim.reference, claim.metric)
    values = f"{claim.variant} {a_txt}{unit_s} vs {claim.reference} {b_txt}{unit_s}"
    short_values = (f"{claim.variant} {nums.q(claim.variant, claim.metric, 'mean')} vs {claim.reference} "
                    f"{nums.q(claim.reference, claim.metric, 'mean')}{unit_s}")
    if keys is None:
        text = f"{claim.metric}: {values}; no paired comparison was computed (neither is in analysis.references)."
        return "not measured", text, text
    ref, var = keys
    base = ("comparisons", ref, var, claim.metric)
    entry = nums.get(*base) or {}
    test = cfg.primary_test
    p_key = f"{test}_p_holm"
    p_txt = nums.q(*base, p_key, p=True)
    tests = f"Holm-adjusted {_TEST_SHORT[test]} p {_relation(p_txt)}"
    short_tests = tests
    if test != "ttest_paired":
        tests += f"; paired t-test, Holm-adjusted p {_relation(nums.q(*base, 'ttest_paired_p_holm', p=True))}"
    direction = info.get("direction", "lower")
    diff = entry.get("mean_diff")
    # an entry holds (its variant − its reference); express it as claim.variant − claim.reference
    if diff is not None and var != claim.variant:
        diff = -diff
    p = entry.get(p_key)
    if p is None or diff is None:
        short = f"test undefined ({short_values})."
        return "no significant difference", short, (
            f"{claim.metric}: {values} ({tests}); the test was undefined, so the claim that "
            f"{claim.statement} is not supported.")
    a_lower = diff < 0
    word = "lower" if a_lower else "higher"
    a_better = a_lower if direction == "lower" else not a_lower
    if p < cfg.alpha:
        status = "supported" if a_better else "contradicted"
        verdict = "supports" if a_better else "contradicts"
        short = f"{claim.variant} had significantly {word} {claim.metric} ({short_values}; {short_tests})."
        return status, short, (
            f"{claim.variant} had significantly {word} {claim.metric} than {claim.reference} ({values}; {tests}), "
            f"which {verdict} the claim that {claim.statement}.")
    overlap = _overlap(nums, claim.variant, claim.reference, claim.metric)
    descriptive = ""
    if overlap is not None:
        descriptive = (f" Descriptively, {claim.variant}'s mean is {word} and the {cfg.confidence:.0%} bootstrap "
                       f"CIs {'overlap' if overlap else 'do not overlap'}.")
    extra = ""
    min_p, min_p_holm = entry.get("wilcoxon_min_p"), entry.get("wilcoxon_min_p_holm")
    if test == "wilcoxon" and min_p is not None and min_p >= cfg.alpha:
        extra = (f" With {entry.get('n_pairs')} paired seeds the smallest attainable Wilcoxon p is "
                 f"{nums.q(*base, 'wilcoxon_min_p', p=True)}, so this test could not have reached significance.")
    elif test == "wilcoxon" and min_p_holm is not None and min_p_holm >= cfg.alpha:
        extra = (f" With {entry.get('n_pairs')} paired seeds and a Holm family of "
                 f"{nums.q(*base, 'holm_family_size')} tests the smallest attainable adjusted Wilcoxon p is "
                 f"{nums.q(*base, 'wilcoxon_min_p_holm', p=True)}, so this test could not have reached significance.")
    short = f"no significant difference ({short_values}; {short_tests})."
    return "no significant difference", short, (
        f"There was no significant difference in {claim.metric} between {claim.variant} and {claim.reference} "
        f"({values}; {tests}); the claim that {claim.statement} is not supported by these runs."
        f"{descriptive}{extra}")


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(obj, Mapping):
        rows = []
        for k, v in obj.items():
            rows += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return rows or [(prefix, "{}")]
    if isinstance(obj, list) and any(isinstance(v, (Mapping, list)) for v in obj):
        rows = []
        for i, v in enumerate(obj):
            rows += _flatten(v, f"{prefix}[{i}]")
        return rows
    return [(prefix, json.dumps(obj) if not isinstance(obj, str) else obj)]


def _kv_table(rows: Sequence[tuple[str, str]], head: tuple[str, str] = ("key", "value")) -> str:
    def cell(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = [f"| {head[0]} | {head[1]} |", "|:---|:---|"] + [f"| `{cell(k)}` | {cell(v)} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def _relation(p_text: str) -> str:
    """"= 0.013" or "< 0.001": a formatted p-value after "p"."""
    return p_text.replace("<", "< ", 1) if p_text.startswith("<") else f"= {p_text}"


def _trust_budget_section(nums: Numbers, params: Mapping[str, Any], variants: Sequence[str]) -> str:
    """How much the trust cooldown lets the tree learn: an analytic bound from the params and the
    measured idle-step fractions from results (a mechanism that explains the other results)."""
    method = params.get("method", {})
    inc, decay, thr = (float(method.get(k, d)) for k, d in
                       (("trust_increase", 0.1), ("trust_decay", 0.995), ("trust_threshold", 0.7)))
    n_agents = _n_agents(params.get("model", {}).get("branching", []))
    if inc <= 0:
        return ""
    rate = min(1.0, thr * (1.0 - decay) / inc)  # steady state: t* = inc·r/(1−decay) must stay ≤ threshold
    idle = {v: nums.ci(v, "idle_step_fraction") for v in variants if nums.get(v, "idle_step_fraction") is not None}
    lines = ["### Trust budget\n",
             f"Trust rises by {inc:g} per update and decays by ×{decay:g} per step, so an agent updated at a "
             f"sustained rate r settles at trust ≈ {inc:g}·r/(1 − {decay:g}); it stays out of cooldown only if that "
             f"is ≤ {thr:g}, i.e. r ≤ {rate:.3g}. Each agent can therefore be updated on at most about "
             f"{100 * rate:.1f}% of steps, and the whole tree of {n_agents} agents on at most about "
             f"{rate * n_agents:.2f} agent-updates per step; since every error path passes through a level-1 agent, "
             "once those are all cooling down the drill-down stops at the root and nothing is updated."]
    if idle:
        lines.append("Measured fraction of steps in which no agent was updated (mean [95% CI]): "
                     + "; ".join(f"{v} {t}" for v, t in idle.items()) + ". "
                     "Shared parameters (embedding, positions, final norm, head) are updated at full rate every step "
                     "in every variant, so in idle steps only they learn; differences in forgetting between sparse "
                     "variants and `dense` must be read together with how much the agents learned at all "
                     "(final bpb, `no_trust`).")
    return "\n".join(lines) + "\n"


def _data_section(manifest: Mapping[str, Any]) -> str:
    """Per-domain origin, split sizes and checksums; the full manifest (document ids, file lists)
    stays in `manifest.json`, which the paper cites instead of reprinting."""
    tok = manifest.get("tokenizer", {})
    tok_text = (f"{tok.get('kind', '?')} with vocabulary {tok.get('vocab_size', '?')}" if isinstance(tok, Mapping)
                else str(tok))
    versions = ", ".join(f"{k} {v}" for k, v in sorted(dict(manifest.get("versions") or {}).items()))
    lines = [f"**Data** (from the data manifest: source `{manifest.get('source', '?')}`, tokenizer "
             f"{tok_text}; {versions}). Sizes in bytes; "
             "sha256 abbreviated to 12 hex digits; document lists and file checksums are in `manifest.json`.\n",
             "| domain | origin | train | valid | test | documents (train/valid/test) | sha256 (train/valid/test) |",
             "|:---|:---|---:|---:|---:|---:|:---|"]
    for name, dom in dict(manifest.get("domains") or {}).items():
        if not isinstance(dom, Mapping):
            continue
        origin = dom.get("origin") if isinstance(dom.get("origin"), Mapping) else {"description": dom.get("origin")}
        what = str(origin.get("description") or origin.get("package") or origin.get("kind", "")).split(":")[0].split(" (")[0]
        splits = dom.get("splits", {})
        get = lambda key: [splits.get(s, {}).get(key) for s in ("train", "valid", "test")]  # noqa: E731
        b, docs, sha = get("bytes"), get("documents"), get("sha256")
        size = lambda v: f"{v:,}" if isinstance(v, int) else "n/a"  # noqa: E731
        lines.append(f"| {name} | {what.replace('|', '/')} | {size(b[0])} | {size(b[1])} | {size(b[2])} | "
                     f"{'/'.join(str(d) for d in docs)} | {' / '.join(str(h)[:12] for h in sha)} |")
    rule = str(manifest.get("split_rule", "")).split(". ")[0]
    if rule:
        lines.append(f"\nSplit rule (abridged; full text in the manifest): {rule}.")
    return "\n".join(lines) + "\n"


def _n_agents(branching: Sequence[int]) -> int:
    return ModelConfig(branching=tuple(int(b) for b in branching)).num_agents if branching else 1


def _embed_table(md: str, number: int) -> str:
    """Turn the table file's bold caption line into "Table N: caption"."""
    lines = md.strip("\n").splitlines()
    if lines and lines[0].startswith("**") and lines[0].endswith("**"):
        lines[0] = f"*Table {number}: {lines[0].strip('*')}*"
    return "\n".join(lines) + "\n"


def _rel(target: Path, start: Path) -> str:
    return Path(os.path.relpath(target.resolve(), start.resolve())).as_posix()


def render_paper(params: str | Path | Mapping[str, Any], results: str | Path, data: str | Path,
                 out: str | Path) -> dict[str, Any]:
    """Write paper.md and numbers.json into `out`; returns {"files": [...], "claims": {...}}."""
    cfg = load_analysis_config(params)
    results, data, out = Path(results), Path(data), Path(out)
    summary_path, manifest_path = results / "summary.json", data / "manifest.json"
    missing = [p for p in (summary_path, results / "comparisons.json", manifest_path) if not p.is_file()]
    missing += [results / "tables" / f"{n}.md" for n, _ in RESULT_TABLES if not (results / "tables" / f"{n}.md").is_file()]
    if missing:
        raise K1Error("cannot render the paper, missing: " + ", ".join(str(p) for p in missing)
                      + " (run `k1 prepare` and `k1 aggregate` first)")
    summary = load_summary(results)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(f"{manifest_path} is not valid JSON: {err}") from err
    p = cfg.params
    nums = Numbers(summary)
    variants = [v for v in cfg.variants if v in summary]
    others = [v for v in variants if v != "k1_full"]
    n_seeds = nums.q("n_seeds")
    conf = f"{cfg.confidence:.0%}"
    method, model, train = p.get("method", {}) or {}, p.get("model", {}) or {}, p.get("train", {}) or {}
    branching = model.get("branching") or []
    domains = (p.get("data", {}) or {}).get("domains") or []

    # ---- claims
    claims = {}
    for c in CLAIMS:
        status, short, sentence = _claim_sentence(nums, c, cfg, 1.0 / _n_agents(branching) if branching else None)
        claims[c.name] = {"status": status, "short": short, "sentence": sentence, "metric": c.metric,
                          "variant": c.variant, "reference": c.reference}
    tested = {k: v for k, v in claims.items() if v["status"] != "not measured"}
    supported = [k for k, v in tested.items() if v["status"] == "supported"]
    against = [k for k, v in tested.items() if v["status"] == "contradicted"]
    null = [k for k, v in tested.items() if v["status"] == "no significant difference"]

    L: list[str] = []
    L.append("# K-1: hierarchical error attribution with sparse, trust-gated updates — "
             "an ablation study across seeds\n")
    L.append("*Generated by `k1 paper` from `results/summary.json`, `results/tables/`, the params file and the "
             "data manifest. Do not edit by hand.*\n")

    # ---- abstract
    L.append("## Abstract\n")
    L.append(
        f"K-1 trains a tree of small transformer agents and, at every step, updates only the agents on the path "
        f"blamed for the error, with proportional learning rates and a trust-based cooldown. We compare it with "
        f"{len(others)} other variant{'s' if len(others) != 1 else ''} ({', '.join(others)}) on a "
        f"continual-learning sequence of {len(domains)} domains ({' → '.join(domains)}), with {n_seeds} seeds "
        f"per variant, {conf} stratified-bootstrap confidence intervals and Holm-corrected paired tests "
        f"(primary test: {TEST_NAMES[cfg.primary_test]}, α = {cfg.alpha:g}). "
        f"Claims tested: {len(tested)} of {len(claims)}; supported: {len(supported)}, contradicted: {len(against)}, "
        f"no significant difference: {len(null)}.\n")
    for c in CLAIMS:
        L.append(f"- *{c.statement[0].upper()}{c.statement[1:]}*: {claims[c.name]['short']}")
    L.append("")

    # ---- method
    scales = method.get("path_scales", [])
    L.append("## Method\n")
    L.append(
        f"**Model.** Tokens (UTF-8 bytes) pass a shared embedding with learned positions, then a tree of agents "
        f"with branching {branching} ({_n_agents(branching)} agents), a final LayerNorm and a shared LM head. "
        f"Every agent is a pre-LN causal transformer block (width {model.get('embed_dim')}, "
        f"{model.get('num_heads')} heads, MLP width {model.get('hidden_dim')}); the root reads the embeddings, "
        f"every other agent its parent's output, and the output is the mean of the leaves.\n")
    L.append(
        "**Attribution.** Each step computes every agent's gradient norm g_k; every "
        f"{method.get('loo_interval')} steps a leave-one-out pass measures Δ_k = loss without agent k − loss "
        "with it. The hybrid score multiplies g_k by a weight that grows as Δ_k falls below zero.\n")
    L.append(
        f"**Selection and updates.** From the root, the drill-down moves to the highest-scoring child not in "
        f"cooldown; the last agent of this error path is the culprit. Learning-rate scales along the path are "
        f"{scales} (culprit first; the last value repeats for further ancestors); scales multiply the AdamW "
        f"update, and agents with scale 0 are left bit-for-bit untouched. Trust rises by "
        f"{method.get('trust_increase')} per update, decays by ×{method.get('trust_decay')} per step, and an "
        f"agent with trust above {method.get('trust_threshold')} is in cooldown.\n")
    L.append(
        "**Variants.** `k1_full` (all of the above), `flat_topk` (no hierarchy: top-K agents, K = tree depth), "
        "`no_trust` (no cooldown), `no_loo` (gradient scores only), `dense` (every agent, every step: ordinary "
        "backpropagation on the same architecture) and `random_path` (a random root-to-leaf path with the same "
        "scales: sparsity without attribution). All share architecture, data order, step budget, optimizer and seeds.\n")

    # ---- setup
    L.append("## Experimental setup\n")
    L.append(
        f"Domains are trained in sequence ({' → '.join(domains)}), {train.get('steps_per_phase')} steps each, "
        f"batch size {train.get('batch_size')}, context {model.get('max_seq_len')}; after every phase every domain "
        f"is evaluated on held-out data, giving R[i, j] = bits per byte on domain j after phase i. Forgetting = "
        f"final − best earlier bpb (Chaudhry et al. 2018) and BWT = mean_j (R[T, j] − R[j, j]) (Lopez-Paz & Ranzato "
        f"2017), averaged over all but the last domain; FWT = mean_j (R[j−1, j] − R0[j]) against the untrained "
        f"model. Lower bpb is better, so positive forgetting/BWT means forgetting and negative FWT means transfer "
        f"helped. Seeds {list(cfg.seeds)} were fixed in the params before any run.\n")
    L.append(
        f"**Statistics.** Per metric and variant: mean, median and interquartile mean (Agarwal et al. 2021) with "
        f"{conf} percentile bootstrap CIs ({cfg.bootstrap_resamples} resamples of seeds within each variant, "
        f"rng seed {cfg.rng_seed}). Each variant is compared with {', '.join(cfg.references)} per metric: "
        f"Wilcoxon signed-rank and paired t-test on the seeds both have, Welch's t-test, Hedges' g (unpaired and "
        f"paired) and the probability of improvement. p-values are Holm-corrected within each family "
        f"({HOLM_FAMILIES[cfg.holm_family]}).\n")
    L.append("**Hyperparameters** (the complete params file):\n")
    L.append(_kv_table(_flatten(p.to_dict(params_only=True))))
    L.append(_data_section(manifest))

    # ---- results
    L.append("## Results\n")
    L.append("| claim | status |\n|:---|:---|")
    L += [f"| {c.statement} | {claims[c.name]['status']} |" for c in CLAIMS]
    L.append("")
    for c in CLAIMS:
        L.append(f"- **{c.name}.** {claims[c.name]['sentence']}")
    L.append("")
    L.append(_trust_budget_section(nums, p, variants))
    L.append("")
    fig_index_path = results / "figures" / "figures.json"
    figures = {}
    if fig_index_path.is_file():
        figures = json.loads(fig_index_path.read_text(encoding="utf-8")).get("figures", {})
    for i, (name, heading) in enumerate(RESULT_TABLES, start=1):
        L.append(f"### {heading}\n")
        L.append(_embed_table((results / "tables" / f"{name}.md").read_text(encoding="utf-8"), i))
    L.append(f"The complete per-metric table (mean, median and IQM with CIs) is "
             f"[`tables/summary.md`]({_rel(results / 'tables' / 'summary.md', out)}), all comparisons with raw and "
             f"Holm-adjusted p-values are [`tables/comparisons.md`]({_rel(results / 'tables' / 'comparisons.md', out)}), "
             f"and every run's scalars are in [`tidy.csv`]({_rel(results / 'tidy.csv', out)}).\n")
    if figures:
        L.append("### Figures\n")
        for j, (name, f) in enumerate(figures.items(), start=1):
            L.append(f"![Figure {j}: {f['caption']}]({_rel(results / 'figures' / f['png'], out)})\n")
            L.append(f"*Figure {j}: {f['caption']}* ([PDF]({_rel(results / 'figures' / f['pdf'], out)}))\n")
    else:
        L.append("*No figures were found (`k1 figures` has not been run for these results).*\n")

    # ---- limitations
    L.append("## Limitations\n")
    n = int(summary.get("n_seeds") or 0)
    lim = []
    min_p = 2.0 ** (1 - n) if n else 1.0
    entries = [e for by_var in (summary.get("comparisons") or {}).values() for by_m in by_var.values()
               for e in by_m.values() if e.get("wilcoxon_p") is not None]
    blocked = [e for e in entries if (e.get("wilcoxon_min_p_holm") or 1.0) >= cfg.alpha]
    if cfg.primary_test == "wilcoxon" and min_p >= cfg.alpha:
        lim.append(f"With {n_seeds} seeds the smallest two-sided Wilcoxon p is {fmt_p(min_p)} ≥ α = {cfg.alpha:g}: "
                   "no difference can be significant under the primary test in this profile, and the results "
                   "are a smoke test of the pipeline rather than evidence (use the paper profile with ≥ 10 seeds).")
    elif cfg.primary_test == "wilcoxon" and blocked:
        lim.append(f"{len(blocked)} of {len(entries)} comparisons could not reach significance under the primary "
                   f"test whatever the data: with {n_seeds} seeds the smallest Wilcoxon p is {fmt_p(min_p)}, and Holm "
                   f"multiplies it by the family size ({HOLM_FAMILIES[cfg.holm_family]}). "
                   + ("A smaller family (`analysis.holm_family: reference_metric`), more seeds "
                      if cfg.holm_family == "reference" else "More seeds ")
                   + "or the paired t-test as primary test (`analysis.primary_test`) would change that; such "
                   "choices must be fixed before looking at the results.")
    lim.append(f"Holm families: {HOLM_FAMILIES[cfg.holm_family]}; this is conservative, and with few seeds even "
               f"large effects may not survive it. Bootstrap CIs over {n_seeds} seeds are themselves uncertain.")
    lim.append(f"Scale: {_n_agents(branching)} agents of width {model.get('embed_dim')}, "
               f"{train.get('steps_per_phase')} steps per domain, {len(domains)} domains; effects may differ "
               "for larger models, longer training or other domain orders.")
    failed = summary.get("failed_runs") or []
    if failed:
        lim.append(f"{len(failed)} run(s) failed and are excluded from the statistics: "
                   + ", ".join(f"{f['variant']}/seed{f['seed']} ({f['status']})" for f in failed) + ".")
    else:
        lim.append("No run failed.")
    for note in summary.get("notes") or []:
        lim.append(f"Note from the aggregation: {note}.")
    L += [f"- {x}" for x in lim]
    L.append("")

    # ---- reproducibility
    prov = summary.get("provenance") or {}
    L.append("## Reproducibility\n")
    L.append("Everything above is rebuilt from scratch by `snakemake --cores all` (or `dvc repro`); each step is one "
             "`k1` command: `k1 prepare` → `k1 train` (every variant × seed) → `k1 attribute` → `k1 aggregate` → "
             "`k1 figures` → `k1 paper`.\n")
    L.append(_kv_table([
        ("seeds", json.dumps(list(cfg.seeds))),
        ("variants", json.dumps(list(cfg.variants))),
        ("analysis", json.dumps({k: v for k, v in (p.get("analysis") or {}).items()}, sort_keys=True)),
        ("config hashes", json.dumps(prov.get("config_hashes", []))),
        ("devices", json.dumps(prov.get("devices", []))),
        ("versions", json.dumps(prov.get("versions", {}), sort_keys=True)),
    ], head=("item", "value")))
    L.append("## References\n")
    L += ["- R. Agarwal, M. Schwarzer, P. S. Castro, A. Courville, M. G. Bellemare. Deep reinforcement learning at "
          "the edge of the statistical precipice. NeurIPS 2021.",
          "- A. Chaudhry, P. K. Dokania, T. Ajanthan, P. H. S. Torr. Riemannian walk for incremental learning: "
          "understanding forgetting and intransigence. ECCV 2018.",
          "- D. Lopez-Paz, M. Ranzato. Gradient episodic memory for continual learning. NeurIPS 2017.",
          "- S. Holm. A simple sequentially rejective multiple test procedure. Scand. J. Statist. 1979.",
          "- L. V. Hedges. Distribution theory for Glass's estimator of effect size. J. Educ. Statist. 1981.", ""]

    text = "\n".join(L).rstrip("\n") + "\n"
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "paper.md", text)
    write_json(out / "numbers.json", {"numbers": dict(sorted(nums.entries.items())), "claims": claims})
    return {"files": [str(out / "paper.md"), str(out / "numbers.json")], "claims": claims}
