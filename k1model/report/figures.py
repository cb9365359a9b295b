"""Figures behind `k1 figures` (PNG at 300 dpi + PDF of each, at their printed size: `drawing.py`).

Statistics-based panels (points with intervals) read `RESULTS/summary.json` and `RESULTS/tidy.csv`,
so they show exactly the numbers of the tables; curves, R matrices and trees come from the run
directories (`evals.csv`, `metrics.json`, `steps.csv.gz`) of every domain order. Figures are drawn on
`matplotlib.figure.Figure` objects (no pyplot state, always the headless Agg canvas) and saved
without timestamps, so re-running gives identical files.

Besides the figures, `FIGDIR/figures.json` lists every figure with its caption and printed size, and
the notes about panels that were skipped (e.g. attribution metrics absent) or texts that collide
(`text_layout.py`); `k1 paper` uses it. A figure per domain order is named `<kind>_<order>`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg", force=False)  # headless even when pyplot is imported later by seaborn
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from k1model.analysis.metric_info import metric_info
from k1model.analysis.runs import read_run_file
from k1model.analysis.settings import AnalysisSettings as AnalysisConfig
from k1model.analysis.settings import load_analysis_config
from k1model.errors import DataError, K1Error
from k1model.io import read_output_table, rerun_hint, write_json
from k1model.report.drawing import (COLUMN_IN, PAGE_IN, Estimate, draw_tree, figure_legend, figure_style,
                                    forest_height, forest_panel, legend_rows_height, metric_title, new_figure,
                                    order_handles, save_figure, short_name, tree_layout, unit_label)
from k1model.report.text_layout import describe_size, layout_problems

__all__ = [
    "FORGETTING_METRICS",
    "SPARSITY_METRICS",
    "STABILITY_METRICS",
    "save_figure",
    "tree_layout",
    "load_evals",
    "metric_points",
    "update_frequency_trees",
    "responsibility_tree",
    "make_figures",
    "CAPTIONS",
]

FORGETTING_METRICS = ("final_avg_bpb", "forgetting", "bwt", "fwt")
SPARSITY_METRICS = ("sparsity_param_fraction", "sparsity_agent_fraction")
STABILITY_METRICS = ("attr_grad_loo_spearman", "attr_window_rank_corr", "attr_resample_path_agreement",
                     "attr_randomisation_change", "attr_specialisation_nmi")
RunKey = tuple[str, str, int]  # (variant, order, seed)


# --------------------------------------------------------------------------- inputs


def main_runs(results: Path, cfg: AnalysisConfig) -> list[tuple[Any, Path]]:
    """(planned run, its directory) of the main comparison, every domain order."""
    from k1model.study.plan import part_runs

    return [(r, results / r.path) for r in part_runs(cfg.params, "runs")]


def _read_metrics(runs: list[tuple[Any, Path]]) -> dict[RunKey, dict[str, Any]]:
    out = {}
    for run, d in runs:
        p = d / "metrics.json"
        if p.is_file():
            m = read_run_file(p)
            if m.get("status", "completed") == "completed":
                out[(run.variant, run.order_name, run.seed)] = m
    if not out:
        raise DataError(f"no completed runs (metrics.json) in {sorted({str(d.parent.parent) for _, d in runs})}")
    return out


def load_evals(runs: list[tuple[Any, Path]], notes: list[str]) -> pd.DataFrame:
    """All runs' evals.csv stacked with variant, order and seed columns (missing files noted)."""
    frames = []
    for run, d in runs:
        p = d / "evals.csv"
        if not p.is_file():
            notes.append(f"learning curves: no {p}")
            continue
        frames.append(read_output_table(p, rerun_hint(d)).assign(variant=run.variant, order=run.order_name,
                                                                  seed=run.seed))
    if not frames:
        return pd.DataFrame(columns=["step", "phase_index", "phase", "domain", "bpb", "end_of_phase", "variant",
                                     "order", "seed"])
    return pd.concat(frames, ignore_index=True)


# --------------------------------------------------------------------------- per-variant statistics


def metric_points(summary: Mapping[str, Any], tidy: pd.DataFrame, metrics: Sequence[str], cfg: AnalysisConfig,
                  notes: list[str], what: str) -> Figure | None:
    """One panel per metric, variants top to bottom: the mean with its interval (summary.json, black) and
    every run (dots, one line per domain order)."""
    present = [m for m in metrics if any((summary.get(v, {}).get(m) or {}).get("n") for v in cfg.variants)]
    for m in metrics:
        if m not in present:
            notes.append(f"{what}: {m} absent or null in every run; panel skipped")
    if not present:
        return None
    rows = list(cfg.variants)
    orders = ["-".join(o) for o in cfg.params.orders]
    ncols = min(4, len(present))
    nrows = math.ceil(len(present) / ncols)
    width = PAGE_IN if ncols > 2 else COLUMN_IN
    handles = [_estimate_handle(f"mean, {cfg.confidence:.0%} interval")] + order_handles(orders)
    fig = new_figure(width, forest_height(len(rows), nrows) + legend_rows_height(width, handles))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    main = tidy[(tidy.get("part", "as_specified") == "as_specified") & tidy.value.notna()]
    for k, (ax, m) in enumerate(zip(axes.ravel(), present)):
        runs = main[main.metric == m].rename(columns={"variant": "row"})[["row", "value", "order"]]
        stats = {v: ((summary.get(v) or {}).get(m) or {}) for v in rows}
        est = {v: (s["mean"], _num(s.get("ci_low")), _num(s.get("ci_high"))) if s.get("n") else
               (math.nan, math.nan, math.nan) for v, s in stats.items()}
        forest_panel(ax, rows, [Estimate("mean", est)], runs, orders=orders, xlabel=unit_label(m),
                     title=metric_title(m, (width - 0.9) / ncols), label_rows=k % ncols == 0, zero=m in ("forgetting", "bwt", "fwt"),
                     floor=0.0 if metric_info(m)[0].unit == "bpb" and m not in ("bwt", "fwt", "forgetting") else None)
    for ax in axes.ravel()[len(present):]:
        ax.set_visible(False)
    figure_legend(fig, handles)
    return fig


def _num(x: Any) -> float:
    return math.nan if x is None else float(x)


def _estimate_handle(label: str, marker: str = "o", color: str = "black") -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], color=color, marker=marker, ms=4, lw=1.1, label=label)


# --------------------------------------------------------------------------- trees


def update_frequency_trees(run_metrics: Mapping[RunKey, Mapping[str, Any]], cfg: AnalysisConfig,
                           notes: list[str]) -> Figure | None:
    """Per variant, the agent tree coloured by the fraction of steps each agent was updated (mean over the
    runs of every order)."""
    panels = {}
    for v in cfg.variants:
        freqs: dict[str, list[float]] = {}
        union: dict[str, dict[str, Any]] = {}  # trees that changed differ between runs: every agent any run had
        rank = {"active": 0, "merged": 1, "pruned": 2, "inactive": 3}
        for (vv, _, _), m in run_metrics.items():
            if vv != v or "update_counts" not in m or not m.get("steps"):
                continue
            for a in m.get("agents") or []:
                if a["name"] not in union or rank.get(a.get("status"), 0) < rank.get(union[a["name"]].get("status"), 0):
                    union[a["name"]] = dict(a)
            for name, c in m["update_counts"].items():
                freqs.setdefault(name, []).append(float(c) / float(m["steps"]))
        agents = list(union.values())
        if not freqs or not agents:
            notes.append(f"update-frequency tree: no update_counts/agents for {v}")
            continue
        panels[v] = (agents, {n: float(np.mean(f)) for n, f in freqs.items()})
    if not panels:
        return None
    n_leaves = max(sum(1 for a in ag if a.get("status") != "inactive"
                       and not any(b.get("parent") == a["name"] and b.get("status") != "inactive" for b in ag))
                   for ag, _ in panels.values())
    ncols = min(len(panels), 4 if n_leaves <= 5 else 3 if n_leaves <= 8 else 2 if n_leaves <= 12 else 1)
    nrows = math.ceil(len(panels) / ncols)
    depth = max(int(a["level"]) for ag, _ in panels.values() for a in ag if a.get("status") != "inactive")
    fig = new_figure(PAGE_IN, 0.55 + nrows * (0.45 * depth + (0.85 if n_leaves > 8 else 0.55)))
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    norm = Normalize(0.0, 1.0)
    cmap = sns.color_palette("viridis", as_cmap=True)
    sc = None
    for ax, (v, (agents, f)) in zip(axes, panels.items()):
        labels = {n: f"{short_name(n)}\n{f.get(n, math.nan):.0%}" for n in f}
        sc = draw_tree(ax, agents, f, norm, cmap, labels, depth=depth)
        ax.set_title(v, fontsize=7)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    fig.colorbar(sc, ax=list(axes[: len(panels)]), label="fraction of steps updated", location="bottom",
                 shrink=0.5, aspect=40)
    return fig


def responsibility_tree(run: Path, agents: Sequence[Mapping[str, Any]], notes: list[str]) -> tuple[Figure | None, str]:
    """The last step of one run: colour = gradient score, label = update % of that step, culprit ringed."""
    path = run / "steps.csv.gz"
    if not path.is_file():
        notes.append(f"responsibility tree: no {path}")
        return None, ""
    steps = read_output_table(path, rerun_hint(run), keep_default_na=False, na_values=[""])
    if steps.empty:
        notes.append(f"responsibility tree: {path} has no rows")
        return None, ""
    last = steps.iloc[-1]
    names = [a["name"] for a in agents]
    grads = {n: float(last[f"grad_{n}"]) for n in names if f"grad_{n}" in last.index}
    try:
        scales = json.loads(last["scales"]) if isinstance(last.get("scales"), str) else {}
    except json.JSONDecodeError:
        scales = {}
    culprit = last.get("culprit")
    culprit = culprit if isinstance(culprit, str) and culprit else None
    path_names = [p.strip() for p in str(last.get("path") or "").split(" > ") if p.strip()]
    finite = [g for g in grads.values() if math.isfinite(g)]
    norm = Normalize(min(finite) if finite else 0.0, max(finite) if finite else 1.0)
    labels = {n: f"{short_name(n)}\n{100 * float(scales.get(n, 0.0)):.0f}%" for n in names}
    n_leaves = sum(1 for a in agents if a.get("status") != "inactive"
                   and not any(b.get("parent") == a["name"] and b.get("status") != "inactive" for b in agents))
    fig = new_figure(COLUMN_IN if n_leaves <= 6 else PAGE_IN, 2.5)
    ax = fig.subplots()
    sc = draw_tree(ax, agents, grads, norm, sns.color_palette("mako_r", as_cmap=True), labels,
                   highlight=path_names, culprit=culprit)
    fig.colorbar(sc, ax=ax, label="gradient score ‖g_k‖", shrink=0.8)
    step = int(last["step"]) if "step" in last.index else -1
    blamed = culprit.removeprefix("root/") if culprit else "none"
    ax.set_title(f"step {step} ({last.get('domain', '')}), culprit: {blamed}", fontsize=7)
    order = run.parent.parent.name.replace("-", " → ")  # runs/<order>/<variant>/seed<k>
    return fig, f"{run.parent.name}/{run.name} (domain order {order}), step {step}"


# --------------------------------------------------------------------------- the command

#: every figure's caption ({ci}: the confidence level; {run}: the run drawn; {order}: the domain order of a
#: per-order figure; {orders}: all orders). figures.json and the paper carry them; workflow/report/figures.rst
#: has the Snakemake report's copy (tests/test_figures.py checks they name the same figures).
#: how values beyond an axis are shown (robust_limits / mark_beyond), said in the captions of figures with runs
BEYOND = (" A triangle on an axis' edge marks runs (or a mean one of them dragged) beyond it: the axis is set by the "
          "other runs, and the most extreme value is written beside it with how many there are.")
CAPTIONS = {
    "learning_curves": "Held-out bpb per domain (columns) during training, one row per domain order ({orders}): "
                       "mean over seeds with its {ci} interval band (cut at 0 bpb); dashed lines: phase "
                       "boundaries, with the domain trained in each phase written above it; dotted: the domain's "
                       "{floor} floor (held-out bpb of a {floor} byte model of its training split, `k1 floors`), "
                       "where the profile has one. Means beyond the axis (a diverged run) are marked ▲ on its edge.",
    "r_matrices": "Mean R matrix per variant, domain order {order}: held-out bpb on each domain (columns) after "
                  "each phase (rows), domains in training order (mean over seeds); one colour scale for all "
                  "panels, set by the cells but the outlying ones, which saturate (their numbers are written).",
    "forgetting_matrices": "Forgetting view of the R matrices, domain order {order}: R[i][j] − R[j][j], the bpb "
                           "a domain lost (red) or gained (blue) after each later phase i since its own phase j "
                           "(mean over seeds; from tables/forgetting_phases.csv); outlying cells saturate the "
                           "colour scale.",
    "seen_bpb": "Average held-out bpb over the domains seen so far (mean of R[i][j] for j ≤ i) after each phase, "
                "per domain order ({orders}): mean over seeds with its {ci} interval.",
    "stability_plasticity": "Stability against plasticity: every run's forgetting against its mean R[j][j] (bpb "
                            "right after each domain's own phase; left) and against its final average bpb "
                            "(right); faint markers: the runs of every order ({orders}); crosses: each variant's "
                            "mean with {ci} intervals in both directions. mean R[j][j] = final average bpb − "
                            "(T − 1)/T · BWT." + BEYOND,
    "frontier": "Stability–plasticity frontiers: every method along each of its knobs (one line per knob, through "
                "the method's own setting, the large marker: the main comparison, all seeds × orders; other settings: "
                "the frontier's replicates), forgetting (left) and final average bpb (right) against plasticity (mean "
                "R[j][j]); mean and {ci} t-interval in both directions; thick grey: each method's frontier, the "
                "settings no other of its settings beats on both plasticity and forgetting.",
    "forgetting_updates": "Forgetting against the number of agent updates per run (Σ over agents of the steps in "
                          "which the agent was updated; a log axis where the counts span an order of magnitude): "
                          "the runs of every order ({orders}; faint) and each variant's mean with {ci} intervals."
                          + BEYOND,
    "forgetting": "Final average bpb, forgetting, BWT and FWT per variant: mean with its {ci} interval (black) "
                  "and every run (dots; one line per domain order: {orders})." + BEYOND,
    "sparsity": "Measured update sparsity per variant (fraction of agent parameters / agents changed per step): "
                "mean with its {ci} interval and every run (one line per domain order)." + BEYOND,
    "update_frequency": "Per-agent update frequency (fraction of steps with scale > 0), averaged over the runs "
                        "of every domain order; green ring: grown agent, x: pruned, +: merged.",
    "attribution_stability": "Attribution stability metrics per variant: mean with its {ci} interval and every "
                             "run (one line per domain order)." + BEYOND,
    "planted_faults": "Planted-fault attribution accuracy per variant: mean with its {ci} interval and every run "
                      "(one line per domain order)." + BEYOND,
    "responsibility_tree": "Responsibility tree at the last training step of {run}: colour = gradient score, "
                           "label = update scale, red ring = culprit, red edges = error path.",
    "sensitivity": "Sensitivity sweep: each metric against each factor's setting, one factor at a time around the "
                   "profile's settings, domain order {order} (mean and {ci} interval over the sweep seeds; lines "
                   "only along numeric factors; dotted: the base setting).",
    "structure": "Structural plasticity (every growing variant, every domain order): agent weights of each run's "
                 "live tree over training (dashed: the fixed tree of k1_full), kept and rolled-back events per run, "
                 "and the final tree of {run} (green ring: grown, x: pruned, +: merged; colour and label: fraction of "
                 "steps updated).",
    "tuned_vs_specified": "Forgetting and final average bpb of every variant at the profile's settings and at its "
                          "tuned settings (mean and {ci} interval over seeds × orders).",
    "forgetting_domains": "Forgetting of each domain (final − best earlier bpb) per domain order (panels) and "
                          "variant (mean and {ci} interval over seeds); dashed: the validity margin the reference "
                          "({run}, larger marker) must reach for a forgetting claim to be testable; an interval "
                          "reaching beyond the axis is cut, with a triangle at its end.",
    "decomposition": "Where forgetting lives, per variant: the bpb lost on earlier domains since their own phase "
                     "(BWT), and what putting back the shared weights or the agents of that phase's end recovers "
                     "(swap test), in bpb (not shares: the two need not add up to the loss); mean with its {ci} "
                     "interval and every run (one line per domain order)." + BEYOND,
}


def caption(name: str, **fields: str) -> str:
    """The caption of figure `name` (a per-order figure `<kind>_<order>` uses its kind's)."""
    return CAPTIONS[_kind(name)].format(**fields)


def run_figures(runs: list[tuple[Any, Path]], cfg: AnalysisConfig, notes: list[str],
                floors: Mapping[str, Any] | None = None) -> dict[str, tuple[Figure | None, dict[str, str]]]:
    """The figures drawn from the run directories: curves, R matrices, trees, structure."""
    from k1model.method.variants import VARIANTS
    from k1model.report import cl_figures as CL
    from k1model.report.structure_figures import structure_figure

    run_metrics = _read_metrics(runs)
    orders = ["-".join(o) for o in cfg.params.orders]
    variants, conf = list(cfg.variants), cfg.confidence
    figs: dict[str, tuple[Figure | None, dict[str, str]]] = {}
    floor = cfg.params.analysis.competence_floor
    figs["learning_curves"] = (CL.learning_curves(load_evals(runs, notes), variants, orders, conf, floors, floor),
                               {"floor": floor})
    for order in orders:
        mats, domains = CL.mean_r_matrices(run_metrics, variants, order, notes)
        figs[f"r_matrices_{order}"] = (CL.r_matrix_figure(mats, domains, order, diverging=False) if mats else None,
                                       {"order": CL.order_label(order)})
    figs["seen_bpb"] = (CL.seen_bpb(run_metrics, variants, orders, conf), {})
    figs["forgetting_updates"] = (CL.forgetting_vs_updates(run_metrics, variants, conf), {})
    figs["update_frequency"] = (update_frequency_trees(run_metrics, cfg, notes), {})
    ref = "k1_full" if "k1_full" in variants else variants[0]
    key = (ref, orders[0], cfg.seeds[0])
    dirs = {(r.variant, r.order_name, r.seed): d for r, d in runs}
    if key in run_metrics and run_metrics[key].get("agents"):
        fig, run = responsibility_tree(dirs[key], run_metrics[key]["agents"], notes)
        figs["responsibility_tree"] = (fig, {"run": run})
    else:
        notes.append(f"responsibility tree: run {ref}/{orders[0]}/seed{cfg.seeds[0]} missing or without agents")
    growing = [(v, s, o, m) for (v, o, s), m in sorted(run_metrics.items(), key=lambda kv: (
        kv[0][0], orders.index(kv[0][1]) if kv[0][1] in orders else 0, kv[0][2]))
        if "plasticity" in VARIANTS[v].plugins]
    fixed = [m["scalars"].get("active_agent_params") for (v, _, _), m in run_metrics.items() if v == "k1_full"]
    fixed = [f for f in fixed if f is not None]
    fig, run = structure_figure(growing, float(np.mean(fixed)) if fixed else None, orders, notes)
    figs["structure"] = (fig, {"run": run})
    return figs


def table_figures(results: Path, summary: Mapping[str, Any], tidy: pd.DataFrame, cfg: AnalysisConfig,
                  notes: list[str]) -> dict[str, tuple[Figure | None, dict[str, str]]]:
    """The figures drawn from what `k1 aggregate` wrote (summary.json, tidy.csv, tables/)."""
    from k1model.report import cl_figures as CL
    from k1model.report.forgetting_figures import decomposition_figure, forgetting_domains
    from k1model.report.study_figures import sensitivity, tuned_vs_specified

    orders = ["-".join(o) for o in cfg.params.orders]
    variants, conf = list(cfg.variants), cfg.confidence
    figs: dict[str, tuple[Figure | None, dict[str, str]]] = {}
    phases_csv = results / "tables" / "forgetting_phases.csv"
    if phases_csv.is_file():
        phases = pd.read_csv(phases_csv)
        for order in orders:
            figs[f"forgetting_matrices_{order}"] = (CL.forgetting_matrices(phases, variants, order),
                                                    {"order": CL.order_label(order)})
    else:
        notes.append(f"forgetting matrices: no {phases_csv} (written by `k1 aggregate`)")
    figs["stability_plasticity"] = (CL.stability_plasticity(tidy, variants, conf), {})
    if summary.get("frontier"):
        from k1model.report.frontier_figures import frontier_figure

        figs["frontier"] = (frontier_figure(summary["frontier"]), {})
    figs["forgetting"] = (metric_points(summary, tidy, FORGETTING_METRICS, cfg, notes, "forgetting"), {})
    figs["sparsity"] = (metric_points(summary, tidy, SPARSITY_METRICS, cfg, notes, "sparsity"), {})
    attr = sorted(set(tidy.metric[tidy.metric.str.startswith("attr_")]))
    stab = [m for m in STABILITY_METRICS if m in attr] + [
        m for m in attr if metric_info(m)[0].group == "attribution" and m not in STABILITY_METRICS
        and m != "attr_specialisation_p"]
    faults = [m for m in attr if metric_info(m)[0].group == "faults"]
    if not attr:
        notes.append("attribution: no attr_* metrics in tidy.csv (no attribution.json); attribution figures skipped")
    figs["attribution_stability"] = (metric_points(summary, tidy, stab, cfg, notes, "attribution stability")
                                     if stab else None, {})
    figs["planted_faults"] = (metric_points(summary, tidy, faults, cfg, notes, "planted faults")
                              if faults else None, {})
    if attr and not faults:
        notes.append("planted faults: no attr_fault_* metrics; figure skipped")
    sweep = summary.get("sweep")
    figs["sensitivity"] = (sensitivity(sweep, conf) if sweep else None,
                           {"order": CL.order_label(str((sweep or {}).get("order") or orders[0]))})
    figs["tuned_vs_specified"] = (tuned_vs_specified(summary, variants, conf), {})
    domains_csv = results / "tables" / "forgetting_domains.csv"
    validity = summary.get("validity") or {}
    figs["forgetting_domains"] = (forgetting_domains(pd.read_csv(domains_csv), variants, validity.get("margin"),
                                                     validity.get("reference"), orders)
                                  if domains_csv.is_file() else None, {"run": str(validity.get("reference", ""))})
    figs["decomposition"] = (decomposition_figure(summary, tidy, variants, orders, conf), {})
    return figs


#: the order figures are listed in (figures.json, the paper): the continual-learning figures first
FIGURE_ORDER = ("learning_curves", "r_matrices", "forgetting_matrices", "seen_bpb", "stability_plasticity", "frontier",
                "forgetting_updates", "forgetting", "forgetting_domains", "decomposition", "sparsity",
                "update_frequency", "attribution_stability", "planted_faults", "responsibility_tree", "structure",
                "sensitivity", "tuned_vs_specified")


def _kind(name: str) -> str:
    return next((k for k in CAPTIONS if name == k), None) or next(k for k in CAPTIONS if name.startswith(k + "_"))


def make_figures(params: str | Path | Mapping[str, Any], results: str | Path, out: str | Path) -> dict[str, Any]:
    """Draw every figure into `out`; returns {"files": [...], "figures": {name: ...}, "notes": [...]}.

    Results without run directories (a profile whose committed outputs are the tables alone) get the
    figures their tables allow, and a note naming the ones skipped."""
    from k1model.report.cl_figures import order_label

    cfg = load_analysis_config(params)
    results, out = Path(results), Path(out)
    runs = main_runs(results, cfg)
    for p in (results / "summary.json", results / "tidy.csv"):
        if not p.is_file():
            raise K1Error(f"{p} not found; run `k1 aggregate` first")
    summary = json.loads((results / "summary.json").read_text(encoding="utf-8"))
    tidy = pd.read_csv(results / "tidy.csv")
    notes: list[str] = []
    orders = ["-".join(o) for o in cfg.params.orders]
    fields = {"ci": f"{cfg.confidence:.0%}", "orders": "; ".join(order_label(o) for o in orders), "run": "",
              "order": ""}
    with figure_style():
        figs = table_figures(results, summary, tidy, cfg, notes)
        if any(d.is_dir() for _, d in runs):
            figs.update(run_figures(runs, cfg, notes, summary.get("floors")))
        else:
            notes.append(f"no run directories under {results / 'runs'}: the figures drawn from the runs (learning "
                         "curves, R matrices, average bpb over the domains seen, forgetting against agent updates, "
                         "trees, structure) are skipped")
        figs = dict(sorted(figs.items(), key=lambda kv: FIGURE_ORDER.index(_kind(kv[0]))))
        files: list[Path] = []
        index: dict[str, Any] = {}
        out.mkdir(parents=True, exist_ok=True)
        for name, (fig, extra) in figs.items():
            if fig is None:
                continue
            for problem in layout_problems(fig):
                notes.append(f"{name}: {problem}")
            files += save_figure(fig, out, name)
            index[name] = {"png": f"{name}.png", "pdf": f"{name}.pdf", "size": describe_size(fig),
                           "caption": caption(name, **{**fields, **extra})}
    write_json(out / "figures.json", {"figures": index, "notes": notes})
    files.append(out / "figures.json")
    return {"files": [str(p) for p in files], "figures": index, "notes": notes}
