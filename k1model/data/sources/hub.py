"""Source `hub`: a Hugging Face Hub dataset through `datasets.load_dataset` (its cache works offline).
Never falls back to another source: an unreachable Hub is a `DataError` that says what to do."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping

from k1model.data.documents import _chunk_text, _documents_dataset
from k1model.errors import ConfigError, DataError

if TYPE_CHECKING:
    import datasets

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


def load(cfg: Mapping[str, Any], domain: str, index: int, data_root: Any) -> tuple["datasets.Dataset", dict[str, Any]]:
    return _hub_documents(domain, cfg)
