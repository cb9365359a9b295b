"""The layout contract (docs/architecture.md): DVC stages depend on all the code their commands
import, the params they declare are the ones the library reads, no module is a monolith, and the
library never imports the pipeline's tools."""
from __future__ import annotations

import ast
import re

import pytest
import yaml

from layout_tools import PACKAGE, ROOT, closure, command_roots, cycles, import_graph, module_file

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


#: what the Snakefile's start-up imports in each stage (workflow/rules/common.smk): k1model.config
#: (validation, probe keys), and, except in the data stage, the strategies and the run plan
#: (`test_the_data_stage_starts_up_on_the_config_layer_alone` checks the data stage's by running it)
STARTUP = {"data": {"k1model.config"}}
STARTUP_DEFAULT = {"k1model.config", "k1model.strategies", "k1model.study.plan"}


def stage_files(name: str) -> set:
    commands = stage_commands(DVC["stages"][name])
    assert commands, f"stage {name} runs no k1 command?"
    return closure(set().union(*(command_roots(c) for c in commands)) | STARTUP.get(name, STARTUP_DEFAULT))


def stage_deps(name: str) -> list[str]:
    return [d.split("#")[0].strip() for d in DVC["stages"][name]["deps"]]


@pytest.mark.parametrize("name", list(DVC["stages"]))
def test_dvc_stage_deps_cover_every_module_its_commands_import(name):
    missing = sorted(f.relative_to(ROOT).as_posix() for f in stage_files(name) if not covered(f, stage_deps(name)))
    assert not missing, f"dvc.yaml stage {name} lacks deps {missing}"


def test_the_data_stage_depends_only_on_what_data_preparation_imports():
    """Editing a strategy, the trainer or the method does not rerun data preparation (issue 19)."""
    package_deps = [d for d in stage_deps("data") if d.startswith("k1model")]
    used = {f.relative_to(ROOT).as_posix() for f in stage_files("data")}
    unused = [d for d in package_deps if not any(u == d or u.startswith(d.rstrip("/") + "/") for u in used)]
    assert not unused, f"dvc.yaml stage data depends on {unused}, which data preparation never imports"
    assert not any(u.startswith(("k1model/strategies", "k1model/train", "k1model/method", "k1model/study"))
                   for u in used)


def test_the_data_stage_starts_up_on_the_config_layer_alone(tmp_path):
    """What `snakemake --config stage=data` really imports of k1model at start-up (python -X importtime):
    only modules the data stage's deps cover, so STARTUP["data"] is true."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "snakemake", "-n", "--config", "stage=data",
                           f"outdir={tmp_path}", "--", "data"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    modules = set(re.findall(r"\|\s*(k1model(?:\.\w+)*)\s*$", proc.stderr, flags=re.M))
    assert "k1model.config.params" in modules  # the check is not vacuous
    files = closure(modules)
    missing = sorted(f.relative_to(ROOT).as_posix() for f in files if not covered(f, stage_deps("data")))
    assert not missing, f"the data stage's start-up imports {missing}, not in its dvc.yaml deps"


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
    assert [k for k in runs if not k.startswith("analysis.")] == ["model", "method", "train", "experiment", "sweep",
                                                                  "tuning"]
    assert [k.removeprefix("analysis.") for k in runs if k.startswith("analysis.")] == AnalysisConfig.probe_keys()
    assert declared("analysis") == ["experiment", "analysis", "sweep", "tuning"]


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


#: Import cycles known to exist and owned elsewhere; the list is meant to be empty. The one entry:
#: no import cycle is allowed (the last one, aggregate <-> study_stats, went with analysis/summaries.py)
ALLOWED_CYCLES: list[set[str]] = []


def test_the_import_graph_has_no_cycle():
    """No module of k1model imports, directly or through others, a module that imports it back (lazy imports
    inside functions count: they run too; `if TYPE_CHECKING:` imports do not)."""
    found = cycles(import_graph())
    unexpected = [sorted(c) for c in found if c not in ALLOWED_CYCLES]
    assert not unexpected, f"import cycles: {unexpected}"
    stale = [sorted(c) for c in ALLOWED_CYCLES if c not in found]
    assert not stale, f"these allowed cycles are gone: remove them from ALLOWED_CYCLES: {stale}"


def test_the_cycle_check_sees_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    graph = import_graph()
    assert "k1model.train.step" in graph["k1model.train.protocol"]  # module-level import
    assert "k1model.data.loading" in graph["k1model.train.protocol"]  # function-level import
    assert "k1model.train.step" not in graph["k1model.train.plugins"]  # `if TYPE_CHECKING:` only


def test_the_config_layer_imports_nothing_above_it():
    """k1model.config sits at the bottom: it validates against the registries (config/registry.py) that the
    layers above fill, and imports only itself and k1model.errors."""
    graph = import_graph()
    above = {m: sorted(t for t in targets if not t.startswith("k1model.config") and t != "k1model.errors")
             for m, targets in graph.items() if m.startswith("k1model.config")}
    assert not any(above.values()), {m: t for m, t in above.items() if t}


def test_figure_modules_share_one_drawing_module():
    """Every figure module draws with report/drawing.py; only `k1 figures` (report/figures.py) composes the
    others, and none of them imports it back."""
    graph = import_graph()
    figures = [m for m in graph if m.startswith("k1model.report.") and m.endswith("figures")]
    assert len(figures) >= 3
    for m in figures:
        assert "k1model.report.drawing" in graph[m], m
        if m != "k1model.report.figures":
            assert not any(t in figures for t in graph[m]), f"{m} imports another figure module"


def _commands() -> list[str]:
    from k1model.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return sorted(sub.choices)


#: commands that read no params' method or variants: data preparation (its own sections only) and compare
NO_REGISTRY = ("prepare", "compare")


@pytest.mark.parametrize("command", [c for c in _commands() if c not in NO_REGISTRY])
def test_every_command_that_reads_params_registers_the_strategies_first(command):
    """The registries fill when k1model.strategies is imported; a command that validates a params file must have
    imported it by the time its handler's own imports are done (else `method.ewc_lambda: unknown key`). Runs the
    handler's imports in a fresh interpreter, as `k1 COMMAND` does."""
    import subprocess
    import sys

    modules = sorted(m for m in command_roots(command) if m != "k1model.cli" and module_file(m) is not None)
    code = "import importlib\n" + "".join(f"importlib.import_module({m!r})\n" for m in modules) + (
        "from k1model.config import registry\nprint(sorted(registry.STRATEGIES))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "ewc" in out.stdout and "plasticity" in out.stdout, f"k1 {command} imports {modules}: nothing registered"
