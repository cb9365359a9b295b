"""`k1 compare` (issue 18): two results trees, exactly or within a tolerance, the largest difference per metric,
and whether every claim's verdict is the same."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fake_runs import ORDER, write_fake_runs, write_manifest, write_params
from k1model.analysis.aggregate import aggregate
from k1model.analysis.compare import compare_trees, format_comparison
from k1model.cli import main as k1
from k1model.report.paper import render_paper

ROOT = Path(__file__).resolve().parents[1]


def build(root: Path) -> Path:
    """An output root: results/ (runs, aggregate) and paper/ (its verdicts in numbers.json)."""
    params = write_params(root / "params.yaml", primary_test="ttest_paired")
    write_manifest(root / "data")
    rebuild(root)
    return params


def rebuild(root: Path) -> None:
    aggregate(root / "params.yaml", root / "results", root / "results")
    render_paper(root / "params.yaml", root / "results", root / "data", root / "paper")


def edit_scalars(root: Path, variant: str, **add: float) -> None:
    """Add to some scalars of every run of a variant (what another machine's rounding, or a real change, does)."""
    for run in sorted((root / "results" / "runs" / ORDER / variant).glob("seed*")):
        path = run / "metrics.json"
        m = json.loads(path.read_text())
        for key, delta in add.items():
            m["scalars"][key] += delta
        path.write_text(json.dumps(m))


@pytest.fixture(scope="module")
def tree_a(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("a")
    write_fake_runs(root / "results" / "runs", steps_per_phase=10, eval_interval=5)
    build(root)
    return root


@pytest.fixture()
def tree_b(tree_a, tmp_path) -> Path:
    root = tmp_path / "b"
    shutil.copytree(tree_a, root)
    return root


def test_a_tree_equals_its_copy(tree_a, tree_b, capsys):
    cmp = compare_trees(tree_a, tree_b)
    assert cmp.same and cmp.numbers > 1000 and not cmp.differing and cmp.files > 20
    assert {"runs", "stats", "run files", "step logs", "curves"} <= {s for s, _ in cmp.groups}
    assert len(cmp.verdicts) >= 10 and not cmp.changed_verdicts
    assert k1(["compare", str(tree_a / "results"), str(tree_b)]) == 0  # a results dir, or the root above it
    out = capsys.readouterr().out
    assert "0 differ" in out and "all the same" in out and out.rstrip().endswith("SAME")


def test_small_differences_are_measured_per_metric_and_a_tolerance_accepts_them(tree_a, tree_b, capsys):
    edit_scalars(tree_b, "dense", forgetting=0.004, final_avg_bpb=-0.002)
    rebuild(tree_b)
    cmp = compare_trees(tree_a, tree_b)
    runs = {name: g for (source, name), g in cmp.groups.items() if source == "runs"}
    assert runs["forgetting"].differ == 3 and runs["forgetting"].max_abs == pytest.approx(0.004)
    assert runs["final_avg_bpb"].max_abs == pytest.approx(0.002) and runs["bwt"].differ == 0
    assert runs["forgetting"].where.startswith("dense/")
    stats = {name: g for (source, name), g in cmp.groups.items() if source == "stats"}
    assert 0 < stats["forgetting"].max_abs and stats["bwt"].max_abs == 0
    assert not cmp.same and not cmp.changed_verdicts  # numbers moved, conclusions did not
    assert k1(["compare", str(tree_a), str(tree_b)]) == 1
    out = capsys.readouterr().out
    assert "forgetting" in out and "claim verdicts:" in out and "all the same" in out
    assert compare_trees(tree_a, tree_b, atol=0.01).same  # within the tolerance: the same
    assert not compare_trees(tree_a, tree_b, atol=0.001).same
    relative = compare_trees(tree_a, tree_b, rtol=0.5)  # the runs' own numbers moved by < 50 % (a bound of a
    assert all(g.differ == 0 for (source, _), g in relative.groups.items() if source == "runs")  # difference
    # near 0 can move by more, relatively: a relative tolerance alone is no test of statistics near 0)
    assert k1(["compare", str(tree_a), str(tree_b), "--verdicts-only"]) == 0  # another machine's question


def test_a_changed_verdict_is_named_even_within_the_tolerance(tree_a, tree_b, capsys):
    edit_scalars(tree_b, "k1_full", forgetting=0.5)  # K-1 now forgets far more than dense
    rebuild(tree_b)
    cmp = compare_trees(tree_a, tree_b, atol=10.0)
    assert not cmp.differing and not cmp.same
    a, b = cmp.changed_verdicts["less_forgetting"]
    assert a != b and b == "contradicted"
    assert k1(["compare", str(tree_a), str(tree_b), "--atol", "10", "--json", str(tree_b / "cmp.json")]) == 1
    assert k1(["compare", str(tree_a), str(tree_b), "--verdicts-only"]) == 1
    assert "less_forgetting: " in capsys.readouterr().out
    doc = json.loads((tree_b / "cmp.json").read_text())
    assert doc["verdicts"]["less_forgetting"] == {"a": a, "b": b, "same": False} and not doc["same"]


def test_runs_and_decisions_only_one_tree_has_are_reported(tree_a, tree_b):
    shutil.rmtree(tree_b / "results" / "runs" / ORDER / "random_path" / "seed2")
    cmp = compare_trees(tree_a, tree_b)
    assert any("random_path/seed2: only in A" in o for o in cmp.only) and not cmp.same
    text = format_comparison(cmp)
    assert "in one tree only" in text and text.rstrip().endswith("DIFFERENT")


def test_bad_input_is_a_clear_error(tree_a, tmp_path, capsys):
    assert k1(["compare", str(tree_a), str(tmp_path)]) == 2
    assert "holds no summary.json" in capsys.readouterr().err
    assert k1(["compare", str(tree_a), str(tree_a), "--rtol", "-1"]) == 2
    shutil.copytree(tree_a / "results", tmp_path / "no_paper" / "results")
    assert k1(["compare", str(tree_a), str(tmp_path / "no_paper"), "--verdicts-only"]) == 2
    assert "run `k1 paper`" in capsys.readouterr().err


def test_the_script_is_the_command(tree_a, tree_b):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_results.py"), str(tree_a), str(tree_b)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "SAME" in proc.stdout, proc.stderr


# --- issue 32: rows of every part, and damaged files ----------------------------------------------------------
COMMITTED = [p for p in (ROOT / "results", *sorted((ROOT / "outputs").glob("*/results")))
             if (p / "summary.json").is_file()]


@pytest.mark.parametrize("results", COMMITTED, ids=[str(p.relative_to(ROOT)) for p in COMMITTED])
def test_every_committed_profile_is_the_same_as_itself(results, capsys):
    """Rows are paired by part and point too: a sweep point's or the tuned comparison's row of a run is not the
    as-specified row of the same variant/order/seed (a tree against itself said '1198 differ')."""
    assert k1(["compare", str(results), str(results), "--no-runs"]) == 0
    out = capsys.readouterr().out
    assert " 0 differ" in out and out.rstrip().endswith("SAME")


def test_rows_are_paired_within_their_part_and_point(tree_a, tmp_path):
    """A tidy table with a tuned and a sweep part: only the row that changed differs, and it is named by part."""
    import pandas as pd

    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tree_a, a)
    tidy = pd.read_csv(a / "results" / "tidy.csv")
    tuned = tidy.assign(part="tuned", point="tuned", value=tidy.value + 1.0)
    sweep = tidy.assign(part="sweep", point="trust_increase~0.3", value=tidy.value - 1.0)
    pd.concat([tidy, tuned, sweep]).to_csv(a / "results" / "tidy.csv", index=False)
    shutil.copytree(a, b)
    assert compare_trees(a, b, runs=False).same
    tidy = pd.read_csv(b / "results" / "tidy.csv")
    row = tidy.index[(tidy.part == "tuned") & (tidy.metric == "forgetting")][0]
    tidy.loc[row, "value"] += 0.25
    tidy.to_csv(b / "results" / "tidy.csv", index=False)
    cmp = compare_trees(a, b, runs=False)
    group = cmp.groups[("runs", "forgetting")]
    assert group.differ == 1 and group.max_abs == pytest.approx(0.25) and group.where.startswith("tuned: ")


def test_a_truncated_curve_file_is_a_damaged_file_not_a_difference(tree_a, tree_b, capsys):
    evals = next((tree_b / "results" / "runs").glob("*/*/seed*/evals.csv"))
    text = evals.read_text()
    evals.write_text(text[: len(text) - 7])  # cut inside the last row (a full disk, a broken copy)
    assert k1(["compare", str(tree_a), str(tree_b)]) == 2
    err = capsys.readouterr().err
    assert f"{evals} is damaged" in err and "truncated" in err and len(err.strip().splitlines()) == 1
