"""MuJoCo driver: loads an MJCF, adds one actuator per actuated joint for the robot's action mode.

The MJCF only describes the arm (bodies, joints, inertias, geometry, an end-effector site or body). The
driver adds the actuators with :class:`mujoco.MjSpec` — motor (torque), velocity servo or position servo with
the PD gains and torque limits of ``robot.yaml`` — so the whole control period runs inside ``mj_step``
(``nstep = decimation``) with no Python per substep. Actuators already present in the file are removed.
"""

from __future__ import annotations

from pathlib import Path

import mujoco
import numpy as np

from robodyna.robots.base import RobotError, RobotState
from robodyna.robots.sim import DynamicsScale, SimRobot
from robodyna.spec import RobotConfig, StateLayout


def _resolve_model(folder: Path, model: str) -> Path:
    if model.startswith("pybullet_data:"):
        import pybullet_data

        return Path(pybullet_data.getDataPath()) / model.split(":", 1)[1]
    return folder / model


def _as_index(idx: np.ndarray) -> slice | np.ndarray:
    """A slice when the addresses are contiguous (indexing with a slice is several times faster)."""
    if idx.size and np.array_equal(idx, np.arange(idx[0], idx[0] + idx.size)):
        return slice(int(idx[0]), int(idx[0]) + idx.size)
    return idx


class MujocoRobot(SimRobot):
    """A robot simulated by MuJoCo."""

    def __init__(self, cfg: RobotConfig, folder: Path) -> None:
        super().__init__(cfg, "mujoco")
        em = cfg.engines["mujoco"]
        path = _resolve_model(folder, em.model)
        if not path.is_file():
            raise RobotError(f"{cfg.name}: MuJoCo model file not found: {path}")
        try:
            mspec = mujoco.MjSpec.from_file(str(path))
        except Exception as exc:  # mujoco raises ValueError with the parser's message
            raise RobotError(f"{cfg.name}: cannot parse MJCF {path}: {exc}") from exc
        for act in list(mspec.actuators):
            mspec.delete(act)
        model_joints = {j.name for j in mspec.joints}
        for j in cfg.joints:
            if j.name not in model_joints:
                raise RobotError(
                    f"{cfg.name}: joint {j.name!r} named in robot.yaml is not in {path.name} "
                    f"(model joints: {sorted(model_joints)})"
                )
        mspec.option.timestep = 1.0 / cfg.physics_hz
        mode = cfg.action_mode
        for i, j in enumerate(cfg.joints):
            act = mspec.add_actuator()
            act.name = f"robodyna_{j.name}"
            act.target = j.name
            act.trntype = mujoco.mjtTrn.mjTRN_JOINT
            act.forcelimited = True
            act.forcerange = [-j.max_torque_nm, j.max_torque_nm]
            act.ctrllimited = False
            kp, kd = float(self.kp[i]), float(self.kd[i])
            if mode == "torque":
                act.gainprm[0] = 1.0
                act.biastype = mujoco.mjtBias.mjBIAS_NONE
            elif mode == "joint_velocity":
                act.gainprm[0] = kd
                act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
                act.biasprm[2] = -kd
            else:
                act.gainprm[0] = kp
                act.biastype = mujoco.mjtBias.mjBIAS_AFFINE
                act.biasprm[1] = -kp
                act.biasprm[2] = -kd
        if cfg.gains.gravity_compensation:
            for body in mspec.bodies:
                body.gravcomp = 1.0
        try:
            self.model = mspec.compile()
        except Exception as exc:
            raise RobotError(f"{cfg.name}: MJCF {path} does not compile: {exc}") from exc
        self.model_path = path
        self.data = mujoco.MjData(self.model)
        m = self.model
        jids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, j.name) for j in cfg.joints]
        self._qadr = _as_index(np.array([m.jnt_qposadr[i] for i in jids]))
        self._dadr = _as_index(np.array([m.jnt_dofadr[i] for i in jids]))
        ee = em.end_effector
        self._site = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_SITE, ee)
        self._body = -1
        if self._site < 0:
            self._body = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, ee)
            if self._body < 0:
                raise RobotError(f"{cfg.name}: end_effector {ee!r} is neither a site nor a body in {path.name}")
        self._nominal = {
            "body_mass": m.body_mass.copy(),
            "body_inertia": m.body_inertia.copy(),
            "dof_damping": m.dof_damping.copy(),
            "dof_frictionloss": m.dof_frictionloss.copy(),
            "actuator_gainprm": m.actuator_gainprm.copy(),
            "actuator_biasprm": m.actuator_biasprm.copy(),
        }
        self._dt = m.opt.timestep
        self._n = len(cfg.joints)
        lay = StateLayout(self._n)
        self._sq, self._sv, self._se = lay.qpos, lay.qvel, lay.ee  # observe_into's slices, built once
        self._ctrl = self.data.ctrl
        self._dirty = True
        self.reset()

    # -- engine primitives --------------------------------------------------------------------------------
    def _set_command(self, mode: str, target: np.ndarray) -> None:
        self._ctrl[:] = target

    def _step_physics(self, n: int) -> None:
        mujoco.mj_step(self.model, self.data, nstep=n)
        self._dirty = True

    def perturb(self, scale: DynamicsScale) -> None:
        m, nom = self.model, self._nominal
        m.body_mass[:] = nom["body_mass"] * scale.mass
        m.body_inertia[:] = nom["body_inertia"] * scale.mass
        m.dof_damping[:] = nom["dof_damping"] * scale.damping
        m.dof_damping[self._dadr] += scale.extra_damping
        m.dof_frictionloss[:] = nom["dof_frictionloss"] * scale.friction
        m.actuator_gainprm[:] = nom["actuator_gainprm"] * scale.actuator_gain
        m.actuator_biasprm[:] = nom["actuator_biasprm"] * scale.actuator_gain
        self.gain = scale.actuator_gain

    def set_timestep_scale(self, scale: float) -> None:
        self.model.opt.timestep = self._dt * scale
        self.timestep_scale = scale

    # -- Robot ----------------------------------------------------------------------------------------------
    def reset(
        self, qpos: np.ndarray | None = None, qvel: np.ndarray | None = None, seed: int | None = None
    ) -> RobotState:
        mujoco.mj_resetData(self.model, self.data)
        self.data.qpos[self._qadr] = self.home if qpos is None else np.asarray(qpos, dtype=np.float64)
        if qvel is not None:
            self.data.qvel[self._dadr] = np.asarray(qvel, dtype=np.float64)
        if self.spec.action_mode == "joint_position_delta":
            self._ctrl[:] = self.data.qpos[self._qadr]
        mujoco.mj_forward(self.model, self.data)
        self._dirty = False
        return self.observe()

    def _ee_pos(self) -> np.ndarray:
        """End-effector position (a view into mjData), after updating kinematics if the state changed."""
        d = self.data
        if self._dirty:
            mujoco.mj_kinematics(self.model, d)
            self._dirty = False
        return d.site_xpos[self._site] if self._site >= 0 else d.xpos[self._body]

    def _joint_positions(self) -> np.ndarray:
        return self.data.qpos[self._qadr].copy()

    def observe(self) -> RobotState:
        d = self.data
        ee = self._ee_pos()
        return RobotState(d.qpos[self._qadr].copy(), d.qvel[self._dadr].copy(), ee.copy(), float(d.time))

    def observe_into(self, out: np.ndarray) -> None:
        d = self.data
        out[self._se] = self._ee_pos()
        out[self._sq] = d.qpos[self._qadr]
        out[self._sv] = d.qvel[self._dadr]

    def model_at(self, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = self.model
        kin = getattr(self, "_kin", None)
        if kin is None:
            kin = self._kin = mujoco.MjData(m)
        kin.qpos[:] = self.data.qpos
        kin.qpos[self._qadr] = np.asarray(qpos, dtype=np.float64)
        kin.qvel[:] = 0.0
        mujoco.mj_forward(m, kin)
        full = np.zeros((m.nv, m.nv))
        mujoco.mj_fullM(m, kin, full)
        d = self._dadr
        ee = kin.site_xpos[self._site] if self._site >= 0 else kin.xpos[self._body]
        grav = kin.qfrc_bias[d] - kin.qfrc_gravcomp[d]  # the torque gravity asks of the actuators
        return ee.copy(), full[d][:, d].copy(), np.array(grav, dtype=np.float64)

    def warnings(self) -> list[str]:
        """Engine warnings raised so far (e.g. instability, contact buffer overflow)."""
        out = []
        for i, w in enumerate(self.data.warning):
            if w.number > 0:
                out.append(f"{mujoco.mjtWarning(i).name} x{w.number}")
        return out

    def close(self) -> None:
        pass
