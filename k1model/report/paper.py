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
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from k1model.config import ModelConfig
from k1model.errors import DataError, K1Error
from k1model.io import read_output_json, write_json, write_text
from k1model.analysis.aggregate import read_summary
from k1model.analysis.settings import load_analysis_config
from k1model.config import TEST_NAMES
from k1model.analysis.claim_tests import TESTED
from k1model.analysis.claims import CLAIMS, Claim, all_claims
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


def render_paper(params: str | Path | Mapping[str, Any], results: str | Path, data: str | Path,
                 out: str | Path) -> dict[str, Any]:
    """Write paper.md and numbers.json into `out`; returns {"files": [...], "claims": {...}}."""
    CLAIMS = all_claims()  # noqa: N806  (the core claims and every registered strategy's, read now)
    cfg = load_analysis_config(params)
    results, data, out = Path(results), Path(data), Path(out)
    summary_path, manifest_path = results / "summary.json", data / "manifest.json"
    missing = [p for p in (summary_path, manifest_path) if not p.is_file()]
    missing += [results / "tables" / f"{n}.md" for n, _ in RESULT_TABLES if not (results / "tables" / f"{n}.md").is_file()]
    if missing:
        raise K1Error("cannot render the paper, missing: " + ", ".join(str(p) for p in missing)
                      + " (run `k1 prepare` and `k1 aggregate` first)")
    summary = read_summary(results)
    check_summary(summary, cfg, CLAIMS, summary_path)
    manifest = read_output_json(manifest_path, f"prepare the data again (`k1 prepare --params P --out {data}`)")
    p = cfg.params
    nums = Numbers(summary)
    variants = [v for v in cfg.variants if v in summary]
    others = [v for v in variants if v != "k1_full"]
    n_seeds = nums.q("n_seeds")
    orders = ["-".join(o) for o in p.orders]
    conf = f"{cfg.confidence:.0%}"
    method, model, train = p.get("method", {}) or {}, p.get("model", {}) or {}, p.get("train", {}) or {}
    branching = model.get("branching") or []
    domains = (p.get("data", {}) or {}).get("domains") or []
    chance = 1.0 / _n_agents(branching) if branching else None

    def claim(view: Numbers, c: Claim) -> tuple[str, str, str]:
        return _claim_sentence(view, c, cfg, chance)

    # ---- claims
    claims = {}
    for c in CLAIMS:
        status, short, sentence = claim(nums, c)
        claims[c.name] = {"status": status, "short": short, "sentence": sentence, "metric": c.metric,
                          "variant": c.variant, "reference": c.reference}
    study: dict[str, Any] = {}
    study_text: list[str] = []
    if "tuned" in summary:
        text, study["tuned"] = tuned_section(nums, claim, claims)
        study_text.append(text)
    if "by_order" in summary and len(orders) > 1:
        text, study["orders"] = orders_section(nums, claim, claims, orders)
        study_text.append(text)
    if "sweep" in summary:
        text, study["sweep"] = sweep_section(nums)
        study_text.append(text + idle_by_rule(nums))
    study_text.append(structure_section(nums, p, variants, claims))
    counts = {status: sum(v["status"] == status for v in claims.values()) for status in STATUSES}

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
        f"continual-learning sequence of {len(domains)} domains ({' → '.join(domains)}"
        + (f", in {len(orders)} orders" if len(orders) > 1 else "") + f"), with "
        f"{(summary.get('design') or {}).get('units_text', f'{n_seeds} seeds')} per variant, {conf} intervals, "
        f"paired tests Holm-corrected over the {nums.q('claim_family', 'size')} declared claims tested "
        f"(primary test: {TEST_NAMES[cfg.primary_test]}, α = {cfg.alpha:g}), equivalence tests where they have the "
        f"power, and the effect each claim could have detected. Claims: {len(claims)}; "
        + ", ".join(f"{status}: {n}" for status, n in counts.items() if n or status in TESTED) + ".\n")
    for c in CLAIMS:
        first = c.statement.split()[0]
        head = c.statement if "_" in first else c.statement[0].upper() + c.statement[1:]  # never 'K1_grow'
        L.append(f"- *{head}*: {claims[c.name]['short']}")
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
    L.append(variants_paragraph(variants))
    L.append(baselines_paragraph(p, variants))

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
    L.append(design_paragraph(nums))
    L.append(statistics_paragraph(nums, cfg, conf))
    L.append(budget_paragraph(p, manifest))
    L.append("**Hyperparameters** (the complete params file):\n")
    L.append(_kv_table(_flatten(p.to_dict(params_only=True))))
    L.append(_data_section(manifest))

    # ---- results
    L.append("## Results\n")
    L.append(validity_section(nums))
    L.append("| claim | status |\n|:---|:---|")
    L += [f"| {c.statement} | {claims[c.name]['status']} |" for c in CLAIMS]
    L.append("")
    for c in CLAIMS:
        if claims[c.name]["status"] != "measured":
            L.append(f"- **{c.name}.** {claims[c.name]['sentence']}")
    L.append("")
    L.append(divergence_section(nums))
    L.append(properties_section(claims, CLAIMS))
    L.append(_trust_budget_section(nums, p, variants))
    L.append("")
    L.append(decomposition_section(nums, variants, cfg))
    L.append(loo_section(nums, variants))
    fig_index_path = results / "figures" / "figures.json"
    figures = {}
    if fig_index_path.is_file():
        figures = json.loads(fig_index_path.read_text(encoding="utf-8")).get("figures", {})
    L.append(figures_paragraph(figures))
    L += study_text
    extra = [("structure", "Structural plasticity")] if growing_variants(variants) else []
    present = [(n, h) for n, h in RESULT_TABLES + STUDY_TABLES + tuple(extra)
               if (results / "tables" / f"{n}.md").is_file()]
    for i, (name, heading) in enumerate(present, start=1):
        L.append(f"### {heading}\n")
        L.append(_embed_table((results / "tables" / f"{name}.md").read_text(encoding="utf-8"), i))
    L.append(f"The complete per-metric table (mean, median and IQM with CIs) is "
             f"[`tables/summary.md`]({_rel(results / 'tables' / 'summary.md', out)}), the exploratory comparisons of "
             f"every variant with each reference are [`tables/comparisons.md`]"
             f"({_rel(results / 'tables' / 'comparisons.md', out)}), "
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
    lim = design_limitations(nums, cfg)
    lim.append(f"Scale: {_n_agents(branching)} agents of width {model.get('embed_dim')}, "
               f"{train.get('steps_per_phase')} steps per domain, {len(domains)} domains; effects may differ "
               "for larger models, longer training or other domain orders.")
    failed = summary.get("failed_runs") or []
    if failed:
        lim.append(f"{len(failed)} run(s) failed and are excluded from the statistics: "
                   + ", ".join(f"{f['variant']}/{f['order']}/seed{f['seed']} ({f['status']})" for f in failed) + ".")
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
          "- P. Hall. On the removal of skewness by transformation. J. R. Statist. Soc. B 54, 1992.",
          "- K. K. Yuen. The two-sample trimmed t for unequal population variances. Biometrika 61, 1974.",
          "- L. V. Hedges. Distribution theory for Glass's estimator of effect size. J. Educ. Statist. 1981.", ""]

    text = "\n".join(L).rstrip("\n") + "\n"
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "paper.md", text)
    write_json(out / "numbers.json", {"numbers": dict(sorted(nums.entries.items())), "claims": claims, "study": study})
    return {"files": [str(out / "paper.md"), str(out / "numbers.json")], "claims": claims, "study": study}
