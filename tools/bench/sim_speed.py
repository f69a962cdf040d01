"""Control steps/s through robodyna's env vs the raw engine loop doing the same physics substeps.

For each robot and engine, in the same process on the same model: time ``env.step`` (the full path: safety
check, clamp, actuation, decimated physics, observation, reward, episode resets) against

* **raw**: the same actions written straight to the engine (``d.ctrl`` + ``mujoco.mj_step(m, d, nstep=dec)``;
  ``setJointMotorControlArray`` + ``dec x p.stepSimulation()``, with the PD law per substep for the servo modes),
  joints reset at the same episode boundaries -- the same physics, minus everything robodyna adds;
* **bare**: only the step calls, nothing commanded (the physics then follows whatever state it is in, so its
  cost can differ from the commanded trajectory's: e.g. no joint-limit contacts).

Goal (issue 2): env / raw <= 1.5x.

    .venv/bin/python tools/bench/sim_speed.py [--ticks 3000] [--repeats 5] [--out out/sim_speed.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import mujoco
import numpy as np
import pybullet as p

import robodyna
from robodyna.robots import list_robots, load_robot_config, robot_folder


def time_env(env, actions: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    env.reset(seed=0)
    steps = env.unwrapped.task_cfg.episode_steps
    t0 = time.perf_counter()
    for i, a in enumerate(actions):
        env.step(a)
        if (i + 1) % steps == 0:
            env.reset()
    return (time.perf_counter() - t0) / len(actions)


def time_bare(env, n: int) -> float:  # type: ignore[no-untyped-def]
    """The bare limit: only the engine's step call, decimation substeps per tick, nothing commanded or read."""
    sim = env.unwrapped.robot
    dec = sim.decimation
    if sim.spec.engine == "mujoco":
        m, d = sim.model, sim.data
        t0 = time.perf_counter()
        for _ in range(n):
            mujoco.mj_step(m, d, nstep=dec)
        return (time.perf_counter() - t0) / n
    cid = sim.client._client  # the raw limit: pybullet's C call, without BulletClient's per-call wrapper
    t0 = time.perf_counter()
    for _ in range(n):
        for _ in range(dec):
            p.stepSimulation(physicsClientId=cid)
    return (time.perf_counter() - t0) / n


def time_raw(env, actions: np.ndarray) -> float:  # type: ignore[no-untyped-def]
    """The same physics written directly against the engine: each tick writes the same action as the engine's
    native command (MuJoCo ``ctrl``; PyBullet torques, or the PD law per substep for the servo modes — PyBullet
    has no explicit-PD actuator), steps ``decimation`` substeps, and resets the joints at the same episode
    boundaries as the env. Nothing is checked, clamped, observed or scored."""
    sim = env.unwrapped.robot
    dec, mode = sim.decimation, sim.spec.action_mode
    steps = env.unwrapped.task_cfg.episode_steps
    home = sim.home
    if sim.spec.engine == "mujoco":
        m, d = sim.model, sim.data
        qadr = sim._qadr
        t0 = time.perf_counter()
        for i, a in enumerate(actions):
            d.ctrl[:] = d.qpos[qadr] + a if mode == "joint_position_delta" else a
            mujoco.mj_step(m, d, nstep=dec)
            if (i + 1) % steps == 0:
                mujoco.mj_resetData(m, d)
                d.qpos[qadr] = home
                mujoco.mj_forward(m, d)
        return (time.perf_counter() - t0) / len(actions)
    cid, body, idx = sim.client._client, sim.body, sim._idx
    kp, kd = sim.kp.tolist(), sim.kd.tolist()
    home_list = home.tolist()
    movable, gravity_comp = sim._movable, sim.cfg.gains.gravity_compensation
    rows = [movable.index(j) for j in idx]
    zeros = [0.0] * len(movable)
    grav = [0.0] * len(idx)
    t0 = time.perf_counter()
    for i, a in enumerate(actions):
        if mode == "torque":
            p.setJointMotorControlArray(body, idx, p.TORQUE_CONTROL, forces=a.tolist(), physicsClientId=cid)
            for _ in range(dec):
                p.stepSimulation(physicsClientId=cid)
        else:
            if gravity_comp:  # the same per-tick gravity feed-forward as the driver
                qs = [s[0] for s in p.getJointStates(body, movable, physicsClientId=cid)]
                g = p.calculateInverseDynamics(body, qs, zeros, zeros, physicsClientId=cid)
                grav = [g[r] for r in rows]
            states = p.getJointStates(body, idx, physicsClientId=cid)
            target = [s[0] + x for s, x in zip(states, a.tolist())] if mode == "joint_position_delta" else a.tolist()
            for _ in range(dec):
                states = p.getJointStates(body, idx, physicsClientId=cid)
                if mode == "joint_velocity":
                    tau = [g * (t - s[1]) + f for s, t, g, f in zip(states, target, kd, grav)]
                else:
                    tau = [k * (t - s[0]) - g * s[1] + f for s, t, k, g, f in zip(states, target, kp, kd, grav)]
                p.setJointMotorControlArray(body, idx, p.TORQUE_CONTROL, forces=tau, physicsClientId=cid)
                p.stepSimulation(physicsClientId=cid)
        if (i + 1) % steps == 0:
            for k, j in enumerate(idx):
                p.resetJointState(body, j, home_list[k], 0.0, physicsClientId=cid)
    return (time.perf_counter() - t0) / len(actions)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ticks", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default="out/sim_speed.json")
    args = ap.parse_args(argv)
    rows = []
    for name in list_robots():
        cfg, _ = load_robot_config(robot_folder(name))
        for engine in cfg.engines:
            env = robodyna.make_env(name, engine=engine, seed=0)
            rng = np.random.default_rng(0)
            space = env.action_space
            actions = rng.uniform(space.low, space.high, size=(args.ticks, space.shape[0])).astype(np.float32)
            env_t, raw_t, bare_t = [], [], []
            for _ in range(args.repeats):
                env_t.append(time_env(env, actions))
                raw_t.append(time_raw(env, actions))
                bare_t.append(time_bare(env, args.ticks))
            e, r, b = statistics.median(env_t), statistics.median(raw_t), statistics.median(bare_t)
            row = {"robot": name, "engine": engine, "decimation": cfg.decimation, "action_mode": cfg.action_mode,
                   "env_steps_per_s": 1 / e, "raw_steps_per_s": 1 / r, "bare_steps_per_s": 1 / b,
                   "overhead_ratio": e / r, "bare_ratio": e / b, "env_us": e * 1e6, "raw_us": r * 1e6,
                   "bare_us": b * 1e6}
            rows.append(row)
            print(f"{name:9s} {engine:8s} x{cfg.decimation:<3d} env {e * 1e6:6.1f} us ({1 / e:6.0f}/s)  "
                  f"raw {r * 1e6:6.1f} us  ratio {e / r:.2f}x  |  bare step {b * 1e6:6.1f} us  ratio {e / b:.2f}x")
            env.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"repeats": args.repeats, "ticks": args.ticks, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
