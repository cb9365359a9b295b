"""Re-decide a finished study's claims from its committed tidy table with today's design and statistics
(`scripts/restat.py`; issue 31).

The tidy table (`results/tidy.csv`) is the only input of the statistics, so the verdicts of a study whose
runs are no longer on disk can be recomputed without retraining: the claims as one Holm family over the main
("as specified") and tuned comparisons on their units (one initialisation each: `units.py`), the same claims
within each domain order, and each verdict that involves a diverged run without it. What the tidy table
cannot give is left out and said: the per-domain validity check needs the R matrices (the average check is
made), and a table written before runs were flagged as diverged has no `diverged` flag, so it is derived from
the scalars it has (`PROXY_RULE`).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from k1model.analysis.settings import AnalysisSettings
from k1model.analysis.study_claims import claims_doc, declared_claims
from k1model.analysis.summaries import by_variant, summarise
from k1model.analysis.units import unit_values
from k1model.analysis.validity import benchmark_forgets, phase_table
from k1model.io import json_safe
from k1model.report.claims import Numbers, _claim_sentence
from k1model.analysis.tables import fmt_ci, fmt_num, fmt_p

#: a byte model that predicts uniformly, where an initialised model starts: log2(256) bits per byte
UNTRAINED_BPB = 8.0
PROXY_RULE = ("from the tidy table alone (no R matrices): a run diverged when the mean bpb of its domains right "
              "after their own phase, mean_j<T R[j][j] = mean_j<T final_bpb_j − BWT, exceeds log2(256) = 8 bpb, the "
              "loss of the untrained byte model: then some domain ended its own phase worse than before any training")


def proxy_diverged(tidy: pd.DataFrame) -> pd.DataFrame:
    """`diverged` rows (1/0 per run) derived by `PROXY_RULE`, for a tidy table that has none."""
    rows = []
    for (part, point, variant, order, seed), grp in tidy.groupby(["part", "point", "variant", "order", "seed"],
                                                                  sort=False):
        values = dict(zip(grp.metric, grp.value))
        domains = str(order).split("-")[:-1]
        finals = [values.get(f"final_bpb_{d}") for d in domains]
        bwt = values.get("bwt")
        if bwt is None or any(f is None for f in finals) or not domains:
            continue
        own = float(np.mean(finals)) - float(bwt)
        rows.append({"part": part, "point": point, "variant": variant, "order": order, "seed": seed,
                     "metric": "diverged", "value": float(own > UNTRAINED_BPB)})
    return pd.DataFrame(rows, columns=list(tidy.columns))


def _validity(tidy: pd.DataFrame, cfg: AnalysisSettings) -> dict[str, Any]:
    ref = cfg.forgetting_reference
    units = unit_values(tidy[(tidy.variant == ref) & (tidy.metric == "forgetting")], cfg.scheme)
    average = units["value"].dropna().to_numpy(float)
    doc = benchmark_forgets(phase_table([]), average, ref, cfg.forgetting_margin, cfg.confidence)
    doc["measured"] = bool(average.size)
    return doc


def _stats(tidy: pd.DataFrame, cfg: AnalysisSettings, variants) -> dict[str, Any]:
    summary = summarise(tidy, cfg)
    return {**by_variant(summary, [v for v in cfg.variants if v in variants]), "validity": _validity(tidy, cfg)}


def restat(cfg: AnalysisSettings, tidy: pd.DataFrame) -> dict[str, Any]:
    """What `k1 aggregate` would write for the claims of these runs (summary.json's claim parts)."""
    cols = ["variant", "order", "seed", "metric", "value"]
    if "diverged" not in set(tidy.metric):
        tidy = pd.concat([tidy, proxy_diverged(tidy)], ignore_index=True)
        proxy = True
    else:
        proxy = False
    main = tidy[tidy.part == "as_specified"][cols]
    doc: dict[str, Any] = {"n_seeds": len(cfg.seeds), "metrics": {}, **_stats(main, cfg, set(main.variant))}
    tuned = tidy[tidy.part == "tuned"][cols]
    if not tuned.empty:
        doc["tuned"] = _stats(tuned, cfg, set(tuned.variant))
    orders = list(dict.fromkeys(main.order))
    if len(orders) > 1:
        doc["by_order"] = {o: _stats(main[main.order == o], cfg, set(main.variant)) for o in orders}
    summary = summarise(main, cfg)
    for m in summary.metric.unique():
        row = summary[summary.metric == m].iloc[0]
        doc["metrics"][m] = {"direction": row.direction, "unit": row.unit}
    claims_doc(doc, cfg.params, cfg, main, tuned if not tuned.empty else None)
    doc["divergence"]["rule"] = PROXY_RULE if proxy else doc["divergence"]["rule"]
    return json_safe(doc)


def old_verdicts(old: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(part, claim) -> {"status", "p_holm"} from a paper's numbers.json (the numbers the old paper quoted)."""
    numbers = old.get("numbers") or {}
    out: dict[tuple[str, str], dict[str, Any]] = {}

    def p_of(prefix: str, name: str) -> float | None:
        claim = next((c for c in declared_claims() if c.name == name), None)
        if claim is None:
            return None
        for a, b in ((claim.reference, claim.variant), (claim.variant, claim.reference)):
            for key, entry in numbers.items():
                if key.startswith(f"{prefix}comparisons.{a}.{b}.{claim.metric}.") and key.endswith("_p_holm") \
                        and "tost" not in key and "wilcoxon_min" not in key:
                    return entry.get("value")
        return None

    for name, c in (old.get("claims") or {}).items():
        out[("as specified", name)] = {"status": c.get("status"), "p_holm": p_of("", name)}
    study = old.get("study") or {}
    for name, c in (study.get("tuned") or {}).items():
        if isinstance(c, Mapping) and "status" in c:
            out[("tuned", name)] = {"status": c["status"], "p_holm": p_of("tuned.", name)}
    for order, claims in ((study.get("orders") or {}).get("per_order") or {}).items():
        for name, c in claims.items():
            if isinstance(c, Mapping) and "status" in c:
                out[(f"order {order}", name)] = {"status": c["status"], "p_holm": p_of(f"by_order.{order}.", name)}
    return out


def report(cfg: AnalysisSettings, doc: Mapping[str, Any], old: Mapping[str, Any] | None,
           independent: Mapping[str, Any] | None = None) -> str:
    """The re-decided verdicts as Markdown: the design, one row per part × claim (before, now, why), the
    changed verdicts, and the diverged runs with each affected verdict without them."""
    before = old_verdicts(old or {})
    design, family = doc["design"], doc["claim_family"]
    L = [f"Design: {design['units_text']} per variant (`experiment.init_seed: {design['init_seed']}`); "
         f"{design['analysis']}. Holm family: the {family['size']} declared claims tested (as specified and tuned "
         f"together); per-order verdicts are a secondary family of {doc.get('order_claim_family', {}).get('size', 0)}.",
         ""]
    if independent is not None:
        L += ["Column *runs as units*: the same claims with every run taken as an independent unit (the order as a "
              "block), which is what the runs would support had each had its own initialisation; with shared seeds "
              "it overstates n.", ""]
    head = ["part", "claim", "before", "p (Holm) before", "now", "n (units)", "difference [95 % CI]", "p",
            "p (Holm) now", "MDE", "equivalence"]
    if independent is not None:
        head.append("runs as units: p (Holm)")
    head.append("now, in short")
    L += ["| " + " | ".join(head) + " |", "|" + "|".join(":---" for _ in head) + "|"]
    parts = [("as specified", Numbers(doc))]
    if "tuned" in doc:
        parts.append(("tuned", Numbers(doc).view("tuned")))
    parts += [(f"order {o}", Numbers(doc).view("by_order", o)) for o in doc.get("by_order") or {}]
    changed = []
    for part, nums in parts:
        for claim in declared_claims():
            entry = nums.get("claims", claim.name)
            if entry is None:
                continue
            status, short, _ = _claim_sentence(nums, claim, cfg)
            old_entry = before.get((part, claim.name), {})
            if status == "measured":  # a property: its numbers, no test
                entry = {k: v for k, v in entry.items() if k not in ("p", "p_holm", "mde")}
            row = [part, claim.name, str(old_entry.get("status", "n/a")), fmt_p(old_entry.get("p_holm")), status,
                   str(entry.get("n_units") or ""),
                   fmt_ci(entry.get("mean_diff"), entry.get("diff_ci_low"), entry.get("diff_ci_high"))
                   if entry.get("n_units") else "", fmt_p(entry["p"]) if "p" in entry else "",
                   fmt_p(entry["p_holm"]) if "p_holm" in entry else "",
                   fmt_num(entry.get("mde"), 3) if entry.get("mde") is not None else "", equivalence_cell(entry)]
            if independent is not None:
                ind = _entry(independent, part, claim.name)
                row.append("" if not ind or ind.get("status") == "measured" else
                           f"{fmt_p(ind.get('p_holm'))} ({ind.get('status')}, n = {ind.get('n_units')})")
            row.append(short.replace("|", "/"))
            L.append("| " + " | ".join(row) + " |")
            if old_entry.get("status") not in (None, status):
                changed.append((part, claim.name, old_entry, entry, status))
    L += ["", f"**Verdicts that changed: {len(changed)}.**", ""]
    for part, name, old_entry, entry, status in changed:
        ind = _entry(independent, part, name) if independent is not None else {}
        L.append(f"- {part} / {name}: {old_entry['status']} → {status}: {why(old_entry, entry, status, ind)}")
    L += ["", *means_table(doc)]
    div = doc.get("divergence") or {}
    L += ["", f"**Diverged runs** ({div.get('rule')}): "
          + (", ".join(f"{r['variant']}/{r['order']}/seed{r['seed']} ({r['part']})" for r in div.get("runs", []))
             or "none") + "; kept in every statistic above."]
    for part, claims in (div.get("sensitivity") or {}).items():
        for name, s in claims.items():
            L.append(f"- without them, {part.replace('_', ' ')} / {name}: {s['status_with']} → {s['status']} "
                     f"(Holm-adjusted p {fmt_p(s.get('p_holm'))}, n = {s.get('n_units')})")
    return "\n".join(L) + "\n"


def equivalence_cell(e: Mapping[str, Any]) -> str:
    """The TOST of a claim, or why there is none at this n (power at zero difference, the margin with 80 %)."""
    if e.get("equivalence_margin") is None or e.get("status") in ("measured", "untestable", "not measured"):
        return ""
    units = e.get("units_for_margin")
    detect = f"; {fmt_num(units) if units is not None else '> 100000'} units detect ±{fmt_num(e['equivalence_margin'])}"
    if e.get("equivalence_testable"):
        return f"±{fmt_num(e['equivalence_margin'])}: TOST Holm p {fmt_p(e.get('tost_p_holm'))}" + detect
    return (f"no test at this n: ±{fmt_num(e['equivalence_margin'])} has power "
            f"{fmt_num(e.get('equivalence_power'), 2)}, ±{fmt_num(e.get('margin_for_power'), 3)} needed" + detect)


def means_table(doc: Mapping[str, Any]) -> list[str]:
    """The claims' metrics per variant over the units: mean [95 % interval] (n), as specified and tuned."""
    metrics = list(dict.fromkeys(c.metric for c in declared_claims()))
    variants = list(dict.fromkeys(v for c in declared_claims() for v in (c.variant, c.reference) if v != "chance"))
    head = ["part", "variant", *metrics]
    lines = ["**Means over the units** (mean [95 % skewness-corrected t-interval], n = initialisations):", "",
             "| " + " | ".join(head) + " |", "|" + "|".join(":---" for _ in head) + "|"]
    for part, base in (("as specified", doc), ("tuned", doc.get("tuned"))):
        for v in variants:
            stats_ = (base or {}).get(v)
            if not isinstance(stats_, Mapping) or not any(m in stats_ for m in metrics):
                continue
            cells = [fmt_ci(s.get("mean"), s.get("ci_low"), s.get("ci_high")) + f" ({s.get('n')})" if s else ""
                     for s in (stats_.get(m) for m in metrics)]
            lines.append("| " + " | ".join([part, v, *cells]) + " |")
    return lines


def _entry(doc: Mapping[str, Any], part: str, name: str) -> dict[str, Any]:
    if part == "as specified":
        return dict((doc.get("claims") or {}).get(name) or {})
    if part == "tuned":
        return dict(((doc.get("tuned") or {}).get("claims") or {}).get(name) or {})
    order = part.removeprefix("order ")
    return dict((((doc.get("by_order") or {}).get(order) or {}).get("claims") or {}).get(name) or {})


def why(old: Mapping[str, Any], entry: Mapping[str, Any], status: str, as_runs: Mapping[str, Any]) -> str:
    """Why a verdict changed, from the numbers: the unit (n), the family (m), the equivalence power, the gates.
    `as_runs`: the claim's entry with every run taken as a unit (empty when the units are the runs)."""
    if entry.get("status") in ("untestable", "not measured"):
        return f"{entry['status']} ({entry.get('reason') or 'validity check'})"
    if status == "measured":
        return "a design constant: now a measured property, not a hypothesis test"
    parts = [f"now n = {entry.get('n_units')} {entry.get('unit')}s, raw p {fmt_p(entry.get('p'))}, Holm over "
             f"{entry.get('family_size')} claims {fmt_p(entry.get('p_holm'))}"]
    if old.get("p_holm") is not None:
        parts.append(f"before: Holm p {fmt_p(old['p_holm'])}, every run a unit, Holm over the variants compared with "
                     "the same reference on the same metric")
    if as_runs.get("p_holm") is not None and as_runs.get("n_units") != entry.get("n_units"):
        parts.append(f"with the {as_runs['n_units']} runs as units (order as a block), in the same family: Holm p "
                     f"{fmt_p(as_runs['p_holm'])}, {as_runs.get('status')}")
    if status == "equivalent":
        parts.append(f"the TOST within ±{entry.get('equivalence_margin')} has power "
                     f"{_num(entry.get('equivalence_power'))} at n = {entry.get('planned_units')}; Holm p "
                     f"{fmt_p(entry.get('tost_p_holm'))}")
    if old.get("status") == "equivalent" and not entry.get("equivalence_testable"):
        parts.append(f"the TOST within ±{entry.get('equivalence_margin')} has power "
                     f"{_num(entry.get('equivalence_power'))} at n = {entry.get('planned_units')} (80 % needs "
                     f"±{_num(entry.get('margin_for_power'))}): no equivalence test at this n")
    return "; ".join(parts)


def _num(x: Any) -> str:
    return "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.3g}"


def run(params: str | Path, results: str | Path, old: Mapping[str, Any] | None, compare_runs: bool = True) -> str:
    """The Markdown report for a results directory holding tidy.csv."""
    from k1model.analysis.settings import load_analysis_config
    from k1model.config import Params

    cfg = load_analysis_config(params)
    tidy = pd.read_csv(Path(results) / "tidy.csv")
    doc = restat(cfg, tidy)
    independent = None
    if compare_runs and cfg.scheme == "shared" and len(cfg.params.orders) > 1:
        as_runs = Params.from_mapping({**cfg.params.to_dict(params_only=True),
                                       "experiment": {**cfg.params.experiment.to_dict(params_only=True),
                                                      "init_seed": "per_order"}})
        independent = restat(AnalysisSettings(as_runs), tidy)
    return report(cfg, doc, old, independent)
