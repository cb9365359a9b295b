"""Source `synthetic`: generated text with known structure, for fast tests only."""
from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from k1model.config.data import SYNTHETIC_ALPHABET as _SYNTHETIC_ALPHABET
from k1model.config.data import SYNTHETIC_CHARS as _SYNTHETIC_CHARS
from k1model.data.documents import _documents_dataset

if TYPE_CHECKING:
    import datasets

_SYNTHETIC_LEXICON = 48

_SYNTHETIC_SUCCESSORS = 3

def _seed_from(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "big")

def _synthetic_documents(domain: str, index: int, cfg: Mapping[str, Any]) -> tuple["datasets.Dataset", dict[str, Any]]:
    """Generated text with known structure, for fast tests only.

    Domain number ``index`` writes with its own alphabet of 10 printable ASCII characters
    (disjoint from every other domain's), so domains are trivially distinguishable by their
    bytes. Words come from a 48-word lexicon; each word is followed by one of 3 fixed successor
    words (a first-order Markov chain a model can learn); sentences of 4-10 words end with
    ".\\n". Everything derives from sha256(seed, index, domain), hence deterministic.
    """
    syn = cfg["synthetic"]
    doc_bytes = int(syn["doc_bytes"])
    rng = np.random.Generator(np.random.PCG64(_seed_from(f"k1-synthetic:{syn['seed']}:{index}:{domain}")))
    alphabet = _SYNTHETIC_CHARS[index * _SYNTHETIC_ALPHABET : (index + 1) * _SYNTHETIC_ALPHABET]
    letters = np.array(list(alphabet))
    lexicon = ["".join(rng.choice(letters, size=int(rng.integers(2, 7)))) for _ in range(_SYNTHETIC_LEXICON)]
    successors = rng.integers(0, _SYNTHETIC_LEXICON, size=(_SYNTHETIC_LEXICON, _SYNTHETIC_SUCCESSORS))
    max_bytes = cfg["max_bytes"]
    n_docs = 200 if max_bytes is None else int(math.ceil(2 * max_bytes / doc_bytes)) + 16
    ids: list[str] = []
    texts: list[str] = []
    for d in range(n_docs):
        sentences: list[str] = []
        size = 0
        while size < doc_bytes:
            length = int(rng.integers(4, 11))
            choices = rng.integers(0, _SYNTHETIC_SUCCESSORS, size=length)
            w = int(rng.integers(0, _SYNTHETIC_LEXICON))
            words = [lexicon[w]]
            for c in choices[1:]:
                w = int(successors[w, c])
                words.append(lexicon[w])
            sentence = " ".join(words) + ".\n"
            sentences.append(sentence)
            size += len(sentence)
        ids.append(f"synthetic/{domain}/{d:06d}")
        texts.append("".join(sentences))
    origin = {
        "kind": "synthetic",
        "alphabet": alphabet,
        "lexicon_size": _SYNTHETIC_LEXICON,
        "successors_per_word": _SYNTHETIC_SUCCESSORS,
        "doc_bytes": doc_bytes,
        "seed": int(syn["seed"]),
        "documents_generated": n_docs,
    }
    return _documents_dataset(ids, texts), origin


def load(cfg: Mapping[str, Any], domain: str, index: int, data_root: Any) -> tuple["datasets.Dataset", dict[str, Any]]:
    return _synthetic_documents(domain, index, cfg)
