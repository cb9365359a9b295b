"""`k1 prepare`: every domain's documents -> split files + manifest, atomically and deterministically."""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from k1model.config.data import SPLITS, data_config
from k1model.data.documents import SPLIT_RULE, _make_splits
from k1model.data.loading import recorded_config
from k1model.data.sources import load_documents
from k1model.errors import DataError
from k1model.io import write_error, write_json, writing

TOKENIZER: dict[str, Any] = {"kind": "utf8-bytes", "vocab_size": 256, "dtype": "uint8"}

MANIFEST_FORMAT = "k1-prepared-data/1"

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
    `k1model.config.DataConfig`), ``seq_len`` is ``model.max_seq_len`` (every split must hold one
    window of ``seq_len + 1`` bytes), ``data_root`` overrides ``$K1_DATA_ROOT`` and
    ``data.local.root`` for ``source: local``. Everything is written into a temporary directory
    beside ``out_dir`` and renamed into place at the end, so an interrupted run leaves no
    half-written output. The result is deterministic: two runs give byte-identical files,
    manifest included (no timestamps, no absolute paths). Returns the manifest.
    """
    cfg = data_config(data_cfg, seq_len=seq_len)
    window = int(seq_len) + 1
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    with writing(out_dir):
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)
        domains: dict[str, Any] = {}
        for index, domain in enumerate(cfg["domains"]):
            ds, origin = load_documents(cfg, domain, index, data_root)
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
            "config": recorded_config(cfg),
            "versions": _versions(cfg["source"]),
            "domains": domains,
            "split_rule": SPLIT_RULE,
        }
        write_json(tmp / "manifest.json", manifest)
        _swap_into_place(tmp, out_dir)
    except BaseException as err:
        shutil.rmtree(tmp, ignore_errors=True)
        converted = write_error(err, out_dir) if isinstance(err, OSError) else None  # a full disk, say, named
        if converted is not None:
            raise converted from None
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
