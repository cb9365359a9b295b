"""Damaged outputs (issue 18): a truncated or corrupt metrics.json, steps.csv.gz, resume.pt or checkpoint.pt in
a run folder, met by `k1 train`, `k1 attribute`, `k1 aggregate` (and `k1 figures`), is one line on stderr with
exit status 2: the file, what is wrong, how to rebuild it. Nothing in the results tree is touched."""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from pathlib import Path

import pytest
import yaml

from k1model.cli import main as k1
from k1model.errors import DamagedCheckpointError, DamagedOutputError
from k1model.io import read_output_json, read_output_table

PARAMS = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 20000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16},
    "method": {"learning_rate": 0.003, "loo_interval": 3},
    "train": {"batch_size": 4, "steps_per_phase": 6, "eval_interval": 3, "eval_batches": 1,
              "checkpoint_interval": 2, "sparsity_interval": 2},
    "experiment": {"variants": ["k1_full", "dense"], "seeds": [0, 1]},
    "analysis": {"bootstrap_resamples": 50, "resample_batches": 2, "fault_batches": 1, "randomisation_batches": 1,
                 "permutations": 20, "windows": 2},
}
ORDER = "alpha-beta"


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    else:  # corrupt: the same size, other bytes (what a broken copy leaves)
        path.write_bytes(bytes((b * 7 + 13) % 256 for b in data))


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root: (size, mtime, sha256); and the set of files."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory, prepare_data):
    """A finished results tree in the plan's layout: four runs (each its own `k1 train --run`), attributed, aggregated."""
    root = tmp_path_factory.mktemp("damaged")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    data = prepare_data(PARAMS)
    results = root / "results"
    from k1model.config import load_params
    from k1model.study.plan import plan_runs

    for run in plan_runs(load_params(params)):
        assert k1(["train", "--params", str(params), "--data", str(data), "--runs-root", str(results),
                   "--run", run.path]) == 0
    for run in sorted((results / "runs" / ORDER).glob("*/seed*")):
        assert k1(["attribute", "--params", str(params), "--data", str(data), "--run", str(run)]) == 0
    assert k1(["aggregate", "--params", str(params), "--results", str(results)]) == 0
    return {"params": params, "data": data, "results": results}


@pytest.fixture()
def tree(built, tmp_path):
    """A copy of the built tree to damage (the built one stays intact for the other tests)."""
    results = tmp_path / "results"
    shutil.copytree(built["results"], results)
    return {**built, "results": results, "run": results / "runs" / ORDER / "k1_full" / "seed0"}


def command(name: str, tree: dict) -> list[str]:
    p, d, res, run = str(tree["params"]), str(tree["data"]), tree["results"], tree["run"]
    return {"train": ["train", "--params", p, "--data", d, "--variant", "k1_full", "--seed", "0", "--order",
                      "alpha,beta", "--out", str(run)],
            "attribute": ["attribute", "--params", p, "--data", d, "--run", str(run)],
            "aggregate": ["aggregate", "--params", p, "--results", str(res), "--out", str(res.parent / "agg")],
            "figures": ["figures", "--params", p, "--results", str(res), "--out", str(res.parent / "figs")]}[name]


def assert_one_clear_line(capsys, cmd: str, path: Path, fix: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    assert err.startswith(f"k1 {cmd}: error: {path} is damaged: "), err
    assert fix in err, err
    return err


RERUN = "delete the run folder"
CASES = [  # (file, command): every command that can meet the file
    ("metrics.json", "train"), ("metrics.json", "attribute"), ("metrics.json", "aggregate"),
    ("metrics.json", "figures"), ("steps.csv.gz", "attribute"), ("steps.csv.gz", "figures"),
    ("checkpoint.pt", "attribute"),
]


@pytest.mark.parametrize("how", ["truncated", "corrupt", "empty"])
@pytest.mark.parametrize("name,cmd", CASES, ids=[f"{f}-{c}" for f, c in CASES])
def test_a_damaged_run_file_is_one_clear_error_and_nothing_is_touched(tree, capsys, name, cmd, how):
    path = tree["run"] / name
    damage(path, how)
    before = snapshot(tree["results"])
    assert k1(command(cmd, tree)) == 2
    err = assert_one_clear_line(capsys, cmd, path, f"{RERUN} {tree['run']} and rerun that run")
    if how == "empty":
        assert "it is empty" in err
    elif how == "truncated" and name != "checkpoint.pt":
        assert "truncated" in err
    assert snapshot(tree["results"]) == before  # no file written, changed or removed
    assert not (tree["results"].parent / "agg").exists() and not (tree["results"].parent / "figs").exists()


@pytest.mark.parametrize("how", ["truncated", "corrupt", "empty"])
def test_a_damaged_resume_state_says_the_run_can_restart_without_it(tree, capsys, how):
    run = tree["results"] / "interrupted"
    cmd = command("train", {**tree, "run": run})
    assert k1([*cmd, "--max-steps", "4"]) == 0 and (run / "resume.pt").is_file()
    damage(run / "resume.pt", how)
    before = snapshot(tree["results"])
    assert k1(cmd) == 2
    assert_one_clear_line(capsys, "train", run / "resume.pt", f"delete {run / 'resume.pt'} to restart that run from step 0")
    assert snapshot(tree["results"]) == before
    (run / "resume.pt").unlink()  # the advice works
    assert k1(cmd) == 0 and (run / "metrics.json").is_file()


def test_a_damaged_attribution_is_met_by_aggregate(tree, capsys):
    path = tree["run"] / "attribution.json"
    damage(path, "truncated")
    before = snapshot(tree["results"])
    assert k1(command("aggregate", tree)) == 2
    assert_one_clear_line(capsys, "aggregate", path, f"--run {tree['run']}")
    assert snapshot(tree["results"]) == before


def test_the_readers_say_what_is_wrong(tmp_path):
    p = tmp_path / "m.json"
    cases = {b'{"a": 1, "b": [1, 2': "it is truncated: the JSON stops after 19 bytes",
             b'{"a": 1,, "b": 2}': "not valid JSON (Expecting property name enclosed in double quotes at line 1",
             b"\xff\xfe\x00garbage": "not UTF-8 text (byte 0 of 10)", b"[1, 2]": "a JSON list, not an object",
             b"  \n": "it is empty"}
    for raw, what in cases.items():
        p.write_bytes(raw)
        with pytest.raises(DamagedOutputError, match="fix it so") as err:
            read_output_json(p, "fix it so")
        assert str(err.value).startswith(f"{p} is damaged: ") and what in str(err.value), str(err.value)
    t = tmp_path / "s.csv.gz"
    with gzip.open(t, "wt") as fh:
        fh.write("step,loss\n" + "".join(f"{i},{i / 3}\n" for i in range(2000)))
    assert len(read_output_table(t, "x")) == 2000
    t.write_bytes(t.read_bytes()[:-40])
    with pytest.raises(DamagedOutputError, match="truncated"):
        read_output_table(t, "x")
    t.write_bytes(b"not gzip at all")
    with pytest.raises(DamagedOutputError, match="not a gzip file"):
        read_output_table(t, "x")


def test_a_checkpoint_that_is_not_one_is_damaged_not_dangerous(tmp_path):
    """Random bytes make torch's safe loader refuse with the same error as a checkpoint that would run code;
    a file that is not a torch archive at all is reported as damaged instead."""
    from k1model.train.checkpoint import load_checkpoint

    path = tmp_path / "run" / "checkpoint.pt"
    path.parent.mkdir()
    path.write_bytes(os.urandom(300))
    with pytest.raises(DamagedCheckpointError, match="is not a checkpoint") as err:
        load_checkpoint(path)
    assert "could run code" not in str(err.value) and f"{RERUN} {path.parent}" in str(err.value)
