"""PyBullet driver: loads a URDF (from the robot folder or from ``pybullet_data``) in its own DIRECT client.

Torque mode installs the same torques before every substep (PyBullet applies a TORQUE_CONTROL command for
one ``stepSimulation`` only, then clears it); the velocity and position-delta modes run the same PD law as the
MuJoCo actuators (``tau = clip(gain * (kp * (q* - q) - kd * qd), ±tau_max)``) each substep, plus gravity
compensation from ``calculateInverseDynamics`` once per tick when ``gains.gravity_compensation`` is set.

Joint friction: PyBullet reads ``<dynamics friction>`` from the URDF but does not apply it; the driver applies
it (times a reality profile's ``friction_scale``) the usual PyBullet way, as each actuated joint's velocity
motor with target velocity 0 and that maximum force: a Coulomb friction torque, like MuJoCo's
``frictionloss``. The motor persists under the torque commands the action modes send.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pybullet as p
from pybullet_utils.bullet_client import BulletClient

from robodyna.robots.base import RobotError, RobotState
from robodyna.robots.sim import DynamicsScale, SimRobot
from robodyna.spec import RobotConfig, StateLayout


class PybulletRobot(SimRobot):
    """A robot simulated by PyBullet."""

    def __init__(self, cfg: RobotConfig, folder: Path) -> None:
        super().__init__(cfg, "pybullet")
        em = cfg.engines["pybullet"]
        self.client = BulletClient(connection_mode=p.DIRECT)
        c = self.client
        if em.model.startswith("pybullet_data:"):
            import pybullet_data

            c.setAdditionalSearchPath(pybullet_data.getDataPath())
            path = Path(pybullet_data.getDataPath()) / em.model.split(":", 1)[1]
        else:
            path = folder / em.model
        if not path.is_file():
            self.client.disconnect()
            raise RobotError(f"{cfg.name}: PyBullet model file not found: {path}")
        try:
            self.body = c.loadURDF(
                str(path),
                basePosition=list(em.base_position_m),
                useFixedBase=True,
                flags=p.URDF_USE_INERTIA_FROM_FILE,
            )
        except p.error as exc:
            self.client.disconnect()
            raise RobotError(f"{cfg.name}: cannot load URDF {path}: {exc}") from exc
        self.model_path = path
        c.setGravity(0, 0, -9.81)
        c.setTimeStep(1.0 / cfg.physics_hz)
        self._dt = 1.0 / cfg.physics_hz
        names: dict[str, int] = {}
        links: dict[str, int] = {}
        self._movable: list[int] = []
        for i in range(c.getNumJoints(self.body)):
            info = c.getJointInfo(self.body, i)
            names[info[1].decode()] = i
            links[info[12].decode()] = i
            if info[2] != p.JOINT_FIXED:
                self._movable.append(i)
        for j in cfg.joints:
            if j.name not in names:
                self.client.disconnect()
                raise RobotError(
                    f"{cfg.name}: joint {j.name!r} named in robot.yaml is not in {path.name} "
                    f"(model joints: {sorted(names)})"
                )
        self._idx = [names[j.name] for j in cfg.joints]
        self._passive = [i for i in self._movable if i not in self._idx]
        if em.end_effector not in links:
            self.client.disconnect()
            raise RobotError(f"{cfg.name}: end_effector link {em.end_effector!r} not in {path.name}")
        self._ee = links[em.end_effector]
        # PyBullet's default velocity motors become the joints' Coulomb friction (the URDF's <dynamics friction>,
        # 0 when absent) so joints are otherwise free; passive joints (e.g. fingers) are held in reset().
        self._nominal_friction = [float(c.getJointInfo(self.body, i)[7]) for i in self._idx]
        self._set_friction(1.0)
        self._nominal_dyn = {}
        for i in [-1, *range(c.getNumJoints(self.body))]:
            d = c.getDynamicsInfo(self.body, i)
            damping = c.getJointInfo(self.body, i)[6] if i >= 0 else 0.0  # (getDynamicsInfo[8] is contact damping)
            self._nominal_dyn[i] = (d[0], d[2], damping)  # mass, local inertia diagonal, joint damping
        self._gravity = np.zeros(len(self._idx))
        self._target = np.zeros(len(self._idx))
        self._cid = c._client  # hot paths call pybullet directly: BulletClient builds a partial on every call
        self._n = len(self._idx)
        lay = StateLayout(self._n)
        self._sq, self._sv, self._se = lay.qpos, lay.qvel, lay.ee  # observe_into's slices, built once
        self._tau_max_list = self.tau_max.tolist()
        self._gravity_comp = cfg.gains.gravity_compensation
        self._grav_rows = [self._movable.index(i) for i in self._idx]
        self._kp_list, self._kd_list = self.kp.tolist(), self.kd.tolist()
        self.reset()

    # -- engine primitives --------------------------------------------------------------------------------
    def _read(self) -> tuple[np.ndarray, np.ndarray]:
        states = p.getJointStates(self.body, self._idx, physicsClientId=self._cid)
        return np.array([s[0] for s in states]), np.array([s[1] for s in states])

    def _set_command(self, mode: str, target: np.ndarray) -> None:
        self._target = np.asarray(target, dtype=np.float64)
        if self._gravity_comp:
            cid = self._cid
            qs = [s[0] for s in p.getJointStates(self.body, self._movable, physicsClientId=cid)]
            zeros = [0.0] * len(qs)
            g = p.calculateInverseDynamics(self.body, qs, zeros, zeros, physicsClientId=cid)
            self._gravity = np.array([g[k] for k in self._grav_rows])

    def _step_physics(self, n: int) -> None:
        # Python floats throughout: for a handful of joints they are several times cheaper than numpy calls,
        # and the PD modes run this once per physics substep.
        cid, body, idx, g = self._cid, self.body, self._idx, self.gain
        target, grav, tmax = self._target.tolist(), self._gravity.tolist(), self._tau_max_list
        torque = p.TORQUE_CONTROL
        if self._mode == "torque":
            tau = [min(max(g * t, -m), m) + gc for t, m, gc in zip(target, tmax, grav)]
            for _ in range(n):  # PyBullet clears joint torques after every stepSimulation: set them each substep
                p.setJointMotorControlArray(body, idx, torque, forces=tau, physicsClientId=cid)
                p.stepSimulation(physicsClientId=cid)
        else:
            kp, kd = self._kp_list, self._kd_list
            velocity_mode = self._mode == "joint_velocity"
            for _ in range(n):
                states = p.getJointStates(body, idx, physicsClientId=cid)
                if velocity_mode:
                    u = [d * (t - s[1]) for s, t, d in zip(states, target, kd)]
                else:
                    u = [k * (t - s[0]) - d * s[1] for s, t, k, d in zip(states, target, kp, kd)]
                tau = [min(max(g * v, -m), m) + gc for v, m, gc in zip(u, tmax, grav)]
                p.setJointMotorControlArray(body, idx, torque, forces=tau, physicsClientId=cid)
                p.stepSimulation(physicsClientId=cid)
        self._time += n * self._dt * self.timestep_scale

    def _set_friction(self, scale: float) -> None:
        """Joint Coulomb friction = URDF friction × ``scale``, as velocity motors (target 0, that max force)."""
        forces = [f * scale for f in self._nominal_friction]
        self.client.setJointMotorControlArray(self.body, self._idx, p.VELOCITY_CONTROL,
                                              targetVelocities=[0.0] * len(self._idx), forces=forces)
        self.friction = forces

    def perturb(self, scale: DynamicsScale) -> None:
        c = self.client
        for i, (mass, inertia, damping) in self._nominal_dyn.items():
            kwargs: dict[str, object] = {}
            if mass > 0:
                kwargs["mass"] = mass * scale.mass
                kwargs["localInertiaDiagonal"] = [v * scale.mass for v in inertia]
            if i >= 0:
                kwargs["jointDamping"] = damping * scale.damping + (scale.extra_damping if i in self._idx else 0.0)
            if kwargs:
                c.changeDynamics(self.body, i, **kwargs)
        self._set_friction(scale.friction)
        self.gain = scale.actuator_gain

    def set_timestep_scale(self, scale: float) -> None:
        self.client.setTimeStep(self._dt * scale)
        self.timestep_scale = scale

    # -- Robot ----------------------------------------------------------------------------------------------
    def reset(
        self, qpos: np.ndarray | None = None, qvel: np.ndarray | None = None, seed: int | None = None
    ) -> RobotState:
        q = self.home if qpos is None else np.asarray(qpos, dtype=np.float64)
        qd = np.zeros_like(q) if qvel is None else np.asarray(qvel, dtype=np.float64)
        cid, body = self._cid, self.body
        for i, qi, qdi in zip(self._idx, q.tolist(), qd.tolist()):
            p.resetJointState(body, i, qi, qdi, physicsClientId=cid)
        for i in self._passive:
            p.resetJointState(body, i, 0.0, 0.0, physicsClientId=cid)
            p.setJointMotorControl2(body, i, p.POSITION_CONTROL, targetPosition=0.0, force=20.0, physicsClientId=cid)
        self._time = 0.0
        self._target = q.copy() if self._mode == "joint_position_delta" else np.zeros_like(q)
        self._gravity = np.zeros_like(q)
        return self.observe()

    def _joint_positions(self) -> np.ndarray:
        return self._read()[0]

    def observe_into(self, out: np.ndarray) -> None:
        states = p.getJointStates(self.body, self._idx, physicsClientId=self._cid)
        out[self._sq] = [s[0] for s in states]
        out[self._sv] = [s[1] for s in states]
        out[self._se] = p.getLinkState(
            self.body, self._ee, computeForwardKinematics=True, physicsClientId=self._cid
        )[4]

    def observe(self) -> RobotState:
        q, qd = self._read()
        ee = p.getLinkState(self.body, self._ee, computeForwardKinematics=True, physicsClientId=self._cid)[4]
        return RobotState(q, qd, np.asarray(ee, dtype=np.float64), self._time)

    def model_at(self, qpos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        kin = getattr(self, "_kin", None)
        if kin is None:  # a second DIRECT client with the same URDF: the simulated body is never touched
            kin = self._kin = BulletClient(connection_mode=p.DIRECT)
            base = list(self.cfg.engines["pybullet"].base_position_m)
            self._kin_body = kin.loadURDF(str(self.model_path), basePosition=base, useFixedBase=True,
                                          flags=p.URDF_USE_INERTIA_FROM_FILE)
            kin.setGravity(0, 0, -9.81)
        body, q = self._kin_body, np.asarray(qpos, dtype=np.float64)
        for i, qi in zip(self._idx, q.tolist()):
            kin.resetJointState(body, i, qi, 0.0)
        qs = [kin.getJointState(body, i)[0] for i in self._movable]
        zeros = [0.0] * len(qs)
        full = np.asarray(kin.calculateMassMatrix(body, qs))
        g = np.asarray(kin.calculateInverseDynamics(body, qs, zeros, zeros))
        rows = self._grav_rows
        ee = np.asarray(kin.getLinkState(body, self._ee, computeForwardKinematics=True)[4], dtype=np.float64)
        grav = np.zeros(len(rows)) if self._gravity_comp else g[rows]
        return ee, full[np.ix_(rows, rows)], grav

    def warnings(self) -> list[str]:
        """PyBullet reports no numerical warnings; divergence shows up as non-finite state."""
        q, qd = self._read()
        return [] if np.all(np.isfinite(q)) and np.all(np.isfinite(qd)) else ["non-finite joint state"]

    def close(self) -> None:
        if getattr(self, "_kin", None) is not None:
            self._kin.disconnect()
            self._kin = None
        if getattr(self, "client", None) is not None:
            try:
                self.client.disconnect()
            except p.error:
                pass
            self.client = None  # type: ignore[assignment]
