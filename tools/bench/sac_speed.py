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
from _common import silence_sb3_logger, write_json  # tools/bench/ is on sys.path when run as a script

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
    variants = {  # robodyna configurations timed against SB3 (the first is the default)
        "default": SACConfig(),
        "bf16_hidden": SACConfig(bf16_hidden=True),
        "bf16_hidden+actor_update_every=2": SACConfig(bf16_hidden=True, actor_update_every=2),
        "compile": SACConfig(compile=True),
        "bf16_hidden+compile (the MBPO preset here)": SACConfig(bf16_hidden=True, compile=True),
        "bf16_hidden+compile+critic_layer_norm": SACConfig(bf16_hidden=True, compile=True, critic_layer_norm=True),
    }
    agents = {name: SAC(data.obs_dim, data.act_dim, lo, hi, cfg, seed=0) for name, cfg in variants.items()}
    buf = ReplayBuffer(10_000, data.obs_dim, data.act_dim)
    buf.add(data)

    def ours(a: SAC) -> float:
        t0 = time.perf_counter()
        for _ in range(args.updates):
            a.update(buf.sample(256, rng))
        return args.updates / (time.perf_counter() - t0)

    from stable_baselines3 import SAC as SB3SAC

    sb3 = SB3SAC("MlpPolicy", env, learning_starts=0, batch_size=256, device="cpu", verbose=0, seed=0)
    silence_sb3_logger(sb3)
    sb3.learn(300)  # fills its buffer a little
    for i in range(len(data)):
        sb3.replay_buffer.add(data.obs[i : i + 1], data.next_obs[i : i + 1], data.action[i : i + 1],
                              data.reward[i : i + 1], data.terminated[i : i + 1], [{}])

    def theirs() -> float:
        t0 = time.perf_counter()
        sb3.train(gradient_steps=args.updates, batch_size=256)
        return args.updates / (time.perf_counter() - t0)

    for a in agents.values():  # warm-up (and torch.compile's compilation, for the compiled variants)
        ours(a)
    theirs()
    runs: dict[str, list[float]] = {name: [] for name in [*agents, "sb3"]}
    for _ in range(args.repeats):  # interleaved, so background load hits all
        for name, a in agents.items():
            runs[name].append(ours(a))
        runs["sb3"].append(theirs())
    sb3_rate = float(np.median(runs["sb3"]))
    res: dict = {"env": args.env, "threads": args.threads, "sb3_updates_per_s": sb3_rate, "runs": runs,
                 "robodyna_updates_per_s": float(np.median(runs["default"])),
                 "ratio": float(np.median(runs["default"])) / sb3_rate,
                 "variants": {name: {"updates_per_s": float(np.median(runs[name])),
                                     "ratio": float(np.median(runs[name])) / sb3_rate} for name in agents}}
    print(f"SAC 256x256, batch 256, {args.env}, {args.threads} threads, median of {args.repeats}x{args.updates}")
    print(f"SB3 SAC: {sb3_rate:.1f} updates/s")
    for name, v in res["variants"].items():
        print(f"robodyna SAC ({name}): {v['updates_per_s']:.1f} updates/s | ratio {v['ratio']:.2f}x")
    write_json(args.json_out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
