"""Reference floors: held-out bits per byte of smoothed byte n-gram models (pure numpy).

A forgetting result means something only for a model that first learned its tasks (DESIGN.md §12).
These floors say what "learned" means on each domain: a network that does not beat a trigram model
of the same training bytes has not learned much beyond byte statistics.

The model is interpolated absolute discounting (Ney, Essen & Kneser 1994), fitted on the training
split, deterministic, over the 256 byte values:

    P_1(w)    = max(c(w) − D_1, 0) / N + D_1 · N1+(·) / N · 1/256
    P_k(w | h) = max(c(h, w) − D_k, 0) / c(h·) + D_k · N1+(h ·) / c(h·) · P_{k−1}(w | h')   if c(h·) > 0
    P_k(w | h) = P_{k−1}(w | h')                                                             otherwise

where h is the k − 1 bytes before w, h' is h without its oldest byte, c(h·) = Σ_w c(h, w) and
N1+(h ·) the number of distinct bytes seen after h. D_k = n1 / (n1 + 2 n2) (n1, n2: the numbers of
k-grams seen once and twice; Ney's estimate), or a given constant. The first k − 1 bytes of a
held-out text use the longest context they have. Every probability is positive, so every held-out
byte costs finite bits.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VOCAB = 256
ORDER_NAMES = {1: "unigram", 2: "bigram", 3: "trigram", 4: "4-gram", 5: "5-gram", 6: "6-gram", 7: "7-gram"}
MAX_ORDER = 7  # k-gram keys are k bytes in a uint64


def order_of(name: str) -> int:
    """The n of a floor's name ("trigram" -> 3), for the params' competence floor."""
    for n, label in ORDER_NAMES.items():
        if label == name:
            return n
    raise ValueError(f"unknown n-gram floor {name!r}; one of {', '.join(ORDER_NAMES.values())}")


def _gram_keys(tokens: np.ndarray, k: int) -> np.ndarray:
    """Key of the k-gram ending at every position t >= k - 1: Σ_j byte[t − j] · 256^j (newest byte
    lowest, so key >> 8 is the key of its context)."""
    x = tokens.astype(np.uint64)
    n = x.size - k + 1
    keys = np.zeros(max(n, 0), dtype=np.uint64)
    for j in range(k):
        keys |= x[k - 1 - j: k - 1 - j + n] << np.uint64(8 * j)
    return keys


@dataclass
class _Order:
    """Counts of one order: the sorted distinct k-grams with their counts, and per context the total
    count c(h·) and the number of distinct continuations N1+(h ·)."""

    grams: np.ndarray
    counts: np.ndarray
    contexts: np.ndarray
    context_totals: np.ndarray
    context_types: np.ndarray
    discount: float


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """values[key] for every query key, 0 where the key was never seen."""
    if sorted_keys.size == 0:
        return np.zeros(queries.size, dtype=values.dtype)
    at = np.searchsorted(sorted_keys, queries)
    at = np.minimum(at, sorted_keys.size - 1)
    return np.where(sorted_keys[at] == queries, values[at], 0)


def _ney_discount(counts: np.ndarray) -> float:
    n1 = int(np.sum(counts == 1))
    n2 = int(np.sum(counts == 2))
    if n1 == 0:
        return 0.5  # nothing seen once: a mild fixed discount keeps unseen continuations possible
    return n1 / (n1 + 2 * n2)


@dataclass
class ByteNgramModel:
    """Byte n-gram models of orders 1..n fitted on one training text (each order's floor is the
    model of that order: interpolated with every lower order)."""

    order: int
    discount: float | None = None  # None: Ney's estimate per order
    orders: list[_Order] = field(default_factory=list)
    n_tokens: int = 0

    def fit(self, tokens: np.ndarray) -> "ByteNgramModel":
        tokens = np.asarray(tokens, dtype=np.uint8)
        if not 1 <= self.order <= MAX_ORDER:
            raise ValueError(f"n-gram order must be in 1..{MAX_ORDER}, got {self.order}")
        if tokens.size < self.order:
            raise ValueError(f"need at least {self.order} training bytes for an order-{self.order} model, got {tokens.size}")
        self.n_tokens = int(tokens.size)
        self.orders = []
        for k in range(1, self.order + 1):
            grams, counts = np.unique(_gram_keys(tokens, k), return_counts=True)
            contexts, first, types = np.unique(grams >> np.uint64(8), return_index=True, return_counts=True)
            totals = np.add.reduceat(counts, first) if grams.size else counts
            d = self.discount if self.discount is not None else _ney_discount(counts)
            self.orders.append(_Order(grams, counts.astype(np.float64), contexts, totals.astype(np.float64),
                                      types.astype(np.float64), float(d)))
        return self

    def log2_probs(self, tokens: np.ndarray, order: int | None = None) -> np.ndarray:
        """log2 P(byte_t | the bytes before it) for every byte of `tokens`, under the model of `order`
        (default: the fitted order)."""
        order = self.order if order is None else order
        if not self.orders:
            raise ValueError("fit the model first")
        if not 1 <= order <= self.order:
            raise ValueError(f"order {order} not fitted (fitted up to {self.order})")
        x = np.asarray(tokens, dtype=np.uint8)
        uni = self.orders[0]
        c = _lookup(uni.grams, uni.counts, x.astype(np.uint64))
        total = float(self.n_tokens)
        p = (np.maximum(c - uni.discount, 0.0) + uni.discount * uni.grams.size / VOCAB) / total
        for k in range(2, order + 1):
            if x.size < k:
                break
            o = self.orders[k - 1]
            keys = _gram_keys(x, k)
            ctx_total = _lookup(o.contexts, o.context_totals, keys >> np.uint64(8))
            ctx_types = _lookup(o.contexts, o.context_types, keys >> np.uint64(8))
            gram = _lookup(o.grams, o.counts, keys)
            lower = p[k - 1:]
            seen = ctx_total > 0
            safe = np.where(seen, ctx_total, 1.0)
            mixed = (np.maximum(gram - o.discount, 0.0) + o.discount * ctx_types * lower) / safe
            p = np.concatenate([p[: k - 1], np.where(seen, mixed, lower)])
        return np.log2(p)

    def bpb(self, tokens: np.ndarray, order: int | None = None) -> float:
        """Held-out bits per byte of `tokens` (mean −log2 P over its bytes)."""
        if np.asarray(tokens).size == 0:
            raise ValueError("no bytes to evaluate")
        return float(-self.log2_probs(tokens, order).mean())


def floors(train: np.ndarray, held_out: dict[str, np.ndarray], max_order: int = 5,
           discount: float | None = None) -> dict[str, dict[str, float]]:
    """{split: {"unigram": bpb, "bigram": bpb, ...}} of models of orders 1..max_order fitted on `train`."""
    model = ByteNgramModel(max_order, discount).fit(train)
    return {split: {ORDER_NAMES[k]: model.bpb(tokens, k) for k in range(1, max_order + 1)}
            for split, tokens in held_out.items()}
