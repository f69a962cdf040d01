"""Every robot folder loads, compiles and steps; the Gymnasium adapter passes check_env."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import robodyna
from robodyna.cli.sim import check_robot
from robodyna.onboard.safety import UnsafeActionError
from robodyna.robots import list_robots, load_robot, load_robot_config, robot_folder
from robodyna.spec import StateLayout

ROBOT_ENGINES = [
    (name, eng) for name in list_robots() for eng in load_robot_config(robot_folder(name))[0].engines
]


def test_repository_ships_reacher2_and_panda_in_both_engines() -> None:
    assert ("reacher2", "mujoco") in ROBOT_ENGINES
    assert ("panda", "mujoco") in ROBOT_ENGINES and ("panda", "pybullet") in ROBOT_ENGINES


@pytest.mark.parametrize("name", list_robots())
def test_every_robot_folder_loads_compiles_and_steps_one_second_without_warnings(name: str) -> None:
    assert check_robot(name, seconds=1.0) == []


@pytest.mark.parametrize(("name", "engine"), ROBOT_ENGINES)
def test_check_env_passes_for_each_robot_engine_and_task(name: str, engine: str) -> None:
    env = robodyna.make_env(name, "reach", engine=engine, seed=0)
    check_env(env.unwrapped, skip_render_check=True)
    obs, info = env.reset(seed=3)
    assert obs.shape == env.observation_space.shape
    assert set(info) >= {"qpos", "qvel", "target_m"}
    env.close()


@pytest.mark.parametrize(("name", "engine"), ROBOT_ENGINES)
def test_episode_end_reports_final_distance_and_success(name: str, engine: str) -> None:
    env = robodyna.make_env(name, engine=engine, seed=1)
    obs, _ = env.reset(seed=1)
    act = (0.3 * env.action_space.high).astype(np.float32)  # not zero: the action cost is part of the reward
    steps = 0
    while True:
        prev = obs
        obs, r, term, trunc, info = env.step(act)
        steps += 1
        if term or trunc:
            break
    assert steps == env.unwrapped.task_cfg.episode_steps
    assert info["final_distance_m"] == pytest.approx(float(env.unwrapped.task_fns.distance(obs)))
    assert info["is_success"] == (info["final_distance_m"] < 0.015)
    # the reward is a pure function of (obs, action, next_obs) and equals what the env returned
    assert isinstance(r, float)
    fns = env.unwrapped.task_fns
    assert float(fns.reward(prev[None], act[None], obs[None])[0]) == pytest.approx(r, rel=1e-6, abs=1e-9)
    assert not bool(fns.terminated(prev[None], act[None], obs[None])[0]) and not term


def test_reach_reward_is_pure_function_matching_env_reward() -> None:
    env = robodyna.make_env("reacher2", seed=0)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        nxt, r, *_ = env.step(a)
        assert env.unwrapped.task_fns.reward(obs[None], a[None], nxt[None])[0] == pytest.approx(r, rel=1e-5)
        obs = nxt


def test_gymnasium_id_is_accepted_where_a_robot_is() -> None:
    env = robodyna.make_env("Reacher-v5", seed=0)
    obs, _ = env.reset(seed=0)
    obs2, r, *_ = env.step(env.action_space.sample())
    assert obs2.shape == obs.shape and np.isfinite(r)


def test_send_action_returns_the_clipped_action_actually_applied() -> None:
    with load_robot("reacher2") as robot:
        applied = robot.send_action([10.0, -10.0])
        np.testing.assert_allclose(applied, [0.2, -0.2])


@pytest.mark.parametrize("engine", ["mujoco", "pybullet"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "+inf", "-inf"])
def test_non_finite_float_arrays_never_reach_the_engine(engine: str, dtype: type, bad: float) -> None:
    # the control loop sends float ndarrays (check_action's fast path), not lists
    with load_robot("reacher2", engine=engine) as robot:
        robot.send_action(np.array([0.1, -0.1], dtype))  # a good array goes through and moves the arm
        before = robot.observe()
        assert before.time_s > 0.0
        with pytest.raises(UnsafeActionError, match="reacher2.send_action: non-finite value"):
            robot.send_action(np.array([0.0, bad], dtype))
        after = robot.observe()
        np.testing.assert_array_equal(before.qpos, after.qpos)
        np.testing.assert_array_equal(before.qvel, after.qvel)
        assert after.time_s == before.time_s


@pytest.mark.parametrize("engine", ["mujoco", "pybullet"])
@pytest.mark.parametrize("bad", [[np.nan, 0.0], [0.0, np.inf], [0.0], [[0.0, 0.0]], ["a", "b"]])
def test_nan_or_misshaped_actions_never_reach_the_engine(engine: str, bad: list) -> None:
    with load_robot("reacher2", engine=engine) as robot:
        before = robot.observe()
        with pytest.raises(UnsafeActionError, match="reacher2.send_action"):
            robot.send_action(bad)
        after = robot.observe()
        np.testing.assert_array_equal(before.qpos, after.qpos)
        assert after.time_s == before.time_s


def test_panda_engines_agree_on_joint_order_and_limits() -> None:
    with load_robot("panda", engine="mujoco") as m, load_robot("panda", engine="pybullet") as b:
        for field in ("joint_names", "action_names", "action_low", "action_high", "joint_low_rad",
                      "joint_high_rad", "control_hz"):
            assert getattr(m.spec, field) == getattr(b.spec, field), field


def test_panda_engines_agree_under_zero_torque_within_2mm_after_200ms() -> None:
    """Same state, zero torque, gravity on: the arm falls the same way in both engines."""
    over = ["action_mode=torque", "gains.gravity_compensation=false"]
    q0 = np.array([0.0, -0.785, 0.0, -2.356, 0.0, 1.571, 0.785])
    with load_robot("panda", engine="mujoco", overrides=over) as m, \
            load_robot("panda", engine="pybullet", overrides=over) as b:
        ee0 = m.reset(qpos=q0).ee_pos_m
        np.testing.assert_allclose(ee0, b.reset(qpos=q0).ee_pos_m, atol=1e-6)
        for _ in range(20):
            m.send_action(np.zeros(7))
            b.send_action(np.zeros(7))
        ee_m, ee_b = m.observe().ee_pos_m, b.observe().ee_pos_m
        assert np.linalg.norm(ee_m - ee0) > 0.05  # it really fell
        assert np.linalg.norm(ee_m - ee_b) < 0.002


def test_panda_position_mode_with_gravity_compensation_holds_home() -> None:
    with load_robot("panda") as robot:
        s0 = robot.observe()
        for _ in range(100):
            robot.send_action(np.zeros(7))
        assert np.abs(robot.observe().qpos - s0.qpos).max() < 0.01


@pytest.mark.parametrize(("name", "engine"), ROBOT_ENGINES)
def test_observe_into_writes_exactly_what_observe_returns(name: str, engine: str) -> None:
    with load_robot(name, engine=engine) as robot:
        robot.send_action(np.asarray(robot.spec.action_high) * 0.5)
        s = robot.observe()
        out = np.full(2 * robot.spec.n_joints + 3, np.nan)
        robot.observe_into(out)
        np.testing.assert_array_equal(out, np.concatenate([s.qpos, s.qvel, s.ee_pos_m]))
        lay = StateLayout(robot.spec.n_joints)  # the columns tasks and the controller read
        assert lay.size == out.size
        np.testing.assert_array_equal(out[lay.ee], s.ee_pos_m)
        np.testing.assert_array_equal(out[lay.qvel], s.qvel)
