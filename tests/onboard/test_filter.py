"""The safety filter (robodyna.onboard.filter) as properties: whatever the policy outputs and wherever the arm is,
the action sent is within the limits and within the per-tick change, or it is the hold action with its bit set."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.extra.numpy import arrays

from robodyna.config import ConfigError
from robodyna.onboard.filter import (
    CLAMPED,
    INVALID_OUTPUT,
    RATE_LIMITED,
    SOFT_JOINT_LIMIT,
    WORKSPACE_STOP,
    FilterParams,
    filter_action,
    soft_limit_bounds,
)
from robodyna.robots.registry import robot_folder
from robodyna.spec import RobotSpec, load_robot_config

# nothing of Hypothesis's (example database, constants cache) is written into the repository
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "robodyna-hypothesis")
settings.register_profile("robodyna", database=None, deadline=None, max_examples=300)
settings.load_profile("robodyna")

N = 3
LOW = np.array([-0.2, -1.0, -5.0])
HIGH = np.array([0.2, 1.0, 5.0])


def params(margin: float = 0.1, frac: float = 0.25, box: bool = False) -> FilterParams:
    return FilterParams(
        low=LOW, high=HIGH, max_change_per_tick=(HIGH - LOW) * frac, q_low_rad=np.array([-3.0, -2.0, -1.0]),
        q_high_rad=np.array([3.0, 2.0, 1.0]), soft_margin_rad=margin,
        workspace_low_m=np.array([-0.3, -0.3, 0.0]) if box else None,
        workspace_high_m=np.array([0.3, 0.3, 0.5]) if box else None, hold=np.zeros(N))


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
anyfloat = st.floats(allow_nan=True, allow_infinity=True, width=64)
vec = arrays(np.float64, N, elements=finite)
raw_any = st.one_of(arrays(np.float64, N, elements=anyfloat), arrays(np.float64, st.integers(0, 5), elements=finite),
                    st.just(None), st.just("x"), st.lists(finite, min_size=N, max_size=N))


@st.composite
def previous(draw: st.DrawFn) -> np.ndarray:
    u = draw(arrays(np.float64, N, elements=st.floats(0.0, 1.0)))
    return LOW + u * (HIGH - LOW)


@given(raw=raw_any, prev=previous(), q=vec, ee=arrays(np.float64, 3, elements=finite),
       margin=st.floats(0.0, 1.0), frac=st.floats(0.01, 1.0), box=st.booleans())
def test_any_output_is_within_limits_and_max_change_or_is_the_hold_action(
        raw: object, prev: np.ndarray, q: np.ndarray, ee: np.ndarray, margin: float, frac: float, box: bool) -> None:
    p = params(margin, frac, box)
    out, bits = filter_action(raw, prev, q, ee, p)
    assert out.shape == (N,) and np.all(np.isfinite(out))
    assert np.all(out >= LOW) and np.all(out <= HIGH)
    if bits & (INVALID_OUTPUT | WORKSPACE_STOP):
        np.testing.assert_array_equal(out, p.hold)  # stopping is always allowed, not rate limited
    else:
        assert np.all(np.abs(out - prev) <= p.max_change_per_tick * (1 + 1e-12) + 1e-12)


@given(raw=arrays(np.float64, N, elements=anyfloat), prev=previous())
def test_nan_or_inf_anywhere_gives_the_hold_action_and_the_bit(raw: np.ndarray, prev: np.ndarray) -> None:
    out, bits = filter_action(raw, prev, np.zeros(N), None, params())
    if np.all(np.isfinite(raw)):
        assert not bits & INVALID_OUTPUT
    else:
        assert bits == INVALID_OUTPUT and np.array_equal(out, np.zeros(N))


@pytest.mark.parametrize("raw", [np.zeros(N + 1), np.zeros((1, N)), np.zeros(N, np.int64) + 1j, "abc", None])
def test_wrong_shape_or_type_gives_hold(raw: object) -> None:
    out, bits = filter_action(raw, np.full(N, 0.1), np.zeros(N), None, params())
    assert bits == INVALID_OUTPUT and np.array_equal(out, np.zeros(N))


def test_each_step_sets_its_bit() -> None:
    p = params()
    _, bits = filter_action(np.array([1000.0, 0.0, 0.0]), np.zeros(N), np.zeros(N), None, p)
    assert bits & CLAMPED and bits & RATE_LIMITED  # 1000 -> 0.2 (clip) -> 0.1 (a quarter of the range)
    out, bits = filter_action(np.array([0.05, 0.0, 0.0]), np.zeros(N), np.zeros(N), None, p)
    assert bits == 0 and out.tolist() == [0.05, 0.0, 0.0]
    out, bits = filter_action(np.zeros(N), np.zeros(N), np.zeros(N), np.array([1.0, 0.0, 0.0]), params(box=True))
    assert bits == WORKSPACE_STOP
    prev = np.array([0.1, 0.0, 0.0])  # halfway into the margin: at most half the limit outward
    out, bits = filter_action(np.array([0.15, 0.0, 0.0]), prev, np.array([2.95, 0.0, 0.0]), None, p)
    assert bits == SOFT_JOINT_LIMIT and out[0] == pytest.approx(0.1)


@given(q=st.floats(-5.0, 5.0), margin=st.floats(0.01, 1.0))
def test_soft_limits_push_back_toward_the_safe_range_and_never_freeze(q: float, margin: float) -> None:
    low, high = np.array([-1.0]), np.array([1.0])
    lo, hi = soft_limit_bounds(np.array([q]), np.array([-2.0]), np.array([2.0]), margin, low, high)
    assert low[0] <= lo[0] <= hi[0] <= high[0] or margin > 2.0
    if -2.0 + margin <= q <= 2.0 - margin:  # safe range: untouched
        assert (lo[0], hi[0]) == (-1.0, 1.0)
    if q >= 2.0:  # at or past the upper limit: nothing outward, inward allowed (not frozen)
        assert hi[0] <= 0.0 and lo[0] == -1.0
    if q >= 2.0 + margin:  # a margin past it: pushed back with the full opposite action
        assert hi[0] == -1.0
    if q <= -2.0:
        assert lo[0] >= 0.0 and hi[0] == 1.0


def test_soft_limits_bring_the_arm_back_from_beyond_a_limit() -> None:
    """Closed loop on a point mass: starting past the limit, the filtered command drives it back inside."""
    p = FilterParams(low=np.array([-1.0]), high=np.array([1.0]), max_change_per_tick=np.array([0.5]),
                     q_low_rad=np.array([-1.0]), q_high_rad=np.array([1.0]), soft_margin_rad=0.2,
                     workspace_low_m=None, workspace_high_m=None, hold=np.zeros(1))
    q, prev = 1.3, np.zeros(1)
    for _ in range(100):
        prev, _ = filter_action(np.array([1.0]), prev, np.array([q]), None, p)  # the policy insists outward
        q += 0.02 * float(prev[0])  # velocity command
    assert q <= 1.0 + 1e-3  # back at the limit (it approaches it from outside: zero outward command there)


def test_robot_yaml_safety_section_builds_the_filter_and_is_validated(tmp_path: Path) -> None:
    cfg, _ = load_robot_config(robot_folder("reacher2"), ["safety.max_action_change_frac_per_tick=0.5",
                                                          "safety.soft_limit_margin_rad=0.2"])
    spec = RobotSpec.from_config(cfg, "mujoco")
    p = FilterParams.from_config(spec, cfg)
    np.testing.assert_allclose(p.max_change_per_tick, [0.2, 0.2])
    assert p.soft_margin_rad == 0.2 and p.workspace_low_m is None
    with pytest.raises(ConfigError, match="safety.max_action_change_frac_per_tick"):
        load_robot_config(robot_folder("reacher2"), ["safety.max_action_change_frac_per_tick=2"])
    with pytest.raises(ConfigError, match="workspace"):
        load_robot_config(robot_folder("reacher2"), ["safety.workspace_low_m=[0, 0, 0]"])
    with pytest.raises(ConfigError, match="safety.watchdog_timeout_ms"):
        load_robot_config(robot_folder("reacher2"), ["safety.watchdog_timeout_ms=-1"])


def test_at_the_limit_exactly_no_outward_bound_survives_rounding() -> None:
    """Hypothesis found q = 2.0 with margin 0.3828...: (q - (q_high - m)) / m rounded below 1 and left +1.1e-16."""
    for m in (0.3828125, 0.1, 0.7, 1e-3):
        lo, hi = soft_limit_bounds(np.array([2.0, -2.0]), np.array([-2.0, -2.0]), np.array([2.0, 2.0]), m,
                                   np.array([-1.0, -1.0]), np.array([1.0, 1.0]))
        assert hi[0] <= 0.0 and lo[1] >= 0.0, (m, lo, hi)
