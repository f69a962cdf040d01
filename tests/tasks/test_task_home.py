"""Tasks have one home: a robot's task functions built from its robot.yaml alone equal the env's, transition by
transition on real MuJoCo (reward, termination, goals, constraints, observation layout)."""

from __future__ import annotations

import numpy as np
import pytest

import robodyna
from robodyna.robots import list_robots
from robodyna.tasks import robot_task

SIM_ROBOTS = [r for r in list_robots() if r != "reacher2_socket"]  # the socket arm needs its emulator running


@pytest.mark.parametrize("robot", SIM_ROBOTS)
def test_task_functions_from_the_robot_yaml_alone_equal_the_envs_on_real_transitions(robot: str) -> None:
    task = robot_task(robot)
    env = robodyna.make_env(robot, seed=3)
    u = env.unwrapped
    assert task.fns == u.task_fns and task.obs_names == list(u.obs_names)
    assert task.episode_steps == u.task_cfg.episode_steps
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=3)
    rows = []
    done = False
    while not done:
        a = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        nxt, r, term, trunc, info = env.step(a)
        rows.append((obs, info["applied_action"], nxt, r, term))
        obs, done = nxt, term or trunc
    o, a, n, r, t = (np.array(x) for x in zip(*rows))
    np.testing.assert_allclose(task.fns.reward(o, a, n), r, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(task.fns.terminated(o, a, n), t)
    # the goal stays put and the constraints keep what the robot really did (joints within limits here)
    inside = np.all((n[:, : task.spec.n_joints] >= np.array(task.spec.joint_low_rad))
                    & (n[:, : task.spec.n_joints] <= np.array(task.spec.joint_high_rad)), axis=1)
    np.testing.assert_allclose(task.fns.constrain(o, n)[inside], n[inside], atol=1e-6)
    g1 = task.fns.sample_goals(64, np.random.default_rng(1))
    g2 = u.task_fns.sample_goals(64, np.random.default_rng(1))
    np.testing.assert_array_equal(g1, g2)
    env.close()


def test_a_robot_task_with_another_action_cost_scores_differently() -> None:
    nominal, costly = robot_task("reacher2"), robot_task("reacher2", overrides=["tasks.reach.action_cost=5.0"])
    o = np.zeros((1, len(nominal.obs_names)), np.float32)
    a = np.full((1, nominal.spec.act_dim), nominal.spec.action_high[0], np.float32)
    assert costly.fns.reward(o, a, o)[0] < nominal.fns.reward(o, a, o)[0]


def test_precision_term_is_in_the_env_reward_and_separates_near_misses_from_hits() -> None:
    over = ["tasks.reach.precision_bonus=1.0", "tasks.reach.precision_scale_m=0.01"]
    task = robot_task("reacher2", overrides=over)
    plain = robot_task("reacher2", overrides=["tasks.reach.precision_bonus=0"])
    assert task.fns.precision_bonus == 1.0  # the override reaches the task functions
    env = robodyna.make_env("reacher2", seed=5, overrides=over)
    obs, _ = env.reset(seed=5)
    rng = np.random.default_rng(2)
    for _ in range(20):  # the env scores with the same term (step_values) as the task's vectorised reward
        a = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        nxt, r, _, _, info = env.step(a)
        expect = task.fns.reward(obs[None], info["applied_action"][None], nxt[None])[0]
        assert r == pytest.approx(float(expect), abs=1e-5)
        obs = nxt
    env.close()
    n = task.spec.n_joints
    rows = np.zeros((2, len(task.obs_names)), np.float32)
    rows[0, 2 * n] = 0.015  # end effector 1.5 cm from the target at the origin
    rows[1, 2 * n] = 0.005  # 0.5 cm
    a = np.zeros((2, task.spec.act_dim), np.float32)
    gap, plain_gap = np.diff(task.fns.reward(rows, a, rows))[0], np.diff(plain.fns.reward(rows, a, rows))[0]
    assert plain_gap == pytest.approx(0.01, abs=1e-6) and gap > 20 * plain_gap
    for row, expect in zip(rows, task.fns.reward(rows, a, rows)):  # env.step's scalar scoring, near the target
        assert task.fns.step_values(a[0], row)[0] == pytest.approx(float(expect), abs=1e-5)
