"""Reading prepared data: the manifest and the split files (checked against their sha256)."""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from k1model.config.data import SPLITS
from k1model.errors import DataError

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
