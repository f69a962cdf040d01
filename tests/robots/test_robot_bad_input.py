"""Bad robot folders fail with errors naming what and where; a new MuJoCo arm needs no Python."""

from __future__ import annotations

import shutil
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from robodyna.config import ConfigError
from robodyna.robots import Robot, RobotError, RobotState, load_robot, robots_root
from robodyna.spec import RobotSpec

ARM = """
<mujoco model="arm1">
  <option timestep="0.002"/>
  <worldbody>
    <body name="link" pos="0 0 0">
      <joint name="hinge" type="hinge" axis="0 0 1" damping="0.01"/>
      <inertial pos="0.05 0 0" mass="0.1" diaginertia="1e-4 1e-4 1e-4"/>
      <site name="tip" pos="0.1 0 0"/>
    </body>
  </worldbody>
</mujoco>
"""
YAML = """
name: arm1
engines:
  mujoco: {model: arm.xml, end_effector: tip}
joints:
  - {name: hinge, lower_rad: -3, upper_rad: 3, max_torque_nm: 0.1}
control_hz: 50
physics_hz: 500
"""


def make_folder(tmp_path: Path, xml: str = ARM, yaml: str = YAML) -> Path:
    d = tmp_path / "arm1"
    d.mkdir()
    (d / "arm.xml").write_text(xml)
    (d / "robot.yaml").write_text(textwrap.dedent(yaml))
    return d


def test_a_new_mujoco_arm_is_a_folder_with_no_python(tmp_path: Path) -> None:
    import robodyna

    env = robodyna.make_env(str(make_folder(tmp_path)), seed=0)
    obs, _ = env.reset(seed=0)
    obs2, *_ = env.step(np.array([0.1], dtype=np.float32))
    assert obs.shape == (8,) and obs2[1] > obs[1]  # positive torque, positive velocity


def test_missing_model_file_is_named(tmp_path: Path) -> None:
    d = make_folder(tmp_path)
    (d / "arm.xml").unlink()
    with pytest.raises(RobotError, match=r"model file not found: .*arm\.xml"):
        load_robot(d)


def test_malformed_mjcf_names_the_file(tmp_path: Path) -> None:
    d = make_folder(tmp_path, xml="<mujoco><worldbody><body></mujoco>")
    with pytest.raises(RobotError, match=r"cannot parse MJCF .*arm\.xml"):
        load_robot(d)


def test_joint_missing_from_the_model_is_named(tmp_path: Path) -> None:
    d = make_folder(tmp_path, yaml=YAML.replace("name: hinge", "name: elbow"))
    with pytest.raises(RobotError, match=r"joint 'elbow' named in robot.yaml is not in arm\.xml"):
        load_robot(d)


def test_limits_with_low_above_high_are_refused_with_file_and_key(tmp_path: Path) -> None:
    d = make_folder(tmp_path, yaml=YAML.replace("lower_rad: -3", "lower_rad: 4"))
    with pytest.raises(ConfigError) as exc:
        load_robot(d)
    msg = str(exc.value)
    assert "robot.yaml" in msg and "joints[hinge].lower_rad" in msg and "4.0" in msg


def test_unknown_robot_yaml_key_is_named(tmp_path: Path) -> None:
    d = make_folder(tmp_path, yaml=YAML + "contrl_hz: 20\n")
    with pytest.raises(ConfigError, match=r"robot.yaml: contrl_hz: got 20; unknown key"):
        load_robot(d)


def test_unknown_end_effector_is_named(tmp_path: Path) -> None:
    d = make_folder(tmp_path, yaml=YAML.replace("end_effector: tip", "end_effector: nib"))
    with pytest.raises(RobotError, match="end_effector 'nib'"):
        load_robot(d)


def test_pybullet_robot_with_malformed_urdf_is_named(tmp_path: Path) -> None:
    d = tmp_path / "r2"
    shutil.copytree(robots_root() / "reacher2", d)
    (d / "reacher2.urdf").write_text("<robot name='x'><link></robot>")
    with pytest.raises(RobotError, match=r"cannot load URDF .*reacher2\.urdf"):
        load_robot(d, engine="pybullet")


class FakeHardware(Robot):
    """A stand-in for a hardware driver plugin: an integrator, no engine."""

    def __init__(self, cfg, folder) -> None:  # type: ignore[no-untyped-def]
        spec = RobotSpec.from_config(cfg, "hardware")
        super().__init__(spec)
        self.q = np.zeros(spec.n_joints)

    def reset(self, qpos=None, qvel=None, seed=None) -> RobotState:  # type: ignore[no-untyped-def]
        self.q = np.zeros(self.spec.n_joints) if qpos is None else np.asarray(qpos, float)
        return self.observe()

    def observe(self) -> RobotState:
        return RobotState(self.q.copy(), np.zeros_like(self.q), np.zeros(3), 0.0)

    def _apply(self, action: np.ndarray) -> None:
        self.q = self.q + action


def test_hardware_driver_plugin_is_loaded_from_robot_yaml(tmp_path: Path) -> None:
    d = tmp_path / "hw"
    d.mkdir()
    (d / "robot.yaml").write_text(
        "name: hw\ndriver: tests.robots.test_robot_bad_input:FakeHardware\n"
        "joints: [{name: j1, max_torque_nm: 1.0}]\n"
    )
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    with load_robot(d) as robot:
        assert robot.spec.engine == "hardware"
        np.testing.assert_allclose(robot.send_action([5.0]), [1.0])  # clamped by the shared send_action
        assert robot.observe().qpos[0] == 1.0
