"""Benchmark: batched ensemble vs a plain loop over separate member networks (same run, same weights).

Prints train steps/s (7 x 4x200 SiLU, batch 256 per member), rollout transitions/s (100k rows, one random elite
each: grouped-by-member batched ensemble vs a loop over separate member modules vs every member on every row),
the ratios, and writes JSON.
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import torch
from _common import write_json  # tools/bench/ is on sys.path when run as a script

from robodyna.data.batch import Batch
from robodyna.learn.config import EnsembleConfig
from robodyna.learn.ensemble import DynamicsEnsemble

log = logging.getLogger("ensemble_speed")


def _rate(fn, n_items: int, seconds: float) -> float:
    fn()
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        fn()
        count += 1
    return count * n_items / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--obs-dim", type=int, default=10)
    ap.add_argument("--act-dim", type=int, default=2)
    ap.add_argument("--rollout-rows", type=int, default=100_000)
    ap.add_argument("--seconds", type=float, default=5.0, help="time per measurement")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json-out", default="out/ensemble_speed.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    o, a, cfg = args.obs_dim, args.act_dim, EnsembleConfig()
    rng = np.random.default_rng(0)
    n = 5000
    obs = rng.normal(size=(n, o)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, a)).astype(np.float32)
    data = Batch.create(obs, act, rng.normal(size=n), obs + 0.1 * rng.normal(size=(n, o)), np.zeros(n, bool),
                        np.zeros(n, bool))
    ens = DynamicsEnsemble(o, a, EnsembleConfig(max_epochs=1), seed=0)
    ens.fit(data, rng)
    e, bs = cfg.n_members, cfg.batch_size
    x = torch.randn(e, bs, o + a)
    y = torch.randn(e, bs, o + 1)

    def batched_train() -> None:
        loss = ens._loss(x, y)
        ens.optim.zero_grad(set_to_none=True)
        loss.backward()
        ens.optim.step()

    members = ens.net.member_modules()
    opts = [torch.optim.Adam(m.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay) for m in members]

    def loop_train() -> None:
        for i, (m, opt) in enumerate(zip(members, opts)):
            mean, logvar = m(x[i]).split(o + 1, dim=-1)
            loss = (((mean - y[i]) ** 2) * torch.exp(-logvar) + logvar).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    train_batched = _rate(batched_train, 1, args.seconds)
    train_loop = _rate(loop_train, 1, args.seconds)

    rows = args.rollout_rows
    ro = rng.normal(size=(rows, o)).astype(np.float32)
    ra = rng.uniform(-1, 1, (rows, a)).astype(np.float32)
    step_rng = np.random.default_rng(1)
    mean_t, std_t = ens.net.in_mean, ens.net.in_std

    def grouped() -> None:
        ens.step(ro, ra, step_rng)

    @torch.inference_mode()
    def loop_members() -> None:  # plain loop: separate modules, each on the rows it owns
        mem = ens.elites[step_rng.integers(0, len(ens.elites), rows)]
        xin = (torch.from_numpy(np.concatenate([ro, ra], 1)) - mean_t) / std_t
        out = torch.empty(rows, o + 1)
        for m in np.unique(mem):
            idx = torch.from_numpy(np.flatnonzero(mem == m))
            mean, logvar = members[int(m)](xin[idx]).split(o + 1, dim=-1)
            out[idx] = mean + torch.exp(0.5 * ens.net._bound(logvar)) * torch.randn(mean.shape)

    @torch.inference_mode()
    def all_members() -> None:  # naive: every member on every row, then pick
        ens.predict_all(ro, ra)

    roll_grouped = _rate(grouped, rows, args.seconds)
    roll_loop = _rate(loop_members, rows, args.seconds)
    roll_all = _rate(all_members, rows, args.seconds)
    res = {
        "threads": args.threads,
        "train_steps_per_s_batched": train_batched,
        "train_steps_per_s_member_loop": train_loop,
        "train_ratio": train_batched / train_loop,
        "rollout_transitions_per_s_grouped": roll_grouped,
        "rollout_transitions_per_s_member_loop": roll_loop,
        "rollout_transitions_per_s_all_members": roll_all,
        "rollout_ratio_vs_member_loop": roll_grouped / roll_loop,
        "rollout_ratio_vs_all_members": roll_grouped / roll_all,
    }
    print(f"ensemble 7x4x200 SiLU, obs {o}, act {a}, {args.threads} threads")
    print(f"train steps/s (batch {bs}/member): batched {train_batched:.1f} | member loop {train_loop:.1f} | "
          f"ratio {res['train_ratio']:.2f}x")
    print(f"rollout transitions/s ({rows} rows): grouped {roll_grouped:,.0f} | member loop {roll_loop:,.0f} "
          f"(ratio {res['rollout_ratio_vs_member_loop']:.2f}x) | all members on all rows {roll_all:,.0f} "
          f"(ratio {res['rollout_ratio_vs_all_members']:.2f}x)")
    write_json(args.json_out, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
