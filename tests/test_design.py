"""The study's design (issue 31): a run's init seed from (seed, order), orders drawn from the permutations, the
initialisation as the unit of analysis (order as a block, or the seed when seeds are shared), the declared
claims as the one Holm family, design constants measured not tested, and diverged runs flagged and kept."""
from __future__ import annotations

import dataclasses

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from fake_runs import run_path, write_fake_run, write_manifest, write_params
from k1model.analysis import claim_tests as CT
from k1model.analysis.aggregate import aggregate, read_summary
from k1model.cl_metrics import divergence
from k1model.analysis.settings import load_analysis_config
from k1model.analysis.stats import holm, paired_difference
from k1model.analysis.units import paired_units, unit_values
from k1model.config import Params, config_hash, load_params, method_config
from k1model.config.experiment import init_seed
from k1model.errors import ConfigError
from k1model.analysis.claims import all_claims

ORDERS = [["prose", "code", "science"], ["science", "code", "prose"]]


# --------------------------------------------------------------------------- seeds and orders
def test_init_seed_derives_from_seed_and_order_through_a_stable_hash():
    a, b = init_seed(3, ("tales", "code"), "per_order"), init_seed(3, ("code", "tales"), "per_order")
    assert a != b and 0 <= a < 2**31 and init_seed(3, ("tales", "code"), "per_order") == a
    import hashlib

    documented = int.from_bytes(hashlib.sha256(b"k1-init:3:tales-code").digest()[:8], "big") % 2**31
    assert a == documented == 1320954630  # the same on every machine and Python (no hash randomisation)
    assert init_seed(3, ("tales", "code"), "shared") is None
    with pytest.raises(ValueError):
        init_seed(3, ("tales",), "per_run")


def test_the_legacy_setting_keeps_every_committed_runs_config_hash():
    """params/forgetting.yaml pins init_seed: shared: its runs' config hash is the one the code before issue 31
    computed (golden value from that code), so the committed runs stay complete and resume; per_order hashes
    the derived seed too, so it never mistakes a run of the other scheme for its own."""
    from k1model.train.protocol import planned_specs, run_hash
    from k1model.study.plan import part_runs

    params = load_params("params/forgetting.yaml")
    assert params.experiment.init_seed == "shared"
    for name in ("study", "pilot_forgetting", "pilot_baselines"):
        assert load_params(f"params/{name}.yaml").experiment.init_seed == "shared", name
    identity = params.train.identity("masked", "loop")
    manifest = {"source": "local", "domains": {"tales": 1}}
    run = next(r for r in part_runs(params, "runs") if r.variant == "k1_full" and r.seed == 3
               and tuple(r.order) == params.orders[1])
    spec = planned_specs(params, [run], "/tmp/x")[0]
    assert spec.init_seed is None and spec.rng_seed == 3
    assert run_hash(params.model, spec, identity, manifest) == "1cba35be061a77fd"  # the code before issue 31
    legacy = config_hash(params.model, method_config(params.method, "k1_full").hash_dict(), identity,
                         list(params.orders[1]), 3, manifest)
    assert run_hash(params.model, spec, identity, manifest) == legacy
    raw = yaml.safe_load(Path("params/forgetting.yaml").read_text())
    raw["experiment"]["init_seed"] = "per_order"
    fresh = Params.from_mapping(raw)
    spec2 = planned_specs(fresh, [run], "/tmp/x")[0]
    assert spec2.init_seed == init_seed(3, params.orders[1], "per_order")
    assert run_hash(fresh.model, spec2, identity, manifest) != legacy
    # a key added later (the throttled control's share) stays out of the hash at its default, and in it otherwise
    throttled = dataclasses.replace(spec, method=dataclasses.replace(spec.method, throttle_share=0.5))
    assert run_hash(params.model, throttled, identity, manifest) != legacy


def _draw_params(draw) -> dict:
    raw = yaml.safe_load(Path("params/forgetting.yaml").read_text())
    raw["experiment"]["orders"] = draw
    return raw


def test_orders_drawn_from_the_permutations_are_distinct_deterministic_and_checked():
    p = Params.from_mapping(_draw_params({"draw": 4, "seed": 0}))
    orders = p.orders
    assert len(orders) == 4 == len(set(orders))
    assert all(sorted(o) == sorted(p.data.domains) for o in orders)
    assert Params.from_mapping(_draw_params({"draw": 4, "seed": 0})).orders == orders  # the same every time
    assert Params.from_mapping(_draw_params({"draw": 4, "seed": 1})).orders != orders
    assert len(set(Params.from_mapping(_draw_params({"draw": 24, "seed": 0})).orders)) == 24  # every order
    with pytest.raises(ConfigError, match=r"experiment.orders.draw.*at most 24"):
        Params.from_mapping(_draw_params({"draw": 25, "seed": 0}))
    with pytest.raises(ConfigError, match="experiment.orders.drw: unknown key"):
        Params.from_mapping(_draw_params({"drw": 3}))
    assert Params.from_mapping(_draw_params([["wiki", "science", "code", "tales"]])).orders == [
        ("wiki", "science", "code", "tales")]  # a list still works


def test_the_schema_accepts_drawn_orders_and_the_init_seed():
    import jsonschema

    schema = yaml.safe_load(Path("workflow/schemas/params.schema.yaml").read_text())
    raw = _draw_params({"draw": 4, "seed": 0})
    jsonschema.validate(raw, schema)
    raw["experiment"]["init_seed"] = "per_run"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(raw, schema)


TRAIN = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 40000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16,
              "dropout": 0.0},
    "method": {"learning_rate": 0.003, "loo_interval": 4},
    "train": {"batch_size": 4, "steps_per_phase": 3, "eval_interval": 3, "eval_batches": 1,
              "checkpoint_interval": 3, "sparsity_interval": 1, "device": "cpu"},
    "experiment": {"variants": ["dense"], "seeds": [0, 1], "orders": [["alpha", "beta"], ["beta", "alpha"]]},
    "analysis": {},
}


@pytest.mark.parametrize("scheme", ["per_order", "shared"])
def test_a_seed_in_two_orders_is_two_initialisations_unless_shared(prepare_data, tmp_path, scheme):
    """Trained runs: under per_order, seed 0 starts from different weights in the two orders (its untrained bpb
    per domain differs); under shared from the same ones (the same R0, the behaviour before issue 31)."""
    from k1model.study.plan import part_runs
    from k1model.train.protocol import RunGroup, planned_specs

    raw = {**TRAIN, "experiment": {**TRAIN["experiment"], "init_seed": scheme}}
    params = load_params(raw)
    data = prepare_data(raw)
    runs = [r for r in part_runs(params, "runs") if r.seed == 0]
    metrics = RunGroup(params, data, planned_specs(params, runs, tmp_path)).run(progress=False)
    r0 = [dict(zip(m["domains"], m["R0"])) for m in metrics]
    if scheme == "per_order":
        assert r0[0]["alpha"] != r0[1]["alpha"] and r0[0]["beta"] != r0[1]["beta"]
        assert [m["init_seed"] for m in metrics] == [init_seed(0, tuple(r.order), "per_order") for r in runs]
    else:
        assert r0[0] == r0[1] and all("init_seed" not in m for m in metrics)
    assert all(m["divergence"]["diverged"] is False and m["scalars"]["diverged"] == 0.0 for m in metrics)


# --------------------------------------------------------------------------- the unit of analysis
def _tidy(scheme_rng: int = 0, n_seeds: int = 6, orders=("a", "b")) -> pd.DataFrame:
    rng = np.random.default_rng(scheme_rng)
    rows = []
    for s in range(n_seeds):
        init = rng.normal(0, 0.5)  # the seed's initialisation, shared by its orders
        for k, o in enumerate(orders):
            for v, shift in (("k1_full", -0.2), ("dense", 0.0)):
                value = 1.0 + shift + init * (1.0 if v == "k1_full" else 0.2) + 0.1 * k + rng.normal(0, 0.1)
                rows.append({"variant": v, "order": o, "seed": s, "metric": "forgetting", "value": value})
    return pd.DataFrame(rows)


def test_order_as_a_block_is_the_fixed_effects_test_of_statsmodels():
    """per_order: the paired t-test with the order as a block equals OLS of the differences on the order
    (sum-to-zero contrasts: the intercept is the mean of the order means)."""
    import statsmodels.formula.api as smf

    tidy = _tidy()
    units = paired_units(tidy, "k1_full", "dense", "forgetting", "per_order")
    ours = paired_difference(units.x_paired - units.y_paired, units.blocks)
    frame = pd.DataFrame({"d": units.x_paired - units.y_paired, "order": units.blocks})
    fit = smf.ols("d ~ C(order, Sum)", frame).fit()
    assert ours["mean_diff"] == pytest.approx(fit.params["Intercept"])
    assert ours["diff_se"] == pytest.approx(fit.bse["Intercept"])
    assert ours["p"] == pytest.approx(fit.pvalues["Intercept"]) and ours["diff_df"] == fit.df_resid == 10


@pytest.mark.filterwarnings("ignore::statsmodels.tools.sm_exceptions.ConvergenceWarning")
def test_shared_seeds_make_the_seed_the_unit_as_a_mixed_model_would():
    """shared: a seed's runs in two orders are one initialisation; the test on the seeds' means has the
    mixed model's estimate and standard error (random intercept per seed, order fixed; balanced data)."""
    import statsmodels.formula.api as smf

    tidy = _tidy()
    units = paired_units(tidy, "k1_full", "dense", "forgetting", "shared")
    assert units.kind == "seed" and units.x_paired.size == 6 and units.runs == 12
    ours = paired_difference(units.x_paired - units.y_paired)
    wide = tidy.pivot_table(index=["order", "seed"], columns="variant", values="value").reset_index()
    wide["d"] = wide["k1_full"] - wide["dense"]
    fit = smf.mixedlm("d ~ C(order, Sum)", wide, groups=wide["seed"]).fit(reml=True)
    assert float(fit.cov_re.iloc[0, 0]) > fit.scale  # the initialisation's variance is real, not on the boundary
    assert ours["mean_diff"] == pytest.approx(fit.params["Intercept"], rel=1e-6)
    assert ours["diff_se"] == pytest.approx(fit.bse["Intercept"], rel=1e-3)
    # treating the 12 runs as independent units (the old analysis) understates the standard error here
    runs = paired_difference(wide["d"].to_numpy(), wide["order"].tolist())
    assert runs["diff_se"] < 0.85 * ours["diff_se"] and runs["p"] < ours["p"]


def test_every_reported_n_is_a_number_of_initialisations(tmp_path):
    """The same runs in two orders: n = 6 runs per variant under per_order, n = 3 seeds (of 2 runs each) under
    shared, in the summary, the claims and the design block."""
    for scheme, n in (("per_order", 6), ("shared", 3)):
        root = tmp_path / scheme
        for order in ORDERS:
            for v in ("k1_full", "dense", "random_path"):
                for s in (0, 1, 2):
                    write_fake_run(run_path(root / "runs", v, s, "-".join(order)), v, s, domains=order,
                                   steps_per_phase=6, eval_interval=3, attribution=False)
        params = write_params(tmp_path / f"{scheme}.yaml", experiment={"orders": ORDERS, "init_seed": scheme},
                              primary_test="ttest_paired")
        doc = aggregate(params, root, root)
        assert doc["k1_full"]["forgetting"]["n"] == n and doc["k1_full"]["forgetting"]["n_runs"] == 6
        assert doc["claims"]["less_forgetting"]["n_units"] == n and doc["design"]["units_per_variant"] == n
        assert doc["claims"]["less_forgetting"]["unit"] == ("run" if scheme == "per_order" else "seed")


# --------------------------------------------------------------------------- the claims' family
def _part(name: str, tidy: pd.DataFrame, variants, chance=None) -> CT.Part:
    validity = {"measured": True, "forgets": True}
    return CT.Part(name, tidy, variants, validity, "per_order", (6, 1), chance)


def _claim_tidy(variants, metrics=("forgetting", "final_avg_bpb", "sparsity_param_fraction"), seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [{"variant": v, "order": "a", "seed": s, "metric": m, "value": float(rng.normal(1 + 0.1 * i, 0.2))}
            for i, v in enumerate(variants) for s in range(6) for m in metrics]
    return pd.DataFrame(rows)


def test_a_claims_holm_family_is_exactly_the_declared_claims_tested():
    """As specified and tuned together, only the declared claims (never an exploratory comparison such as
    dense vs joint), minus the gated ones (not measured) and the design properties (measured)."""
    cfg = load_analysis_config(write_params(Path("/tmp") / "k1-design-family.yaml", primary_test="ttest_paired"))
    variants = ["k1_full", "dense", "random_path", "ewc", "joint"]
    main, tuned = _claim_tidy(variants), _claim_tidy(["k1_full", "dense", "ewc"], seed=1)
    parts = [_part("as_specified", main, variants), _part("tuned", tuned, ["k1_full", "dense", "ewc"])]
    claims = all_claims()
    by_part, family = CT.claim_parts(parts, claims, cfg)
    expected = []
    for part in parts:
        for c in claims:
            if part.name == "tuned" and c.reference == "chance":
                continue
            sides = {c.variant} | ({c.reference} if c.reference != "chance" else set())
            metric_there = c.metric in set(part.tidy.metric)
            if sides <= set(part.variants) and metric_there and c.kind == "test":
                expected.append(f"{part.name}/{c.name}")
    assert family["members"] == expected and family["size"] == len(expected)
    assert "as_specified/less_forgetting_than_ewc" in expected and "tuned/attribution_not_sparsity" not in expected
    assert not any("joint" in m for m in family["members"])
    entries = [by_part[m.split("/")[0]][m.split("/")[1]] for m in expected]
    np.testing.assert_allclose([e["p_holm"] for e in entries], holm([e["p"] for e in entries]))
    assert all(e["family_size"] == len(expected) for e in entries)
    assert by_part["as_specified"]["sparse_updates"]["status"] == "measured"
    assert "p_holm" not in by_part["as_specified"]["sparse_updates"]
    assert by_part["tuned"]["attribution_not_sparsity"]["status"] == "not measured"


def test_a_new_gate_adds_a_status_and_leaves_the_family(monkeypatch):
    """The verdict machinery takes one more status by one more gate (e.g. the competence check of issue 30)."""
    cfg = load_analysis_config(write_params(Path("/tmp") / "k1-design-gate.yaml", primary_test="ttest_paired"))
    variants = ["k1_full", "dense", "random_path"]

    def not_competent(claim, part):
        return {"status": "not competent", "reason": "below the n-gram floor"} if claim.reference == "dense" else None

    monkeypatch.setattr(CT, "GATES", [*CT.GATES, not_competent])
    by_part, family = CT.claim_parts([_part("as_specified", _claim_tidy(variants), variants)], all_claims(), cfg)
    assert by_part["as_specified"]["less_forgetting"]["status"] == "not competent"
    assert family["members"] == ["as_specified/attribution_not_sparsity"]


# --------------------------------------------------------------------------- divergence
def test_divergence_rule():
    R0 = [8.0, 8.0]
    assert not divergence([[3.0, 5.0], [4.0, 3.0]], R0, [5.5, 5.0, 3.0, 2.5], ["a", "b"])["diverged"]
    spike = divergence([[12.0, 9.0], [4.0, 3.0]], R0, [5.5, 5.0, 3.0, 2.5], ["a", "b"])
    assert spike["diverged"] and "after phase 1, a at 12.000 bpb" in spike["reasons"][0]
    assert not divergence([[3.0, 9.0], [4.0, 3.0]], R0, [5.5, 5.0, 3.0, 2.5], ["a", "b"])["diverged"]  # b unseen
    assert divergence([[3.0, 5.0], [4.0, 3.0]], R0, [2.5, 3.0, 5.0, 5.5], ["a", "b"])["diverged"]  # loss rose
    assert divergence([[3.0, 5.0], [4.0, float("nan")]], R0, [5.5, 5.0, 3.0, 2.5], ["a", "b"])["diverged"]


def test_a_diverged_run_is_flagged_kept_and_each_affected_verdict_given_without_it(tmp_path):
    variants = ("k1_full", "dense", "random_path")
    for v in variants:
        for s in range(5):
            write_fake_run(run_path(tmp_path / "res" / "runs", v, s), v, s, steps_per_phase=6, eval_interval=3,
                           diverged=(v == "random_path" and s == 1))
    params = write_params(tmp_path / "p.yaml", seeds=(0, 1, 2, 3, 4), primary_test="ttest_paired")
    write_manifest(tmp_path / "data")
    doc = aggregate(params, tmp_path / "res", tmp_path / "res")
    metrics = json.loads((run_path(tmp_path / "res" / "runs", "random_path", 1) / "metrics.json").read_text())
    assert metrics["divergence"]["diverged"] and metrics["scalars"]["diverged"] == 1.0
    tidy = pd.read_csv(tmp_path / "res" / "tidy.csv")
    flag = tidy[(tidy.metric == "diverged") & (tidy.value == 1.0)]
    assert list(zip(flag.variant, flag.seed)) == [("random_path", 1)]
    div = read_summary(tmp_path / "res")["divergence"]
    assert [(r["variant"], r["seed"], r["kept"]) for r in div["runs"]] == [("random_path", 1, True)]
    assert doc["random_path"]["bwt"]["n"] == 5  # kept: never dropped silently
    sens = div["sensitivity"]["as_specified"]
    assert set(sens) == {"attribution_not_sparsity"}  # the one claim that involves random_path
    assert sens["attribution_not_sparsity"]["n_units"] == 4
    from k1model.report.paper import render_paper

    render_paper(params, tmp_path / "res", tmp_path / "data", tmp_path / "paper")
    text = (tmp_path / "paper" / "paper.md").read_text()
    assert "**Diverged runs.** 1 run(s) diverged" in text and "random_path/prose-code-science/seed1" in text
    assert "attribution_not_sparsity (as specified):" in text and "without" in text
