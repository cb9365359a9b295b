"""The sources of documents, one module each; `SOURCES` maps `data.source` to its loader.

A loader is `load(cfg, domain, index, data_root) -> (datasets.Dataset of doc_id/text/split, origin)`,
where `origin` is what the manifest records about where the text came from.
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from k1model.config.data import SOURCES as SOURCE_NAMES

if TYPE_CHECKING:
    import datasets

#: data.source -> module holding its `load` (imported on use: each source has its own dependencies)
SOURCES: dict[str, str] = {
    "embedded": "k1model.data.sources.embedded",
    "hub": "k1model.data.sources.hub",
    "local": "k1model.data.sources.local",
    "synthetic": "k1model.data.sources.synthetic",
}
assert set(SOURCES) == set(SOURCE_NAMES), "every data.source value needs a loader module"


def load_documents(cfg: Mapping[str, Any], domain: str, index: int,
                   data_root: Path | str | None) -> tuple["datasets.Dataset", dict[str, Any]]:
    """The documents of one domain from the configured source (domain `index` in data.domains)."""
    return importlib.import_module(SOURCES[cfg["source"]]).load(cfg, domain, index, data_root)
