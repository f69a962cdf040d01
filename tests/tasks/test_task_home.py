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
