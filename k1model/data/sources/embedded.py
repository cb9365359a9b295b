"""Source `embedded`: text that ships with the installed packages (Python's stdlib and scipy),
so a fresh machine with no network runs the whole pipeline. See `EMBEDDED_DOMAINS` for what and why."""
from __future__ import annotations

import ast
import gc
import html.parser
import inspect
import re
import sysconfig
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from k1model.config.data import EMBEDDED_DOMAINS
from k1model.data.documents import _chunk_text, _documents_dataset, _file_record
from k1model.errors import DataError

if TYPE_CHECKING:
    import datasets


_PROSE_CHUNK_BYTES = 2048

_SCIENCE_MIN_DOC_BYTES = 200

#: numpydoc "Examples" heading: the doctest code after it belongs to the code domain, not science
_EXAMPLES_SECTION = re.compile(r"^[ \t]*Examples[ \t]*\n[ \t]*-{3,}[ \t]*$", re.MULTILINE)

_CODE_EXCLUDED_DIRS = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "encodings", "pydoc_data"}
)

#: generated lookup tables (Unicode/entity data), not code anyone writes
_CODE_EXCLUDED_FILES = frozenset({"stringprep.py", "html/entities.py"})

_SCIENCE_EXCLUDED_DIRS = frozenset({"tests", "_lib", "_build_utils", "__pycache__", "io", "datasets", "misc"})

_SCIENCE_EXCLUDED_FILES = frozenset({"conftest.py", "setup.py", "version.py", "__config__.py", "_distributor_init.py"})

#: stdlib documents used for `prose` besides pydoc_data/topics.py (those present are used)
_PROSE_STDLIB_FILES = (
    "LICENSE.txt",
    "email/architecture.rst",
    "idlelib/CREDITS.txt",
    "idlelib/HISTORY.txt",
    "idlelib/NEWS.txt",
    "idlelib/NEWS2x.txt",
    "idlelib/README.txt",
    "idlelib/TODO.txt",
    "idlelib/extend.txt",
    "idlelib/help.html",
)

def _stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])

class _HTMLText(html.parser.HTMLParser):
    """Visible text of an HTML page: paragraphs separated by blank lines, <pre> kept verbatim."""

    _BLOCK = frozenset(
        {"p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "dt", "dd", "pre", "tr", "table", "section",
         "blockquote", "ul", "ol", "dl", "br", "title"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        if tag == "pre":
            self._pre += 1
        if tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip = max(0, self._skip - 1)
        if tag == "pre":
            self._pre = max(0, self._pre - 1)
        if tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            self.parts.append(data)
            return
        text = re.sub(r"\s+", " ", data)
        if not self.parts or self.parts[-1].endswith("\n"):
            text = text.lstrip()
        if text:
            self.parts.append(text)

    def text(self) -> str:
        joined = "".join(self.parts)
        joined = re.sub(r"[ \t]+\n", "\n", joined)
        return re.sub(r"\n{3,}", "\n\n", joined).strip() + "\n"

def _html_to_text(source: str) -> str:
    parser = _HTMLText()
    parser.feed(source)
    parser.close()
    return parser.text()

def _embedded_prose() -> tuple["datasets.Dataset", dict[str, Any]]:
    try:
        import pydoc_data.topics as topics_module
    except ImportError as err:  # some distributions split it out of the stdlib
        raise DataError(
            "domain 'prose' (source 'embedded'): this Python has no pydoc_data module (the reference "
            "manual's topics). Install the full standard library (e.g. the distribution's python3-doc / "
            "libpython3-stdlib package) or use data.source: local"
        ) from err
    ids: list[str] = []
    texts: list[str] = []
    topics: Mapping[str, str] = topics_module.topics
    for key in sorted(topics):
        for i, chunk in enumerate(_chunk_text(topics[key], _PROSE_CHUNK_BYTES)):
            ids.append(f"pydoc_data/topics.py:{key}#{i:03d}")
            texts.append(chunk)
    files = [_file_record(Path(topics_module.__file__), "pydoc_data/topics.py")]
    stdlib = _stdlib_dir()
    for rel in _PROSE_STDLIB_FILES:
        path = stdlib / rel
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if rel.endswith(".html"):
            text = _html_to_text(text)
        for i, chunk in enumerate(_chunk_text(text, _PROSE_CHUNK_BYTES)):
            ids.append(f"{rel}#{i:03d}")
            texts.append(chunk)
        files.append(_file_record(path, rel))
    origin = {
        "kind": "embedded",
        "package": "python (standard library)",
        "description": EMBEDDED_DOMAINS["prose"],
        "chunk_bytes": _PROSE_CHUNK_BYTES,
        "files": files,
    }
    return _documents_dataset(ids, texts), origin

def _embedded_code() -> tuple["datasets.Dataset", dict[str, Any]]:
    stdlib = _stdlib_dir()
    paths = sorted(
        (
            p
            for p in stdlib.rglob("*.py")
            if not (_CODE_EXCLUDED_DIRS & set(p.relative_to(stdlib).parts[:-1]))
            and p.relative_to(stdlib).as_posix() not in _CODE_EXCLUDED_FILES
        ),
        key=lambda p: p.relative_to(stdlib).as_posix(),
    )
    ids: list[str] = []
    texts: list[str] = []
    undecodable = 0
    total = 0
    for path in paths:
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
            continue
        total += len(raw)
        ids.append(f"stdlib/{path.relative_to(stdlib).as_posix()}")
        texts.append(text)
    if not ids:
        raise DataError(f"domain 'code' (source 'embedded'): no *.py files found under the stdlib at {stdlib}")
    origin = {
        "kind": "embedded",
        "package": "python (standard library)",
        "description": EMBEDDED_DOMAINS["code"],
        "excluded_dirs": sorted(_CODE_EXCLUDED_DIRS),
        "excluded_files": sorted(_CODE_EXCLUDED_FILES),
        "files": len(ids),
        "files_bytes": total,
        "files_skipped_not_utf8": undecodable,
    }
    return _documents_dataset(ids, texts), origin

def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""

def _scipy_docstrings(tree: ast.Module, rel: str) -> Iterator[tuple[str, str]]:
    """(id, docstring) of a module's docstrings, in source order."""
    doc = ast.get_docstring(tree, clean=True)
    if doc:
        yield f"{rel}:<module>", doc

    def visit(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, str]]:
        # statements only: definitions and `add_newdoc(...)` calls never hide inside expressions
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                qual = f"{prefix}.{stmt.name}" if prefix else stmt.name
                d = ast.get_docstring(stmt, clean=True)
                if d:
                    yield f"{rel}:{qual}", d
                yield from visit(stmt.body, qual)
                continue
            call = stmt.value if isinstance(stmt, ast.Expr) else None
            if isinstance(call, ast.Call) and _call_name(call) == "add_newdoc" and call.args:
                last = call.args[-1]
                if isinstance(last, ast.Constant) and isinstance(last.value, str):
                    names = [a.value for a in call.args[:-1] if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                    yield f"{rel}:add_newdoc:{'.'.join(names)}", inspect.cleandoc(last.value)
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(stmt, field, None)
                if isinstance(inner, list):
                    nested = [s for h in inner for s in h.body] if field == "handlers" else inner
                    yield from visit(nested, prefix)

    yield from visit(tree.body, "")

def _embedded_science() -> tuple["datasets.Dataset", dict[str, Any]]:
    try:
        import scipy
    except ImportError as err:
        raise DataError(
            "domain 'science' (source 'embedded'): scipy is not installed; `pip install scipy` "
            "(a dependency of k1model) or use data.source: local"
        ) from err
    root = Path(scipy.__file__).parent
    paths = sorted(
        (
            p
            for p in root.rglob("*.py")
            if p.name not in _SCIENCE_EXCLUDED_FILES
            and not (_SCIENCE_EXCLUDED_DIRS & set(p.relative_to(root).parts[:-1]))
        ),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    ids: list[str] = []
    texts: list[str] = []
    seen: dict[str, int] = {}
    gc_was_enabled = gc.isenabled()
    gc.disable()  # ast.parse allocates millions of acyclic nodes; the cyclic GC only slows it ~3x
    try:
        for path in paths:
            rel = f"scipy/{path.relative_to(root).as_posix()}"
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    tree = ast.parse(path.read_bytes(), filename=rel)
            except (SyntaxError, ValueError):
                continue
            for doc_id, doc in _scipy_docstrings(tree, rel):
                doc = _EXAMPLES_SECTION.split(doc, maxsplit=1)[0].rstrip()
                if len(doc.encode("utf-8", "replace")) < _SCIENCE_MIN_DOC_BYTES:
                    continue
                n = seen.get(doc_id, 0)
                seen[doc_id] = n + 1
                ids.append(doc_id if n == 0 else f"{doc_id}#{n}")
                texts.append(doc)
            del tree
    finally:
        if gc_was_enabled:
            gc.enable()
    if not ids:
        raise DataError(f"domain 'science' (source 'embedded'): no docstrings found in scipy at {root}")
    origin = {
        "kind": "embedded",
        "package": "scipy",
        "description": EMBEDDED_DOMAINS["science"],
        "excluded_dirs": sorted(_SCIENCE_EXCLUDED_DIRS),
        "min_doc_bytes": _SCIENCE_MIN_DOC_BYTES,
        "examples_sections": "removed",
        "files_parsed": len(paths),
        "docstrings": len(ids),
    }
    return _documents_dataset(ids, texts), origin

_EMBEDDED_LOADERS = {"prose": _embedded_prose, "code": _embedded_code, "science": _embedded_science}


def load(cfg: Mapping[str, Any], domain: str, index: int, data_root: Any) -> tuple["datasets.Dataset", dict[str, Any]]:
    return _EMBEDDED_LOADERS[domain]()
