"""``ReachLayout`` is the one place the reach observation's column offsets are written down: its slices must pick the
columns ``reach_obs_names`` names, and the env's observation must hold what they say, on every shipped robot."""

from __future__ import annotations

import numpy as np
import pytest

import robodyna
from robodyna.robots import list_robots, load_robot_config, robot_folder
from robodyna.tasks.reach import ReachLayout, reach_obs_names

# robot folders with a simulation engine (reacher2_socket's driver talks to an emulator process; its arm is reacher2)
SIMULATED = [name for name in list_robots() if load_robot_config(robot_folder(name))[0].engines]


def test_every_simulated_robot_folder_is_covered() -> None:
    assert {"reacher2", "panda"} <= set(SIMULATED)


@pytest.mark.parametrize("robot", SIMULATED)
def test_layout_slices_name_the_columns_the_env_fills(robot: str) -> None:
    env = robodyna.make_env(robot, seed=0, overrides=["tasks.reach.action_history=1"])
    try:
        u = env.unwrapped
        spec = u.robot_spec
        lay = ReachLayout(spec.n_joints)
        names = reach_obs_names(spec, 1)
        assert names == list(u.obs_names)
        assert names[lay.qpos] == [f"{j}.pos_rad" for j in spec.joint_names]
        assert names[lay.qvel] == [f"{j}.vel_rad_s" for j in spec.joint_names]
        assert names[lay.ee] == ["ee.x_m", "ee.y_m", "ee.z_m"]
        assert names[lay.target] == ["target.x_m", "target.y_m", "target.z_m"]
        assert names[lay.history_start].startswith(f"{spec.action_names[0]}_t-1_")
        obs, info = env.reset(seed=3)
        np.testing.assert_allclose(obs[lay.target], info["target_m"], atol=1e-6)
        obs, _, _, _, info = env.step(env.action_space.sample())
        fns = u.task_fns
        assert fns.layout == lay
        np.testing.assert_allclose(fns.distance(obs), np.linalg.norm(obs[lay.ee] - obs[lay.target]), rtol=1e-6)
        np.testing.assert_allclose(obs[lay.history_start :], info["applied_action"], atol=1e-6)
    finally:
        env.close()
