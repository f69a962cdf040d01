"""Each RealityProfile field on its own, against the engine's true state, in MuJoCo and in PyBullet.

The robot is a one-joint arm rotating about the vertical axis (no gravity torque, stable in both engines,
same inertia, damping and Coulomb friction in its MJCF and URDF), so each field's effect has a known size.
"Observed" is what the profile-wrapped robot reports; "true" is ``robot.inner.observe()``, the engine state.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from robodyna.robots import RealityProfile, load_robot

MJCF = """<mujoco model="hinge1">
  <option timestep="0.002"/>
  <worldbody>
    <body name="link" pos="0 0 0">
      <joint name="hinge" type="hinge" axis="0 0 1" damping="0.01" frictionloss="0.02"/>
      <inertial pos="0.1 0 0" mass="1.0" diaginertia="1e-3 1e-3 1e-3"/>
      <site name="tip" pos="0.2 0 0"/>
    </body>
  </worldbody>
</mujoco>
"""
URDF = """<?xml version="1.0"?>
<robot name="hinge1">
  <link name="base">
    <inertial><origin xyz="0 0 0"/><mass value="0"/>
      <inertia ixx="0" ixy="0" ixz="0" iyy="0" iyz="0" izz="0"/></inertial>
  </link>
  <link name="link">
    <inertial><origin xyz="0.1 0 0"/><mass value="1.0"/>
      <inertia ixx="1e-3" ixy="0" ixz="0" iyy="1e-3" iyz="0" izz="1e-3"/></inertial>
  </link>
  <joint name="hinge" type="revolute">
    <parent link="base"/><child link="link"/><origin xyz="0 0 0"/><axis xyz="0 0 1"/>
    <limit lower="-3" upper="3" effort="1" velocity="20"/>
    <dynamics damping="0.01" friction="0.02"/>
  </joint>
  <link name="tip">
    <inertial><origin xyz="0 0 0"/><mass value="0.0001"/>
      <inertia ixx="1e-9" ixy="0" ixz="0" iyy="1e-9" iyz="0" izz="1e-9"/></inertial>
  </link>
  <joint name="tip_joint" type="fixed"><parent link="link"/><child link="tip"/><origin xyz="0.2 0 0"/></joint>
</robot>
"""
YAML = """name: hinge1
engines:
  mujoco: {model: arm.xml, end_effector: tip}
  pybullet: {model: arm.urdf, end_effector: tip}
joints:
  - {name: hinge, lower_rad: -3, upper_rad: 3, max_torque_nm: 1.0}
control_hz: 50
physics_hz: 500
"""
INERTIA = 1e-3 + 1.0 * 0.1**2  # about the hinge [kg m^2]
FRICTION = 0.02  # N*m
PERIOD = 0.02  # s
ENGINES = ["mujoco", "pybullet"]
TICKS = 40


@pytest.fixture(scope="module")
def arm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hinge") / "hinge1"
    d.mkdir()
    (d / "arm.xml").write_text(MJCF)
    (d / "arm.urdf").write_text(URDF)
    (d / "robot.yaml").write_text(YAML)
    return d


def actions(n: int = TICKS) -> np.ndarray:
    """Torques that speed the arm up, then reverse it (never saturating ±1 N*m, always above the friction)."""
    t = np.arange(n)
    return (0.1 + 0.05 * np.sin(t / 3.0))[:, None] * np.where(t < n // 2, 1.0, -1.0)[:, None]


def run(arm: Path, engine: str, profile: RealityProfile | None, acts: np.ndarray | None = None,
        seed: int | None = None) -> dict[str, np.ndarray]:
    """Send ``acts``; return observed and true (engine) qpos/qvel/ee and time after each tick."""
    acts = actions() if acts is None else acts
    out: dict[str, list] = {k: [] for k in ("q", "qd", "ee", "t", "true_q", "true_qd", "true_ee")}
    with load_robot(arm, engine=engine, reality=profile) as r:
        inner = getattr(r, "inner", r)
        r.reset(seed=seed)
        for a in acts:
            r.send_action(a)
            s, true = r.observe(), inner.observe()
            for k, v in (("q", s.qpos), ("qd", s.qvel), ("ee", s.ee_pos_m), ("t", s.time_s), ("true_q", true.qpos),
                         ("true_qd", true.qvel), ("true_ee", true.ee_pos_m)):
                out[k].append(np.copy(v))
    return {k: np.array(v) for k, v in out.items()}


def profile(**fields: object) -> RealityProfile:
    return RealityProfile(name="one-field", seed=3, **fields)  # type: ignore[arg-type]


def test_every_profile_field_is_covered_here() -> None:
    tested = {"engine", "mass_scale", "damping_scale", "extra_damping_nms_per_rad", "friction_scale",
              "actuator_gain_scale", "action_latency_ticks", "joint_pos_noise_rad", "joint_vel_noise_rad_s",
              "joint_pos_bias_rad", "ee_pos_noise_m", "control_jitter_frac", "seed"}
    assert {f.name for f in dataclasses.fields(RealityProfile)} - {"name", "description"} == tested


@pytest.mark.parametrize("engine", ENGINES)
def test_the_arm_accelerates_as_torque_minus_friction_over_inertia_in_both_engines(arm: Path, engine: str) -> None:
    # the reference for the dynamics fields below: one tick of 0.1 N*m from rest (damping 0.01 is small)
    r = run(arm, engine, None, np.array([[0.1]]))
    assert r["true_qd"][0, 0] == pytest.approx((0.1 - FRICTION) / INERTIA * PERIOD, rel=0.03)
    np.testing.assert_array_equal(r["q"], r["true_q"])


@pytest.mark.parametrize("engine", ENGINES)
def test_mass_scale_divides_the_acceleration(arm: Path, engine: str) -> None:
    nominal = run(arm, engine, None, np.array([[0.1]]))["true_qd"][0, 0]
    heavy = run(arm, engine, profile(mass_scale=2.0), np.array([[0.1]]))["true_qd"][0, 0]
    assert heavy == pytest.approx(nominal / 2.0, rel=0.03)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("field", [{"damping_scale": 20.0}, {"extra_damping_nms_per_rad": 0.2}])
def test_damping_fields_slow_the_arm_down(arm: Path, engine: str, field: dict) -> None:
    steady = np.full((15, 1), 0.1)
    nominal, damped = run(arm, engine, None, steady), run(arm, engine, profile(**field), steady)
    # extra damping 0.2 (or 20 x 0.01) N*m*s/rad: terminal velocity (0.1 - 0.02) / 0.2 = 0.4 rad/s
    assert damped["true_qd"][-1, 0] == pytest.approx(0.4, rel=0.1)
    assert nominal["true_qd"][-1, 0] > 2.0 * damped["true_qd"][-1, 0]


@pytest.mark.parametrize("engine", ENGINES)
def test_friction_scale_scales_the_coulomb_friction(arm: Path, engine: str) -> None:
    one = np.array([[0.1]])
    frictionless = run(arm, engine, profile(friction_scale=0.0), one)["true_qd"][0, 0]
    assert frictionless == pytest.approx(0.1 / INERTIA * PERIOD, rel=0.03)
    doubled = run(arm, engine, profile(friction_scale=2.0), one)["true_qd"][0, 0]
    assert doubled == pytest.approx((0.1 - 2 * FRICTION) / INERTIA * PERIOD, rel=0.05)
    # friction above the torque: the arm (nearly) does not move (MuJoCo's friction is a soft constraint)
    stuck = run(arm, engine, profile(friction_scale=6.0), one)["true_qd"][0, 0]
    assert abs(stuck) < 0.1 * frictionless


@pytest.mark.parametrize("engine", ENGINES)
def test_actuator_gain_scale_is_the_same_as_scaling_the_torque(arm: Path, engine: str) -> None:
    weak = run(arm, engine, profile(actuator_gain_scale=0.5))
    scaled = run(arm, engine, None, 0.5 * actions())
    np.testing.assert_allclose(weak["true_q"], scaled["true_q"], rtol=0, atol=1e-9)
    assert np.abs(run(arm, engine, None)["true_q"] - weak["true_q"]).max() > 0.05


@pytest.mark.parametrize("engine", ENGINES)
def test_action_latency_shifts_the_actions_by_whole_ticks(arm: Path, engine: str) -> None:
    late = run(arm, engine, profile(action_latency_ticks=2))
    shifted = run(arm, engine, None, np.concatenate([np.zeros((2, 1)), actions()[:-2]]))
    np.testing.assert_allclose(late["true_q"], shifted["true_q"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
def test_joint_pos_bias_offsets_the_observed_position_only(arm: Path, engine: str) -> None:
    nominal, biased = run(arm, engine, None), run(arm, engine, profile(joint_pos_bias_rad=0.05))
    np.testing.assert_allclose(biased["q"] - biased["true_q"], 0.05, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(biased["true_q"], nominal["true_q"])
    np.testing.assert_array_equal(biased["qd"], biased["true_qd"])


NOISE_FIELDS = [("joint_pos_noise_rad", 0.01, "q"), ("joint_vel_noise_rad_s", 0.05, "qd"),
                ("ee_pos_noise_m", 0.003, "ee")]


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("field", "sigma", "key"), NOISE_FIELDS)
def test_noise_fields_add_zero_mean_noise_of_that_size_to_that_reading_only(
        arm: Path, engine: str, field: str, sigma: float, key: str) -> None:
    nominal, noisy = run(arm, engine, None), run(arm, engine, profile(**{field: sigma}))
    err = (noisy[key] - noisy[f"true_{key}"]).reshape(-1)
    assert 0.7 * sigma < err.std() < 1.3 * sigma, err.std()
    assert abs(err.mean()) < 4 * sigma / np.sqrt(err.size)
    for other in {"q", "qd", "ee"} - {key}:
        np.testing.assert_array_equal(noisy[other], noisy[f"true_{other}"])
    np.testing.assert_array_equal(noisy["true_q"], nominal["true_q"])  # sensors only: the dynamics are untouched


@pytest.mark.parametrize("engine", ENGINES)
def test_control_jitter_stretches_each_control_period_within_its_fraction(arm: Path, engine: str) -> None:
    nominal, jittery = run(arm, engine, None), run(arm, engine, profile(control_jitter_frac=0.2))
    np.testing.assert_allclose(np.diff(nominal["t"]), PERIOD, rtol=1e-9)
    dt = np.diff(jittery["t"])
    assert np.all(dt >= 0.8 * PERIOD - 1e-9) and np.all(dt <= 1.2 * PERIOD + 1e-9)
    assert dt.std() > 0.05 * PERIOD  # uniform on ±20 %: std 11.5 % of the period
    assert np.abs(jittery["true_q"] - nominal["true_q"]).max() > 1e-3


def test_engine_field_picks_the_engine(arm: Path) -> None:
    with load_robot(arm, reality=profile(engine="pybullet")) as r:
        assert r.spec.engine == "pybullet"


@pytest.mark.parametrize("engine", ENGINES)
def test_noise_is_reproducible_per_seed_and_differs_between_seeds(arm: Path, engine: str) -> None:
    noisy = {"joint_pos_noise_rad": 0.01, "joint_vel_noise_rad_s": 0.05, "ee_pos_noise_m": 0.003}
    a = run(arm, engine, RealityProfile(name="n", seed=1, **noisy))
    b = run(arm, engine, RealityProfile(name="n", seed=1, **noisy))
    c = run(arm, engine, RealityProfile(name="n", seed=2, **noisy))
    for k in ("q", "qd", "ee"):
        np.testing.assert_array_equal(a[k], b[k])
        assert np.all(a[k] != a[f"true_{k}"]), k  # the noise is there
        assert np.all(a[k] != c[k]), k  # and another seed draws other noise
    # reset(seed=...) draws per-episode noise from (profile seed, episode seed)
    e1 = run(arm, engine, RealityProfile(name="n", seed=1, **noisy), seed=10)
    e2 = run(arm, engine, RealityProfile(name="n", seed=1, **noisy), seed=11)
    assert np.all(e1["q"] != e2["q"])


@pytest.mark.parametrize("engine", ENGINES)
def test_peek_into_reads_the_engine_state_without_drawing_the_profiles_noise(arm: Path, engine: str) -> None:
    noisy = profile(joint_pos_noise_rad=0.01, joint_vel_noise_rad_s=0.05, ee_pos_noise_m=0.003)
    with load_robot(arm, engine=engine, reality=noisy) as peeked, load_robot(arm, engine=engine, reality=noisy) as r:
        peeked.reset(seed=1)
        r.reset(seed=1)
        out, want = np.full(5, np.nan, np.float32), np.zeros(5, np.float32)
        for a in actions(10):
            assert peeked.peek_into(out)  # the controller's warm-up: between every two ticks
            peeked.inner.observe_into(want)
            np.testing.assert_array_equal(out, want)  # the engine's state, no noise
            peeked.send_action(a)
            r.send_action(a)
            np.testing.assert_array_equal(peeked.observe().qpos, r.observe().qpos)  # the noise stream untouched
