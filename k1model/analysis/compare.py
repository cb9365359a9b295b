"""Compare two results trees (`k1 compare A B`): every number, exactly or within a tolerance, the largest
difference per metric, and whether every claim's verdict is the same.

What is compared, for the runs both trees have (runs only one tree has are listed):

* `tidy.csv`: every run's scalars (group "runs", one row per metric), paired within their part (as specified,
  tuned, each sweep point);
* `summary.json` and `comparisons.json`: the statistics (group "stats", by the metric they are about);
* each run's `metrics.json` and `attribution.json` beyond the scalars (R matrices, update counts, probe
  details; group "run files", by top-level key), its step log `steps.csv.gz` (group "step logs", by column
  family: loss, grad_, score_, loo_, trust_, and the decisions: culprit, path, scales) and `evals.csv`
  (group "curves");
* the verdicts: each claim's status as the paper states it (`paper/numbers.json`: the main comparison and,
  where present, the tuned and per-order ones).

Wall-clock times, versions and other facts about the machine are not compared. Two numbers agree when
|a − b| <= atol + rtol · max(|a|, |b|) (exactly equal by default; NaN agrees with NaN). A tolerance is in
the units of the metrics: test statistics, p-values and effect sizes (group "<metric> (tests)") are
reported, but with a tolerance they are judged through the verdicts they decide. See docs/pipeline.md,
"What is bit-reproducible", for what a reproduction on another machine should expect.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import pandas as pd

from k1model.errors import DamagedOutputError, K1Error
from k1model.io import read_output_json, read_output_table

#: fields that describe the machine or the clock, not the science
MACHINE_KEYS = frozenset({"wall_time_s", "steps_per_s", "timing_s", "total_wall_time_s", "versions", "python",
                          "device", "devices", "fisher_seconds", "threads", "process_runs", "cpu"})
STEP_FAMILIES = ("grad_", "score_", "loo_", "trust_")
#: statistics of a test, not values in a metric's units (judged through the verdicts under a tolerance)
TEST_FIELD = re.compile(r"(_p|_p_holm|_stat|_min_p\w*|hedges_g\w*|prob_improvement\w*|_mde\w*|holm_family_size|^p|^p_holm"
                        r"|^mde|_power|^units_for_margin|^family_size)$")
TESTS = " (tests)"
DECISIONS = ("culprit", "path", "scales")


@dataclass
class Group:
    """The numbers of one metric (or column family) compared: how many, how many differ, the largest difference."""

    n: int = 0
    differ: int = 0
    max_abs: float = 0.0
    max_rel: float = 0.0
    where: str = ""

    def add(self, a: np.ndarray, b: np.ndarray, where: list[str], atol: float, rtol: float) -> None:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if not a.size:
            return
        both_nan = np.isnan(a) & np.isnan(b)
        diff = np.where(both_nan, 0.0, np.abs(a - b))
        diff = np.where(np.isnan(diff), np.inf, diff)  # a number against NaN: infinitely far
        scale = np.maximum(np.abs(np.nan_to_num(a)), np.abs(np.nan_to_num(b)))
        bad = (diff > atol + rtol * scale) if (atol or rtol) else (diff != 0)
        self.n += a.size
        self.differ += int(bad.sum())
        i = int(np.argmax(diff))
        if diff[i] > self.max_abs:
            self.max_abs, self.where = float(diff[i]), where[i]
        rel = np.divide(diff, scale, out=np.where(diff > 0, np.inf, 0.0), where=scale > 0)
        self.max_rel = max(self.max_rel, float(rel.max()))


@dataclass
class Comparison:
    a: Path
    b: Path
    atol: float = 0.0
    rtol: float = 0.0
    groups: dict[tuple[str, str], Group] = field(default_factory=dict)
    files: int = 0
    only: list[str] = field(default_factory=list)  # runs / files only one tree has
    other: list[str] = field(default_factory=list)  # non-numeric fields that differ
    decisions: dict[str, list[int]] = field(default_factory=dict)  # step-log column -> [differing rows, rows]
    verdicts: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # claim -> (A, B)
    verdict_note: str = ""

    def group(self, source: str, name: str) -> Group:
        return self.groups.setdefault((source, name), Group())

    @property
    def numbers(self) -> int:
        return sum(g.n for g in self.groups.values())

    @property
    def tolerant(self) -> bool:
        return bool(self.atol or self.rtol)

    @property
    def differing(self) -> int:
        """Numbers that differ (beyond the tolerance; with one, test statistics count through the verdicts)."""
        return sum(g.differ for (_, name), g in self.groups.items() if not (self.tolerant and name.endswith(TESTS)))

    @property
    def changed_verdicts(self) -> dict[str, tuple[str | None, str | None]]:
        return {k: v for k, v in self.verdicts.items() if v[0] != v[1]}

    @property
    def same_verdicts(self) -> bool:
        """Every claim's verdict the same (False when they could not be compared)."""
        return bool(self.verdicts) and not self.changed_verdicts

    @property
    def same(self) -> bool:
        """Every number within tolerance, the same runs and files, and the same verdicts."""
        return not self.differing and not self.only and not self.changed_verdicts

    def to_dict(self) -> dict[str, Any]:
        return {"a": str(self.a), "b": str(self.b), "atol": self.atol, "rtol": self.rtol, "files": self.files,
                "numbers": self.numbers, "differing": self.differing, "same": self.same,
                "same_verdicts": self.same_verdicts, "only_in_one": self.only,
                "groups": [{"source": s, "metric": m, **g.__dict__} for (s, m), g in sorted(self.groups.items())],
                "decisions": {k: {"differing_steps": v[0], "steps": v[1]} for k, v in self.decisions.items()},
                "verdicts": {k: {"a": v[0], "b": v[1], "same": v[0] == v[1]} for k, v in self.verdicts.items()},
                "verdict_note": self.verdict_note, "other": self.other}


def results_dir(path: str | Path) -> Path:
    """A results directory (with summary.json), given it or the output root above it."""
    path = Path(path)
    for cand in (path, path / "results"):
        if (cand / "summary.json").is_file():
            return cand
    raise K1Error(f"{path} holds no summary.json (nor {path / 'results' / 'summary.json'}): give a results directory "
                  "that `k1 aggregate` wrote, or the output root above it")


def leaves(obj: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            if str(k) not in MACHINE_KEYS:
                yield from leaves(v, f"{path}.{k}" if path else str(k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from leaves(v, f"{path}[{i}]")
    else:
        yield path, obj


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare_json(cmp: Comparison, a: Any, b: Any, source: str, label: str, key_of) -> None:
    """Every leaf of two JSON documents; numbers into the group `key_of(path)` names."""
    la, lb = dict(leaves(a)), dict(leaves(b))
    numeric: dict[str, tuple[list[float], list[float], list[str]]] = {}
    for key in sorted(set(la) | set(lb)):
        va, vb = la.get(key, "<absent>"), lb.get(key, "<absent>")
        if _is_number(va) and _is_number(vb) or (_is_number(va) and vb is None) or (va is None and _is_number(vb)):
            xs = numeric.setdefault(key_of(key), ([], [], []))
            xs[0].append(math.nan if va is None else float(va))
            xs[1].append(math.nan if vb is None else float(vb))
            xs[2].append(f"{label}:{key}")
        elif va != vb:
            cmp.other.append(f"{label}:{key}: {va!r} -> {vb!r}")
    for name, (xa, xb, where) in numeric.items():
        cmp.group(source, name).add(np.array(xa), np.array(xb), where, cmp.atol, cmp.rtol)
    cmp.files += 1


def _metric_of(metrics: set[str]):
    """path in summary.json/comparisons.json -> the metric it is about (+ " (tests)" for a test's statistics)."""
    def key_of(path: str) -> str:
        parts = path.replace("[", ".[").split(".")
        found = [p for p in parts if p in metrics]
        name = found[-1] if found else parts[0]
        return name + TESTS if TEST_FIELD.search(parts[-1]) else name
    return key_of


#: what identifies a row of tidy.csv besides its value: a run's metric within a part (as specified, tuned, a
#: sweep point). A tidy table from before parts existed holds only the main comparison.
TIDY_KEYS = ["part", "point", "variant", "order", "seed", "metric"]
MAIN_PART = "as_specified"


def read_tidy(path: Path) -> pd.DataFrame:
    """tidy.csv with every key column, checked: one row per key (else it is damaged, not comparable)."""
    fix = "rerun `k1 aggregate`"
    tidy = read_output_table(path, fix)
    for key in ("part", "point"):
        if key not in tidy:
            tidy[key] = MAIN_PART
    missing = [k for k in [*TIDY_KEYS, "value"] if k not in tidy]
    if missing:
        raise DamagedOutputError(f"{path} is damaged: it lacks column(s) {', '.join(missing)}; {fix}")
    dupes = tidy[tidy.duplicated(TIDY_KEYS, keep=False)]
    if not dupes.empty:
        r = dupes.iloc[0]
        raise DamagedOutputError(f"{path} is damaged: {len(dupes)} rows share their keys, e.g. {_row_label(r)} "
                                 f"{r.metric}; {fix}")
    return tidy


def _row_label(r: Any) -> str:
    """Where a tidy row is: "variant/order/seedN", after "part point: " outside the main comparison."""
    run = f"{r.variant}/{r.order}/seed{r.seed}"
    if r.part == MAIN_PART:
        return run
    return f"{r.part}: {run}" if r.point == r.part else f"{r.part} {r.point}: {run}"


def compare_tidy(cmp: Comparison, a: Path, b: Path) -> set[str]:
    """Every scalar of every run, paired by part, point, variant, order, seed and metric."""
    ta, tb = read_tidy(a), read_tidy(b)
    merged = ta.merge(tb, on=TIDY_KEYS, how="outer", suffixes=("_a", "_b"), indicator=True)
    merged = merged[~merged["metric"].isin(MACHINE_KEYS)]
    for _, r in merged[merged["_merge"] != "both"].iterrows():
        cmp.only.append(f"tidy.csv {_row_label(r)} {r.metric}: only in {'A' if r['_merge'] == 'left_only' else 'B'}")
    both = merged[merged["_merge"] == "both"]
    for metric, rows in both.groupby("metric", sort=True):
        where = [_row_label(r) for r in rows.itertuples()]
        cmp.group("runs", str(metric)).add(rows.value_a.to_numpy(float), rows.value_b.to_numpy(float), where,
                                           cmp.atol, cmp.rtol)
    cmp.files += 1
    return set(map(str, merged["metric"]))


def _family(col: str) -> str:
    return next((f"{p}*" for p in STEP_FAMILIES if col.startswith(p)), col)


def compare_table(cmp: Comparison, a: Path, b: Path, source: str, label: str, fix: str) -> None:
    ta, tb = read_output_table(a, fix, keep_default_na=False, na_values=[""]), \
        read_output_table(b, fix, keep_default_na=False, na_values=[""])
    if list(ta.columns) != list(tb.columns) or len(ta) != len(tb):
        cmp.only.append(f"{label}: different shape ({len(ta)}x{ta.shape[1]} vs {len(tb)}x{tb.shape[1]} or columns)")
        return
    for col in ta.columns:
        ca, cb = ta[col], tb[col]
        if pd.api.types.is_numeric_dtype(ca) and pd.api.types.is_numeric_dtype(cb):
            where = [f"{label} step row {i} {col}" for i in range(len(ca))]
            cmp.group(source, _family(col)).add(ca.to_numpy(float), cb.to_numpy(float), where, cmp.atol, cmp.rtol)
        else:
            differ = int((ca.astype(str) != cb.astype(str)).sum())
            counts = cmp.decisions.setdefault(f"{source}: {col}", [0, 0])
            counts[0] += differ
            counts[1] += len(ca)
    cmp.files += 1


def run_folders(results: Path) -> set[Path]:
    """Every run folder of a results tree (relative): runs/, sweep/, tuning/, tuned/ ... /metrics.json."""
    rels = (p.parent.relative_to(results) for p in results.glob("*/**/metrics.json"))
    return {r for r in rels if r.parts and r.parts[0] in ("runs", "sweep", "tuning", "tuned", "frontier")}


def compare_runs(cmp: Comparison, metrics: set[str]) -> None:
    runs_a, runs_b = run_folders(cmp.a), run_folders(cmp.b)
    cmp.only += [f"run {r}: only in {'A' if r in runs_a else 'B'}" for r in sorted(runs_a ^ runs_b)]
    key_of = _metric_of(metrics)

    def run_key(path: str) -> str:
        return key_of(path) if path.startswith("scalars.") else path.split(".")[0].split("[")[0]

    for rel in sorted(runs_a & runs_b):
        da, db = cmp.a / rel, cmp.b / rel
        for name in ("metrics.json", "attribution.json"):
            fa, fb = da / name, db / name
            if fa.is_file() != fb.is_file():
                cmp.only.append(f"{rel / name}: only in {'A' if fa.is_file() else 'B'}")
            elif fa.is_file():
                fix = f"compare again after rebuilding {rel}"
                ja, jb = read_output_json(fa, fix), read_output_json(fb, fix)
                if name == "metrics.json":  # the scalars are compared through tidy.csv
                    ja, jb = ({k: v for k, v in j.items() if k != "scalars"} for j in (ja, jb))
                compare_json(cmp, ja, jb, "run files", f"{rel}/{name}", lambda p, n=name: f"{n}:{run_key(p)}")
        for name, source in (("steps.csv.gz", "step logs"), ("evals.csv", "curves")):
            fa, fb = da / name, db / name
            if fa.is_file() and fb.is_file():
                compare_table(cmp, fa, fb, source, f"{rel}/{name}", f"compare again after rebuilding {rel}")


def claim_verdicts(paper: Path) -> dict[str, str] | None:
    """claim -> status (and "tuned: claim", "order O: claim"), as `k1 paper` wrote them; None without a paper."""
    path = paper / "numbers.json"
    if not path.is_file():
        return None
    doc = read_output_json(path, "rerun `k1 paper`")
    out = {name: c.get("status") for name, c in (doc.get("claims") or {}).items()}
    study = doc.get("study") or {}
    out.update({f"tuned: {n}": c.get("status") for n, c in (study.get("tuned") or {}).items()})
    for order, claims in ((study.get("orders") or {}).get("per_order") or {}).items():
        out.update({f"order {order}: {n}": c.get("status") for n, c in claims.items()})
    return out


def compare_trees(a: str | Path, b: str | Path, atol: float = 0.0, rtol: float = 0.0,
                  runs: bool = True) -> Comparison:
    """Compare two results trees (results directories, or the output roots above them)."""
    if atol < 0 or rtol < 0 or not (math.isfinite(atol) and math.isfinite(rtol)):
        raise K1Error(f"tolerances must be finite and >= 0, got atol={atol}, rtol={rtol}")
    ra, rb = results_dir(a), results_dir(b)
    cmp = Comparison(ra, rb, atol, rtol)
    metrics = compare_tidy(cmp, ra / "tidy.csv", rb / "tidy.csv") if (ra / "tidy.csv").is_file() else set()
    key_of = _metric_of(metrics)
    for name in ("summary.json", "comparisons.json", "metrics.json"):  # metrics.json: what `dvc metrics` shows
        fa, fb = ra / name, rb / name
        if fa.is_file() and fb.is_file():
            compare_json(cmp, read_output_json(fa, "rerun `k1 aggregate`"), read_output_json(fb, "rerun `k1 aggregate`"),
                         "stats", name, key_of)
        elif fa.is_file() or fb.is_file():
            cmp.only.append(f"{name}: only in {'A' if fa.is_file() else 'B'}")
    if runs:
        compare_runs(cmp, metrics)
    va, vb = claim_verdicts(ra.parent / "paper"), claim_verdicts(rb.parent / "paper")
    if va is None or vb is None:
        cmp.verdict_note = (f"verdicts not compared: no paper/numbers.json beside {ra if va is None else rb} "
                            "(run `k1 paper` for it)")
    else:
        cmp.verdicts = {k: (va.get(k), vb.get(k)) for k in list(dict.fromkeys([*va, *vb]))}
    return cmp


def _fmt(x: float) -> str:
    return "0" if x == 0 else ("inf" if math.isinf(x) else f"{x:.3g}")


def format_comparison(cmp: Comparison, limit: int = 60) -> str:
    tol = "exactly" if not (cmp.atol or cmp.rtol) else f"within atol {cmp.atol:g} + rtol {cmp.rtol:g}"
    lines = [f"A: {cmp.a}", f"B: {cmp.b}",
             f"compared {cmp.numbers} numbers in {cmp.files} files {tol}: {cmp.differing} differ"]
    rows = sorted(cmp.groups.items(), key=lambda kv: (kv[0][0], -kv[1].max_abs, kv[0][1]))
    shown = [(k, g) for k, g in rows if g.max_abs > 0] or rows[:0]
    if shown:
        lines.append("largest difference per metric (|B - A|; rel = relative to max(|A|, |B|)), where it is:")
        lines.append(f"  {'group':10s} {'metric':34s} {'n':>8s} {'differ':>7s} {'max |d|':>10s} {'rel':>9s}  where")
        for (source, name), g in shown[:limit]:
            lines.append(f"  {source:10s} {name:34s} {g.n:8d} {g.differ:7d} {_fmt(g.max_abs):>10s} "
                         f"{_fmt(g.max_rel):>9s}  {g.where}")
        if len(shown) > limit:
            lines.append(f"  ... {len(shown) - limit} more groups with differences (see --json)")
        same = len(rows) - len(shown)
        lines.append(f"  ({same} more metric groups are identical)" if same else "")
        if cmp.tolerant and any(name.endswith(TESTS) and g.differ for (_, name), g in shown):
            lines.append("  (groups '(tests)': statistics of tests, judged through the verdicts below)")
    else:
        lines.append(f"every number is identical ({len(rows)} metric groups)")
    changed_decisions = {k: v for k, v in cmp.decisions.items() if v[0]}
    if changed_decisions:
        lines.append("decisions that differ: " + "; ".join(f"{k} on {d} of {n} steps"
                                                          for k, (d, n) in changed_decisions.items()))
    if cmp.only:
        lines.append(f"{len(cmp.only)} runs/files/rows are in one tree only: " + "; ".join(cmp.only[:10]))
    if cmp.verdict_note:
        lines.append(cmp.verdict_note)
    else:
        changed = cmp.changed_verdicts
        lines.append(f"claim verdicts: {len(cmp.verdicts)} compared, "
                     + ("all the same" if not changed else f"{len(changed)} differ:"))
        lines += [f"  {k}: {a} (A) vs {b} (B)" for k, (a, b) in changed.items()]
    other = sorted(set(cmp.other))
    if other:
        lines.append(f"{len(other)} non-numeric fields differ, e.g. " + "; ".join(other[:5]))
    lines.append("SAME" if cmp.same else "DIFFERENT")
    return "\n".join(line for line in lines if line != "") + "\n"


def write_comparison(cmp: Comparison, path: str | Path) -> None:
    from k1model.io import write_json

    write_json(path, cmp.to_dict())
