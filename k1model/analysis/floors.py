"""`k1 floors`: the reference floors of a prepared data set (held-out bpb of byte n-gram models).

One document per prepared data set, written beside the results (`results/floors.json`): for every
domain, models of orders 1..`analysis.floor_orders` fitted on its training split and evaluated on its
validation and test splits (k1model/analysis/ngram.py). The competence check, the paper's setup and the
learning-curve figures read it. Deterministic: the same data give the same bytes.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from k1model.analysis.ngram import ORDER_NAMES, ByteNgramModel
from k1model.data.loading import load_manifest, load_split

FLOORS_FORMAT = "k1-floors/1"
HELD_OUT = ("valid", "test")


def manifest_digest(data_dir: str | Path) -> str:
    """sha256 of the data set's manifest.json: which prepared data the floors belong to."""
    return hashlib.sha256((Path(data_dir) / "manifest.json").read_bytes()).hexdigest()


def reference_floors(data_dir: str | Path, max_order: int) -> dict[str, Any]:
    """The floors document of the prepared data in `data_dir`."""
    manifest = load_manifest(data_dir)
    domains: dict[str, Any] = {}
    for domain in manifest["domains"]:
        train = load_split(data_dir, domain, "train")
        model = ByteNgramModel(max_order).fit(train)
        domains[domain] = {"train_bytes": int(train.size),
                           "discounts": {ORDER_NAMES[k + 1]: o.discount for k, o in enumerate(model.orders)},
                           **{split: {ORDER_NAMES[k]: model.bpb(load_split(data_dir, domain, split), k)
                                      for k in range(1, max_order + 1)} for split in HELD_OUT}}
    return {"format": FLOORS_FORMAT, "manifest_sha256": manifest_digest(data_dir),
            "model": "interpolated absolute discounting over bytes (Ney's discount per order), fitted on the "
                     "training split; held-out bits per byte",
            "orders": [ORDER_NAMES[k] for k in range(1, max_order + 1)], "domains": domains}
