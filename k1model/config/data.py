"""`data:` sources, domains and split budgets of `k1 prepare` (docs: k1model/data/__init__.py)."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Mapping

from k1model.config.checks import (Check, Integer, ListOf, MapOf, Nested, Nullable, Number, OneOf, Section, Text,
                                   setting)
from k1model.config.train import DOMAIN
from k1model.errors import ConfigError

SPLITS: tuple[str, ...] = ("train", "valid", "test")
SOURCES: tuple[str, ...] = ("embedded", "hub", "local", "synthetic")
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
#: synthetic alphabets: printable ASCII except space and '.', 10 characters per domain
SYNTHETIC_CHARS = "".join(chr(c) for c in range(33, 127) if chr(c) != ".")
SYNTHETIC_ALPHABET = 10


class PathText(Check):
    """A file-system path (a string; os.PathLike accepted from Python callers)."""

    allowed = "a path"

    def __call__(self, value: Any, key: str) -> str:
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str) or not value:
            raise self.fail(value, key)
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "minLength": 1}


@dataclass(frozen=True)
class LocalConfig(Section):
    """Where `source: local` reads each domain's text files."""
    SECTION = "data.local"
    DESCRIPTION = "text files for source: local"

    root: str | None = setting(None, Nullable(PathText()),
                               "folder holding one folder (or file) per domain; --data-root / $K1_DATA_ROOT "
                               "/ --config data_root=... take precedence")
    folders: Mapping[str, str | None] = setting(
        check=MapOf(DOMAIN, Nullable(PathText()), "a mapping domain -> folder or file"),
        factory=lambda: {"prose": "wikitext2", "code": "python_code", "science": "science"},
        doc="domain -> folder or file under root (default prose: wikitext2, code: python_code, science: science)")
    chunk_bytes: int = setting(4096, Integer(64), "documents are paragraph-aligned chunks of about this size")


@dataclass(frozen=True)
class HubSource(Section):
    """One Hugging Face Hub dataset (name, config, split, text field, revision)."""
    SECTION = "data.hub"
    DESCRIPTION = "one Hugging Face Hub dataset"

    path: str | None = setting(None, Nullable(Text()), "Hub dataset id, e.g. wikitext")
    name: str | None = setting(None, Nullable(Text()), "dataset configuration, e.g. wikitext-2-raw-v1")
    split: str = setting("train", Text(), "Hub split to read")
    field: str = setting("text", Text(), "text column")
    revision: str | None = setting(None, Nullable(Text()), "pinned revision (null = default branch)")
    documents: str = setting("chunks", OneOf(("chunks", "rows")),
                             "chunks: rows joined and cut into paragraph chunks; rows: one document per row")
    chunk_bytes: int = setting(4096, Integer(64), "chunk size for documents: chunks")


DEFAULT_HUB: dict[str, HubSource] = {
    # WikiText-2 (raw): rows are lines of Wikipedia articles, so they are joined and cut into
    # paragraph-aligned chunks. Add entries for other domains, e.g.
    #   code: {path: <dataset id>, field: content, documents: rows}
    "prose": HubSource(path="wikitext", name="wikitext-2-raw-v1"),
}


@dataclass(frozen=True)
class SyntheticConfig(Section):
    """Generated text with known structure (tests)."""
    SECTION = "data.synthetic"
    DESCRIPTION = "generated text with known structure, for tests"

    doc_bytes: int = setting(512, Integer(16), "bytes per generated document")
    seed: int = setting(0, Integer(0), "seed of the generator")


@dataclass(frozen=True)
class DataConfig(Section):
    """`data:` what `k1 prepare` builds: the source, the domains and each split's byte budget."""
    SECTION = "data"
    DESCRIPTION = "k1 prepare: sources, domains, split budgets (every split must hold one model.max_seq_len + 1 window)"

    source: str = setting("embedded", OneOf(SOURCES),
                          "embedded: offline text shipped with the installed packages (prose, code, science); "
                          "hub: Hugging Face Hub (online); local: text files; synthetic: generated text for tests")
    domains: list[str] = setting(check=ListOf(DOMAIN, min_len=1, what="a non-empty list of domain names", kind=list),
                                 factory=lambda: ["prose", "code", "science"],
                                 doc="domains, also the default training order of the phases")
    max_bytes: int | None = setting(600_000, Nullable(Integer(1)), "bytes per domain, all splits together "
                                    "(null = everything)")
    valid_fraction: float = setting(0.05, Number(0.0, 1.0, True, True), "share of documents held out for validation")
    test_fraction: float = setting(0.05, Number(0.0, 1.0, True, True), "share of documents held out for test")
    local: LocalConfig = setting(check=Nested(LocalConfig), factory=LocalConfig, doc="text files for source: local")
    hub: Mapping[str, HubSource] = setting(
        check=MapOf(DOMAIN, Nested(HubSource, nullable=False), "a mapping domain -> Hub dataset"),
        factory=lambda: dict(DEFAULT_HUB), doc="domain -> Hugging Face Hub dataset for source: hub")
    synthetic: SyntheticConfig = setting(check=Nested(SyntheticConfig), factory=SyntheticConfig,
                                         doc="generated text for tests")

    @classmethod
    def prepare(cls, values: dict[str, Any]) -> dict[str, Any]:
        """User `local.folders` and `hub` entries extend the defaults instead of replacing them."""
        local = values.get("local")
        if isinstance(local, Mapping) and not isinstance(local, LocalConfig):
            folders = local.get("folders")
            if folders is not None and not isinstance(folders, Mapping):
                raise ConfigError("data.local.folders must map domain -> folder or file")
            local = dict(local)
            local["folders"] = {**LocalConfig().folders, **dict(folders or {})}
            values["local"] = local
        hub = values.get("hub")
        if hub is None:
            values.pop("hub", None)
        elif isinstance(hub, Mapping):
            values["hub"] = {**DEFAULT_HUB, **dict(hub)}
        else:
            raise ConfigError("data.hub must map domain -> {path, name, split, field, revision}")
        for key in ("local", "synthetic"):
            if key in values and values[key] is None:
                values.pop(key)
        return values

    def validate(self) -> None:
        dupes = sorted({d for d in self.domains if self.domains.count(d) > 1})
        if dupes:
            raise ConfigError(f"data.domains: domain {dupes[0]!r} is listed more than once")
        if self.source == "embedded":
            for d in self.domains:
                if d not in EMBEDDED_DOMAINS:
                    raise ConfigError(f"data.domains: unknown domain {d!r} for source 'embedded'; allowed: "
                                      f"{', '.join(EMBEDDED_DOMAINS)} (use source: local, hub or synthetic "
                                      "for other names)")
        if self.valid_fraction + self.test_fraction >= 1.0:
            raise ConfigError("data.valid_fraction + data.test_fraction must be < 1 (train needs documents too), "
                              f"got {self.valid_fraction} + {self.test_fraction}")
        if self.source == "local":
            for d in self.domains:
                if not self.local.folders.get(d):
                    raise ConfigError(f"data.local.folders has no entry for domain {d!r}; add `{d}: <folder or file "
                                      "under data.local.root>`")
        if self.source == "hub":
            for d in self.domains:
                if d not in self.hub or not self.hub[d].path:
                    raise ConfigError(f"data.hub.{d}: no Hub dataset configured for domain {d!r}; add `hub: {{{d}: "
                                      "{path: <dataset id>, name: <config or null>, split: train, field: text}}`")
        if self.source == "synthetic":
            n_max = len(SYNTHETIC_CHARS) // SYNTHETIC_ALPHABET
            if len(self.domains) > n_max:
                raise ConfigError(f"data.domains: source 'synthetic' supports at most {n_max} domains, "
                                  f"got {len(self.domains)}")

    def budgets(self) -> dict[str, int | None]:
        """Byte budget per split (valid/test: floor(max_bytes * fraction); train: the rest)."""
        return split_budgets(self.max_bytes, self.valid_fraction, self.test_fraction)

    def check_windows(self, seq_len: int) -> None:
        """Every split's budget must hold one window of `seq_len + 1` bytes (model.max_seq_len)."""
        if not (isinstance(seq_len, int) and not isinstance(seq_len, bool) and seq_len > 0):
            raise ConfigError(f"model.max_seq_len must be a positive integer, got {seq_len!r}")
        if self.max_bytes is None:
            return
        window = seq_len + 1
        budgets = self.budgets()
        small = [s for s in SPLITS if budgets[s] < window]  # type: ignore[operator]
        if small:
            need = min_max_bytes(window, self.valid_fraction, self.test_fraction)
            d = self.domains
            raise ConfigError(
                f"data.max_bytes={self.max_bytes} is too small for domain {d[0]!r}"
                f"{' (and ' + ', '.join(map(repr, d[1:])) + ')' if len(d) > 1 else ''}: its {small[0]} split would "
                f"get {budgets[small[0]]} bytes, less than one window of model.max_seq_len + 1 = {window} bytes; set "
                f"data.max_bytes >= {need} (or raise data.valid_fraction / data.test_fraction)")


def split_budgets(max_bytes: int | None, valid_fraction: float, test_fraction: float) -> dict[str, int | None]:
    """Bytes of each split of a domain (None: no budget, everything)."""
    if max_bytes is None:
        return {s: None for s in SPLITS}
    valid = int(math.floor(max_bytes * valid_fraction))
    test = int(math.floor(max_bytes * test_fraction))
    return {"train": max_bytes - valid - test, "valid": valid, "test": test}


def min_max_bytes(window: int, valid_fraction: float, test_fraction: float) -> int:
    """Smallest max_bytes for which every split's budget holds one window."""
    m = max(window, int(math.ceil(window / min(valid_fraction, test_fraction, 1 - valid_fraction - test_fraction))))
    while min(b for b in split_budgets(m, valid_fraction, test_fraction).values()) < window:  # type: ignore[type-var]
        m += 1
    return m


def data_config(values: Mapping[str, Any] | None, *, seq_len: int | None = None) -> DataConfig:
    """Validate a `data:` section (defaults filled in); with `seq_len` also check the split budgets."""
    cfg = values if isinstance(values, DataConfig) else DataConfig.from_mapping(values)
    if seq_len is not None:
        cfg.check_windows(seq_len)
    return cfg
