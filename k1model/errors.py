"""Errors a user can act on. The CLI prints them as one line (exit status 2)."""
from __future__ import annotations


class K1Error(Exception):
    """Base class for errors with a message that says what is wrong and how to fix it."""


class ConfigError(K1Error, ValueError):
    """A params/config value is unknown or out of range. Subclasses ValueError for the API."""


class DataError(K1Error):
    """Data is missing, unreachable or malformed."""


class CheckpointError(K1Error):
    """A checkpoint is corrupt, or belongs to a different configuration."""


class DamagedOutputError(K1Error):
    """An output file (a run's metrics.json, steps.csv.gz, resume.pt, checkpoint.pt, ...) is truncated or
    corrupt. The message names the file, says what is wrong and how to rebuild it; nothing is changed on disk."""


class DamagedCheckpointError(DamagedOutputError, CheckpointError):
    """A checkpoint file that is truncated or not a checkpoint at all."""


class NonFiniteLossError(K1Error, FloatingPointError):
    """The training loss became NaN/inf; the step was not applied."""

    def __init__(self, step: int, loss: float):
        super().__init__(
            f"non-finite loss {loss} at step {step}; the update was not applied. "
            "Lower method.learning_rate or check the data; the last good checkpoint is kept."
        )
        self.step = step
        self.loss = loss


class OutputWriteError(K1Error):
    """An output cannot be written: the disk is full, or the folder is read-only or not the user's. The message
    names the path; finished work is kept."""


class RunFolderBusy(K1Error):
    """Another live process owns a run folder (its lock file names it); two writers would mix their files."""


class Interrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM (a scheduler, `kill`): unwinds like Ctrl-C, so every `finally` runs (temporary
    files removed, run folders unlocked); the CLI reports it in one line with status 128 + the signal."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
