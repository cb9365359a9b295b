"""Extending the project without editing it (issue 28), as docs/architecture.md walks through: a strategy in a
package of its own ("l2prev": an L2 pull towards the weights at the end of the previous phase), installed the way
any package is (a distribution with an entry point of the group `k1model.strategies` on the Python path), is
validated, trained, attributed and analysed by the pipeline's own `k1` commands on a tiny profile, and its text and
claim reach the paper. Nothing in this repository is edited: not the package, not the schema file, not a rule."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

DECLARATION = '''
"""l2prev: dense updates plus an L2 pull towards the run's weights at the end of the previous phase."""
from k1model.config.checks import Number, setting
from k1model.config.registry import Strategy
from k1model.method.variants import Variant

STRATEGY = Strategy(
    name="l2prev",
    plugin="k1_l2prev.plugin:L2Prev",
    settings={"l2prev_strength": setting(0.1, Number(0.0), "pull towards the previous phase's weights (0 = off)")},
    variants=(Variant("l2prev", "all", "gradient", False, ("l2prev",), "dense + a pull to the previous phase"),),
    paper="`l2prev` adds {method.l2prev_strength:g} times the squared distance to the previous phase's weights",
    claims=({"name": "l2prev_forgets_less", "metric": "forgetting", "variant": "l2prev", "reference": "dense",
             "statement": "pulling towards the previous phase's weights forgets less than dense backpropagation"},),
)
'''

PLUGIN = '''
"""The plugin of l2prev: the anchor after each phase, the pull before every later backward."""
import torch

from k1model.train.plugins import Plugin


class L2Prev(Plugin):
    def __init__(self):
        self.anchor = None

    def after_phase(self, run, phase):
        self.anchor = [p.detach().clone() for p in run.parameters()]

    def loss_term(self, run, loss):
        if self.anchor is None:
            return None
        return run.method.l2prev_strength * sum((p - a).square().sum() for p, a in zip(run.parameters(), self.anchor))

    def state_dict(self):
        return {"anchor": self.anchor}

    def load_state_dict(self, state):
        self.anchor = state["anchor"]
'''

PROFILE = {
    "data": {"source": "synthetic", "domains": ["alpha", "beta"], "max_bytes": 20000,
             "valid_fraction": 0.1, "test_fraction": 0.1},
    "model": {"branching": [2], "embed_dim": 16, "num_heads": 2, "hidden_dim": 32, "max_seq_len": 16},
    "method": {"learning_rate": 0.01, "l2prev_strength": 0.5},
    "train": {"batch_size": 4, "steps_per_phase": 8, "eval_interval": 4, "eval_batches": 1, "checkpoint_interval": 8,
              "sparsity_interval": 4},
    "experiment": {"variants": ["dense", "l2prev"], "seeds": [0, 1]},
    "analysis": {"bootstrap_resamples": 50, "references": ["dense"], "resample_batches": 2, "fault_batches": 1,
                 "randomisation_batches": 1, "windows": 2, "permutations": 20},
}


def install(site: Path) -> None:
    """The package and its distribution metadata, as `pip install` leaves them in site-packages."""
    (site / "k1_l2prev").mkdir(parents=True)
    (site / "k1_l2prev" / "__init__.py").write_text(DECLARATION)
    (site / "k1_l2prev" / "plugin.py").write_text(PLUGIN)
    meta = site / "k1_l2prev-0.1.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: k1-l2prev\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text("[k1model.strategies]\nl2prev = k1_l2prev:STRATEGY\n")


def snakemake_command() -> list[str] | None:
    import importlib.util

    return [sys.executable, "-m", "snakemake"] if importlib.util.find_spec("snakemake") else None


@pytest.mark.slow
@pytest.mark.skipif(snakemake_command() is None, reason="snakemake is not installed (pip install -e .[pipeline])")
def test_a_strategy_from_another_package_runs_through_the_pipeline_into_the_paper(tmp_path):
    site, wd = tmp_path / "site", tmp_path / "wf"
    install(site)
    wd.mkdir()
    shutil.copy2(ROOT / "Snakefile", wd / "Snakefile")
    shutil.copytree(ROOT / "workflow", wd / "workflow")
    shutil.copytree(ROOT / "params", wd / "params")
    (wd / "params/l2.yaml").write_text(yaml.safe_dump(PROFILE))
    env = {**os.environ, "PYTHONPATH": str(site), "MPLBACKEND": "Agg"}
    env.pop("K1_DATA_ROOT", None)

    # without the package, the profile is refused at start-up, naming the key
    bare = subprocess.run([*snakemake_command(), "-n", "--cores", "1", "--config", "params_file=params/l2.yaml"],
                          cwd=wd, env={**env, "PYTHONPATH": ""}, capture_output=True, text=True, timeout=300)
    assert bare.returncode != 0 and "l2prev_strength" in bare.stdout + bare.stderr

    proc = subprocess.run([*snakemake_command(), "--cores", "2", "--config", "params_file=params/l2.yaml"], cwd=wd,
                          env=env, capture_output=True, text=True, timeout=1200)
    out = wd / "outputs" / "l2"
    if proc.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text(errors='replace')[-2000:]}" for p in sorted(out.rglob("*.log")))
        pytest.fail((proc.stdout + proc.stderr)[-4000:] + logs)

    runs = out / "results/runs/alpha-beta"
    l2, dense = (json.loads((runs / v / "seed0/metrics.json").read_text()) for v in ("l2prev", "dense"))
    assert l2["variant"] == "l2prev" and l2["method"]["l2prev_strength"] == 0.5 and l2["status"] == "completed"
    assert l2["R"][0] == dense["R"][0] and l2["R"][1] != dense["R"][1]  # the pull starts with the second phase
    assert l2["kernels"] == dense["kernels"] == "torch (masked attention)"
    assert (runs / "l2prev/seed0/attribution.json").is_file()
    paper = (out / "paper/paper.md").read_text()
    assert "`l2prev` adds 0.5 times the squared distance to the previous phase's weights" in paper
    claims = json.loads((out / "paper/numbers.json").read_text())
    assert "l2prev_forgets_less" in json.dumps(claims)
    assert "pulling towards the previous phase's weights forgets less than dense backpropagation" in paper

    # the same strategy, reached by the registry's public entry point in a fresh interpreter: no torch to plan it
    code = textwrap.dedent("""
        import sys
        from k1model.config import load_params, registry
        from k1model.study.plan import plan_runs
        plan = plan_runs(load_params("params/l2.yaml"))
        print(list(registry.STRATEGIES)[-1], len(plan), "torch" in sys.modules)
    """)
    fresh = subprocess.run([sys.executable, "-c", code], cwd=wd, env=env, capture_output=True, text=True, timeout=120)
    assert fresh.stdout.split() == ["l2prev", "4", "False"], fresh


def test_a_broken_entry_point_is_one_clear_error_naming_its_package(tmp_path):
    """A package whose declared strategy cannot be imported: every k1 command that looks names up says which
    entry point and package, in one line, with exit status 2."""
    site = tmp_path / "site"
    meta = site / "k1_broken-0.1.dist-info"
    meta.mkdir(parents=True)
    (meta / "METADATA").write_text("Metadata-Version: 2.1\nName: k1-broken\nVersion: 0.1\n")
    (meta / "entry_points.txt").write_text("[k1model.strategies]\nbroken = k1_broken_missing:STRATEGY\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    proc = subprocess.run([sys.executable, "-m", "k1model", "schema"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "entry point broken = 'k1_broken_missing:STRATEGY' (package k1-broken)" in err
    assert "fix or uninstall that package" in err
