"""Reference floors (k1model/analysis/ngram.py): byte n-gram models against hand-computed answers."""
import math

import numpy as np
import pytest

from k1model.analysis.ngram import ByteNgramModel, floors, order_of


def _bytes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode(), dtype=np.uint8)


def test_unigram_and_bigram_by_hand():
    # training "abab": c(a) = c(b) = 2, N = 4, 2 distinct bytes; bigrams ab x2, ba x1. Discount 0.5.
    model = ByteNgramModel(2, discount=0.5).fit(_bytes("abab"))
    p1_a = (2 - 0.5) / 4 + 0.5 * 2 / 4 / 256
    p1_b = p1_a
    p2_b_after_a = (2 - 0.5) / 2 + 0.5 * 1 / 2 * p1_b  # context a: total 2, one distinct continuation
    p2_a_after_b = (1 - 0.5) / 1 + 0.5 * 1 / 1 * p1_a  # context b: total 1
    p1_c = 0.5 * 2 / 4 / 256                           # never seen: the uniform share only
    p2_b_after_c = p1_b                                # unseen context: back to the unigram
    assert model.bpb(_bytes("ab"), 1) == pytest.approx(-(math.log2(p1_a) + math.log2(p1_b)) / 2, rel=1e-12)
    assert model.bpb(_bytes("ab"), 2) == pytest.approx(-(math.log2(p1_a) + math.log2(p2_b_after_a)) / 2, rel=1e-12)
    assert model.bpb(_bytes("bab"), 2) == pytest.approx(
        -(math.log2(p1_b) + math.log2(p2_a_after_b) + math.log2(p2_b_after_a)) / 3, rel=1e-12)
    assert model.bpb(_bytes("cb"), 2) == pytest.approx(-(math.log2(p1_c) + math.log2(p2_b_after_c)) / 2, rel=1e-12)


def test_ney_discount_by_hand():
    # "aab": unigram counts a=2, b=1 -> n1 = 1, n2 = 1, D1 = 1 / (1 + 2) = 1/3
    model = ByteNgramModel(1).fit(_bytes("aab"))
    d = 1 / 3
    p_a = (2 - d) / 3 + d * 2 / 3 / 256
    assert model.bpb(_bytes("a"), 1) == pytest.approx(-math.log2(p_a), rel=1e-12)


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_every_context_is_a_distribution(order):
    rng = np.random.default_rng(0)
    train = rng.integers(97, 103, size=3000).astype(np.uint8)  # six letters, so many contexts repeat
    model = ByteNgramModel(order).fit(train)
    for context in (train[10:10 + order - 1], np.array([1, 2, 3, 4][: order - 1], dtype=np.uint8)):
        total = sum(2 ** model.log2_probs(np.append(context, w).astype(np.uint8), order)[-1] for w in range(256))
        assert total == pytest.approx(1.0, abs=1e-9)


def test_higher_orders_win_on_structured_text_and_floors_shape():
    text = _bytes("the cat sat on the mat. " * 200)
    out = floors(text[:4000], {"valid": text[4000:]}, max_order=4)
    values = list(out["valid"].values())
    assert list(out["valid"]) == ["unigram", "bigram", "trigram", "4-gram"]
    assert all(a > b for a, b in zip(values, values[1:]))  # a repeated sentence: every order helps
    assert values[-1] < 0.3 < 3.0 < values[0]  # "the " is followed by "c" or "m": a little entropy stays


def test_order_names_and_errors():
    assert order_of("trigram") == 3 and order_of("unigram") == 1
    with pytest.raises(ValueError, match="unknown n-gram floor 'trigam'"):
        order_of("trigam")
    with pytest.raises(ValueError, match="at least 3 training bytes"):
        ByteNgramModel(3).fit(_bytes("ab"))
    with pytest.raises(ValueError, match="order 4 not fitted"):
        ByteNgramModel(3).fit(_bytes("abcd")).bpb(_bytes("ab"), 4)
