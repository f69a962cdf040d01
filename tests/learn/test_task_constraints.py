"""Known state constraints that model rollouts are projected onto (Reacher-v5: elbow limit and kinematics)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from robodyna.tasks.gym import task_fns_for


def reacher_transitions(episodes: int = 20) -> tuple[np.ndarray, np.ndarray]:
    env = gym.make("Reacher-v5")
    rng = np.random.default_rng(0)
    obs, nxt = [], []
    for ep in range(episodes):
        o, _ = env.reset(seed=ep)
        for _ in range(50):
            n, *_ = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
            obs.append(o)
            nxt.append(n)
            o = n
    env.close()
    return np.array(obs, np.float32), np.array(nxt, np.float32)


def test_reacher_constraints_leave_real_transitions_within_the_joint_limit_unchanged() -> None:
    obs, nxt = reacher_transitions()
    fixed = task_fns_for("Reacher-v5").constrain(obs, nxt)
    inside = np.abs(np.arctan2(nxt[:, 3], nxt[:, 1])) <= 3.0
    assert inside.sum() > 0.8 * len(obs)
    # the fingertip recomputed from the joint angles (forward kinematics) matches MuJoCo's
    assert np.abs(fixed[inside] - nxt[inside]).max() < 1e-5


def test_reacher_constraints_stop_a_predicted_elbow_that_passes_through_its_limit() -> None:
    obs, nxt = reacher_transitions(2)
    o = obs[:4].copy()
    q1 = np.array([2.95, 2.95, -2.95, 1.0])
    o[:, 1], o[:, 3] = np.cos(q1), np.sin(q1)
    pred = o.copy()
    q1_pred = np.array([-3.1, 3.1, 3.05, 1.2])  # through +3 to the other side; overshoot; through -3; free move
    pred[:, 1], pred[:, 3] = np.cos(q1_pred), np.sin(q1_pred)
    pred[:, 7] = [20.0, 20.0, -20.0, 5.0]  # elbow velocity, outward for the first three
    pred[:, 4:6] += 0.05  # a drifting target is put back
    fixed = task_fns_for("Reacher-v5").constrain(o, pred)
    got_q1 = np.arctan2(fixed[:, 3], fixed[:, 1])
    assert np.allclose(got_q1, [3.0, 3.0, -3.0, 1.2], atol=1e-5)
    assert np.allclose(fixed[:, 7], [0.0, 0.0, 0.0, 5.0])
    assert np.allclose(fixed[:, 4:6], o[:, 4:6])
    q0 = np.arctan2(fixed[:, 2], fixed[:, 0])
    tip = np.stack([0.1 * np.cos(q0) + 0.11 * np.cos(q0 + got_q1), 0.1 * np.sin(q0) + 0.11 * np.sin(q0 + got_q1)], 1)
    assert np.allclose(fixed[:, 8:10], tip - o[:, 4:6], atol=1e-6)


def test_reach_constraints_clamp_joints_to_robot_yaml_limits_and_keep_real_transitions() -> None:
    from robodyna.learn.envs import make_env, task_fns_for_env

    env = make_env("reacher2")
    fns = task_fns_for_env(env)
    rng = np.random.default_rng(0)
    obs, nxt = [], []
    o, _ = env.reset(seed=0)
    for _ in range(300):
        n, _, term, trunc, _ = env.step(rng.uniform(env.action_space.low, env.action_space.high))
        obs.append(o)
        nxt.append(n)
        o = env.reset()[0] if term or trunc else n
    env.close()
    obs_a, nxt_a = np.array(obs), np.array(nxt)
    lo, hi = np.array(fns.joint_low_rad), np.array(fns.joint_high_rad)
    inside = ((nxt_a[:, :2] >= lo) & (nxt_a[:, :2] <= hi)).all(axis=1)
    assert inside.sum() > 200
    assert np.array_equal(fns.constrain(obs_a, nxt_a)[inside], nxt_a[inside].astype(np.float32))
    # a prediction past joint1's upper limit (2.8 rad, robot.yaml) moving outwards: clamped and stopped
    pred = nxt_a[:2].copy()
    pred[:, 1], pred[:, 3] = [3.0, -3.0], [4.0, -4.0]
    pred[:, 7:10] += 0.1  # target columns drift in the prediction
    fixed = fns.constrain(obs_a[:2], pred)
    assert np.allclose(fixed[:, 1], [2.8, -2.8]) and np.allclose(fixed[:, 3], 0.0)
    assert np.allclose(fixed[:, 7:10], obs_a[:2, 7:10])
