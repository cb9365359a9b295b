"""The study design (DESIGN.md §8): sweep expansion (one at a time, grid), reuse of runs a point
cannot change, bad designs refused before any run, the tuning protocol (provably blind to test
numbers and evaluation seeds), pairing by seed and order, and a group that survives a failed run."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from k1model.config import load_params
from k1model.errors import ConfigError
from k1model.study.design import sweep_points, tuning_candidates
from k1model.study.plan import describe_plan, part_runs, plan_runs, sweep_cells
from k1model.study.tuning import choose, read_validation, tune

BASE = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 20000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16},
    "method": {"learning_rate": 0.003, "trust_increase": 0.1},
    "train": {"batch_size": 4, "steps_per_phase": 4, "eval_interval": 2, "eval_batches": 1,
              "checkpoint_interval": 4, "sparsity_interval": 2},
    "experiment": {"variants": ["k1_full", "dense", "ewc"], "seeds": [0, 1], "orders": [["alpha", "beta"],
                                                                                      ["beta", "alpha"]]},
    "analysis": {},
}


def params(**sections):
    p = copy.deepcopy(BASE)
    for k, v in sections.items():
        p[k] = v
    return p


SWEEP = {"factors": {"trust_increase": [0.03, 0.1, 0.3], "trust_rule": ["per_update", "proportional"],
                     "learning_rate": [0.001, 0.003]},
         "variants": ["k1_full", "dense"], "seeds": [10, 11]}


def test_one_at_a_time_points_vary_one_factor_around_the_base():
    points = sweep_points(load_params(params(sweep=SWEEP)))
    assert [p.name for p in points] == ["base", "trust_increase~0.03", "trust_increase~0.3", "trust_rule~proportional",
                                        "learning_rate~0.001"]  # values equal to the base are the base point
    assert [p.factor for p in points] == [None, "trust_increase", "trust_increase", "trust_rule", "learning_rate"]


def test_grid_points_are_every_combination():
    grid = {**SWEEP, "design": "grid", "factors": {"trust_increase": [0.03, 0.3], "path_scales": [[1.0, 0.3], [1.0]]}}
    names = [p.name for p in sweep_points(load_params(params(sweep=grid)))]
    assert names == ["base", "trust_increase~0.03/path_scales~1_0.3", "trust_increase~0.03/path_scales~1",
                     "trust_increase~0.3/path_scales~1_0.3", "trust_increase~0.3/path_scales~1"]


def test_a_point_that_cannot_change_a_variant_reuses_its_base_run():
    p = load_params(params(sweep=SWEEP))
    cells = {(c.point, c.variant, c.seed): c for c in sweep_cells(p)}
    assert cells[("trust_increase~0.3", "dense", 10)].path == "sweep/base/dense/seed10"  # dense has no cooldown
    assert not cells[("trust_increase~0.3", "dense", 10)].own_run
    assert cells[("trust_increase~0.3", "k1_full", 10)].path == "sweep/trust_increase~0.3/k1_full/seed10"
    assert cells[("learning_rate~0.001", "dense", 11)].own_run  # every variant reads its learning rate
    sweep = part_runs(p, "sweep")
    assert len(sweep) == 2 * (5 + 2)  # k1_full at 5 points, dense at base and learning_rate~0.001; 2 seeds


def test_the_plan_covers_every_part_and_pairs_orders():
    tuning = {"candidates": {"default": {"learning_rate": [0.001, 0.003]}, "ewc": {"ewc_lambda": [1, 100]}},
              "seeds": [20, 21]}
    p = load_params(params(sweep=SWEEP, tuning=tuning))
    counts = describe_plan(p)
    assert counts["runs"] == 3 * 2 * 2  # variants x seeds x orders
    assert counts["tuning"] == (2 + 2 + 4) * 2  # ewc: learning rate x lambda
    assert counts["tuned"] == 3 * 2 * 2
    assert all(r.order in (("alpha", "beta"), ("beta", "alpha")) for r in part_runs(p, "runs"))
    plan = plan_runs(p)
    assert len({r.path for r in plan}) == len(plan)  # one directory per run
    cands = tuning_candidates(p)
    assert [c.name for c in cands["dense"]] == ["learning_rate~0.001", "learning_rate~0.003"]
    assert len(cands["ewc"]) == 4


def test_a_runs_job_depends_on_its_own_identity_only():
    """Issue 28: adding a variant, a seed or a strategy to a profile leaves every existing run's job (and every
    tuned variant's choice) as it was, whatever its position in the plan; a key the run's variant reads changes
    it, a key it does not read does not."""
    from k1model.config import registry
    from k1model.config.checks import Number, setting
    from k1model.method.variants import Variant
    from k1model.study.plan import run_fingerprint, tuning_fingerprint

    tuning = {"candidates": {"default": {"learning_rate": [0.001, 0.003]}}, "seeds": [20]}

    def jobs(p):
        return ({r.path: run_fingerprint(p, r) for r in plan_runs(p)},
                {v: tuning_fingerprint(p, v) for v in dict.fromkeys(r.variant for r in part_runs(p, "tuning"))})

    runs, choices = jobs(load_params(params(sweep=SWEEP, tuning=tuning)))
    grown = params(sweep=SWEEP, tuning=tuning)
    grown["experiment"] = {**grown["experiment"], "variants": ["replay", "k1_full", "dense", "ewc"], "seeds": [2, 0, 1]}
    more_runs, more_choices = jobs(load_params(grown))
    assert runs.items() < more_runs.items() and choices.items() < more_choices.items()  # only new ones
    assert {p.split("/")[2] for p in set(more_runs) - set(runs) if p.startswith("runs/")} >= {"replay"}

    registry.register(registry.Strategy(name="pull", settings={"pull_strength": setting(0.0, Number(0.0), "a pull")},
                                        variants=(Variant("pull_dense", "all", "gradient", False),)))
    try:
        assert jobs(load_params(params(sweep=SWEEP, tuning=tuning))) == (runs, choices)  # a new strategy: nothing
    finally:
        registry.unregister_strategy("pull")

    lam = params(sweep=SWEEP, tuning=tuning, method={**BASE["method"], "ewc_lambda": 1.0})
    changed = {path for path, f in jobs(load_params(lam))[0].items() if runs[path] != f}
    assert changed and all("/ewc/" in path for path in changed)  # only ewc reads ewc_lambda


@pytest.mark.parametrize("change, message", [
    ({"sweep": {**SWEEP, "factors": {"trust_increse": [0.1]}}}, "'trust_increse' is not a method key"),
    ({"sweep": {**SWEEP, "factors": {"trust_increase": [0.03, 2.0]}}},
     r"sweep point trust_increase~2: method\.trust_increase=2\.0 is not allowed"),
    ({"sweep": {**SWEEP, "factors": {"trust_increase": [0.03, 0.03]}}}, "duplicate points"),
    ({"sweep": {**SWEEP, "seeds": []}}, "sweep.seeds is empty"),
    ({"tuning": {"candidates": {"default": {"learning_rate": [0.001]}}, "seeds": [1, 20]}},
     r"tuning\.seeds \[1\] are also evaluation seeds"),
    ({"tuning": {"candidates": {"dense": {"learning_rate": [0.001, 0.001]}}, "seeds": [20]}}, "duplicate candidates"),
    ({"tuning": {"candidates": {"replay": {"replay_fraction": [0.1]}}, "seeds": [20]}},
     r"tuning\.candidates\.replay: not a tuned variant"),
    ({"experiment": {**BASE["experiment"], "orders": [["alpha", "gamma"]]}}, "not a permutation of data.domains"),
    ({"experiment": {**BASE["experiment"], "orders": [["alpha", "beta", "alpha"]]}}, "experiment.orders"),
])
def test_bad_designs_are_refused_before_any_run(change, message):
    with pytest.raises(ConfigError, match=message):
        load_params(params(**change))


# ------------------------------------------------------------------ the tuning protocol


def _fake_tuning_runs(root: Path, p, validation: dict[tuple[str, str], float], poison: bool) -> None:
    """metrics.json of every tuning run: the validation numbers given; with `poison`, absurd test numbers
    in the same files and, in the directories of evaluation seeds, validation numbers that would win."""
    for run in part_runs(p, "tuning"):
        d = root / run.path
        d.mkdir(parents=True, exist_ok=True)
        m = {"status": "completed", "validation": {"final_avg_bpb": validation[(run.variant, run.point)] + run.seed * 1e-3}}
        if poison:
            m.update(R=[[-1e9]], final_bpb={"alpha": -1e9}, scalars={"final_avg_bpb": -1e9 if run.point.endswith(
                "0.01") else 1e9})
        (d / "metrics.json").write_text(json.dumps(m))
        if poison:  # an evaluation seed's run in the same tree, better on validation than anything
            e = root / "tuning" / run.variant / run.point / f"seed{p.experiment.seeds[0]}"
            e.mkdir(parents=True, exist_ok=True)
            (e / "metrics.json").write_text(json.dumps({"status": "completed",
                                                        "validation": {"final_avg_bpb": -1e9}}))


def test_tuning_reads_only_validation_numbers_of_tuning_seeds(tmp_path):
    tuning = {"candidates": {"default": {"learning_rate": [0.001, 0.003, 0.01]}}, "seeds": [20, 21],
              "variants": ["k1_full", "dense"]}
    p = load_params(params(tuning=tuning))
    validation = {(v, f"learning_rate~{lr:g}"): bpb for v in ("k1_full", "dense")
                  for lr, bpb in ((0.001, 3.0), (0.003, 2.5), (0.01, 2.9))}
    _fake_tuning_runs(tmp_path / "clean", p, validation, poison=False)
    _fake_tuning_runs(tmp_path / "poisoned", p, validation, poison=True)
    clean = tune(p, tmp_path / "clean", tmp_path / "clean.json")
    poisoned = tune(p, tmp_path / "poisoned", tmp_path / "poisoned.json")
    assert clean["variants"] == poisoned["variants"]
    assert clean["variants"]["dense"]["chosen"] == "learning_rate~0.003"
    assert clean["variants"]["dense"]["overrides"] == {"learning_rate": 0.003} and clean["searched"] == 6
    table = read_validation(p, tmp_path / "poisoned")
    assert set(table.seed) == {20, 21}  # evaluation seeds never read
    # and the choice does follow the validation numbers (the test has power)
    validation[("dense", "learning_rate~0.01")] = 1.0
    _fake_tuning_runs(tmp_path / "moved", p, validation, poison=False)
    assert tune(p, tmp_path / "moved", tmp_path / "moved.json")["variants"]["dense"]["chosen"] == "learning_rate~0.01"


def test_a_candidate_with_a_failed_run_is_not_eligible():
    table = pd.DataFrame({"variant": ["dense"] * 4, "candidate": ["a", "a", "b", "b"],
                          "overrides": ['{"learning_rate": 0.1}'] * 2 + ['{"learning_rate": 0.01}'] * 2,
                          "seed": [1, 2, 1, 2], "status": ["completed", "failed", "completed", "completed"],
                          "value": [1.0, np.nan, 2.0, 2.0]})
    choice = choose(table)["dense"]
    assert choice["chosen"] == "b" and choice["candidates"][0]["failed"] == [2]


# ------------------------------------------------------------------ pairing by order


def test_comparisons_pair_runs_by_seed_and_order():
    from k1model.analysis.summaries import comparisons
    from k1model.analysis.settings import AnalysisSettings

    rng = np.random.default_rng(0)
    rows = []
    for order, offset in (("a-b", 0.0), ("b-a", 5.0)):  # the order moves everything a lot
        for seed in range(4):
            base = offset + rng.normal(0, 1)
            rows += [("dense", order, seed, "forgetting", base),
                     ("k1_full", order, seed, "forgetting", base - 0.1 + rng.normal(0, 0.01))]
    tidy = pd.DataFrame(rows, columns=["variant", "order", "seed", "metric", "value"])
    cfg = AnalysisSettings(load_params(params(experiment={**BASE["experiment"], "variants": ["k1_full", "dense"]})))
    comp, _ = comparisons(tidy, cfg, references=["dense"])
    row = comp.iloc[0]
    assert row.n_pairs == 8 and row.mean_diff == pytest.approx(-0.1, abs=0.01)
    assert row.ttest_paired_p < 1e-6 < 0.5 < row.welch_p  # paired within (order, seed): the offset cancels


def test_the_sweep_says_where_a_claim_holds_against_each_reference_with_the_search_multiplicity(tmp_path):
    """Fake sweep runs with a planted effect: k1_full forgets 1 bpb less than dense and replay at
    trust_increase=0.3 only. The claim must hold there against both references and nowhere else,
    and its p be Holm-corrected over every point searched."""
    from k1model.analysis.settings import AnalysisSettings
    from k1model.analysis.study_stats import sweep_statistics
    from k1model.study.plan import sweep_cells

    sweep = {"factors": {"trust_increase": [0.03, 0.3]}, "variants": ["k1_full", "dense", "replay"],
             "seeds": [10, 11, 12, 13, 14, 15]}
    p = load_params(params(sweep=sweep, experiment={**BASE["experiment"], "variants": ["k1_full", "dense", "replay"]},
                           analysis={"references": ["k1_full", "dense", "replay"], "primary_test": "ttest_paired"}))
    rng = np.random.default_rng(0)
    written = set()
    for cell in sweep_cells(p):
        if cell.path in written:
            continue
        written.add(cell.path)
        effect = -1.0 if (cell.variant == "k1_full" and cell.point == "trust_increase~0.3") else 0.0
        value = 0.5 + 0.1 * cell.seed % 7 * 0.01 + effect + rng.normal(0, 0.01)
        d = tmp_path / cell.path
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"status": "completed", "scalars": {
            "forgetting": value, "final_avg_bpb": 3.0 + rng.normal(0, 0.01), "bwt": value,
            "idle_step_fraction": 0.5, "sparsity_param_fraction": 0.2}}))
    (tmp_path / "tables").mkdir()
    doc, tidy, _ = sweep_statistics(p, AnalysisSettings(p), tmp_path, tmp_path / "tables")
    assert doc["references"] == ["dense", "replay"] and doc["searched"] == 3
    for ref in ("dense", "replay"):
        holds = {point for point in doc["claims"] if doc["claims"][point][ref]["k1_full"]["forgetting"]["holds"]}
        assert holds == {"trust_increase~0.3"}, (ref, holds)
        c = doc["claims"]["trust_increase~0.3"][ref]["k1_full"]["forgetting"]
        assert c["mean_diff"] == pytest.approx(-1.0, abs=0.05) and c["p_holm_search"] >= c["p"]
    assert not doc["failed"]


# ------------------------------------------------------------------ a group survives a failed run


def test_a_group_finishes_when_one_run_fails(tmp_path, monkeypatch):
    from k1model.data import prepare
    from k1model.train import step as step_mod
    from k1model.train.protocol import RunGroup, run_specs

    p = load_params(params())
    prepare(p.data, tmp_path / "data", seq_len=p.model.max_seq_len)
    real = step_mod.Trainer.train_step

    def poisoned(self, x, y):
        if self.step_count == 3:
            with torch.no_grad():
                self.model.shared[1].ln_f.weight.fill_(float("nan"))  # run 1 only
        return real(self, x, y)

    monkeypatch.setattr(step_mod.Trainer, "train_step", poisoned)
    specs = run_specs(p, ["k1_full", "dense"], [0], tmp_path / "runs" / "{variant}" / "seed{seed}")
    results = RunGroup(p, tmp_path / "data", specs).run(progress=False)
    assert results[0]["status"] == "completed" and results[1]["status"] == "failed"
    failed = tmp_path / "runs" / "dense" / "seed0"
    for name in ("metrics.json", "steps.csv.gz", "evals.csv", "checkpoint.pt", "failure.json"):
        assert (failed / name).is_file(), name  # every declared output exists: the pipeline goes on
    assert json.loads((failed / "failure.json").read_text())["step"] == 3


# every method key gets a valid value different from the default: what a sweep could set
OTHER_VALUES = {"learning_rate": 0.01, "weight_decay": 0.1, "betas": (0.8, 0.9), "eps": 1e-6,
                "trust_threshold": 0.3, "trust_increase": 0.4, "trust_decay": 0.9, "trust_rule": "proportional",
                "loo_interval": 2, "path_scales": (1.0, 0.5, 0.2), "top_k": 1, "scale_mode": "gradient",
                "reset_moments_on_return": True, "grad_clip": 0.5, "ewc_lambda": 7.0, "ewc_gamma": 0.5,
                "fisher_batches": 1, "replay_buffer": 20, "replay_fraction": 0.125, "grow_window": 3,
                "grow_share": 0.3, "prune_threshold": 0.5, "prune_rounds": 1, "merge_similarity": -0.5,
                "merge_rounds": 1, "structure_tolerance": 0.5, "shared_update": "with_agents",
                "throttle_share": 0.3}


def test_keys_a_variant_does_not_read_cannot_change_its_run(tmp_path):
    """The sweep reuses a variant's base run at points that only change keys outside
    `Variant.reads()`: sound only if those keys really change nothing. Each variant is trained
    at the defaults and with every key it does not read changed; the runs must be identical."""
    import dataclasses

    from k1model.config import MethodConfig
    from k1model.data import prepare
    from k1model.method.variants import VARIANTS
    from k1model.train.protocol import RunGroup, run_specs

    assert set(OTHER_VALUES) == set(MethodConfig.field_names()) - {"variant"}, "give every method key a value"
    p = load_params(params(experiment={"variants": list(VARIANTS), "seeds": [0]},
                           method={"loo_interval": 3}, model={**BASE["model"], "max_agents": 5}))
    prepare(p.data, tmp_path / "data", seq_len=p.model.max_seq_len)
    specs = []
    for spec in run_specs(p, list(VARIANTS), [0], tmp_path / "runs" / "{variant}" / "base"):
        unread = {k: v for k, v in OTHER_VALUES.items() if k not in VARIANTS[spec.variant].reads()}
        specs += [spec, dataclasses.replace(spec, out_dir=spec.out_dir.parent / "unread",
                                            method=dataclasses.replace(spec.method, **unread))]
    results = RunGroup(p, tmp_path / "data", specs).run(progress=False)
    for base, other in zip(results[::2], results[1::2]):
        assert base["status"] == other["status"] == "completed"
        assert base["R"] == other["R"] and base["R_valid"] == other["R_valid"], base["variant"]
        assert base["update_counts"] == other["update_counts"], base["variant"]


def test_a_tuned_run_at_the_profiles_own_settings_is_its_twin_copied(tmp_path):
    """A tuned run whose chosen settings are the profile's own has its main-comparison run's config hash:
    `k1 train` copies that run (bit for bit, with copied_from) instead of training it again; a
    tuned run at other settings trains, and gives what training those settings from scratch gives."""
    from k1model.data import prepare
    from k1model.study.plan import twin_path
    from k1model.train.protocol import RunGroup, planned_specs

    p = load_params(params(experiment={**BASE["experiment"], "variants": ["k1_full", "dense"], "seeds": [0],
                                       "orders": [["alpha", "beta"]]},
                           tuning={"seeds": [7], "candidates": {"default": {"learning_rate": [0.003, 0.01]}}}))
    prepare(p.data, tmp_path / "data", seq_len=p.model.max_seq_len)
    root = tmp_path / "results"
    plan = plan_runs(p)
    main = [r for r in plan if r.part == "runs"]
    RunGroup(p, tmp_path / "data", planned_specs(p, main, root)).run(progress=False)
    tuned = [r for r in plan if r.part == "tuned"]
    assert {twin_path(r) for r in tuned} == {r.path for r in main}
    choices = {"variants": {"dense": {"overrides": {"learning_rate": 0.003}},   # the profile's own
                            "k1_full": {"overrides": {"learning_rate": 0.01}}}}
    results = RunGroup(p, tmp_path / "data", planned_specs(p, tuned, root, choices)).run(progress=False)
    by_variant = {m["variant"]: m for m in results}
    dense_twin = json.loads((root / "runs/alpha-beta/dense/seed0/metrics.json").read_text())
    assert by_variant["dense"]["copied_from"].endswith("runs/alpha-beta/dense/seed0")
    assert by_variant["dense"]["R"] == dense_twin["R"] and by_variant["dense"]["config_hash"] == dense_twin["config_hash"]
    for name in ("steps.csv.gz", "evals.csv", "checkpoint.pt"):
        assert (root / "tuned/alpha-beta/dense/seed0" / name).read_bytes() == \
            (root / "runs/alpha-beta/dense/seed0" / name).read_bytes(), name
    k1 = by_variant["k1_full"]
    assert "copied_from" not in k1 and k1["method"]["learning_rate"] == 0.01
    assert k1["config_hash"] != json.loads((root / "runs/alpha-beta/k1_full/seed0/metrics.json").read_text())["config_hash"]
