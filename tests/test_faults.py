"""Faults and bad inputs a hostile but fair user meets (issue 32): each gives one clear line (exit status 2) or
a correct result, never a silently wrong one or a traceback. Concurrent writers, interrupted processes, stale
data, damaged checkpoints, duplicate keys, impossible sizes, a full disk and read-only folders.

The full disk and the read-only folders are real: a small tmpfs or a read-only bind mount in a user and mount
namespace of their own (`unshare -rm`, no root needed); those tests are skipped where Linux forbids that."""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from k1model.cli import main as k1

K1 = str(Path(sys.executable).parent / "k1")
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
#: a run long enough to be caught while it trains (it is stopped long before its end)
LONG = {**PARAMS, "train": {**PARAMS["train"], "steps_per_phase": 100000, "checkpoint_interval": 1}}


def write_params(path: Path, params: dict | None = None, **sections: dict) -> Path:
    """A params file: PARAMS (or `params`) with some keys of some sections replaced."""
    params = copy.deepcopy(params or PARAMS)
    for section, values in sections.items():
        params[section] = {**params[section], **values}
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def train_args(params: Path, data: Path, out: Path, variant: str = "k1_full", seed: str = "0") -> list[str]:
    return ["train", "--params", str(params), "--data", str(data), "--variant", variant, "--seed", seed,
            "--out", str(out)]


def one_line(err: str, command: str) -> str:
    """The error line of a k1 command: exactly one line on stderr, no traceback."""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"k1 {command}: "), err
    return lines[0]


@pytest.fixture(scope="module")
def data(prepare_data) -> Path:
    return prepare_data(PARAMS)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data) -> dict:
    """A finished run (k1_full, seed 0) and its params file."""
    root = tmp_path_factory.mktemp("finished")
    params = write_params(root / "params.yaml")
    run = root / "run"
    assert k1(train_args(params, data, run)) == 0
    return {"params": params, "run": run}


@pytest.fixture()
def run_copy(finished, tmp_path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(finished["run"], run)
    return run


def start_long_run(tmp_path: Path, data: Path, out: Path) -> subprocess.Popen:
    """`k1 train` of LONG in another process, returned once it has written its first checkpoint."""
    params = write_params(tmp_path / "long.yaml", LONG)
    proc = subprocess.Popen([K1, *train_args(params, data, out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 120
    while not (out / "resume.pt").is_file():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the long run wrote no checkpoint"
        time.sleep(0.05)
    return proc


# --- 4: one process per run folder -----------------------------------------------------------------------------
def test_a_run_folder_belongs_to_one_process_and_a_dead_owners_lock_is_taken_over(data, tmp_path, capsys):
    out = tmp_path / "run"
    owner = start_long_run(tmp_path, data, out)
    try:
        other = write_params(tmp_path / "other.yaml", LONG, method={"learning_rate": 0.01})
        for params in (tmp_path / "long.yaml", other):  # the same run, or another one into the same folder
            assert k1([*train_args(params, data, out), "--max-steps", "1"]) == 2
            line = one_line(capsys.readouterr().err, "train")
            assert f"{out} is in use by process {owner.pid}" in line and "k1.lock" in line
    finally:
        owner.kill()  # kill -9: the lock file stays, naming a process that no longer runs
        owner.communicate()
    assert str(owner.pid) in (out / "k1.lock").read_text()
    assert k1([*train_args(tmp_path / "long.yaml", data, out), "--max-steps", "1"]) == 0
    assert f"took over the lock of process {owner.pid}, which no longer runs" in capsys.readouterr().out
    assert not (out / "k1.lock").exists()  # released at the end


# --- 13: stray temporary files --------------------------------------------------------------------------------
def test_stray_temporary_files_are_removed_at_the_next_start(finished, data, run_copy, capsys):
    before = {p.name: p.read_bytes() for p in run_copy.iterdir()}
    strays = [run_copy / ".resume.pt.k2j_9x0a.tmp", run_copy / ".metrics.json.abcdefgh.tmp"]
    for stray in strays:
        stray.write_bytes(b"half a file")
    (run_copy / "notes.tmp").write_text("mine")  # not one of k1's temporary files: kept
    assert k1(train_args(finished["params"], data, run_copy)) == 0
    assert "already complete" in capsys.readouterr().out
    assert {p.name: p.read_bytes() for p in run_copy.iterdir()} == {**before, "notes.tmp": b"mine"}


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupted_train_says_so_in_one_line_and_leaves_nothing_behind(data, tmp_path, signum):
    out = tmp_path / "run"
    proc = start_long_run(tmp_path, data, out)
    time.sleep(0.3)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    line = one_line(err, "train")
    assert "interrupted" in line and "rerun the same command to resume" in line
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp") or p.name == "k1.lock"]
    assert (out / "resume.pt").is_file()


# --- 7: the data section against the prepared data, and the data a finished run was trained on ------------------
def test_params_whose_data_section_differs_from_the_prepared_data_are_refused(data, tmp_path, capsys):
    params = write_params(tmp_path / "p.yaml", data={"max_bytes": 30000})
    out = tmp_path / "run"
    assert k1(train_args(params, data, out)) == 2
    line = one_line(capsys.readouterr().err, "train")
    assert "data.max_bytes" in line and "30000" in line and "20000" in line and str(data) in line
    assert "k1 prepare" in line and not out.exists()


def test_a_finished_run_records_its_data_and_refuses_other_data(finished, data, run_copy, prepare_data, tmp_path,
                                                                 capsys):
    metrics = json.loads((run_copy / "metrics.json").read_text())
    assert metrics["data_manifest_sha256"] == hashlib.sha256((data / "manifest.json").read_bytes()).hexdigest()
    other = copy.deepcopy(PARAMS)
    other["data"]["max_bytes"] = 24000
    other_data = prepare_data(other)
    other_params = write_params(tmp_path / "other.yaml", other)
    assert k1(["attribute", "--params", str(other_params), "--data", str(other_data), "--run", str(run_copy)]) == 2
    line = one_line(capsys.readouterr().err, "attribute")
    assert f"{run_copy} was trained on other data" in line and str(other_data) in line
    assert not (run_copy / "attribution.json").exists()
    assert k1(train_args(other_params, other_data, run_copy)) == 2
    assert "was trained on other data" in one_line(capsys.readouterr().err, "train")
    assert json.loads((run_copy / "metrics.json").read_text()) == metrics  # nothing retrained over it


# --- 8: duplicate keys -----------------------------------------------------------------------------------------
def test_a_duplicate_key_in_a_params_file_is_refused(data, tmp_path, capsys):
    text = write_params(tmp_path / "p.yaml").read_text()
    text = text.replace("  learning_rate: 0.003\n", "  learning_rate: 0.003\n  learning_rate: 0.01\n")
    (tmp_path / "p.yaml").write_text(text)
    assert k1(train_args(tmp_path / "p.yaml", data, tmp_path / "run")) == 2
    line = one_line(capsys.readouterr().err, "train")
    assert "learning_rate" in line and "twice" in line and f"line {text.splitlines().index('  learning_rate: 0.01') + 1}" in line


# --- 9: checkpoint integrity -------------------------------------------------------------------------------------
def flip_a_weight_byte(path: Path) -> None:
    """One byte inside the largest tensor of a torch checkpoint (a zip archive), the archive left valid."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    raw = bytearray(path.read_bytes())
    header = info.header_offset
    start = header + 30 + int.from_bytes(raw[header + 26:header + 28], "little") + \
        int.from_bytes(raw[header + 28:header + 30], "little")
    raw[start + info.file_size // 2] ^= 0x10
    path.write_bytes(bytes(raw))


def test_a_flipped_bit_in_a_checkpoint_is_found(finished, data, run_copy, capsys):
    flip_a_weight_byte(run_copy / "checkpoint.pt")
    assert k1(["attribute", "--params", str(finished["params"]), "--data", str(data), "--run", str(run_copy)]) == 2
    line = one_line(capsys.readouterr().err, "attribute")
    assert f"{run_copy / 'checkpoint.pt'} is damaged" in line and "hash" in line
    assert not (run_copy / "attribution.json").exists()


# --- 10: a model that cannot fit ---------------------------------------------------------------------------------
def test_a_model_too_big_for_the_memory_is_refused_before_allocating(data, tmp_path):
    params = write_params(tmp_path / "big.yaml", model={"branching": [64, 64], "embed_dim": 512, "num_heads": 8,
                                                        "hidden_dim": 2048})
    limit = 12 * 2**30  # the process may not take more than this (a machine of this size)
    out = tmp_path / "run"
    proc = subprocess.run(["bash", "-c", f"ulimit -v {limit // 1024} && exec {shlex.join([K1, *train_args(params, data, out)])}"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_line(proc.stderr, "train")
    assert "memory" in line and "GiB" in line and "model.branching [64, 64]" in line and "embed_dim" in line
    assert not out.exists()


# --- 11: every run failed ----------------------------------------------------------------------------------------
def test_when_every_run_fails_the_exit_status_says_so(data, tmp_path, capsys):
    params = write_params(tmp_path / "p.yaml", method={"learning_rate": 1.0e30})
    args = ["train", "--params", str(params), "--data", str(data), "--variant", "k1_full,dense", "--seed", "0",
            "--out", str(tmp_path / "runs/{variant}")]
    assert k1(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()  # each run's FAILED line, then the command's error
    assert "Traceback" not in captured.err and lines[-1].startswith("k1 train: error: "), captured.err
    assert "every run failed" in lines[-1] and "learning_rate" in lines[-1]
    assert "--max-steps" not in captured.out + captured.err and "step 12/12" not in captured.out
    for variant in ("k1_full", "dense"):
        assert json.loads((tmp_path / "runs" / variant / "failure.json").read_text())["status"] == "failed"


# --- 12: one line instead of a traceback ------------------------------------------------------------------------
@pytest.mark.parametrize("flag,value,expected", [
    ("--seed", "-1", "--seed=-1 is not allowed"),
    ("--seed", str(2**63), f"--seed={2**63} is not allowed: --seed must be an integer >= 0 and <= {2**63 - 1}"),
    ("--max-steps", "-5", "--max-steps=-5 is not allowed: --max-steps must be a positive integer"),
], ids=["negative seed", "seed above 2^63-1", "negative max steps"])
def test_bad_numbers_on_the_command_line_are_one_line(data, finished, tmp_path, capsys, flag, value, expected):
    out = tmp_path / "run"
    args = train_args(finished["params"], data, out, seed=value if flag == "--seed" else "0")
    args += [flag, value] if flag == "--max-steps" else []
    assert k1(args) == 2
    assert expected in one_line(capsys.readouterr().err, "train")
    assert not out.exists()


def test_a_truncated_manifest_is_a_damaged_file(data, finished, tmp_path, capsys):
    copy_of = tmp_path / "data"
    shutil.copytree(data, copy_of)
    text = (copy_of / "manifest.json").read_text()
    (copy_of / "manifest.json").write_text(text[: len(text) // 2])
    assert k1(train_args(finished["params"], copy_of, tmp_path / "run")) == 2
    line = one_line(capsys.readouterr().err, "train")
    assert f"{copy_of / 'manifest.json'} is damaged: it is truncated" in line and "k1 prepare" in line


def _namespaces_work() -> bool:
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_namespaces = pytest.mark.skipif(not _namespaces_work(), reason="no user and mount namespaces (unshare -rm)")


def in_namespace(setup: str, argv: list[str]) -> subprocess.CompletedProcess:
    """`argv` after the shell commands `setup` (mounts), in a user and mount namespace of its own."""
    script = f"set -e; {setup}; exec {shlex.join(argv)}"
    return subprocess.run(["unshare", "-rm", "bash", "-c", script], capture_output=True, text=True, timeout=300)


@needs_namespaces
def test_a_full_disk_is_named(data, finished, tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    out = small / "run"
    proc = in_namespace(f"mount -t tmpfs -o size=64k tmpfs {shlex.quote(str(small))}",
                        [K1, *train_args(finished["params"], data, out)])
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_line(proc.stderr, "train")
    assert "no space left" in line and str(out) in line


@needs_namespaces
@pytest.mark.parametrize("command", ["train", "prepare", "aggregate"])
def test_a_read_only_output_folder_is_named(data, finished, tmp_path, command):
    locked = tmp_path / "locked"
    locked.mkdir()
    argv = {"train": train_args(finished["params"], data, locked / "run"),
            "prepare": ["prepare", "--params", str(finished["params"]), "--out", str(locked / "data")],
            "aggregate": ["aggregate", "--params", str(finished["params"]), "--results", str(tmp_path / "results"),
                          "--out", str(locked / "agg")]}[command]
    if command == "aggregate":  # a results tree whose runs are finished (both variants, both seeds)
        from k1model.config import load_params
        from k1model.study.plan import plan_runs

        for run in plan_runs(load_params(finished["params"])):
            assert k1(["train", "--params", str(finished["params"]), "--data", str(data), "--runs-root",
                       str(tmp_path / "results"), "--run", run.path]) == 0
    quoted = shlex.quote(str(locked))
    proc = in_namespace(f"mount --bind {quoted} {quoted}; mount -o remount,bind,ro {quoted}", [K1, *argv])
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = one_line(proc.stderr, command)
    assert str(locked) in line and "read-only" in line


# --- 5: the paper and its summary -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def aggregated(tmp_path_factory) -> Path:
    from fake_runs import write_fake_runs, write_manifest
    from fake_runs import write_params as write_fake_params

    root = tmp_path_factory.mktemp("paper")
    write_fake_runs(root / "results" / "runs", steps_per_phase=10, eval_interval=5)
    write_fake_params(root / "params.yaml")
    write_manifest(root / "data")
    assert k1(["aggregate", "--params", str(root / "params.yaml"), "--results", str(root / "results")]) == 0
    return root


@pytest.mark.parametrize("edit,expected", [
    (lambda s: s.pop("random_path"), "lacks variant(s) random_path"),
    (lambda s: s.clear(), "lacks variant(s) k1_full, dense, random_path"),
    (lambda s: s["metrics"].pop("forgetting"), "lacks metric(s) forgetting"),
    (lambda s: s["config"].update(seeds=[0, 1]), "seeds [0, 1]"),
    (lambda s: s["claims"].pop("less_forgetting"), "lacks the claim(s) less_forgetting"),
], ids=["a variant", "empty", "a claim's metric", "other seeds", "a claim"])
def test_the_paper_refuses_a_summary_that_does_not_cover_the_params(aggregated, tmp_path, capsys, edit, expected):
    results = tmp_path / "results"
    shutil.copytree(aggregated / "results", results)
    summary = json.loads((results / "summary.json").read_text())
    edit(summary)
    (results / "summary.json").write_text(json.dumps(summary))
    out = tmp_path / "paper"
    assert k1(["paper", "--params", str(aggregated / "params.yaml"), "--results", str(results), "--data",
               str(aggregated / "data"), "--out", str(out)]) == 2
    line = one_line(capsys.readouterr().err, "paper")
    assert f"{results / 'summary.json'} does not match" in line and expected in line and "k1 aggregate" in line
    assert not out.exists()
