"""Data layer: text sources -> documents -> deterministic splits -> UTF-8 byte arrays -> batches.

Why it looks like this
----------------------
* **One code path for every source.** Each source (``embedded``, ``hub``, ``local``,
  ``synthetic``) only produces a :class:`datasets.Dataset` of documents (columns
  ``doc_id``, ``text``, ``split``). Everything after that (normalisation, de-duplication,
  split assignment, the ``max_bytes`` budget, tokenisation, hashing, writing) is shared, so
  the sources cannot drift apart in how they are split or counted.
* **Bytes as tokens.** The tokenizer is UTF-8 bytes (vocabulary 256, stored as raw
  ``uint8``). No tokenizer is trained, every domain uses the same one, and a loss in nats per
  token converts exactly to bits per byte (bpb = loss / ln 2).
* **Splits by document, by hash.** A document goes to test when
  ``u(doc_id) < test_fraction``, to valid when ``u < test_fraction + valid_fraction``, and to
  train otherwise, where ``u`` is the first 8 bytes of ``sha256(doc_id)`` read as a number in
  [0, 1). The split of a document never depends on the other documents, on ``max_bytes`` or on
  the file order, so held-out documents stay held out when the source grows.
* **max_bytes by hash order.** Each split gets a byte budget (valid/test:
  ``floor(max_bytes * fraction)``, train: the rest). Its documents are visited in increasing
  ``u`` (the same hash: a pseudo-random order spread over the whole source) and taken whole
  while they fit; if bytes remain at the end, the first document that did not fit contributes
  a prefix cut at a line boundary (recorded as ``truncated_document``). Raising ``max_bytes``
  therefore only adds documents.
* **Embedded default, no network.** Text that ships with the installed packages, so a fresh
  machine runs the whole pipeline offline (see :data:`EMBEDDED_DOMAINS` for what and why).
  Its content depends on the Python and scipy versions, which the manifest records together
  with the sha256 of every file written.
* **Sampling independent of the variant.** :class:`BatchSampler` takes no variant: given a
  seed it yields the same windows in the same order for every variant, and its RNG state can
  be saved and restored so that a resumed run continues the exact same stream.
  :func:`eval_batches` uses no RNG at all.

Prepared layout (``k1 prepare --params P --out DIR``)::

    DIR/manifest.json
    DIR/<domain>/{train,valid,test}.bin      # raw uint8 UTF-8 bytes
"""
from __future__ import annotations

import ast
import copy
import gc
import hashlib
import html.parser
import importlib.metadata
import inspect
import math
import os
import platform
import re
import shutil
import sysconfig
import tempfile
import warnings
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import numpy as np

from k1model.errors import ConfigError, DataError
from k1model.io import write_json

if TYPE_CHECKING:  # heavy imports only for type checkers
    import datasets
    import pandas as pd
    import torch

__all__ = [
    "DEFAULT_DATA_CONFIG",
    "SPLITS",
    "SOURCES",
    "EMBEDDED_DOMAINS",
    "TOKENIZER",
    "DATA_ROOT_ENV",
    "normalize_data_config",
    "document_split",
    "prepare",
    "cli_prepare",
    "load_manifest",
    "load_split",
    "BatchSampler",
    "eval_batches",
    "unigram_bpb",
    "cross_domain_unigram_bpb",
    "format_split_table",
]

SPLITS: tuple[str, ...] = ("train", "valid", "test")
SOURCES: tuple[str, ...] = ("embedded", "hub", "local", "synthetic")
TOKENIZER: dict[str, Any] = {"kind": "utf8-bytes", "vocab_size": 256, "dtype": "uint8"}
DATA_ROOT_ENV = "K1_DATA_ROOT"
MANIFEST_FORMAT = "k1-prepared-data/1"

#: The embedded domains and why each was chosen. All of them ship with the packages the
#: project already needs (Python itself and scipy), so no download is ever required.
EMBEDDED_DOMAINS: dict[str, str] = {
    "prose": (
        "English documentation prose shipped with Python: the Language Reference sections in "
        "pydoc_data/topics.py (what `help('assert')` shows) plus the stdlib's plain-text and HTML "
        "documents (IDLE help, README, NEWS, HISTORY, email/architecture.rst, LICENSE). "
        "Cut into paragraph-aligned chunks of about 2 KiB (one document each), because the "
        "source has fewer than 100 topics and splitting whole topics would make valid/test a "
        "handful of documents of very uneven size."
    ),
    "code": (
        "Python source code of the standard library: every *.py file under the stdlib "
        "directory, one document per file, excluding test suites (test/tests/idle_test), "
        "site-packages, generated data tables (encodings/, stringprep.py, html/entities.py) and "
        "pydoc_data (that is prose)."
    ),
    "science": (
        "Scientific and mathematical docstrings of scipy (statistics, special functions, "
        "optimisation, signal processing, linear algebra, ...), read statically with `ast` from "
        "scipy's *.py files (module, class and function docstrings and the `add_newdoc` texts "
        "of compiled functions) with their numpydoc 'Examples' sections (doctest code) removed, one "
        "document per docstring of at least 200 bytes; tests, "
        "vendored code (_lib) and build helpers excluded. Parsing instead of importing keeps it "
        "fast and free of side effects."
    ),
}

#: Defaults of the ``data:`` section of a params file; :func:`normalize_data_config` fills
#: every missing key from here.
DEFAULT_DATA_CONFIG: dict[str, Any] = {
    "source": "embedded",
    "domains": ["prose", "code", "science"],
    "max_bytes": 600_000,
    "valid_fraction": 0.05,
    "test_fraction": 0.05,
    "local": {
        "root": None,
        "folders": {"prose": "wikitext2", "code": "python_code", "science": "science"},
        "chunk_bytes": 4096,
    },
    "hub": {
        # WikiText-2 (raw): rows are lines of Wikipedia articles, so they are joined and cut
        # into paragraph-aligned chunks. Add entries for other domains, e.g.
        #   code: {path: <dataset id>, field: content, documents: rows}
        "prose": {
            "path": "wikitext",
            "name": "wikitext-2-raw-v1",
            "split": "train",
            "field": "text",
            "revision": None,
            "documents": "chunks",
            "chunk_bytes": 4096,
        },
    },
    "synthetic": {"doc_bytes": 512, "seed": 0},
}

_TOP_KEYS = tuple(DEFAULT_DATA_CONFIG)
_LOCAL_KEYS = ("root", "folders", "chunk_bytes")
_HUB_ENTRY_DEFAULTS: dict[str, Any] = {
    "path": None,
    "name": None,
    "split": "train",
    "field": "text",
    "revision": None,
    "documents": "chunks",
    "chunk_bytes": 4096,
}
_HUB_DOCUMENT_MODES = ("chunks", "rows")
_SYNTHETIC_KEYS = ("doc_bytes", "seed")
_DOMAIN_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")

_PROSE_CHUNK_BYTES = 2048
_DOC_END = b"\n\n"  # ends every document in a split file: one blank line between documents
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
#: synthetic alphabets: printable ASCII except space and '.', 10 characters per domain
_SYNTHETIC_CHARS = "".join(chr(c) for c in range(33, 127) if chr(c) != ".")
_SYNTHETIC_ALPHABET = 10
_SYNTHETIC_LEXICON = 48
_SYNTHETIC_SUCCESSORS = 3

SPLIT_RULE = (
    "Documents are normalised (BOM removed, CRLF->LF, trailing whitespace stripped, empty "
    "documents dropped) and de-duplicated by content (the first in doc_id order is kept). "
    "u(doc_id) = int(sha256(doc_id.encode('utf-8'))[:8 bytes], big-endian) / 2**64. A document goes "
    "to test if u < test_fraction, to valid if u < test_fraction + valid_fraction, else to train "
    "(folders that already hold train/valid/test files keep their split). Byte budgets: "
    "valid = floor(max_bytes * valid_fraction), test = floor(max_bytes * test_fraction), "
    "train = max_bytes - valid - test. Within a split, documents are visited in increasing u (ties "
    "by doc_id) and taken whole while they fit (each costs its UTF-8 bytes + 2 for the two newlines "
    "that end it); if bytes remain, the first document that did not fit contributes a prefix cut "
    "at its last line break that fits. Split file = concatenation of the taken documents in that "
    "order, each followed by '\\n\\n' (one blank line between documents). Tokens = UTF-8 bytes (uint8, vocabulary 256)."
)


# ---------------------------------------------------------------------------- configuration


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _check_keys(section: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    if not isinstance(section, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(section).__name__}")
    for key in section:
        if key not in allowed:
            raise ConfigError(f"{where}.{key}: unknown key; allowed keys: {', '.join(allowed)}")


def _budgets(max_bytes: int | None, valid_fraction: float, test_fraction: float) -> dict[str, int | None]:
    if max_bytes is None:
        return {s: None for s in SPLITS}
    valid = int(math.floor(max_bytes * valid_fraction))
    test = int(math.floor(max_bytes * test_fraction))
    return {"train": max_bytes - valid - test, "valid": valid, "test": test}


def _min_max_bytes(window: int, valid_fraction: float, test_fraction: float) -> int:
    """Smallest max_bytes for which every split's budget holds one window."""
    m = max(window, int(math.ceil(window / min(valid_fraction, test_fraction, 1 - valid_fraction - test_fraction))))
    while min(b for b in _budgets(m, valid_fraction, test_fraction).values()) < window:  # type: ignore[type-var]
        m += 1
    return m


def normalize_data_config(data_cfg: Mapping[str, Any] | None, *, seq_len: int | None = None) -> dict[str, Any]:
    """Fill defaults into a ``data:`` section and validate every key.

    Raises :class:`ConfigError` (a ``ValueError``) naming the key, the domain where one is
    involved, and the allowed values. With ``seq_len`` (= ``model.max_seq_len``) it also checks
    that ``max_bytes`` gives every split at least one window of ``seq_len + 1`` bytes.
    """
    if data_cfg is None:
        data_cfg = {}
    _check_keys(data_cfg, _TOP_KEYS, "data")
    cfg = copy.deepcopy(DEFAULT_DATA_CONFIG)
    for key, value in data_cfg.items():
        if key == "local" and value is not None:
            _check_keys(value, _LOCAL_KEYS, "data.local")
            for k, v in value.items():
                if k == "folders" and v is not None:
                    if not isinstance(v, Mapping):
                        raise ConfigError("data.local.folders must map domain -> folder or file")
                    cfg["local"]["folders"].update(copy.deepcopy(dict(v)))
                else:
                    cfg["local"][k] = copy.deepcopy(v)
        elif key == "synthetic" and value is not None:
            _check_keys(value, _SYNTHETIC_KEYS, "data.synthetic")
            cfg["synthetic"].update(copy.deepcopy(dict(value)))
        elif key == "hub" and value is not None:
            if not isinstance(value, Mapping):
                raise ConfigError("data.hub must map domain -> {path, name, split, field, revision}")
            for domain, entry in value.items():
                _check_keys(entry, tuple(_HUB_ENTRY_DEFAULTS), f"data.hub.{domain}")
                cfg["hub"][domain] = {**_HUB_ENTRY_DEFAULTS, **copy.deepcopy(dict(entry))}
        elif key in ("local", "synthetic", "hub"):
            continue  # explicit null: keep the defaults
        else:
            cfg[key] = copy.deepcopy(value)
    for domain, entry in cfg["hub"].items():
        cfg["hub"][domain] = {**_HUB_ENTRY_DEFAULTS, **entry}

    source = cfg["source"]
    if source not in SOURCES:
        raise ConfigError(f"data.source: unknown source {source!r}; allowed: {', '.join(SOURCES)}")

    domains = cfg["domains"]
    if isinstance(domains, str) or not isinstance(domains, Sequence) or len(domains) == 0:
        raise ConfigError("data.domains must be a non-empty list of domain names, e.g. [prose, code, science]")
    domains = list(domains)
    for d in domains:
        if not isinstance(d, str) or not _DOMAIN_NAME.match(d):
            raise ConfigError(f"data.domains: invalid domain name {d!r} (letters, digits, '_', '-', '.')")
    dupes = sorted({d for d in domains if domains.count(d) > 1})
    if dupes:
        raise ConfigError(f"data.domains: domain {dupes[0]!r} is listed more than once")
    cfg["domains"] = domains
    if source == "embedded":
        for d in domains:
            if d not in EMBEDDED_DOMAINS:
                raise ConfigError(
                    f"data.domains: unknown domain {d!r} for source 'embedded'; allowed: "
                    f"{', '.join(EMBEDDED_DOMAINS)} (use source: local, hub or synthetic for other names)"
                )

    max_bytes = cfg["max_bytes"]
    if max_bytes is not None and not (_is_int(max_bytes) and max_bytes > 0):
        raise ConfigError(f"data.max_bytes must be a positive integer (bytes per domain) or null, got {max_bytes!r}")
    if max_bytes is not None:
        cfg["max_bytes"] = int(max_bytes)
    for key in ("valid_fraction", "test_fraction"):
        f = cfg[key]
        if not _is_number(f) or not (0.0 < float(f) < 1.0):
            raise ConfigError(f"data.{key} must be a number in (0, 1), got {f!r}")
        cfg[key] = float(f)
    if cfg["valid_fraction"] + cfg["test_fraction"] >= 1.0:
        raise ConfigError(
            "data.valid_fraction + data.test_fraction must be < 1 (train needs documents too), got "
            f"{cfg['valid_fraction']} + {cfg['test_fraction']}"
        )

    local = cfg["local"]
    if local["root"] is not None and not isinstance(local["root"], (str, os.PathLike)):
        raise ConfigError(f"data.local.root must be a path or null, got {local['root']!r}")
    if not (_is_int(local["chunk_bytes"]) and local["chunk_bytes"] >= 64):
        raise ConfigError(f"data.local.chunk_bytes must be an integer >= 64, got {local['chunk_bytes']!r}")
    for d, folder in local["folders"].items():
        if folder is not None and not isinstance(folder, (str, os.PathLike)):
            raise ConfigError(f"data.local.folders.{d} must be a folder or file path, got {folder!r}")
    if source == "local":
        for d in domains:
            if not local["folders"].get(d):
                raise ConfigError(
                    f"data.local.folders has no entry for domain {d!r}; add `{d}: <folder or file under "
                    "data.local.root>`"
                )

    for d, entry in cfg["hub"].items():
        where = f"data.hub.{d}"
        if entry["path"] is not None and not isinstance(entry["path"], str):
            raise ConfigError(f"{where}.path must be a Hub dataset id, got {entry['path']!r}")
        for k in ("name", "revision"):
            if entry[k] is not None and not isinstance(entry[k], str):
                raise ConfigError(f"{where}.{k} must be a string or null, got {entry[k]!r}")
        for k in ("split", "field"):
            if not isinstance(entry[k], str) or not entry[k]:
                raise ConfigError(f"{where}.{k} must be a non-empty string, got {entry[k]!r}")
        if entry["documents"] not in _HUB_DOCUMENT_MODES:
            raise ConfigError(
                f"{where}.documents: unknown value {entry['documents']!r}; allowed: {', '.join(_HUB_DOCUMENT_MODES)}"
            )
        if not (_is_int(entry["chunk_bytes"]) and entry["chunk_bytes"] >= 64):
            raise ConfigError(f"{where}.chunk_bytes must be an integer >= 64, got {entry['chunk_bytes']!r}")
    if source == "hub":
        for d in domains:
            if d not in cfg["hub"] or not cfg["hub"][d].get("path"):
                raise ConfigError(
                    f"data.hub.{d}: no Hub dataset configured for domain {d!r}; add "
                    f"`hub: {{{d}: {{path: <dataset id>, name: <config or null>, split: train, field: text}}}}`"
                )

    syn = cfg["synthetic"]
    if not (_is_int(syn["doc_bytes"]) and syn["doc_bytes"] >= 16):
        raise ConfigError(f"data.synthetic.doc_bytes must be an integer >= 16, got {syn['doc_bytes']!r}")
    if not (_is_int(syn["seed"]) and syn["seed"] >= 0):
        raise ConfigError(f"data.synthetic.seed must be a non-negative integer, got {syn['seed']!r}")
    if source == "synthetic":
        n_max = len(_SYNTHETIC_CHARS) // _SYNTHETIC_ALPHABET
        if len(domains) > n_max:
            raise ConfigError(f"data.domains: source 'synthetic' supports at most {n_max} domains, got {len(domains)}")

    if seq_len is not None:
        if not (_is_int(seq_len) and seq_len > 0):
            raise ConfigError(f"model.max_seq_len must be a positive integer, got {seq_len!r}")
        if max_bytes is not None:
            window = int(seq_len) + 1
            budgets = _budgets(cfg["max_bytes"], cfg["valid_fraction"], cfg["test_fraction"])
            small = [s for s in SPLITS if budgets[s] < window]  # type: ignore[operator]
            if small:
                need = _min_max_bytes(window, cfg["valid_fraction"], cfg["test_fraction"])
                raise ConfigError(
                    f"data.max_bytes={cfg['max_bytes']} is too small for domain {domains[0]!r}"
                    f"{' (and ' + ', '.join(map(repr, domains[1:])) + ')' if len(domains) > 1 else ''}: "
                    f"its {small[0]} split would get {budgets[small[0]]} bytes, less than one window of "
                    f"model.max_seq_len + 1 = {window} bytes; set data.max_bytes >= {need} "
                    "(or raise data.valid_fraction / data.test_fraction)"
                )
    return cfg


# ---------------------------------------------------------------------- documents and splits


def _doc_unit(doc_id: str) -> float:
    """u(doc_id) in [0, 1) from sha256: the split and the order of a document."""
    digest = hashlib.sha256(doc_id.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def document_split(doc_id: str, valid_fraction: float, test_fraction: float) -> str:
    """The split (train/valid/test) the hash rule gives a document id (see ``SPLIT_RULE``)."""
    u = _doc_unit(doc_id)
    if u < test_fraction:
        return "test"
    if u < test_fraction + valid_fraction:
        return "valid"
    return "train"


def _normalise(text: str) -> str:
    if text.startswith("\ufeff"):
        text = text[1:]
    return text.replace("\r\n", "\n").rstrip()


def _chunk_text(text: str, target: int) -> list[str]:
    """Cut ``text`` into paragraph-aligned chunks of about ``target`` bytes (exact: joined back,
    the chunks give ``text``). A chunk ends after a blank line once it has ``target`` bytes, or
    at any line end once it has ``4 * target`` bytes (text without blank lines)."""
    chunks: list[str] = []
    cur: list[str] = []
    size = 0
    for line in text.splitlines(keepends=True):
        cur.append(line)
        size += len(line.encode("utf-8", "surrogatepass"))
        if (size >= target and not line.strip()) or size >= 4 * target:
            chunks.append("".join(cur))
            cur, size = [], 0
    if cur:
        chunks.append("".join(cur))
    return chunks


def _prefix_at_line(data: bytes, limit: int) -> bytes:
    """The longest prefix of ``data`` of at most ``limit`` bytes that ends at a line break
    (or, without one, at a UTF-8 character boundary)."""
    if limit <= 0:
        return b""
    head = data[:limit]
    cut = head.rfind(b"\n")
    if cut >= 0:
        return head[: cut + 1]
    end = len(head)
    while end > 0 and end < len(data) and (data[end] & 0xC0) == 0x80:
        end -= 1  # do not split a multi-byte character
    return head[:end]


def _documents_dataset(doc_ids: list[str], texts: list[str], splits: list[str] | None = None) -> "datasets.Dataset":
    import datasets

    return datasets.Dataset.from_dict(
        {"doc_id": doc_ids, "text": texts, "split": splits if splits is not None else [""] * len(doc_ids)}
    )


def _make_splits(
    ds: "datasets.Dataset", domain: str, cfg: Mapping[str, Any], window: int
) -> tuple[dict[str, bytes], dict[str, Any], dict[str, dict[str, Any]]]:
    """The shared path: documents -> normalised, de-duplicated -> split -> budget -> bytes."""
    cols = ds.to_dict()
    ids: list[str] = cols["doc_id"]
    texts: list[str] = cols["text"]
    given: list[str] = cols["split"]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise DataError(f"domain {domain!r}: document id {dup!r} occurs twice in the source")
    rank = {"": 0, "train": 0, "valid": 1, "test": 2}
    order = sorted(range(len(ids)), key=lambda i: (rank[given[i]], ids[i]))
    seen: set[bytes] = set()
    n_empty = n_dupes = 0
    per_split: dict[str, list[tuple[float, str, bytes]]] = {s: [] for s in SPLITS}
    for i in order:
        data = _normalise(texts[i]).encode("utf-8", "replace")
        if not data:
            n_empty += 1
            continue
        key = hashlib.sha256(data).digest()
        if key in seen:
            n_dupes += 1
            continue
        seen.add(key)
        split = given[i] or document_split(ids[i], cfg["valid_fraction"], cfg["test_fraction"])
        per_split[split].append((_doc_unit(ids[i]), ids[i], data))

    budgets = _budgets(cfg["max_bytes"], cfg["valid_fraction"], cfg["test_fraction"])
    out: dict[str, bytes] = {}
    info: dict[str, dict[str, Any]] = {}
    for split in SPLITS:
        docs = sorted(per_split[split], key=lambda t: (t[0], t[1]))
        budget = budgets[split]
        parts: list[bytes] = []
        taken: list[str] = []
        used = 0
        first_skipped: tuple[str, bytes] | None = None
        for _, doc_id, data in docs:
            if budget is not None and used + len(data) + len(_DOC_END) > budget:
                if first_skipped is None:
                    first_skipped = (doc_id, data)
                if budget - used <= len(_DOC_END):
                    break
                continue
            parts.append(data + _DOC_END)
            taken.append(doc_id)
            used += len(data) + len(_DOC_END)
        truncated = None
        if budget is not None and first_skipped is not None and budget - used > len(_DOC_END):
            prefix = _prefix_at_line(first_skipped[1], budget - used - len(_DOC_END)).rstrip()
            if prefix:
                parts.append(prefix + _DOC_END)
                taken.append(first_skipped[0])
                truncated = first_skipped[0]
                used += len(prefix) + len(_DOC_END)
        blob = b"".join(parts)
        if len(blob) < window:
            raise DataError(
                f"domain {domain!r}: the {split} split holds only {len(blob)} bytes "
                f"({len(per_split[split])} documents available in the source for it), less than one "
                f"window of model.max_seq_len + 1 = {window} bytes. Use a larger source for this domain, "
                "raise data.max_bytes / data.valid_fraction / data.test_fraction, or lower model.max_seq_len"
            )
        out[split] = blob
        info[split] = {
            "budget": budget,
            "documents": len(taken),
            "truncated_document": truncated,
            "doc_ids": taken,
        }
    documents = {
        "available": sum(len(v) for v in per_split.values()),
        "available_bytes": sum(len(d) + len(_DOC_END) for v in per_split.values() for _, _, d in v),
        "available_per_split": {s: len(per_split[s]) for s in SPLITS},
        "dropped_empty": n_empty,
        "dropped_duplicates": n_dupes,
    }
    return out, documents, info


# ----------------------------------------------------------------------------------- sources


def _file_record(path: Path, rel: str) -> dict[str, Any]:
    data = path.read_bytes()
    return {"path": rel, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


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


def _seed_from(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")


def _synthetic_documents(domain: str, index: int, cfg: Mapping[str, Any]) -> tuple["datasets.Dataset", dict[str, Any]]:
    """Generated text with known structure, for fast tests only.

    Domain number ``index`` writes with its own alphabet of 10 printable ASCII characters
    (disjoint from every other domain's), so domains are trivially distinguishable by their
    bytes. Words come from a 48-word lexicon; each word is followed by one of 3 fixed successor
    words (a first-order Markov chain a model can learn); sentences of 4-10 words end with
    ".\\n". Everything derives from sha256(seed, index, domain), hence deterministic.
    """
    syn = cfg["synthetic"]
    doc_bytes = int(syn["doc_bytes"])
    rng = np.random.Generator(np.random.PCG64(_seed_from(f"k1-synthetic:{syn['seed']}:{index}:{domain}")))
    alphabet = _SYNTHETIC_CHARS[index * _SYNTHETIC_ALPHABET : (index + 1) * _SYNTHETIC_ALPHABET]
    letters = np.array(list(alphabet))
    lexicon = ["".join(rng.choice(letters, size=int(rng.integers(2, 7)))) for _ in range(_SYNTHETIC_LEXICON)]
    successors = rng.integers(0, _SYNTHETIC_LEXICON, size=(_SYNTHETIC_LEXICON, _SYNTHETIC_SUCCESSORS))
    max_bytes = cfg["max_bytes"]
    n_docs = 200 if max_bytes is None else int(math.ceil(2 * max_bytes / doc_bytes)) + 16
    ids: list[str] = []
    texts: list[str] = []
    for d in range(n_docs):
        sentences: list[str] = []
        size = 0
        while size < doc_bytes:
            length = int(rng.integers(4, 11))
            choices = rng.integers(0, _SYNTHETIC_SUCCESSORS, size=length)
            w = int(rng.integers(0, _SYNTHETIC_LEXICON))
            words = [lexicon[w]]
            for c in choices[1:]:
                w = int(successors[w, c])
                words.append(lexicon[w])
            sentence = " ".join(words) + ".\n"
            sentences.append(sentence)
            size += len(sentence)
        ids.append(f"synthetic/{domain}/{d:06d}")
        texts.append("".join(sentences))
    origin = {
        "kind": "synthetic",
        "alphabet": alphabet,
        "lexicon_size": _SYNTHETIC_LEXICON,
        "successors_per_word": _SYNTHETIC_SUCCESSORS,
        "doc_bytes": doc_bytes,
        "seed": int(syn["seed"]),
        "documents_generated": n_docs,
    }
    return _documents_dataset(ids, texts), origin


def _resolve_local_root(cfg: Mapping[str, Any], data_root: Path | str | None) -> tuple[Path, str]:
    if data_root is not None:
        root, origin = Path(data_root), "--data-root"
    elif os.environ.get(DATA_ROOT_ENV):
        root, origin = Path(os.environ[DATA_ROOT_ENV]), f"${DATA_ROOT_ENV}"
    elif cfg["local"]["root"]:
        root, origin = Path(cfg["local"]["root"]), "data.local.root"
    else:
        raise DataError(
            "data.source is 'local' but no root folder is set: pass `--data-root DIR` to `k1 prepare`, "
            f"or set the environment variable {DATA_ROOT_ENV}=DIR, or set data.local.root in the params file "
            "(precedence: --data-root > $K1_DATA_ROOT > data.local.root)"
        )
    if not root.is_dir():
        raise DataError(f"local data root {str(root)!r} (from {origin}) is not an existing folder")
    return root, origin


def _read_local_text(path: Path, domain: str) -> str:
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"domain {domain!r}: local file {str(path)!r} is empty (data.local.folders.{domain})")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(
            f"domain {domain!r}: local file {str(path)!r} is not valid UTF-8 ({err}); convert it to UTF-8"
        ) from err


_SPLIT_FILE_NAMES = {"train": ("train.txt",), "valid": ("valid.txt", "validation.txt"), "test": ("test.txt",)}


def _local_documents(
    domain: str, cfg: Mapping[str, Any], data_root: Path | str | None
) -> tuple["datasets.Dataset", dict[str, Any]]:
    """Text files for ``source: local``.

    ``data.local.folders.<domain>`` (relative to the root, or absolute) names a file or a folder.
    A folder with ``train.txt``, ``valid.txt`` (or ``validation.txt``) and ``test.txt`` keeps that
    split; any other folder contributes all of its ``*.txt`` files (sorted), and a single file is
    used as is, both split by the hash rule. Text is cut into paragraph-aligned chunks of about
    ``data.local.chunk_bytes`` (the documents of the split rule).
    """
    local = cfg["local"]
    entry = Path(local["folders"][domain])
    key = f"data.local.folders.{domain}"
    if entry.is_absolute():
        path, root = entry, None
    else:
        root, _ = _resolve_local_root(cfg, data_root)
        path = root / entry
    if not path.exists():
        raise DataError(
            f"domain {domain!r}: {key} = {str(entry)!r} does not exist (looked for {str(path)!r}); "
            "fix the folder name or the root (--data-root / $K1_DATA_ROOT / data.local.root)"
        )
    chunk = int(local["chunk_bytes"])
    given: dict[str, Path] = {}
    if path.is_dir():
        for split, names in _SPLIT_FILE_NAMES.items():
            for name in names:
                if (path / name).is_file():
                    given[split] = path / name
                    break
    if given and len(given) < 3:
        missing = [s for s in SPLITS if s not in given]
        raise DataError(
            f"domain {domain!r}: folder {str(path)!r} ({key}) has {', '.join(sorted(p.name for p in given.values()))} "
            f"but no {' or '.join(_SPLIT_FILE_NAMES[missing[0]])}; give all of train/valid/test.txt, or put the "
            "text in one file to split it by the hash rule"
        )
    ids: list[str] = []
    texts: list[str] = []
    splits: list[str] = []
    files: list[dict[str, Any]] = []
    label = entry.name if entry.is_absolute() else entry.as_posix()
    if given:
        layout = "pre-split folder (train/valid/test files kept)"
        for split in SPLITS:
            p = given[split]
            text = _read_local_text(p, domain)
            for i, c in enumerate(_chunk_text(text, chunk)):
                ids.append(f"{label}/{p.name}#{i:06d}")
                texts.append(c)
                splits.append(split)
            files.append(_file_record(p, f"{label}/{p.name}"))
    else:
        if path.is_dir():
            targets = sorted(path.rglob("*.txt"), key=lambda p: p.relative_to(path).as_posix())
            if not targets:
                raise DataError(f"domain {domain!r}: folder {str(path)!r} ({key}) holds no *.txt files")
            layout = "folder of text files (split by hash rule)"
        else:
            targets = [path]
            layout = "single file (split by hash rule)"
        for p in targets:
            rel = f"{label}/{p.relative_to(path).as_posix()}" if path.is_dir() else label
            text = _read_local_text(p, domain)
            for i, c in enumerate(_chunk_text(text, chunk)):
                ids.append(f"{rel}#{i:06d}")
                texts.append(c)
                splits.append("")
            files.append(_file_record(p, rel))
    origin = {"kind": "local", "entry": label, "layout": layout, "chunk_bytes": chunk, "files": files}
    return _documents_dataset(ids, texts, splits), origin


def _hub_documents(domain: str, cfg: Mapping[str, Any]) -> tuple["datasets.Dataset", dict[str, Any]]:
    """A Hugging Face Hub dataset through ``datasets.load_dataset`` (uses the ``datasets``
    cache, so a dataset downloaded once also works offline). Never falls back to another source."""
    import datasets

    e = cfg["hub"][domain]
    what = f"Hub dataset {e['path']!r} (name={e['name']!r}, split={e['split']!r}, revision={e['revision']!r})"
    try:
        ds = datasets.load_dataset(e["path"], e["name"], split=e["split"], revision=e["revision"])
    except Exception as err:  # noqa: BLE001 - every failure becomes one actionable message
        offline = bool(getattr(datasets.config, "HF_HUB_OFFLINE", False)) or os.environ.get("HF_HUB_OFFLINE") in ("1", "true", "TRUE", "yes")
        network = isinstance(err, (ConnectionError, TimeoutError)) or any(
            w in str(err).lower() for w in ("offline", "reach", "connect", "network", "resolve")
        )
        if offline:
            why = "this machine is offline (HF_HUB_OFFLINE is set)"
        elif network:
            why = "the Hugging Face Hub is unreachable from this machine (offline or blocked network)"
        else:
            why = "the Hub could not provide it (unknown id/config/split, or the Hub is unreachable)"
        raise DataError(
            f"domain {domain!r}: could not load {what} for data.source 'hub': {why}, and it is not in the "
            f"local `datasets` cache. Error: {type(err).__name__}: {str(err).strip()[:300]}. "
            "Nothing was substituted. To run without the network use `data.source: embedded` (text shipped "
            "with Python and scipy) or `data.source: local` with a folder of text files "
            "(`k1 prepare --data-root DIR` or $K1_DATA_ROOT)."
        ) from err
    if isinstance(ds, Mapping):  # a DatasetDict: split was not a single split
        raise ConfigError(f"data.hub.{domain}.split must name one split; available: {', '.join(ds)}")
    if e["field"] not in ds.column_names:
        raise ConfigError(
            f"data.hub.{domain}.field: {what} has no column {e['field']!r}; columns: {', '.join(ds.column_names)}"
        )
    rows = [t if isinstance(t, str) else "" for t in ds[e["field"]]]
    base = f"{e['path']}/{e['name'] or 'default'}/{e['split']}"
    if e["documents"] == "rows":
        ids = [f"{base}#{i:08d}" for i in range(len(rows))]
        texts = rows
    else:
        stream = "".join(t if t.endswith("\n") else t + "\n" for t in rows)
        texts = _chunk_text(stream, int(e["chunk_bytes"]))
        ids = [f"{base}#{i:06d}" for i in range(len(texts))]
    info = ds.info
    origin = {
        "kind": "hub",
        "path": e["path"],
        "name": e["name"],
        "split": e["split"],
        "field": e["field"],
        "revision": e["revision"] if e["revision"] is not None else "default branch (unpinned)",
        "documents": e["documents"],
        "chunk_bytes": e["chunk_bytes"] if e["documents"] == "chunks" else None,
        "rows": len(rows),
        "builder": getattr(info, "builder_name", None),
        "config_name": getattr(info, "config_name", None),
        "version": str(getattr(info, "version", None)),
    }
    return _documents_dataset(ids, texts), origin


def _load_documents(
    cfg: Mapping[str, Any], domain: str, index: int, data_root: Path | str | None
) -> tuple["datasets.Dataset", dict[str, Any]]:
    source = cfg["source"]
    if source == "embedded":
        return _EMBEDDED_LOADERS[domain]()
    if source == "synthetic":
        return _synthetic_documents(domain, index, cfg)
    if source == "local":
        return _local_documents(domain, cfg, data_root)
    return _hub_documents(domain, cfg)


# ------------------------------------------------------------------------------- preparation


def _versions(source: str) -> dict[str, str | None]:
    def v(dist: str) -> str | None:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return None

    out: dict[str, str | None] = {
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "k1model": v("k1model"),
        "datasets": v("datasets"),
        "numpy": v("numpy"),
        "scipy": v("scipy"),
    }
    if source == "hub":
        out["huggingface_hub"] = v("huggingface_hub")
    return out


def _recorded_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the config that shaped the data (no machine-specific root path)."""
    rec: dict[str, Any] = {k: cfg[k] for k in ("source", "domains", "max_bytes", "valid_fraction", "test_fraction")}
    source = cfg["source"]
    if source == "local":
        rec["local"] = {
            "folders": {d: str(cfg["local"]["folders"][d]) for d in cfg["domains"]},
            "chunk_bytes": cfg["local"]["chunk_bytes"],
        }
    elif source == "hub":
        rec["hub"] = {d: cfg["hub"][d] for d in cfg["domains"]}
    elif source == "synthetic":
        rec["synthetic"] = dict(cfg["synthetic"])
    return rec


_PREPARED_FILES = {f"{s}.bin" for s in SPLITS}


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace a directory that `k1 prepare` did not write (it would be deleted)."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise DataError(f"output {str(out_dir)!r} exists and is not a directory")
    for child in out_dir.iterdir():
        if child.name == "manifest.json" and child.is_file():
            continue
        if child.is_dir() and all(g.is_file() and g.name in _PREPARED_FILES for g in child.iterdir()):
            continue
        raise DataError(
            f"output directory {str(out_dir)!r} holds {child.name!r}, which `k1 prepare` did not write; "
            "refusing to replace it. Choose an empty or new --out directory"
        )


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    old: Path | None = None
    if out_dir.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
        os.rmdir(old)
        os.rename(out_dir, old)
    os.rename(tmp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prepare(
    data_cfg: Mapping[str, Any] | None,
    out_dir: Path | str,
    *,
    data_root: Path | str | None = None,
    seq_len: int,
) -> dict[str, Any]:
    """Build ``out_dir/<domain>/{train,valid,test}.bin`` and ``out_dir/manifest.json``.

    ``data_cfg`` is the ``data:`` section of a params file (defaults from
    :data:`DEFAULT_DATA_CONFIG`), ``seq_len`` is ``model.max_seq_len`` (every split must hold one
    window of ``seq_len + 1`` bytes), ``data_root`` overrides ``$K1_DATA_ROOT`` and
    ``data.local.root`` for ``source: local``. Everything is written into a temporary directory
    beside ``out_dir`` and renamed into place at the end, so an interrupted run leaves no
    half-written output. The result is deterministic: two runs give byte-identical files,
    manifest included (no timestamps, no absolute paths). Returns the manifest.
    """
    cfg = normalize_data_config(data_cfg, seq_len=seq_len)
    window = int(seq_len) + 1
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)
        domains: dict[str, Any] = {}
        for index, domain in enumerate(cfg["domains"]):
            ds, origin = _load_documents(cfg, domain, index, data_root)
            blobs, documents, info = _make_splits(ds, domain, cfg, window)
            (tmp / domain).mkdir()
            splits: dict[str, Any] = {}
            for split in SPLITS:
                blob = blobs[split]
                (tmp / domain / f"{split}.bin").write_bytes(blob)
                splits[split] = {
                    "file": f"{domain}/{split}.bin",
                    "bytes": len(blob),
                    "tokens": len(blob),
                    "sha256": hashlib.sha256(blob).hexdigest(),
                    **info[split],
                }
            domains[domain] = {"origin": origin, "documents": documents, "splits": splits}
        manifest: dict[str, Any] = {
            "format": MANIFEST_FORMAT,
            "tokenizer": dict(TOKENIZER),
            "source": cfg["source"],
            "config": _recorded_config(cfg),
            "versions": _versions(cfg["source"]),
            "domains": domains,
            "split_rule": SPLIT_RULE,
        }
        write_json(tmp / "manifest.json", manifest)
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def format_split_table(manifest: Mapping[str, Any]) -> str:
    """A short per-domain table: bytes (and documents) per split."""
    head = f"{'domain':<12}" + "".join(f"{s + ' bytes':>14}" for s in SPLITS) + f"{'docs (t/v/t)':>18}"
    lines = [f"source: {manifest['source']}, tokenizer: {manifest['tokenizer']['kind']}", head]
    for name, d in manifest["domains"].items():
        sp = d["splits"]
        docs = "/".join(str(sp[s]["documents"]) for s in SPLITS)
        lines.append(f"{name:<12}" + "".join(f"{sp[s]['bytes']:>14,}" for s in SPLITS) + f"{docs:>18}")
    return "\n".join(lines)


def cli_prepare(args: Any) -> int:
    """`k1 prepare --params P --out DIR [--data-root R]`: prepare the data, print a table."""
    from k1model.config import load_params

    params = load_params(args.params, required=("data",))
    params_path = Path(args.params)
    if not isinstance(params["data"], Mapping):
        raise ConfigError(f"params file {str(params_path)!r}: the `data:` section must be a mapping")
    model = params.get("model")
    if not isinstance(model, Mapping) or "max_seq_len" not in model:
        raise ConfigError(f"params file {str(params_path)!r}: model.max_seq_len is required (the window length)")
    manifest = prepare(params["data"], Path(args.out), data_root=getattr(args, "data_root", None), seq_len=model["max_seq_len"])
    print(format_split_table(manifest))
    if len(manifest["domains"]) > 1:
        matrix = cross_domain_unigram_bpb(Path(args.out))
        print("\nunigram byte model bpb (rows: fitted on train of; columns: evaluated on test of)")
        print(matrix.round(3).to_string())
    print(f"\nwrote {Path(args.out) / 'manifest.json'}")
    return 0


# ------------------------------------------------------------------------------------ loading


def load_manifest(data_dir: Path | str) -> dict[str, Any]:
    """The manifest of a prepared data directory (DataError if missing)."""
    import json

    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise DataError(
            f"no prepared data in {str(data_dir)!r} (missing manifest.json); run `k1 prepare --params P --out {data_dir}`"
        )
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def load_split(data_dir: Path | str, domain: str, split: str, *, verify: bool = True) -> np.ndarray:
    """One split of one domain as a ``uint8`` array (the byte tokens).

    With ``verify`` (default) and a manifest present, the file's sha256 is checked against it,
    so a stale or modified file is reported instead of silently used.
    """
    data_dir = Path(data_dir)
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; allowed: {', '.join(SPLITS)}")
    manifest_path = data_dir / "manifest.json"
    manifest = load_manifest(data_dir) if manifest_path.is_file() else None
    if manifest is not None and domain not in manifest["domains"]:
        raise DataError(
            f"unknown domain {domain!r} in {str(data_dir)!r}; prepared domains: {', '.join(manifest['domains'])}. "
            "Re-run `k1 prepare` with this domain in data.domains"
        )
    path = data_dir / domain / f"{split}.bin"
    if not path.is_file():
        raise DataError(
            f"missing {str(path)!r} (domain {domain!r}, split {split!r}); run `k1 prepare --params P --out {data_dir}`"
        )
    raw = path.read_bytes()
    if manifest is not None and verify:
        want = manifest["domains"][domain]["splits"][split]["sha256"]
        if hashlib.sha256(raw).hexdigest() != want:
            raise DataError(
                f"{str(path)!r} does not match its sha256 in manifest.json (modified or half-copied); "
                "re-run `k1 prepare`"
            )
    if not raw:
        raise DataError(f"{str(path)!r} is empty; re-run `k1 prepare`")
    return np.frombuffer(raw, dtype=np.uint8).copy()


# ----------------------------------------------------------------------------------- sampling


def _as_tokens(tokens: np.ndarray, window: int, what: str) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"{what}: tokens must be a 1-D integer array, got shape {arr.shape} dtype {arr.dtype}")
    if len(arr) < window:
        raise DataError(
            f"{what}: {len(arr)} tokens are fewer than one window of seq_len + 1 = {window}; "
            "raise data.max_bytes or lower model.max_seq_len and re-run `k1 prepare`"
        )
    return arr


def _check_positive(**values: Any) -> None:
    for name, value in values.items():
        if not (_is_int(value) and value > 0):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")


class BatchSampler:
    """Random training windows: an endless iterator of ``(x, y)`` int64 tensors ``[batch, seq_len]``.

    Each batch takes ``batch_size`` windows of ``seq_len + 1`` consecutive tokens with start
    positions drawn uniformly (with replacement) from ``numpy.random.Generator(PCG64(seed))``;
    ``x`` is a window without its last token and ``y`` the same window shifted by one. The
    sampler owns its generator and has no variant argument, so every variant trained with the
    same seed sees the same batches in the same order. ``state_dict()`` /
    ``load_state_dict()`` save and restore the generator, so a resumed run continues the exact
    same stream.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int) -> None:
        _check_positive(seq_len=seq_len, batch_size=batch_size)
        if not (_is_int(seed) and seed >= 0):
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.seq_len = int(seq_len)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.tokens = _as_tokens(tokens, self.seq_len + 1, "BatchSampler")
        self._n_starts = len(self.tokens) - self.seq_len  # starts 0 .. len - (seq_len + 1)
        self._offsets = np.arange(self.seq_len + 1, dtype=np.int64)
        self._rng = np.random.Generator(np.random.PCG64(self.seed))
        self._fingerprint = zlib.crc32(np.ascontiguousarray(self.tokens).tobytes())
        self.batches_drawn = 0

    def __iter__(self) -> "BatchSampler":
        return self

    def __next__(self) -> tuple["torch.Tensor", "torch.Tensor"]:
        import torch

        starts = self._rng.integers(0, self._n_starts, size=self.batch_size, dtype=np.int64)
        windows = self.tokens[starts[:, None] + self._offsets].astype(np.int64)
        self.batches_drawn += 1
        return (
            torch.from_numpy(np.ascontiguousarray(windows[:, :-1])),
            torch.from_numpy(np.ascontiguousarray(windows[:, 1:])),
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the stream (plain Python types: JSON/torch.save safe)."""
        return {
            "seed": self.seed,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "n_tokens": int(len(self.tokens)),
            "tokens_crc32": int(self._fingerprint),
            "batches_drawn": int(self.batches_drawn),
            "bit_generator": copy.deepcopy(self._rng.bit_generator.state),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved state; DataError if it belongs to other data or another shape."""
        for key, mine in (
            ("seq_len", self.seq_len),
            ("batch_size", self.batch_size),
            ("n_tokens", len(self.tokens)),
            ("tokens_crc32", self._fingerprint),
        ):
            if int(state[key]) != int(mine):
                raise DataError(
                    f"sampler state does not match this sampler ({key}: saved {state[key]}, now {mine}); "
                    "the data or the config changed since the checkpoint"
                )
        self.seed = int(state["seed"])
        self._rng.bit_generator.state = copy.deepcopy(dict(state["bit_generator"]))
        self.batches_drawn = int(state["batches_drawn"])


def eval_batches(
    tokens: np.ndarray, seq_len: int, batch_size: int, n_batches: int
) -> list[tuple["torch.Tensor", "torch.Tensor"]]:
    """Fixed evaluation windows: ``n_batches`` batches of ``(x, y)`` int64 tensors.

    The ``batch_size * n_batches`` window starts are evenly spaced from the first to the last
    possible start (integer arithmetic, no RNG), so every variant and seed is evaluated on
    identical data. Windows are dealt round-robin to the batches, so each batch (and any
    prefix of the list) is spread over the whole split.
    """
    import torch

    _check_positive(seq_len=seq_len, batch_size=batch_size, n_batches=n_batches)
    arr = _as_tokens(tokens, seq_len + 1, "eval_batches")
    n = batch_size * n_batches
    last = len(arr) - seq_len - 1
    starts = (np.arange(n, dtype=np.int64) * last) // max(n - 1, 1)
    offsets = np.arange(seq_len + 1, dtype=np.int64)
    grid = starts.reshape(batch_size, n_batches).T  # batch b gets windows b, b + n_batches, ...
    out = []
    for b in range(n_batches):
        w = arr[grid[b][:, None] + offsets].astype(np.int64)
        out.append((torch.from_numpy(np.ascontiguousarray(w[:, :-1])), torch.from_numpy(np.ascontiguousarray(w[:, 1:]))))
    return out


# ------------------------------------------------------------------------ domain separability


def unigram_bpb(fit_tokens: np.ndarray, eval_tokens: np.ndarray, alpha: float = 0.5) -> float:
    """Bits per byte of ``eval_tokens`` under a unigram byte model fitted on ``fit_tokens``
    (add-``alpha`` smoothing over 256 byte values, so unseen bytes cost finite bits)."""
    fit = np.bincount(np.asarray(fit_tokens, dtype=np.uint8), minlength=256).astype(np.float64)
    ev = np.bincount(np.asarray(eval_tokens, dtype=np.uint8), minlength=256).astype(np.float64)
    if ev.sum() == 0:
        raise DataError("unigram_bpb: no tokens to evaluate")
    logp = np.log2((fit + alpha) / (fit.sum() + 256 * alpha))
    return float(-(ev * logp).sum() / ev.sum())


def cross_domain_unigram_bpb(
    data_dir: Path | str, *, fit_split: str = "train", eval_split: str = "test", alpha: float = 0.5
) -> "pd.DataFrame":
    """How distinguishable the prepared domains are: entry [i, j] is the bpb of domain j's
    ``eval_split`` under a unigram byte model fitted on domain i's ``fit_split``.

    The diagonal is the in-domain unigram entropy; off-diagonal excess over it is the cost of
    using the wrong domain's byte statistics (a lower bound on how different the domains are).
    """
    import pandas as pd

    manifest = load_manifest(data_dir)
    names = list(manifest["domains"])
    fit = {d: load_split(data_dir, d, fit_split) for d in names}
    ev = {d: load_split(data_dir, d, eval_split) for d in names}
    rows = [[unigram_bpb(fit[i], ev[j], alpha) for j in names] for i in names]
    frame = pd.DataFrame(rows, index=pd.Index(names, name=f"fit:{fit_split}"), columns=pd.Index(names, name=f"eval:{eval_split}"))
    return frame
