"""Atomic file writes, the project's one JSON encoder, and readers of outputs that may be damaged.

A reader never sees a half-written output, and a crash never destroys the old one. JSON outputs
are strict JSON: NaN/inf become null, numpy values plain Python, sections plain mappings. A file
damaged all the same (a full disk, a broken copy, a hand edit) is reported by `read_output_json` and
`read_output_table` as a `DamagedOutputError` naming it, what is wrong and how to rebuild it.
"""
from __future__ import annotations

import errno
import json
import math
import os
import re
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from k1model.errors import DamagedOutputError, OutputWriteError


#: errors of the file system that the user fixes outside k1: a full disk (or quota), a read-only or foreign folder
DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def write_error(err: OSError, path: str | os.PathLike | None = None) -> OutputWriteError | None:
    """The one-line error for an OSError met while writing `path` (without one: the error's own file name): a
    full disk, a read-only folder, a permission denied; None for any other error."""
    where = Path(path) if path is not None else Path(err.filename) if err.filename else None
    shown = f" {where}" if where is not None else " an output"
    if err.errno in DISK_FULL:
        free = _free_space(where)
        return OutputWriteError(f"no space left on the device holding{shown} ({err.strerror}{free}): free some space "
                                "there, or write the outputs elsewhere, and rerun; finished work is kept")
    if err.errno == errno.EROFS:
        return OutputWriteError(f"cannot write{shown}: the folder is read-only ({err.strerror}); choose an output "
                                "folder you can write to, or make this one writable, and rerun")
    if err.errno in NOT_WRITABLE:  # (reading or writing: the error does not say which)
        return OutputWriteError(f"permission denied for{shown} ({err.strerror}); use files and folders you may "
                                "read and write, or change their permissions, and rerun")
    return None


def _free_space(path: Path | None) -> str:
    while path is not None and not path.exists() and path != path.parent:
        path = path.parent
    try:
        return f"; {shutil.disk_usage(path).free:,} bytes free there" if path is not None else ""
    except OSError:
        return ""


@contextmanager
def writing(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full disk or an unwritable folder met inside the block into an `OutputWriteError` naming `path`."""
    try:
        yield
    except OSError as err:
        converted = write_error(err, path)
        if converted is None:
            raise
        raise converted from None


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path` (atomic on POSIX). A full disk
    or an unwritable folder is an `OutputWriteError` naming `path`; the temporary file is removed."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            yield Path(tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get the usual permissions
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


#: the temporary files `atomic_path` makes (".NAME.XXXXXXXX.tmp", tempfile's 8 random characters): a process
#: killed while writing leaves one behind
TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def remove_stray_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files a killed writer left in `folder` (only call it while no other process writes
    there, e.g. holding the folder's lock); returns them."""
    folder = Path(folder)
    strays = sorted(p for p in folder.iterdir() if TEMPORARY.fullmatch(p.name) and p.is_file()) \
        if folder.is_dir() else []
    for stray in strays:
        stray.unlink(missing_ok=True)
    return strays


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write a text file atomically (readers see the old file or the whole new one)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def json_safe(obj: Any) -> Any:
    """`obj` as plain JSON values: NaN/inf -> None, numpy -> Python, mappings/sections -> dicts
    (keys as strings), tuples and arrays -> lists, paths -> strings."""
    import numpy as np

    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (NaN and infinities as null)."""
    write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file this project wrote (outputs that may be damaged: `read_output_json`)."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_csv(path: str | os.PathLike, frame: Any) -> None:
    """A pandas DataFrame as CSV (10 significant digits, LF line ends), atomically."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.10g", lineterminator="\n")


def rerun_hint(run_dir: str | os.PathLike) -> str:
    """How to rebuild a run whose folder holds a damaged file."""
    return (f"delete the run folder {run_dir} and rerun that run (snakemake reruns its training job; by hand "
            f"`k1 train --params ... --variant ... --seed ... --out {run_dir}`)")


def read_output_json(path: str | os.PathLike, fix: str) -> dict[str, Any]:
    """A JSON object written by a pipeline step; a `DamagedOutputError` ("PATH is damaged: what; `fix`") if the
    file is empty, truncated, not UTF-8 text, not JSON or not an object."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DamagedOutputError(f"{path} cannot be read ({err.strerror or err}); {fix}") from None
    if not raw.strip():
        problem = "it is empty"
    else:
        try:
            text = raw.decode("utf-8")
            data = json.loads(text)
        except UnicodeDecodeError as err:
            problem = f"it is not UTF-8 text (byte {err.start} of {len(raw)}), so not JSON"
        except json.JSONDecodeError as err:
            problem = (f"it is truncated: the JSON stops after {len(raw)} bytes ({err.msg})"
                       if err.pos >= len(text.rstrip()) or _unclosed(text) else
                       f"it is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})")
        else:
            if isinstance(data, dict):
                return data
            problem = f"it holds a JSON {type(data).__name__}, not an object"
    raise DamagedOutputError(f"{path} is damaged: {problem}; {fix}")


def _unclosed(text: str) -> bool:
    """Whether JSON text ends inside a string or with brackets left open: what a cut-off file looks like."""
    depth, in_string, escaped = 0, False, False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
    return in_string or depth > 0


def _ends_a_line(path: Path) -> bool:
    """Whether a text file is empty or ends with a line break, as every table written here does."""
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return True
        fh.seek(size - 1)
        return fh.read(1) == b"\n"


def read_output_table(path: str | os.PathLike, fix: str, **read_csv: Any) -> Any:
    """A CSV table (gzip-compressed when the name ends in .gz) written by a pipeline step, as a pandas
    DataFrame; a `DamagedOutputError` if it is truncated (a plain CSV: its last line has no line break; gzip: the
    stream ends early), not gzip, not UTF-8 text, empty or not a CSV table."""
    import gzip
    import zlib

    import pandas as pd

    path = Path(path)
    try:
        if path.suffix != ".gz" and not _ends_a_line(path):  # a cut-off last row would read as missing values
            raise DamagedOutputError(f"{path} is damaged: it is truncated (its last row is cut off: the file does "
                                     f"not end with a line break); {fix}")
        return pd.read_csv(path, **read_csv)
    except EOFError:
        problem = "it is truncated (the compressed stream ends early)"
    except gzip.BadGzipFile:
        problem = "it is not a gzip file"
    except zlib.error as err:
        problem = f"its compressed data is corrupt ({err})"
    except UnicodeDecodeError as err:
        problem = f"it is not UTF-8 text (byte {err.start})"
    except pd.errors.EmptyDataError:
        problem = "it is empty"
    except pd.errors.ParserError as err:
        problem = f"it is not a valid CSV table ({str(err).strip().splitlines()[0]})"
    except OSError as err:
        problem = f"it cannot be read ({err.strerror or err})"
    raise DamagedOutputError(f"{path} is damaged: {problem}; {fix}")
