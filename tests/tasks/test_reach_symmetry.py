"""``tasks.reach.yaw_symmetric``: a robot that declares the symmetry really has it in every engine it ships for,
and turned rows never claim a joint-limit stop where there is none."""

from __future__ import annotations

import numpy as np
import pytest

from robodyna.data.batch import Batch
from robodyna.learn.envs import task_fns_for_env
from robodyna.learn.symmetry import augment_symmetry, supports_symmetry
from robodyna.robots.registry import list_robots, robot_folder
from robodyna.spec import load_robot_config
from robodyna.tasks.env import make_env


def _declaring() -> list[tuple[str, str]]:
    out = []
    for name in list_robots():
        cfg, _ = load_robot_config(robot_folder(name))
        if cfg.tasks.reach.yaw_symmetric:
            out += [(name, engine) for engine in cfg.engines]
    return out


def test_the_shipped_arms_declare_the_symmetry() -> None:
    assert {name for name, _ in _declaring()} >= {"reacher2", "panda"}


@pytest.mark.parametrize(("robot", "engine"), _declaring())
def test_a_turned_start_steps_exactly_like_the_turned_trajectory(robot: str, engine: str) -> None:
    """The engine from a turned start, under the same actions, gives the original trajectory turned: joint
    positions and velocities, end effector and target (so training on turned rows trains on real physics)."""
    env = make_env(robot, engine=engine)
    fns = task_fns_for_env(env)
    assert supports_symmetry(fns)
    n = env.unwrapped.robot_spec.n_joints
    rng = np.random.default_rng(0)
    try:
        for trial in range(3):
            obs, info = env.reset(seed=trial)
            actions = rng.uniform(env.action_space.low, env.action_space.high, (15, env.action_space.shape[0]))
            traj = np.array([obs] + [env.step(a.astype(np.float32))[0] for a in actions])
            phi = np.full(len(traj), rng.uniform(0.3, 1.0) * rng.choice([-1, 1]))
            turned = fns.apply_symmetry(traj, phi)
            q = np.array(info["qpos"], dtype=np.float64)
            q[0] = turned[0, 0]
            obs2, _ = env.reset(seed=trial, options={"qpos": q, "target_m": turned[0, 2 * n + 3 : 2 * n + 6]})
            traj2 = np.array([obs2] + [env.step(a.astype(np.float32))[0] for a in actions])
            assert fns.symmetry_valid(traj).all() and fns.symmetry_valid(traj2).all()
            assert np.abs(traj[-1] - traj[0]).max() > 0.05  # the arm moved
            np.testing.assert_allclose(traj2, turned, atol=1e-4, err_msg=f"{robot} in {engine}, trial {trial}")
            assert np.abs(turned - traj).max() > 0.1  # another frame
    finally:
        env.close()


def test_rows_at_a_joint_limit_keep_their_frame_and_the_rest_turn() -> None:
    env = make_env("reacher2")
    fns = task_fns_for_env(env)
    env.close()
    lo, hi = fns.joint_low_rad[0], fns.joint_high_rad[0]
    rng = np.random.default_rng(3)
    m = 600
    obs = np.zeros((m, fns.obs_dim), np.float32)
    obs[:, 0] = rng.uniform(-2.5, 2.5, m)
    obs[: m // 3, 0] = hi - 0.01  # pressed against the shoulder's upper limit
    obs[:, 1] = rng.uniform(-2, 2, m)
    obs[:, 4:6] = rng.normal(size=(m, 2)) * 0.1
    obs[:, 7:9] = rng.normal(size=(m, 2)) * 0.1
    nxt = obs.copy()
    nxt[:, 2] = rng.normal(size=m)
    batch = Batch.create(obs, np.zeros((m, 2), np.float32), np.zeros(m, np.float32), nxt, np.zeros(m, bool),
                         np.zeros(m, bool))
    out = augment_symmetry(batch, fns, 1.0, rng)
    moved = ~np.isclose(out.obs, batch.obs, atol=1e-6).all(axis=1)
    assert not moved[: m // 3].any()  # at the limit: never turned
    assert moved[m // 3 :].mean() > 0.7  # elsewhere most rows turn (the others would land at a limit)
    q = out.obs[moved, 0]
    assert ((q >= lo + fns.symmetry_margin_rad) & (q <= hi - fns.symmetry_margin_rad)).all()
    np.testing.assert_allclose(np.linalg.norm(out.obs[:, 7:9], axis=1), np.linalg.norm(obs[:, 7:9], axis=1), atol=1e-5)
