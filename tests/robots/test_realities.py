"""Each reality profile really changes the dynamics; nominal changes nothing; profiles are reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from robodyna.config import ConfigError
from robodyna.robots import list_realities, load_reality, load_robot

# Smallest max |q - q_nominal| [rad] over 50 ticks of the same seeded action sequence that counts as "different".
# reacher2 0.01: its URDF now carries MuJoCo's armature and the engines agree better (cross-engine 0.017 rad).
THRESHOLD_RAD = {"reacher2": 0.01, "panda": 5e-4}


def trajectory(robot: str, reality: str | None, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    with load_robot(robot, reality=reality) as r:
        r.reset(seed=seed)
        lo, hi = r.spec.action_low_array, r.spec.action_high_array
        out = []
        for _ in range(50):
            r.send_action(0.5 * rng.uniform(lo, hi))
            s = r.observe()
            out.append(np.concatenate([s.qpos, s.qvel]))
    return np.array(out)


def test_ships_named_profiles() -> None:
    assert {"nominal", "heavy", "laggy", "cross-engine", "weak"} <= set(list_realities())


@pytest.mark.parametrize("robot", ["reacher2", "panda"])
def test_nominal_profile_gives_identical_trajectories(robot: str) -> None:
    np.testing.assert_array_equal(trajectory(robot, "nominal"), trajectory(robot, None))


@pytest.mark.parametrize("robot", ["reacher2", "panda"])
@pytest.mark.parametrize("profile", [p for p in list_realities() if p != "nominal"])
def test_each_profile_changes_the_trajectory_beyond_threshold(robot: str, profile: str) -> None:
    n = len(trajectory(robot, None)[0]) // 2
    diff = np.abs(trajectory(robot, profile)[:, :n] - trajectory(robot, None)[:, :n]).max()
    assert diff > THRESHOLD_RAD[robot], f"{profile} on {robot}: max joint difference {diff:.2e} rad"


@pytest.mark.parametrize("profile", ["laggy", "harsh"])
def test_noisy_profiles_are_reproducible_with_the_same_seed(profile: str) -> None:
    np.testing.assert_array_equal(trajectory("reacher2", profile), trajectory("reacher2", profile))


def test_cross_engine_profile_switches_engine() -> None:
    with load_robot("reacher2", reality="cross-engine") as r:
        assert r.spec.engine == "pybullet"


def test_latency_delays_the_action_by_whole_ticks() -> None:
    with load_robot("reacher2", reality=load_reality("nominal", ["action_latency_ticks=2"])) as r:
        r.reset()
        r.send_action([0.05, 0.05])
        r.send_action([0.05, 0.05])
        assert np.all(r.observe().qvel == 0.0)  # nothing applied yet
        r.send_action([0.05, 0.05])
        assert np.all(r.observe().qvel > 0.0)


def test_bad_profile_value_names_file_key_and_range() -> None:
    with pytest.raises(ConfigError) as exc:
        load_reality("heavy", ["mass_scale=-1"])
    assert "heavy.yaml" in str(exc.value) and "mass_scale" in str(exc.value) and "> 0" in str(exc.value)
