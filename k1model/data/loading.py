"""Reading prepared data: the manifest and the split files (checked against their sha256)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from k1model.config.checks import plain
from k1model.config.data import SPLITS
from k1model.errors import DamagedOutputError, DataError

def load_manifest(data_dir: Path | str) -> dict[str, Any]:
    """The manifest of a prepared data directory (DataError if missing, DamagedOutputError if damaged)."""
    return read_manifest(data_dir)[0]


def read_manifest(data_dir: Path | str) -> tuple[dict[str, Any], str]:
    """A prepared data directory's manifest and the sha256 of its bytes (what a run records of its data)."""
    from k1model.io import read_output_json

    path = Path(data_dir) / "manifest.json"
    if not path.is_file():
        raise DataError(
            f"no prepared data in {str(data_dir)!r} (missing manifest.json); run `k1 prepare --params P --out {data_dir}`"
        )
    fix = f"prepare the data again (`k1 prepare --params P --out {data_dir}`)"
    manifest = read_output_json(path, fix)
    if not isinstance(manifest.get("domains"), dict):
        raise DamagedOutputError(f"{path} is damaged: it lists no domains; {fix}")
    return manifest, hashlib.sha256(path.read_bytes()).hexdigest()


def recorded_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a `data:` section that shapes the prepared data (no machine-specific root path): what the
    manifest records, and what a params file is checked against before training on it."""
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
    return json.loads(json.dumps(plain(rec)))  # as the manifest holds it (lists, not tuples)


def check_data_section(data_cfg: Any, manifest: Mapping[str, Any], data_dir: Path | str) -> None:
    """Refuse prepared data made from another `data:` section than the params' (DataError naming the first key
    that differs): training on it would silently use data the params do not describe."""
    made = manifest.get("config")
    if not isinstance(made, Mapping):
        raise DataError(f"{Path(data_dir) / 'manifest.json'} does not record the data section it was made from; "
                        f"prepare it again (`k1 prepare --params P --out {data_dir}`)")
    wanted = recorded_config(data_cfg)
    for key, want, have in _differences(wanted, dict(made)):
        raise DataError(f"data.{key} is {want!r} in the params, but the prepared data in {data_dir} was made with "
                        f"{have!r}: prepare it again with these params (`k1 prepare --params P --out {data_dir}`), "
                        "or pass the --data these params prepared")


def _differences(a: Any, b: Any, key: str = "") -> list[tuple[str, Any, Any]]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return [d for k in sorted(set(a) | set(b), key=str)
                for d in _differences(a.get(k), b.get(k), f"{key}.{k}" if key else str(k))]
    return [] if a == b else [(key, a, b)]


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
