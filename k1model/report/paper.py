"""The manuscript behind `k1 paper`: `PAPERDIR/paper.md` and `PAPERDIR/numbers.json`.

The text is generated only from `RESULTS/summary.json`, `RESULTS/tables/*.md`, the
params file and `DATA/manifest.json` (figures are linked from `RESULTS/figures/`, listed
by its `figures.json`). Every sentence about a result is derived from the numbers: each declared
claim's status was decided by `k1 aggregate` (`analysis/claim_tests.py`: significant only if the
primary test's p, Holm-adjusted over the declared claims, is below α = 1 − confidence; otherwise
"equivalent" (a TOST with the power to show it) or "inconclusive" with the effect the study could have
detected; a significant difference in the unexpected direction contradicts the claim, a forgetting
claim on a benchmark where the reference does not forget is "untestable", a design constant is
"measured").

Every number quoted in the prose is registered with its key path in summary.json and
written to `numbers.json` ({id: {source: [...], value, text}}), so a test can check the
paper against the results. The output has no timestamps: same inputs, same bytes.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from k1model.errors import DataError, K1Error
from k1model.io import read_output_json, write_json, write_text
from k1model.analysis.aggregate import read_summary
from k1model.analysis.settings import load_analysis_config
from k1model.config import TEST_NAMES
from k1model.analysis.claim_tests import TESTED
from k1model.analysis.claims import CLAIMS, Claim, all_claims
from k1model.report.competence_sections import competence_banner, competence_section, floors_paragraph, frontier_section
from k1model.report.claims import STATUSES, Numbers, _claim_sentence
from k1model.report.design_sections import (design_paragraph, divergence_section, properties_section,
                                            statistics_paragraph)
from k1model.report.design_sections import limitations as design_limitations
from k1model.report.forgetting_sections import (decomposition_section, figures_paragraph, loo_section,
                                                validity_section)
from k1model.report.study_sections import (baselines_paragraph, budget_paragraph, idle_by_rule, orders_section,
                                           sweep_section, tuned_section, variants_paragraph)
from k1model.report.sections import (_data_section, _embed_table, _flatten, _kv_table, _n_agents, _rel,
                                     _trust_budget_section)
from k1model.report.structure_sections import growing_variants, structure_section

__all__ = ["Numbers", "Claim", "CLAIMS", "render_paper"]

#: tables embedded in the results section, in order (name → heading)
RESULT_TABLES: tuple[tuple[str, str], ...] = (
    ("forgetting", "Language modelling and forgetting"),
    ("forgetting_domains", "Forgetting per domain and domain order"),
    ("decomposition", "Where forgetting lives"),
    ("lm", "Per-domain bpb and training loss"),
    ("sparsity", "Update sparsity"),
    ("attribution", "Attribution stability"),
    ("faults", "Planted faults"),
    ("cost", "Compute cost"),
    ("claims", "The declared claims"),
)
#: tables of the study's other parts, embedded when present
STUDY_TABLES: tuple[tuple[str, str], ...] = (
    ("tuned", "Tuned comparison"),
    ("orders", "Per domain order"),
    ("sweep", "Sensitivity sweep"),
    ("frontier", "Stability-plasticity frontiers"),
)


def check_summary(summary: Mapping[str, Any], cfg: Any, claims: Sequence[Claim], path: Path) -> None:
    """Refuse a summary.json that is not the aggregate of these params (a DataError naming what is missing): a
    variant, a claim's metric or a part of the study it lacks would read "not tested" or "not measured" in a
    paper whose own tables list it; another run plan's seeds or variants would be reported as these params'.
    Attribution metrics may be absent where the summary lists runs without attribution.json (the paper says so)."""
    p, problems = cfg.params, []
    absent = [v for v in cfg.variants if not isinstance(summary.get(v), Mapping)]
    if absent:
        problems.append(f"it lacks variant(s) {', '.join(absent)} of experiment.variants")
    config = summary.get("config")
    if not isinstance(config, Mapping):
        problems.append("it records no analysis config")
    else:
        for key, want in (("variants", list(cfg.variants)), ("seeds", list(cfg.seeds))):
            if key in config and list(config[key]) != want:
                problems.append(f"it was aggregated for {key} {list(config[key])}, the params give {want}")
    measured = summary.get("metrics") if isinstance(summary.get("metrics"), Mapping) else {}
    about = [c.metric for c in claims if c.variant in cfg.variants and c.reference in (*cfg.variants, "chance")]
    unprobed = bool(summary.get("missing_attribution"))  # the summary says why attribution metrics are absent
    lacking = [m for m in dict.fromkeys(about) if m not in measured and not (unprobed and m.startswith("attr_"))]
    if lacking:
        problems.append(f"it lacks metric(s) {', '.join(lacking)} that claims are about")
    parts = {"tuned": p.tuning.active, "sweep": p.sweep.active, "by_order": len(p.orders) > 1}
    lacking_parts = [name for name, wanted in parts.items() if wanted and name not in summary]
    if lacking_parts:
        problems.append(f"it lacks the part(s) {', '.join(lacking_parts)} the params define")
    tested = {"": summary.get("claims")}  # every declared claim's test (`k1 aggregate` decides each status)
    if p.tuning.active and isinstance(summary.get("tuned"), Mapping):
        tested["tuned "] = summary["tuned"].get("claims")
    for part, entries in tested.items():  # (attribution runs on the main comparison only: no chance claim tuned)
        untested = [c.name for c in claims if not isinstance((entries or {}).get(c.name), Mapping)
                    and not (part and c.reference == "chance")]
        if untested:
            problems.append(f"it lacks the {part}claim(s) {', '.join(untested)}")
    if problems:
        raise DataError(f"{path} does not match the params: {'; '.join(problems)}; rerun `k1 aggregate` with these "
                        f"params (`k1 aggregate --params P --results {path.parent}`), then `k1 paper`")


REFERENCES = (
    "- R. Agarwal, M. Schwarzer, P. S. Castro, A. Courville, M. G. Bellemare. Deep reinforcement learning at "
    "the edge of the statistical precipice. NeurIPS 2021.",
    "- A. Chaudhry, P. K. Dokania, T. Ajanthan, P. H. S. Torr. Riemannian walk for incremental learning: "
    "understanding forgetting and intransigence. ECCV 2018.",
    "- D. Lopez-Paz, M. Ranzato. Gradient episodic memory for continual learning. NeurIPS 2017.",
    "- S. Holm. A simple sequentially rejective multiple test procedure. Scand. J. Statist. 1979.",
    "- P. Hall. On the removal of skewness by transformation. J. R. Statist. Soc. B 54, 1992.",
    "- K. K. Yuen. The two-sample trimmed t for unequal population variances. Biometrika 61, 1974.",
    "- L. V. Hedges. Distribution theory for Glass's estimator of effect size. J. Educ. Statist. 1981.",
)


@dataclass(frozen=True)
class Paper:
    """What every section of the paper reads: the settings, the numbers and where the outputs go."""

    cfg: Any  # the analysis settings (`load_analysis_config`)
    summary: Mapping[str, Any]
    manifest: Mapping[str, Any]
    nums: Numbers
    results: Path
    out: Path
    claims_declared: tuple[Claim, ...]  # the core claims and every registered strategy's

    @property
    def params(self) -> Any:
        """The validated params."""
        return self.cfg.params

    def section(self, name: str) -> Mapping[str, Any]:
        """A params section as a plain mapping ({} when absent)."""
        return self.params.get(name, {}) or {}

    @property
    def variants(self) -> list[str]:
        """The variants of the params that have numbers."""
        return [v for v in self.cfg.variants if v in self.summary]

    @property
    def orders(self) -> list[str]:
        """The main comparison's domain orders, as path components."""
        return ["-".join(o) for o in self.params.orders]

    @property
    def domains(self) -> list[str]:
        """The domains, in the params' order."""
        return self.section("data").get("domains") or []

    @property
    def branching(self) -> list[int]:
        """The initial tree's branching."""
        return self.section("model").get("branching") or []

    @property
    def conf(self) -> str:
        """The confidence level as a percentage (`95%`)."""
        return f"{self.cfg.confidence:.0%}"

    def claim(self, view: Numbers, c: Claim) -> tuple[str, str, str]:
        """A claim's (status, short, sentence) from a view of the numbers (the main, tuned or per-order part)."""
        chance = 1.0 / _n_agents(self.branching) if self.branching else None
        return _claim_sentence(view, c, self.cfg, chance)


def render_paper(params: str | Path | Mapping[str, Any], results: str | Path, data: str | Path,
                 out: str | Path) -> dict[str, Any]:
    """Write paper.md and numbers.json into `out`; returns {"files": [...], "claims": {...}}."""
    cfg = load_analysis_config(params)
    results, out = Path(results), Path(out)
    declared = all_claims()
    summary, manifest = _read_inputs(results, Path(data), cfg, declared)
    paper = Paper(cfg, summary, manifest, Numbers(summary), results, out, declared)
    claims = {}
    for c in paper.claims_declared:
        status, short, sentence = paper.claim(paper.nums, c)
        claims[c.name] = {"status": status, "short": short, "sentence": sentence, "metric": c.metric,
                          "variant": c.variant, "reference": c.reference}
    study, study_text = _study_parts(paper, claims)
    L = ["# K-1: hierarchical error attribution with sparse, trust-gated updates — an ablation study across seeds\n",
         "*Generated by `k1 paper` from `results/summary.json`, `results/tables/`, the params file and the "
         "data manifest. Do not edit by hand.*\n"]
    banner = competence_banner(paper.nums)
    L += [banner] if banner else []
    L += _abstract(paper, claims)
    L += _method(paper)
    L += _setup(paper)
    L += _results(paper, claims, study_text)
    L += _limitations(paper)
    L += _reproducibility(paper)
    L += ["## References\n", *REFERENCES, ""]
    text = "\n".join(L).rstrip("\n") + "\n"
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "paper.md", text)
    write_json(out / "numbers.json", {"numbers": dict(sorted(paper.nums.entries.items())), "claims": claims,
                                      "study": study})
    return {"files": [str(out / "paper.md"), str(out / "numbers.json")], "claims": claims, "study": study}


def _read_inputs(results: Path, data: Path, cfg: Any,
                 claims: Sequence[Claim]) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """summary.json (checked against the params: `check_summary`) and the data manifest; every input the paper
    needs is checked first, and all the missing ones are named at once."""
    summary_path, manifest_path = results / "summary.json", data / "manifest.json"
    missing = [p for p in (summary_path, manifest_path) if not p.is_file()]
    missing += [results / "tables" / f"{n}.md" for n, _ in RESULT_TABLES if not (results / "tables" / f"{n}.md").is_file()]
    if missing:
        raise K1Error("cannot render the paper, missing: " + ", ".join(str(p) for p in missing)
                      + " (run `k1 prepare` and `k1 aggregate` first)")
    summary = read_summary(results)
    check_summary(summary, cfg, claims, summary_path)
    manifest = read_output_json(manifest_path, f"prepare the data again (`k1 prepare --params P --out {data}`)")
    return summary, manifest


def _study_parts(paper: Paper, claims: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The sections of the study's other parts (tuned, per order, sweep, structure) and their numbers."""
    nums, summary = paper.nums, paper.summary
    study: dict[str, Any] = {}
    text: list[str] = []
    if "tuned" in summary:
        section, study["tuned"] = tuned_section(nums, paper.claim, claims)
        text.append(section)
    if "by_order" in summary and len(paper.orders) > 1:
        section, study["orders"] = orders_section(nums, paper.claim, claims, paper.orders)
        text.append(section)
    if "sweep" in summary:
        section, study["sweep"] = sweep_section(nums)
        text.append(section + idle_by_rule(nums))
    text.append(structure_section(nums, paper.params, paper.variants, claims))
    return study, text


def _abstract(paper: Paper, claims: Mapping[str, Any]) -> list[str]:
    """What was compared, how it was tested, and each claim's status in one line."""
    cfg, nums, summary = paper.cfg, paper.nums, paper.summary
    others = [v for v in paper.variants if v != "k1_full"]
    orders, domains = paper.orders, paper.domains
    counts = {status: sum(v["status"] == status for v in claims.values()) for status in STATUSES}
    units = (summary.get("design") or {}).get("units_text", f"{nums.q('n_seeds')} seeds")
    L = ["## Abstract\n",
         f"K-1 trains a tree of small transformer agents and, at every step, updates only the agents on the path "
         f"blamed for the error, with proportional learning rates and a trust-based cooldown. We compare it with "
         f"{len(others)} other variant{'s' if len(others) != 1 else ''} ({', '.join(others)}) on a "
         f"continual-learning sequence of {len(domains)} domains ({' → '.join(domains)}"
         + (f", in {len(orders)} orders" if len(orders) > 1 else "") + f"), with "
         f"{units} per variant, {paper.conf} intervals, "
         f"paired tests Holm-corrected over the {nums.q('claim_family', 'size')} declared claims tested "
         f"(primary test: {TEST_NAMES[cfg.primary_test]}, α = {cfg.alpha:g}), equivalence tests where they have the "
         f"power, and the effect each claim could have detected. Claims: {len(claims)}; "
         + ", ".join(f"{status}: {n}" for status, n in counts.items() if n or status in TESTED) + ".\n"]
    for c in paper.claims_declared:
        first = c.statement.split()[0]
        head = c.statement if "_" in first else c.statement[0].upper() + c.statement[1:]  # never 'K1_grow'
        L.append(f"- *{head}*: {claims[c.name]['short']}")
    L.append("")
    return L


def _method(paper: Paper) -> list[str]:
    """The model, attribution, selection and updates, and the variants compared."""
    method, model, branching = paper.section("method"), paper.section("model"), paper.branching
    scales = method.get("path_scales", [])
    return [
        "## Method\n",
        f"**Model.** Tokens (UTF-8 bytes) pass a shared embedding with learned positions, then a tree of agents "
        f"with branching {branching} ({_n_agents(branching)} agents), a final LayerNorm and a shared LM head. "
        f"Every agent is a pre-LN causal transformer block (width {model.get('embed_dim')}, "
        f"{model.get('num_heads')} heads, MLP width {model.get('hidden_dim')}); the root reads the embeddings, "
        f"every other agent its parent's output, and the output is the mean of the leaves.\n",
        "**Attribution.** Each step computes every agent's gradient norm g_k; every "
        f"{method.get('loo_interval')} steps a leave-one-out pass measures Δ_k = loss without agent k − loss "
        "with it. The hybrid score multiplies g_k by a weight that grows as Δ_k falls below zero.\n",
        f"**Selection and updates.** From the root, the drill-down moves to the highest-scoring child not in "
        f"cooldown; the last agent of this error path is the culprit. Learning-rate scales along the path are "
        f"{scales} (culprit first; the last value repeats for further ancestors); scales multiply the AdamW "
        f"update, and agents with scale 0 are left bit-for-bit untouched. Trust rises by "
        f"{method.get('trust_increase')} per update, decays by ×{method.get('trust_decay')} per step, and an "
        f"agent with trust above {method.get('trust_threshold')} is in cooldown.\n",
        variants_paragraph(paper.variants),
        baselines_paragraph(paper.params, paper.variants),
    ]


def _setup(paper: Paper) -> list[str]:
    """The protocol, the metrics, the design and statistics, the budget, every hyperparameter and the data."""
    p, model, train, domains = paper.params, paper.section("model"), paper.section("train"), paper.domains
    return [
        "## Experimental setup\n",
        f"Domains are trained in sequence ({' → '.join(domains)}), {train.get('steps_per_phase')} steps each, "
        f"batch size {train.get('batch_size')}, context {model.get('max_seq_len')}; after every phase every domain "
        f"is evaluated on held-out data, giving R[i, j] = bits per byte on domain j after phase i. Forgetting = "
        f"final − best earlier bpb (Chaudhry et al. 2018) and BWT = mean_j (R[T, j] − R[j, j]) (Lopez-Paz & Ranzato "
        f"2017), averaged over all but the last domain; FWT = mean_j (R[j−1, j] − R0[j]) against the untrained "
        f"model. Lower bpb is better, so positive forgetting/BWT means forgetting and negative FWT means transfer "
        f"helped. Seeds {list(paper.cfg.seeds)} were fixed in the params before any run.\n",
        design_paragraph(paper.nums),
        statistics_paragraph(paper.nums, paper.cfg, paper.conf),
        budget_paragraph(p, paper.manifest),
        floors_paragraph(paper.nums),
        "**Hyperparameters** (the complete params file):\n",
        _kv_table(_flatten(p.to_dict(params_only=True))),
        _data_section(paper.manifest),
    ]


def _results(paper: Paper, claims: Mapping[str, Any], study_text: list[str]) -> list[str]:
    """The validity check, every claim's verdict and sentence, the measured properties, where forgetting lives,
    the study's other parts, then every table and figure."""
    nums, variants, declared = paper.nums, paper.variants, paper.claims_declared
    L = ["## Results\n", validity_section(nums), competence_section(nums), frontier_section(nums),
         "| claim | status |\n|:---|:---|"]
    L += [f"| {c.statement} | {claims[c.name]['status']} |" for c in declared]
    L.append("")
    L += [f"- **{c.name}.** {claims[c.name]['sentence']}" for c in declared if claims[c.name]["status"] != "measured"]
    figures = _figure_index(paper.results)
    L += ["", divergence_section(nums), properties_section(claims, declared),
          _trust_budget_section(nums, paper.params, variants), "", decomposition_section(nums, variants, paper.cfg),
          loo_section(nums, variants), figures_paragraph(figures)]
    return L + study_text + _tables_and_figures(paper, figures)


def _figure_index(results: Path) -> dict[str, Any]:
    """The figures `k1 figures` drew (name -> caption and files), from figures.json; none before it ran."""
    path = results / "figures" / "figures.json"
    return json.loads(path.read_text(encoding="utf-8")).get("figures", {}) if path.is_file() else {}


def _tables_and_figures(paper: Paper, figures: Mapping[str, Any]) -> list[str]:
    """Every table `k1 aggregate` wrote that the paper embeds, links to the rest, and every figure."""
    results, out = paper.results, paper.out
    extra = [("structure", "Structural plasticity")] if growing_variants(paper.variants) else []
    present = [(n, h) for n, h in RESULT_TABLES + STUDY_TABLES + tuple(extra)
               if (results / "tables" / f"{n}.md").is_file()]
    L: list[str] = []
    for i, (name, heading) in enumerate(present, start=1):
        L.append(f"### {heading}\n")
        L.append(_embed_table((results / "tables" / f"{name}.md").read_text(encoding="utf-8"), i))
    L.append(f"The complete per-metric table (mean, median and IQM with CIs) is "
             f"[`tables/summary.md`]({_rel(results / 'tables' / 'summary.md', out)}), the exploratory comparisons of "
             f"every variant with each reference are [`tables/comparisons.md`]"
             f"({_rel(results / 'tables' / 'comparisons.md', out)}), "
             f"and every run's scalars are in [`tidy.csv`]({_rel(results / 'tidy.csv', out)}).\n")
    if not figures:
        return L + ["*No figures were found (`k1 figures` has not been run for these results).*\n"]
    L.append("### Figures\n")
    for j, (name, f) in enumerate(figures.items(), start=1):
        L.append(f"![Figure {j}: {f['caption']}]({_rel(results / 'figures' / f['png'], out)})\n")
        L.append(f"*Figure {j}: {f['caption']}* ([PDF]({_rel(results / 'figures' / f['pdf'], out)}))\n")
    return L


def _limitations(paper: Paper) -> list[str]:
    """What the design cannot show, the scale, the failed runs and the aggregation's notes."""
    model, train = paper.section("model"), paper.section("train")
    lim = design_limitations(paper.nums, paper.cfg)
    lim.append(f"Scale: {_n_agents(paper.branching)} agents of width {model.get('embed_dim')}, "
               f"{train.get('steps_per_phase')} steps per domain, {len(paper.domains)} domains; effects may differ "
               "for larger models, longer training or other domain orders.")
    failed = paper.summary.get("failed_runs") or []
    if failed:
        lim.append(f"{len(failed)} run(s) failed and are excluded from the statistics: "
                   + ", ".join(f"{f['variant']}/{f['order']}/seed{f['seed']} ({f['status']})" for f in failed) + ".")
    else:
        lim.append("No run failed.")
    lim += [f"Note from the aggregation: {note}." for note in paper.summary.get("notes") or []]
    return ["## Limitations\n", *[f"- {x}" for x in lim], ""]


def _reproducibility(paper: Paper) -> list[str]:
    """How to rebuild everything, and the provenance of these results."""
    cfg, prov = paper.cfg, paper.summary.get("provenance") or {}
    return [
        "## Reproducibility\n",
        "Everything above is rebuilt from scratch by `snakemake --cores all` (or `dvc repro`); each step is one "
        "`k1` command: `k1 prepare` → `k1 train` (every variant × seed) → `k1 attribute` → `k1 aggregate` → "
        "`k1 figures` → `k1 paper`.\n",
        _kv_table([
            ("seeds", json.dumps(list(cfg.seeds))),
            ("variants", json.dumps(list(cfg.variants))),
            ("analysis", json.dumps({k: v for k, v in (paper.params.get("analysis") or {}).items()}, sort_keys=True)),
            ("config hashes", json.dumps(prov.get("config_hashes", []))),
            ("devices", json.dumps(prov.get("devices", []))),
            ("versions", json.dumps(prov.get("versions", {}), sort_keys=True)),
        ], head=("item", "value")),
    ]
