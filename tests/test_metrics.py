"""Forgetting metrics on hand-made R matrices with answers worked out by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from k1model import cl_metrics as M

# R[i, j]: bpb on domain j after phase i. R[0, 1] = 2.9 is *below* R[1, 1] = 3.0 so that
# forgetting (vs best earlier) and BWT (vs just after training) differ on domain 1.
R = np.array([
    [2.0, 2.9, 6.0],
    [2.5, 3.0, 5.5],
    [2.8, 3.2, 3.5],
])
R0 = np.array([8.0, 8.0, 8.0])


def test_final_average_bpb():
    assert M.final_average_bpb(R) == pytest.approx((2.8 + 3.2 + 3.5) / 3)


def test_forgetting_is_final_minus_best_earlier():
    # domain 0: 2.8 − min(2.0, 2.5) = 0.8; domain 1: 3.2 − min(2.9, 3.0) = 0.3
    np.testing.assert_allclose(M.forgetting_per_domain(R), [0.8, 0.3])
    assert M.forgetting(R) == pytest.approx(0.55)


def test_backward_transfer_is_final_minus_just_trained():
    # domain 0: 2.8 − 2.0 = 0.8; domain 1: 3.2 − 3.0 = 0.2 (positive = forgetting)
    np.testing.assert_allclose(M.backward_transfer_per_domain(R), [0.8, 0.2])
    assert M.backward_transfer(R) == pytest.approx(0.5)


def test_forward_transfer_against_untrained_model():
    # domain 1: R[0,1] − 8 = −5.1; domain 2: R[1,2] − 8 = −2.5 (negative = earlier phases helped)
    np.testing.assert_allclose(M.forward_transfer_per_domain(R, R0), [-5.1, -2.5])
    assert M.forward_transfer(R, R0) == pytest.approx(-3.8)


def test_no_forgetting_gives_negative_bwt_and_zero_forgetting():
    improving = np.array([[3.0, 5.0], [2.5, 2.0]])  # later training also helped domain 0
    assert M.backward_transfer(improving) == pytest.approx(-0.5)
    assert M.forgetting(improving) == pytest.approx(-0.5)  # final is better than best earlier


def test_forgetting_summary_keys_and_undefined_values():
    s = M.forgetting_summary(R, R0)
    assert s == pytest.approx({"final_avg_bpb": (2.8 + 3.2 + 3.5) / 3, "forgetting": 0.55,
                               "bwt": 0.5, "fwt": -3.8, "plasticity": (2.0 + 3.0 + 3.5) / 3})
    assert M.forgetting_summary(R)["fwt"] is None
    one = M.forgetting_summary([[2.5]])
    assert one["final_avg_bpb"] == 2.5 and one["forgetting"] is None and one["bwt"] is None
    assert one["plasticity"] == 2.5


def test_bits_per_byte():
    assert M.bits_per_byte(math.log(2)) == pytest.approx(1.0)
    assert M.bits_per_byte(math.log(2), bytes_per_token=2.0) == pytest.approx(0.5)
    np.testing.assert_allclose(M.bits_per_byte(np.array([0.0, 2 * math.log(2)])), [0.0, 2.0])
    with pytest.raises(ValueError):
        M.bits_per_byte(1.0, bytes_per_token=0)


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="square"):
        M.forgetting(np.ones((2, 3)))
    with pytest.raises(ValueError, match="at least 2"):
        M.backward_transfer([[1.0]])
    with pytest.raises(ValueError, match="R0"):
        M.forward_transfer(R, [8.0, 8.0])


def test_update_frequency_and_sparsity_summary():
    assert M.update_frequency({"root": 10, "root/a": 5}, 10) == {"root": 1.0, "root/a": 0.5}
    s = M.sparsity_summary([0.2, 0.4], [2, 4], n_agents=8)
    assert s == pytest.approx({"sparsity_param_fraction": 0.3, "sparsity_agent_fraction": 3 / 8})
    with pytest.raises(ValueError):
        M.update_frequency({}, 0)
