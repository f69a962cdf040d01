"""Refresh scheduling: the drift signals and the scheduler's decisions (pure, fast)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from robodyna.loop.refresh import (
    RefreshConfig,
    RefreshScheduler,
    model_error_ratio,
    nearest_distances,
    policy_age,
    policy_shift,
    return_gap,
    state_novelty,
)

NAN = float("nan")


def test_signals() -> None:
    assert model_error_ratio(0.3, 0.1) == pytest.approx(3.0)
    assert math.isnan(model_error_ratio(0.3, 0.0)) and math.isnan(model_error_ratio(NAN, 0.1))
    assert policy_age(np.array([1, 3]), np.array([100, 100]), current=4) == pytest.approx(2.0)
    assert math.isnan(policy_age(np.array([1]), np.array([0]), 2))
    assert return_gap(-4.0, -8.0) == pytest.approx(0.5)
    assert return_gap(0.2, 0.0) == pytest.approx(0.2)  # relative to at least 1


def test_nearest_distances_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    p, d = rng.normal(size=(300, 4)), rng.normal(size=(200, 4))
    brute = np.linalg.norm(p[:, None] - d[None], axis=2).min(1)
    np.testing.assert_allclose(nearest_distances(p, d, chunk=7), brute, atol=1e-9)


def test_state_novelty_grows_as_the_policy_leaves_the_real_states_and_resets_when_they_cover_it() -> None:
    rng = np.random.default_rng(1)
    real = rng.normal(size=(2000, 3))
    deployed = real[:300] + rng.normal(scale=0.05, size=(300, 3))  # where the robot has been
    assert state_novelty(deployed, deployed, real) == pytest.approx(1.0)
    away = deployed + np.array([2.0, 0.0, 0.0])  # the current policy, in the model, goes elsewhere
    assert state_novelty(away, deployed, real) > 3.0
    assert state_novelty(deployed + np.array([0.2, 0.0, 0.0]), deployed, real) < state_novelty(away, deployed, real)
    covered = np.concatenate([real, away + rng.normal(scale=0.05, size=away.shape)])  # a refresh went there
    assert state_novelty(away, deployed, covered) < 2.0
    assert state_novelty(away * 1000.0, deployed * 1000.0, real * 1000.0) == pytest.approx(
        state_novelty(away, deployed, real))  # unit-free
    assert math.isnan(state_novelty(np.full((3, 3), NAN), deployed, real))  # no finite rows: unknown
    assert math.isnan(state_novelty(real[:5], real[:5], real))  # the reference on the data: no scale


def sig(**kw: float) -> dict[str, float]:
    return {"model_error_ratio": NAN, "state_novelty": NAN, "policy_shift": NAN, "policy_age": NAN, "return_gap": NAN,
            **kw}


def test_each_signal_triggers_above_its_threshold_only(tmp_path: Path) -> None:
    cfg = RefreshConfig(model_error_ratio=2.0, policy_age=3.0, return_gap=0.5, state_novelty=1.5, policy_shift=0.1,
                        min_updates_between=10, max_updates_without_data=10_000)
    s = RefreshScheduler(cfg, tmp_path / "refresh.csv")
    assert not s.decide(100, sig(model_error_ratio=1.9, policy_age=2.0, return_gap=0.4, state_novelty=1.4,
                                 policy_shift=0.09), False).refresh
    for name, v in (("model_error_ratio", 2.5), ("policy_age", 3.5), ("return_gap", 0.6), ("state_novelty", 2.0),
                    ("policy_shift", 0.2)):
        d = s.decide(100, sig(**{name: v}), False)
        assert (d.refresh, d.reason, d.value) == (True, name, v)
    assert not s.decide(5, sig(model_error_ratio=9.0), False).refresh  # too soon after fresh data
    s.fresh_data(100)
    assert not s.decide(105, sig(model_error_ratio=9.0), False).refresh


def test_policy_shift_is_the_rms_normalised_action_difference_and_ignores_non_finite_rows() -> None:
    a = np.zeros((4, 2))
    b = np.array([[0.2, 0.0], [0.0, 0.2], [-0.2, 0.0], [0.0, -0.2]])
    assert policy_shift(a, a) == 0.0
    assert policy_shift(b, a) == pytest.approx(0.2 / np.sqrt(2))  # each row one dimension 0.2 off: RMS over both
    assert policy_shift(2 * b, a) == pytest.approx(2 * policy_shift(b, a))
    c = b.copy()
    c[0, 0] = NAN
    assert policy_shift(c, a) == pytest.approx(0.2 / np.sqrt(2))  # the NaN row left out, not the result
    assert math.isnan(policy_shift(np.full((2, 2), NAN), np.zeros((2, 2))))
    with pytest.raises(ValueError, match="act_dim"):
        policy_shift(np.zeros(3), np.zeros(3))


def test_max_updates_and_cap_and_fixed_schedule(tmp_path: Path) -> None:
    s = RefreshScheduler(RefreshConfig(max_updates_without_data=500))
    assert not s.decide(499, sig(), False).refresh
    assert s.decide(500, sig(), False).reason == "max_updates"
    assert s.decide(10, sig(), True).reason == "update_cap"
    # the cap reached before min_updates_between: a signal above its threshold is named as the trigger
    assert s.decide(10, sig(model_error_ratio=50.0), True).reason == "model_error_ratio"
    f = RefreshScheduler(RefreshConfig(mode="fixed", fixed_every_updates=300), tmp_path / "f.csv")
    assert not f.decide(299, sig(model_error_ratio=100.0), False).refresh  # signals do not act in fixed mode
    assert f.decide(300, sig(), False).reason == "fixed_schedule"
    f.record({"updates": 300, "reason": "fixed_schedule", "model_error_ratio": NAN})
    f.record({"updates": 600, "reason": "fixed_schedule", "model_error_ratio": 1.5})
    rows = list(csv.DictReader(open(tmp_path / "f.csv")))
    assert [r["reason"] for r in rows] == ["fixed_schedule"] * 2 and rows[1]["model_error_ratio"] == "1.5"


def test_a_deferred_refresh_waits_min_updates_between_again_but_max_updates_counts_from_the_data() -> None:
    s = RefreshScheduler(RefreshConfig(min_updates_between=300, max_updates_without_data=1000, defer_rejected=True))
    s.fresh_data(0)
    assert s.decide(300, sig(policy_age=9.0), False).reason == "policy_age"
    s.defer(300)
    assert not s.decide(500, sig(policy_age=9.0), False).refresh  # 200 since the deferral
    assert s.decide(600, sig(policy_age=9.0), False).reason == "policy_age"
    s.defer(900)
    assert s.decide(1000, sig(policy_age=9.0), False).reason == "max_updates"  # 1000 since the data, 100 since
    assert s.decide(950, sig(policy_age=9.0), True).reason == "policy_age"  # the cap does not wait
    s.fresh_data(1000)
    assert s.decide(1300, sig(policy_age=9.0), False).refresh  # fresh data: the floor counts from it


def test_config_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        RefreshConfig(mode="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RefreshConfig(refresh_episodes=0)


@pytest.mark.parametrize("name", ["reacher2", "panda"])
def test_loop_presets_load_and_name_what_exists(name: str) -> None:
    from robodyna.loop.config import load_loop_config
    from robodyna.paths import configs_root, robots_root

    c = load_loop_config(name)
    assert (robots_root() / c.robot / "robot.yaml").is_file()
    assert (configs_root() / "realities" / f"{c.reality}.yaml").is_file()
    if c.stage1.checkpoint:
        assert (configs_root().parent / c.stage1.checkpoint).is_file()
