"""Tables as the reader sees them: numbers formatted, CSV + Markdown + LaTeX (booktabs), with notes."""
from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from k1model.analysis.metric_info import KEY_METRICS, TABLE_GROUPS, metric_info
from k1model.analysis.units import planned_units
from k1model.config import HOLM_FAMILIES, TEST_NAMES
from k1model.io import write_csv, write_text

def fmt_num(x: Any, digits: int = 4) -> str:
    """A number as the tables and the paper print it ("n/a" for missing)."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    x = float(x)
    if x == 0:
        return "0"
    if abs(x) >= 1e5 or abs(x) < 1e-3:
        return f"{x:.{max(digits - 1, 1)}e}"
    return f"{x:.{digits}g}"

def fmt_p(p: Any) -> str:
    """p-values: 3 significant digits, "<0.001" below that."""
    if p is None or (isinstance(p, float) and not math.isfinite(p)):
        return "n/a"
    return "<0.001" if p < 1e-3 else f"{float(p):.3g}"

def fmt_ci(mean: Any, lo: Any, hi: Any) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if lo is None or (isinstance(lo, float) and math.isnan(lo)):
        return fmt_num(mean)
    return f"{fmt_num(mean)} [{fmt_num(lo)}, {fmt_num(hi)}]"

_NUMERIC_CELL = re.compile(r"^(n/a|[-+<]?\d.*)$")

def _is_numeric_column(col: pd.Series) -> bool:
    """Right-align a column whose cells all look like numbers (or n/a)."""
    return bool(len(col)) and all(_NUMERIC_CELL.match(str(v)) for v in col)

def markdown_table(df: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    """A GitHub-flavoured Markdown table of string cells, then notes as a list."""
    cells = df.astype(str).map(lambda s: s.replace("|", "\\|").replace("\n", " "))
    header = "| " + " | ".join(str(c) for c in df.columns) + " |"
    align = "|" + "|".join("---:" if _is_numeric_column(df[c]) else ":---" for c in df.columns) + "|"
    lines = [header, align] + ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    if df.empty:
        lines.append("| " + " | ".join("" for _ in df.columns) + " |")
    out = "\n".join(lines) + "\n"
    if notes:
        out += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    return out

_LATEX_ESCAPES = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}",
                  # non-ASCII symbols the tables use, so pdflatex needs no extra packages
                  "↓": r"$\downarrow$", "↑": r"$\uparrow$", "−": "-", "×": r"$\times$", "ρ": r"$\rho$",
                  "Δ": r"$\Delta$", "≥": r"$\geq$", "≤": r"$\leq$", "‖": r"$\|$"}

def _tex(s: Any) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in str(s))

def latex_table(df: pd.DataFrame, caption: str, label: str, notes: Sequence[str] = ()) -> str:
    """A booktabs table (\\usepackage{booktabs}, and graphicx for wide ones); hand-formatted, no jinja2 needed."""
    spec = "".join("r" if _is_numeric_column(df[c]) else "l" for c in df.columns)
    wide = len(df.columns) > 8  # scale wide tables to the line width (needs \usepackage{graphicx})
    lines = [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{_tex(caption)}}}",
             rf"\label{{{label}}}"] + ([r"\resizebox{\linewidth}{!}{%"] if wide else []) + [
             rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
             " & ".join(_tex(c) for c in df.columns) + r" \\", r"\midrule"]
    lines += [" & ".join(_tex(v) for v in row) + r" \\" for row in df.astype(str).itertuples(index=False)]
    lines += [r"\bottomrule", r"\end{tabular}"] + (["}"] if wide else [])
    if notes:
        lines.append(r"\par\footnotesize " + " ".join(_tex(n) for n in notes))
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"

def _write_table(tables: Path, name: str, csv_df: pd.DataFrame, show_df: pd.DataFrame, caption: str,
                 notes: Sequence[str], written: list[Path]) -> None:
    write_csv(tables / f"{name}.csv", csv_df)
    write_text(tables / f"{name}.md", f"**{caption}**\n\n" + markdown_table(show_df, notes))
    write_text(tables / f"{name}.tex", latex_table(show_df, caption, f"tab:{name}", notes))
    written += [tables / f"{name}.{ext}" for ext in ("csv", "md", "tex")]

def _summary_display(summary: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "metric": summary.metric, "variant": summary.variant,
        "better": summary.direction.map({"lower": "lower", "higher": "higher", "none": "(descriptive)"}),
        "n": summary.n.astype(int).astype(str), "runs": summary.n_runs.astype(int).astype(str),
        "mean [95% CI]": [fmt_ci(r.mean, r.ci_low, r.ci_high) for r in summary.itertuples()],
        "std": summary["std"].map(fmt_num),
        "median [CI]": [fmt_ci(r.median, r.median_ci_low, r.median_ci_high) for r in summary.itertuples()],
        "IQM [CI]": [fmt_ci(r.iqm, r.iqm_ci_low, r.iqm_ci_high) for r in summary.itertuples()],
    })

def _group_display(summary: pd.DataFrame, metrics: Sequence[str], variants: Sequence[str], n_seeds: int) -> pd.DataFrame:
    """Variants as rows, metrics as columns, cells "mean [CI]" (n shown when below the seed count)."""
    out = {"variant": list(variants)}
    for m in metrics:
        col = []
        for v in variants:
            r = summary[(summary.metric == m) & (summary.variant == v)].iloc[0]
            cell = fmt_ci(r["mean"], r["ci_low"], r["ci_high"])
            if 0 < r["n"] < n_seeds:
                cell += f" (n={int(r['n'])})"
            col.append(cell)
        arrow = {"lower": "↓", "higher": "↑"}.get(metric_info(m)[0].direction, "")
        out[f"{m} {arrow}"] = col
    return pd.DataFrame(out)

def _comparison_display(comp: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "reference": comp.reference, "variant": comp.variant, "metric": comp.metric,
        "n": comp.n_pairs.astype(int).astype(str),
        "diff [95% CI]": [fmt_ci(r.mean_diff, r.diff_ci_low, r.diff_ci_high) for r in comp.itertuples()],
        "Wilcoxon p": comp.wilcoxon_p.map(fmt_p), "Wilcoxon p (Holm)": comp.wilcoxon_p_holm.map(fmt_p),
        "paired t p": comp.ttest_paired_p.map(fmt_p), "paired t p (Holm)": comp.ttest_paired_p_holm.map(fmt_p),
        "Welch p": comp.welch_p.map(fmt_p), "Welch p (Holm)": comp.welch_p_holm.map(fmt_p),
        "g": comp.hedges_g.map(lambda v: fmt_num(v, 3)), "g_z": comp.hedges_g_paired.map(lambda v: fmt_num(v, 3)),
        "P(improve) [CI]": [fmt_ci(r.poi, r.poi_ci_low, r.poi_ci_high) for r in comp.itertuples()],
        "MDE": comp.mde.map(lambda v: fmt_num(v, 3)),
        "TOST p (Holm)": [fmt_p(p) if ok else "no test at this n" for p, ok in
                          zip(comp.tost_p_holm, comp.equivalence_testable)],
        "verdict": comp.verdict,
    })


def fmt_units(n: Any) -> str:
    """Initialisations needed for 80 % power: an integer, "> 100000" past the search's cap, n/a when undefined."""
    if n is None or (isinstance(n, float) and math.isnan(n)):
        return "n/a"
    return "> 100000" if math.isinf(n) else str(int(n))


def write_tables(tables: Path, summary: pd.DataFrame, comp: pd.DataFrame, cfg: Any, notes: Sequence[str]) -> list[Path]:
    """Every table of `k1 aggregate` (CSV, Markdown, LaTeX) into `tables`; returns the paths written."""
    written: list[Path] = []
    notes = list(notes)
    conf_pct = f"{cfg.confidence * 100:g}%"
    planned = planned_units(len(cfg.seeds), len(cfg.params.orders), cfg.scheme)[0]  # initialisations per variant
    base_notes = [f"mean [{conf_pct} Hall's skewness-corrected t-interval]; median [order-statistic "
                  "interval; its exact coverage is in summary.csv, median_ci_coverage, and is below the nominal level "
                  "when n < 6]; IQM [Yuen trimmed-mean t-interval]; n = initialisations (units) with a value, runs = "
                  "the runs behind them"] + notes
    _write_table(tables, "summary", summary, _summary_display(summary),
                 "Per-metric summary across seeds", base_notes, written)
    comp_notes_tbl = [
        "exploratory: these comparisons describe; the verdicts are the declared claims' (tables/claims.md), "
        "one Holm family of their own",
        f"n = paired initialisations (units; the order as a block); diff = variant − reference; Holm families: "
        f"{HOLM_FAMILIES[cfg.holm_family]}; 'better' uses the Holm-adjusted {TEST_NAMES[cfg.primary_test]} "
        f"p < {cfg.alpha:g}",
        "g: unpaired Hedges' g (pooled SD); g_z: paired Hedges' g on the seed-wise differences; "
        "P(improve): probability that a run of the variant beats a run of the reference (direction-aware; "
        f"{cfg.bootstrap_resamples}-resample stratified bootstrap CI, descriptive)",
        "diff CI: the t-interval of the paired t-test (order as a block); MDE: the smallest difference that test "
        "detects with 80 % power at alpha / (Holm family size), at the observed standard error; TOST: equivalence "
        "within ±analysis.equivalence_margins, Holm-adjusted, only where it has 80 % power at a true difference of 0 "
        "at the planned n",
        "verdict: variant/reference better (significant), equivalent (TOST), inconclusive (neither: read the MDE)",
        f"with n paired units the smallest two-sided Wilcoxon p is 2/2^n ({fmt_p(2.0 ** (1 - planned))} "
        f"at n={planned}), and the smallest Holm-adjusted one m times that in a family of m tests "
        f"(column wilcoxon_min_p_holm of comparisons.csv)",
    ] + notes
    _write_table(tables, "comparisons", comp, _comparison_display(comp),
                 "Paired comparisons against the reference variants", comp_notes_tbl, written)
    # key metrics only, and each pair of references once (in the family of the earlier reference)
    ref_rank = {r: i for i, r in enumerate(cfg.references)}
    dup = comp.variant.map(lambda v: ref_rank.get(v, len(ref_rank))) < comp.reference.map(ref_rank)
    key = comp[comp.metric.isin(KEY_METRICS) & ~dup]
    _write_table(tables, "comparisons_key", key, _comparison_display(key),
                 "Key comparisons against the reference variants", comp_notes_tbl, written)
    for group, caption in TABLE_GROUPS.items():
        sub = summary[summary.group == group]
        metrics = list(dict.fromkeys(sub.metric))
        gnotes = [f"cells: mean [{conf_pct} skewness-corrected t-interval] over the initialisations; ↓ lower is better, "
                  "↑ higher is better"]
        gnotes += [n for n in notes if any(m in n for m in metrics) or n.startswith("failed")]
        if not metrics:
            gnotes.append(f"no {group} metrics in the runs")
        _write_table(tables, group, sub, _group_display(summary, metrics, cfg.variants, planned),
                     caption, gnotes, written)

    return written


def claim_rows(entries: Mapping[str, Mapping[str, Any]], part: str) -> list[dict[str, str]]:
    """One display row per claim entry (`analysis/claim_tests.py`) of one part."""
    rows = []
    for name, e in entries.items():
        row = {"part": part, "claim": name, "comparison": f"{e['variant']} vs {e['reference']}", "metric": e["metric"],
               "status": e["status"]}
        if e.get("n_units") is None:
            row.update({"n": "", "difference [CI]": "", "p": "", "p (Holm)": "", "MDE": "", "equivalence": "",
                        "status": f"{e['status']} (would read: {e['verdict_if_competent']})" if e.get("verdict_if_competent")
                        else f"{e['status']} ({e.get('reason')})" if e.get("reason") not in ("", None, "validity")
                        else e["status"]})
            rows.append(row)
            continue
        if e.get("verdict_if_competent"):  # tested, its verdict withheld by the competence check
            row["status"] = f"{e['status']} (would read: {e['verdict_if_competent']})"
        if "measured" in (e["status"], e.get("verdict_if_competent")):
            row.update({"n": str(e["n_units"]), "difference [CI]": fmt_ci(e["mean_diff"], e["diff_ci_low"],
                                                                          e["diff_ci_high"]),
                        "p": "(not tested: a design property)", "p (Holm)": "", "MDE": "", "equivalence": ""})
            rows.append(row)
            continue
        if e.get("equivalence_testable"):
            eq = f"±{fmt_num(e['equivalence_margin'])}: TOST p (Holm) {fmt_p(e.get('tost_p_holm'))}"
        elif e.get("equivalence_margin") is not None and not _nan(e.get("equivalence_margin")):
            eq = (f"no test at this n (±{fmt_num(e['equivalence_margin'])} has power "
                  f"{fmt_num(e.get('equivalence_power'), 2)}; ±{fmt_num(e.get('margin_for_power'), 3)} needed)")
        else:
            eq = "no margin declared"
        row.update({"n": str(e["n_units"]), "difference [CI]": fmt_ci(e["mean_diff"], e["diff_ci_low"],
                                                                       e["diff_ci_high"]),
                    "p": fmt_p(e.get("p")), "p (Holm)": f"{fmt_p(e.get('p_holm'))} (m = {e.get('family_size')})",
                    "MDE": fmt_num(e.get("mde"), 3), "equivalence": eq})
        rows.append(row)
    return rows


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def write_claims_table(tables: Path, doc: Mapping[str, Any], cfg: Any) -> list[Path]:
    """The declared claims, as specified and tuned, with the numbers that decide each verdict (tables/claims.*)."""
    written: list[Path] = []
    rows = claim_rows(doc.get("claims") or {}, "as specified")
    rows += claim_rows((doc.get("tuned") or {}).get("claims") or {}, "tuned")
    design = doc.get("design") or {}
    family = doc.get("claim_family") or {}
    show = pd.DataFrame(rows)
    notes = [f"n = {design.get('units_text', 'initialisations')} per variant as planned; the analysis: "
             f"{design.get('analysis', '')}",
             f"p: {TEST_NAMES[cfg.primary_test]} (primary); Holm over the {family.get('size')} declared claims tested "
             f"(as specified and tuned together), alpha = {cfg.alpha:g}",
             "MDE: the smallest difference the test detects with 80 % power at alpha / m; equivalence: TOST within "
             "the declared margin, only where it has 80 % power at a true difference of 0 at the planned n"]
    _write_table(tables, "claims", show, show, "The declared claims: tests and verdicts", notes, written)
    return written


def write_forgetting_tables(tables: Path, domains: pd.DataFrame, validity: dict[str, Any], cfg: Any) -> list[Path]:
    """Which domain is forgotten, after which phase (every variant), and the benchmark-validity check."""
    written: list[Path] = []
    conf = f"{cfg.confidence:.0%}"
    final = domains[domains.forgetting.notna()]
    show = pd.DataFrame({
        "order": final.order, "domain": final.domain, "phase": final.position + 1, "variant": final.variant,
        "n": final.n.astype(str),
        "forgetting [CI]": [fmt_ci(r.forgetting, r.forgetting_ci_low, r.forgetting_ci_high) for r in final.itertuples()],
        "final − own phase [CI]": [fmt_ci(r.increase, r.increase_ci_low, r.increase_ci_high) for r in final.itertuples()],
    })
    ref = validity.get("reference")
    notes = [f"per domain (every domain but the last of its order): forgetting = final bpb − best earlier bpb; "
             f"final − own phase = R[T, j] − R[j, j]; mean [{conf} skewness-corrected t-interval] over the seeds of that "
             "order",
             validity.get("rule", ""),
             f"{ref} forgets on: " + (", ".join(validity.get("forgotten_domains") or []) or "no domain")]
    _write_table(tables, "forgetting_domains", final, show, "Forgetting per domain and domain order", notes, written)
    show = pd.DataFrame({
        "order": domains.order, "variant": domains.variant, "domain": domains.domain,
        "after phase": domains.after_phase + 1, "after": domains.after_domain,
        "increase [CI]": [fmt_ci(r.increase, r.increase_ci_low, r.increase_ci_high) for r in domains.itertuples()],
    })
    _write_table(tables, "forgetting_phases", domains, show, "Bits per byte lost on each domain after each later phase",
                 [f"increase = R[i, j] − R[j, j]: bpb on domain j after phase i minus just after its own phase j; "
                  f"mean [{conf} skewness-corrected t-interval]"], written)
    return written
