"""A run folder belongs to one process at a time.

Two `k1 train` processes writing one folder leave a run mixed from both (one's metrics.json, the other's
weights) that later counts as complete. So a process that writes a run folder first takes its lock file,
`RUN/k1.lock`: an exclusive `flock` on it (the kernel releases it when the process ends, however it ends),
with the owner's PID and host written in it for the message. A second process gets a `RunFolderBusy` error
naming the owner; a lock file left by a killed process is taken over (its lock is gone with it). The lock
file is removed when the owner is done, while still held: a process that opened the old file before then
finds it unlinked after locking it and tries again on a new one.

The owner then removes the temporary files a killed writer may have left there (`.NAME.XXXXXXXX.tmp`).
"""
from __future__ import annotations

import errno
import fcntl
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from k1model.errors import OutputWriteError, RunFolderBusy
from k1model.io import remove_stray_temporaries, writing

LOCK_NAME = "k1.lock"


def _owner(fd: int) -> str:
    """What a lock file says of its owner: "PID on HOST" (or "unknown" for an empty or foreign file)."""
    text = os.pread(fd, 200, 0).decode("utf-8", "replace").split()
    if len(text) >= 2 and text[0].isdigit():
        return text[0] if text[1] == socket.gethostname() else f"{text[0]} on host {text[1]}"
    return "unknown"


def _lock(folder: Path) -> tuple[int, str]:
    """The locked file descriptor of `folder`'s lock file, and what the file said of a previous owner."""
    path = folder / LOCK_NAME
    with writing(folder):
        folder.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _owner(fd)
                os.close(fd)
                raise RunFolderBusy(f"run folder {folder} is in use by process {owner} (its lock file {path}); two "
                                    "processes writing one run would mix their files: wait for that one to finish, "
                                    "or stop it, then rerun") from None
            except OSError as err:
                os.close(fd)
                if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise OutputWriteError(f"cannot lock {path}: the file system does not support locks "
                                           f"({err.strerror}); write the runs to a local disk") from None
                raise
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)  # the previous owner removed the file after we opened it: lock the new one
        previous = _owner(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        os.fsync(fd)
    return fd, previous


@contextmanager
def own_run_folder(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold `folder` (created if needed) for this process: its lock taken (or `RunFolderBusy`), a dead owner's
    lock taken over (said on stdout), stray temporary files removed; unlocked at the end, however it ends."""
    folder = Path(folder)
    fd, previous = _lock(folder)
    try:
        if previous != "unknown":
            print(f"{folder}: took over the lock of process {previous}, which no longer runs")
        remove_stray_temporaries(folder)
        yield folder
    finally:
        try:
            os.unlink(folder / LOCK_NAME)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
