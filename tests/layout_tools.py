"""Static facts about the code base for the layout tests: which k1model modules a `k1` subcommand
can import (its handler's imports, then every import of every module reached, lazy ones included)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "k1model"


def module_file(name: str) -> Path | None:
    """k1model.a.b -> k1model/a/b.py or k1model/a/b/__init__.py (None if not a k1model module)."""
    if name != "k1model" and not name.startswith("k1model."):
        return None
    rel = Path(*name.split("."))
    for cand in (ROOT / rel.with_suffix(".py"), ROOT / rel / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _imports(tree: ast.AST, current: str, strings: bool = True) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = current.split(".")[: -node.level]
                base = ".".join(parts + ([base] if base else []))
            out.add(base)
            out |= {f"{base}.{a.name}" for a in node.names}  # `from pkg import module`
        elif strings and isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(
                r"k1model(\.\w+)+(:[\w.]+)?", node.value):
            out.add(node.value.split(":")[0])  # modules named in strings ("module" or "module:attribute"): what
            # registries import on use (data sources, the built-in declarations, a strategy's plugin)
    return out


def closure(roots: set[str]) -> set[Path]:
    """Files of every k1model module reachable from `roots` (packages' __init__ included)."""
    seen: set[Path] = set()
    todo = list(roots)
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__
            path = module_file(".".join(parts[:i]))
            if path is None or path in seen:
                continue
            seen.add(path)
            mod = ".".join(parts[:i])
            pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
            tree = ast.parse(path.read_text())
            if mod == "k1model.cli.commands":  # the handlers: each command's imports are its roots
                tree = ast.Module(body=[n for n in tree.body if not isinstance(n, ast.FunctionDef)], type_ignores=[])
            # no string scan of the package's lazy public names (PEP 562: never used by the CLI) nor of the
            # registry's list of built-ins: the registry loads them on its first lookup, which a stage that reads
            # no variant never makes (stage roots name `k1model.strategies` where they do; the data stage's
            # start-up is checked by running it)
            scan = mod not in ("k1model", "k1model.config.registry")
            todo += [m for m in _imports(tree, f"{pkg}.x", strings=scan) if m.startswith("k1model")]
    return seen


def command_roots(command: str) -> set[str]:
    """The modules the handler of `k1 <command>` imports (cli/commands.py, function of that name)."""
    tree = ast.parse((PACKAGE / "cli" / "commands.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == command:
            return {m for m in _imports(node, "k1model.cli.x") if m.startswith("k1model")} | {"k1model.cli"}
    raise KeyError(f"no handler for k1 {command}")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """k1model module -> the k1model modules it imports, as written (`from k1model.config.checks import x` is an
    edge to k1model.config.checks, not to the package): module-level, lazy (function-level) and type-only
    (`if TYPE_CHECKING:`) imports alike, since each says the module depends on the other."""
    graph: dict[str, set[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        mod = module_name(path)
        pkg = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
        targets = set()
        for name in _imports(ast.parse(path.read_text()), f"{pkg}.x", strings=False):
            target = module_file(name)
            if target is not None and module_name(target) != mod:
                targets.add(module_name(target))
        graph[mod] = targets
    return graph


def layer(module: str) -> str:
    """The layer a module belongs to: its top-level subpackage (k1model.train.step -> k1model.train) or, for a
    top-level module, itself (k1model.model)."""
    parts = module.split(".")
    return ".".join(parts[:2])


def package_graph(graph: dict[str, set[str]] | None = None) -> dict[str, set[str]]:
    """Layer -> the layers its modules import (the package `k1model` itself, the lazy public names of
    `k1model/__init__.py`, is left out: nothing in the package imports it)."""
    out: dict[str, set[str]] = {}
    for mod, targets in (import_graph() if graph is None else graph).items():
        if mod == "k1model":
            continue
        out.setdefault(layer(mod), set()).update(layer(t) for t in targets if t != "k1model" and layer(t) != layer(mod))
    return out


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan): each holds an import cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out
