"""Source `local`: text files under a root folder (`--data-root` > $K1_DATA_ROOT > data.local.root)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from k1model.config.data import SPLITS
from k1model.data.documents import _chunk_text, _documents_dataset, _file_record
from k1model.errors import DataError

if TYPE_CHECKING:
    import datasets

DATA_ROOT_ENV = "K1_DATA_ROOT"

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


def load(cfg: Mapping[str, Any], domain: str, index: int, data_root: Any) -> tuple["datasets.Dataset", dict[str, Any]]:
    return _local_documents(domain, cfg, data_root)
