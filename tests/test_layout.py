"""The layout contract (docs/architecture.md): DVC stages depend on all the code their commands
import, the params they declare are the ones the library reads, no module is a monolith, and the
library never imports the pipeline's tools."""
from __future__ import annotations

import ast
import re

import pytest
import yaml

from layout_tools import PACKAGE, ROOT, closure, command_roots

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
MAX_MODULE_LINES = 600


STAGE_RULES = {"data": "data.smk", "runs": "train.smk", "analysis": "analysis.smk", "paper": "paper.smk"}


def stage_commands(stage: dict) -> set[str]:
    """The k1 subcommands of the rules a stage runs (`--config ... stage=NAME` includes one .smk file)."""
    name = re.search(r"\bstage=(\w+)", stage["cmd"]).group(1)
    return set(re.findall(r"\bk1 (\w+)", (ROOT / "workflow" / "rules" / STAGE_RULES[name]).read_text()))


def covered(path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", list(DVC["stages"]))
def test_dvc_stage_deps_cover_every_module_its_commands_import(name):
    stage = DVC["stages"][name]
    commands = stage_commands(stage)
    assert commands, f"stage {name} runs no k1 command?"
    # every stage runs Snakemake, whose start-up imports k1model.config (validation, probe keys) and
    # the run plan (k1model.study.plan)
    files = closure(set().union(*(command_roots(c) for c in commands)) | {"k1model.config", "k1model.study.plan"})
    deps = [d.split("#")[0].strip() for d in stage["deps"]]
    missing = sorted(f.relative_to(ROOT).as_posix() for f in files if not covered(f, deps))
    assert not missing, f"dvc.yaml stage {name} ({', '.join(sorted(commands))}) lacks deps {missing}"


def test_the_closure_sees_lazy_imports():
    """The check is not vacuous: `k1 train` reaches the trainer through a function-level import."""
    files = {f.relative_to(PACKAGE).as_posix() for f in closure(command_roots("train"))}
    assert {"train/protocol.py", "train/step.py", "method/updates.py", "model.py"} <= files
    assert "report/paper.py" not in files


def test_dvc_params_are_what_the_library_says_each_stage_reads():
    from k1model.config import AnalysisConfig

    def declared(stage: str) -> list[str]:
        entries = DVC["stages"][stage]["params"][0]
        return list(next(iter(entries.values())) or [])

    assert declared("data") == ["data", "model.max_seq_len"]
    runs = declared("runs")
    assert [k for k in runs if not k.startswith("analysis.")] == ["model", "method", "train", "experiment"]
    assert [k.removeprefix("analysis.") for k in runs if k.startswith("analysis.")] == AnalysisConfig.probe_keys()
    assert declared("analysis") == ["experiment", "analysis"]


def test_no_module_is_a_monolith():
    long = {p.relative_to(ROOT).as_posix(): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_the_library_knows_nothing_of_the_pipeline():
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            bad = [n for n in names if n.split(".")[0] in ("snakemake", "dvc")]
            assert not bad, f"{path.relative_to(ROOT)} imports {bad}"
