"""How distinguishable the prepared domains are: unigram byte models across domains."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from k1model.data.loading import load_manifest, load_split
from k1model.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

def unigram_bpb(fit_tokens: np.ndarray, eval_tokens: np.ndarray, alpha: float = 0.5) -> float:
    """Bits per byte of ``eval_tokens`` under a unigram byte model fitted on ``fit_tokens``
    (add-``alpha`` smoothing over 256 byte values, so unseen bytes cost finite bits)."""
    fit = np.bincount(np.asarray(fit_tokens, dtype=np.uint8), minlength=256).astype(np.float64)
    ev = np.bincount(np.asarray(eval_tokens, dtype=np.uint8), minlength=256).astype(np.float64)
    if ev.sum() == 0:
        raise DataError("unigram_bpb: no tokens to evaluate")
    logp = np.log2((fit + alpha) / (fit.sum() + 256 * alpha))
    return float(-(ev * logp).sum() / ev.sum())

def cross_domain_unigram_bpb(
    data_dir: Path | str, *, fit_split: str = "train", eval_split: str = "test", alpha: float = 0.5
) -> "pd.DataFrame":
    """How distinguishable the prepared domains are: entry [i, j] is the bpb of domain j's
    ``eval_split`` under a unigram byte model fitted on domain i's ``fit_split``.

    The diagonal is the in-domain unigram entropy; off-diagonal excess over it is the cost of
    using the wrong domain's byte statistics (a lower bound on how different the domains are).
    """
    import pandas as pd

    manifest = load_manifest(data_dir)
    names = list(manifest["domains"])
    fit = {d: load_split(data_dir, d, fit_split) for d in names}
    ev = {d: load_split(data_dir, d, eval_split) for d in names}
    rows = [[unigram_bpb(fit[i], ev[j], alpha) for j in names] for i in names]
    frame = pd.DataFrame(rows, index=pd.Index(names, name=f"fit:{fit_split}"), columns=pd.Index(names, name=f"eval:{eval_split}"))
    return frame
