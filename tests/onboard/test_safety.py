"""Safety filter pure functions."""

from __future__ import annotations

import numpy as np
import pytest

from robodyna.onboard.safety import UnsafeActionError, check_action, clamp, rate_limit, workspace_ok


def test_clamp_clips_each_component_to_its_limits() -> None:
    out = clamp(np.array([2.0, -3.0, 0.5]), np.array([-1.0, -1.0, -1.0]), np.array([1.0, 2.0, 1.0]))
    np.testing.assert_array_equal(out, [1.0, -1.0, 0.5])


def test_rate_limit_caps_change_per_tick() -> None:
    out = rate_limit(np.array([1.0, -1.0, 0.01]), np.zeros(3), 0.05)
    np.testing.assert_allclose(out, [0.05, -0.05, 0.01])


def test_workspace_box_accepts_inside_and_rejects_outside() -> None:
    lo, hi = np.array([0.0, -0.5, 0.1]), np.array([1.0, 0.5, 0.9])
    assert workspace_ok(np.array([0.5, 0.0, 0.5]), lo, hi)
    assert not workspace_ok(np.array([0.5, 0.0, 0.05]), lo, hi)


@pytest.mark.parametrize(("bad", "msg"), [([np.nan, 0], "non-finite value nan at index 0"),
                                          ([0, np.inf], "index 1"), ([0, 0, 0], r"shape \(2,\)"),
                                          (["x", 0], "not numeric")])
def test_check_action_rejects_nan_inf_and_wrong_shape(bad: list, msg: str) -> None:
    with pytest.raises(UnsafeActionError, match=msg):
        check_action(bad, 2)


NON_FINITE = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", NON_FINITE, ids=["nan", "+inf", "-inf"])
@pytest.mark.parametrize("index", [0, 1])
def test_check_action_rejects_non_finite_float_arrays_on_the_fast_path(dtype: type, bad: float, index: int) -> None:
    # a float ndarray of the right shape is what the control loop passes: the fast path must check it too
    a = np.zeros(2, dtype)
    a[index] = bad
    with pytest.raises(UnsafeActionError, match=f"non-finite value .* at index {index}"):
        check_action(a, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_check_action_fast_path_returns_a_float64_copy_of_a_finite_array(dtype: type) -> None:
    a = np.array([0.25, -1.5], dtype)
    out = check_action(a, 2)
    assert out.dtype == np.float64 and out is not a
    np.testing.assert_array_equal(out, [0.25, -1.5])
