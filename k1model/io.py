"""Atomic file writes, the project's one JSON encoder, and readers of outputs that may be damaged.

A reader never sees a half-written output, and a crash never destroys the old one. JSON outputs
are strict JSON: NaN/inf become null, numpy values plain Python, sections plain mappings. A file
damaged all the same (a full disk, a broken copy, a hand edit) is reported by `read_output_json` and
`read_output_table` as a `DamagedOutputError` naming it, what is wrong and how to rebuild it.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from k1model.errors import DamagedOutputError


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path` (atomic on POSIX)."""
    path = Path(path)
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


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
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
    write_text(path, json.dumps(json_safe(obj), indent=2, allow_nan=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
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
