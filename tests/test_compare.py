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
