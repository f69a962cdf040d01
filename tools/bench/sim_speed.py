"""Control steps/s through robodyna's env vs the raw engine loop doing the same physics substeps.

For each robot and engine: time ``env.step`` (the full path: safety check, clamp, actuation, decimated
physics, observation, reward) against a bare loop of ``mujoco.mj_step(m, d, nstep=decimation)`` or
``decimation x p.stepSimulation()`` on the same model, in the same process. Goal: overhead ratio <= 1.5x.

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


def time_raw(env, n: int) -> float:  # type: ignore[no-untyped-def]
    sim = env.unwrapped.robot
    dec = sim.decimation
    if sim.spec.engine == "mujoco":
        m, d = sim.model, sim.data
        t0 = time.perf_counter()
        for _ in range(n):
            mujoco.mj_step(m, d, nstep=dec)
        return (time.perf_counter() - t0) / n
    import pybullet as p

    cid = sim.client._client  # the raw limit: pybullet's C call, without BulletClient's per-call wrapper
    t0 = time.perf_counter()
    for _ in range(n):
        for _ in range(dec):
            p.stepSimulation(physicsClientId=cid)
    return (time.perf_counter() - t0) / n


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
            env_t, raw_t = [], []
            for _ in range(args.repeats):
                env_t.append(time_env(env, actions))
                raw_t.append(time_raw(env, args.ticks))
            e, r = statistics.median(env_t), statistics.median(raw_t)
            row = {"robot": name, "engine": engine, "decimation": cfg.decimation,
                   "env_steps_per_s": 1 / e, "raw_steps_per_s": 1 / r, "overhead_ratio": e / r,
                   "env_us": e * 1e6, "raw_us": r * 1e6}
            rows.append(row)
            print(f"{name:9s} {engine:8s} x{cfg.decimation:<3d} env {1 / e:9.0f} steps/s ({e * 1e6:6.1f} us)  "
                  f"raw {1 / r:9.0f} steps/s ({r * 1e6:6.1f} us)  ratio {e / r:.2f}x")
            env.close()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"repeats": args.repeats, "ticks": args.ticks, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
