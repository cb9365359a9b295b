"""The frontier part end to end (DESIGN.md §12): planned runs -> k1 aggregate (summary.json frontier, its table
and claims) -> k1 figures (the frontier figure, its layout clean) on a synthetic study whose dense frontier
passes below K-1's setting, so the claim's direction is known."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from fake_runs import write_fake_run, write_fake_study, write_manifest
from k1model.config import load_params
from k1model.study.plan import plan_runs

PARAMS = {
    "data": {"source": "synthetic", "domains": ["prose", "code"], "max_bytes": 20000, "valid_fraction": 0.1,
             "test_fraction": 0.1},
    "model": {"branching": [2, 2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16},
    "method": {"learning_rate": 0.003, "trust_increase": 0.1},
    "train": {"batch_size": 4, "steps_per_phase": 10, "eval_interval": 5, "eval_batches": 2,
              "checkpoint_interval": 10, "sparsity_interval": 5},
    "experiment": {"variants": ["k1_full", "dense"], "seeds": [0, 1, 2], "orders": [["prose", "code"], ["code", "prose"]]},
    "frontier": {"knobs": {"dense": {"learning_rate": [0.0001, 0.0003, 0.001]},
                           "k1_full": {"trust_increase": [0.05, 0.2]}},
                 "replicates": 3, "method": "k1_full", "reference": "dense"},
    "analysis": {"primary_test": "ttest_paired", "bootstrap_resamples": 200},
}
#: synthetic truth: dense along its learning rate trades plasticity x for forgetting 4 - x; K-1 forgets 0.3 less
DENSE_X = {0.0001: 3.6, 0.0003: 3.2, 0.001: 2.8, 0.003: 2.4}
K1_X = {0.05: 3.0, 0.1: 3.3, 0.2: 3.5}


def _set(run: Path, x: float, y: float, rng: np.random.Generator) -> None:
    doc = json.loads((run / "metrics.json").read_text())
    doc["scalars"].update(plasticity=x + rng.normal(0, 0.02), forgetting=y + rng.normal(0, 0.02),
                          final_avg_bpb=x + 0.5 * y + rng.normal(0, 0.02))
    (run / "metrics.json").write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("frontier")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    results = write_fake_study(params, root / "results")
    rng = np.random.default_rng(0)
    p = load_params(params)
    for r in plan_runs(p):
        run = results / r.path
        if r.part == "frontier":
            write_fake_run(run, r.variant, r.seed, domains=r.order, steps_per_phase=10, eval_interval=5,
                           attribution=False)
        value = dict(r.overrides).get("learning_rate" if r.variant == "dense" else "trust_increase",
                     0.003 if r.variant == "dense" else 0.1)
        x = (DENSE_X if r.variant == "dense" else K1_X)[value]
        _set(run, x, 4 - x - (0.3 if r.variant == "k1_full" else 0.0), rng)
    write_manifest(root / "data", ["prose", "code"])
    return params, results


def test_frontier_runs_are_planned_and_aggregated(study):
    from k1model.analysis.aggregate import aggregate, read_summary

    params, results = study
    aggregate(params, results)
    f = read_summary(results)["frontier"]
    table = {(r["variant"], r["point"]): r for r in f["table"]}
    assert table[("dense", "base")]["n"] == 6 and table[("dense", "learning_rate~0.0001")]["n"] == 3
    assert table[("k1_full", "trust_increase~0.05")]["plasticity_mean"] == pytest.approx(3.0, abs=0.05)
    gap = f["claims"]["forgetting"]["gap"]
    assert gap["status"] == "ok" and gap["gap"] == pytest.approx(0.3, abs=0.06) and gap["ci_low"] > 0
    assert f["claims"]["forgetting"]["dominance"]["verdict"] == "dominates"
    assert (results / "tables" / "frontier.md").is_file()


def test_the_frontier_figure_is_drawn_with_a_clean_layout(study, tmp_path):
    from k1model.analysis.aggregate import aggregate
    from k1model.report.figures import make_figures

    params, results = study
    aggregate(params, results)
    out = make_figures(params, results, tmp_path / "figures")
    assert "frontier" in out["figures"] and (tmp_path / "figures" / "frontier.png").is_file()
    assert not [n for n in out["notes"] if n.startswith("frontier:")]  # no overlapping or cut-off text


def test_frontier_replicates_pair_with_the_main_comparisons_first_initialisations(tmp_path):
    from k1model.errors import ConfigError

    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    runs = [r for r in plan_runs(load_params(params)) if r.part == "frontier" and r.variant == "dense"
            and r.overrides == (("learning_rate", 0.0001),)]
    assert [(r.seed, r.order) for r in runs] == [(0, ("prose", "code")), (0, ("code", "prose")), (1, ("prose", "code"))]
    assert runs[1].path == "frontier/learning_rate~0.0001/dense/code-prose/seed0"
    too_many = {**PARAMS, "frontier": {**PARAMS["frontier"], "replicates": 7}}
    params.write_text(yaml.safe_dump(too_many, sort_keys=False))
    with pytest.raises(ConfigError, match=r"frontier.replicates 7 > the main comparison's 6 initialisations"):
        plan_runs(load_params(params))
