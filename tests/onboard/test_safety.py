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
