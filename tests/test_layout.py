"""The layout contract (docs/architecture.md): DVC stages depend on all the code their commands
import, the params they declare are the ones the library reads, no module is a monolith, and the
library never imports the pipeline's tools."""
from __future__ import annotations

import ast
import re

import pytest
import yaml

from layout_tools import PACKAGE, ROOT, closure, command_roots, cycles, import_graph, package_graph

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
#: (validation, probe keys), and, except in the data stage, the run plan and what the registry loads on its
#: first lookup (the declarations k1model.strategies lists, and the plugins they name)
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
                                                                  "tuning", "frontier"]
    assert [k.removeprefix("analysis.") for k in runs if k.startswith("analysis.")] == AnalysisConfig.probe_keys()
    assert declared("analysis") == ["experiment", "analysis", "sweep", "tuning", "frontier"]


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


def test_the_import_graph_has_no_cycle():
    """No module of k1model imports, directly or through others, a module that imports it back: module-level,
    lazy (function-level) and type-only (`if TYPE_CHECKING:`) imports all count."""
    found = cycles(import_graph())
    assert not found, f"import cycles: {[sorted(c) for c in found]}"


def test_no_package_imports_a_package_above_it():
    """The layers (subpackages and top-level modules) form a hierarchy: no layer imports one that imports it back,
    through any of its modules and any kind of import. The registry finds the strategies by name (the built-ins
    k1model.strategies lists, the entry points of installed packages), so nothing below imports them."""
    found = cycles(package_graph())
    assert not found, f"layers that import each other: {[sorted(c) for c in found]}"
    graph = package_graph()
    assert not any("k1model.strategies" in targets for targets in graph.values()), graph
    assert graph["k1model.config"] == {"k1model.errors"}


def test_the_cycle_check_sees_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    graph = import_graph()
    assert "k1model.train.step" in graph["k1model.train.protocol"]  # module-level import
    assert "k1model.data.loading" in graph["k1model.train.protocol"]  # function-level import
    assert "torch" not in str(graph["k1model.method.scoring"])  # third-party type-only imports are not edges
    assert graph["k1model.train.plugins"] == set()  # the plugin hooks are a leaf
    assert cycles(package_graph({"k1model.a.x": {"k1model.b.y"}, "k1model.b.y": set(),
                                 "k1model.b.z": {"k1model.a.w"}, "k1model.a.w": set()})) == [{"k1model.a", "k1model.b"}]


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


def test_the_run_plan_imports_no_torch():
    """What every Snakemake start-up and dry run imports (issue 28): the run plan, without torch."""
    import subprocess
    import sys

    code = "import sys\nimport k1model.study.plan\nprint('torch' in sys.modules)\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "False", out
