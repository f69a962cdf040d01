"""Benchmark: robodyna SAC updates/s vs stable-baselines3 SAC, same run, same threads, 256x256, batch 256.

Both agents sample their batches from their own replay buffer filled with the same Reacher-v5 random-policy data;
prints updates/s for each and the ratio, writes JSON.
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np
import torch
from _common import write_json  # tools/bench/ is on sys.path when run as a script

from robodyna.data.batch import Batch
from robodyna.learn.buffers import ReplayBuffer
from robodyna.learn.config import SACConfig
from robodyna.learn.envs import spec_for_env
from robodyna.learn.sac import SAC


def collect(env: gym.Env, n: int, rng: np.random.Generator) -> Batch:
    rows, obs = [], env.reset(seed=0)[0]
    for _ in range(n):
        a = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        nxt, r, term, trunc, _ = env.step(a)
        rows.append(Batch.create(obs, a, r, nxt, term, trunc))
        obs = env.reset()[0] if term or trunc else nxt
    return Batch.concat(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--env", default="Reacher-v5")
    ap.add_argument("--updates", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json-out", default="out/sac_speed.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    env = gym.make(args.env)
    rng = np.random.default_rng(0)
    data = collect(env, 5000, rng)
    spec = spec_for_env(env)

    lo, hi = spec.action_low_array, spec.action_high_array
    agent = SAC(data.obs_dim, data.act_dim, lo, hi, SACConfig(), seed=0)
    agent_bf16 = SAC(data.obs_dim, data.act_dim, lo, hi, SACConfig(bf16_hidden=True), seed=0)
    buf = ReplayBuffer(10_000, data.obs_dim, data.act_dim)
    buf.add(data)

    def ours(a: SAC = agent) -> float:
        t0 = time.perf_counter()
        for _ in range(args.updates):
            a.update(buf.sample(256, rng))
        return args.updates / (time.perf_counter() - t0)

    from stable_baselines3 import SAC as SB3SAC

    sb3 = SB3SAC("MlpPolicy", env, learning_starts=0, batch_size=256, device="cpu", verbose=0, seed=0)
    sb3.learn(300)  # fills its buffer a little and initialises the logger
    for i in range(len(data)):
        sb3.replay_buffer.add(data.obs[i : i + 1], data.next_obs[i : i + 1], data.action[i : i + 1],
                              data.reward[i : i + 1], data.terminated[i : i + 1], [{}])

    def theirs() -> float:
        t0 = time.perf_counter()
        sb3.train(gradient_steps=args.updates, batch_size=256)
        return args.updates / (time.perf_counter() - t0)

    ours()
    ours(agent_bf16)
    theirs()  # warm-up
    r_ours, r_bf16, r_sb3 = [], [], []
    for _ in range(args.repeats):  # interleaved, so background load hits all
        r_ours.append(ours())
        r_bf16.append(ours(agent_bf16))
        r_sb3.append(theirs())
    res = {
        "env": args.env,
        "threads": args.threads,
        "robodyna_updates_per_s": float(np.median(r_ours)),
        "sb3_updates_per_s": float(np.median(r_sb3)),
        "ratio": float(np.median(r_ours) / np.median(r_sb3)),
        "robodyna_bf16_hidden_updates_per_s": float(np.median(r_bf16)),
        "ratio_bf16_hidden": float(np.median(r_bf16) / np.median(r_sb3)),
        "robodyna_runs": r_ours,
        "robodyna_bf16_runs": r_bf16,
        "sb3_runs": r_sb3,
    }
    print(f"SAC 256x256, batch 256, {args.env}, {args.threads} threads, median of {args.repeats}x{args.updates}")
    print(f"robodyna SAC: {res['robodyna_updates_per_s']:.1f} updates/s | SB3 SAC: {res['sb3_updates_per_s']:.1f} "
          f"updates/s | ratio {res['ratio']:.2f}x")
    print(f"robodyna SAC with sac.bf16_hidden=true: {res['robodyna_bf16_hidden_updates_per_s']:.1f} updates/s | "
          f"ratio {res['ratio_bf16_hidden']:.2f}x")
    write_json(args.json_out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
