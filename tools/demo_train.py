"""Demo: MBPO on ``reacher2`` for a few minutes of wall time, compared with a random policy and with robodyna SAC
trained for the same number of real steps. Prints the returns and writes ``demo.png`` (eval curves) to the run dir.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np
import torch

from robodyna.learn.config import load_algo_config
from robodyna.learn.envs import make_env
from robodyna.learn.mbpo import evaluate, format_eval, train


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--robot", default="reacher2")
    ap.add_argument("--minutes", type=float, default=5.0, help="wall-time budget of the MBPO run")
    ap.add_argument("--run-dir", default="runs/demo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--episodes", type=int, default=10, help="evaluation episodes for the final comparison")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(2)
    run = Path(args.run_dir)
    over = [f"seed={args.seed}"] + list(args.overrides)

    mbpo_cfg = load_algo_config("mbpo", args.robot, over)
    mbpo = train(mbpo_cfg, args.robot, run / "mbpo", 10**7, max_seconds=60 * args.minutes)
    steps = mbpo.steps
    sac_cfg = load_algo_config("sac", args.robot, over + [f"eval_every={mbpo_cfg.eval_every}"])
    sac = train(sac_cfg, args.robot, run / "sac", steps)

    env = make_env(args.robot)
    rng = np.random.default_rng(args.seed)
    low, high = env.action_space.low, env.action_space.high
    seed = 987_654
    rows = {
        "random": evaluate(lambda o: rng.uniform(low, high), env, args.episodes, seed),
        f"robodyna SAC @ {steps} steps": evaluate(lambda o: sac.agent.act(o, deterministic=True), env,
                                                  args.episodes, seed),
        f"MBPO @ {steps} steps": evaluate(lambda o: mbpo.agent.act(o, deterministic=True), env, args.episodes, seed),
    }
    print(f"\n{args.robot}: eval over {args.episodes} episodes (same seeds), {steps} real steps, "
          f"{args.minutes:g} min MBPO budget")
    summary = {}
    for name, ev in rows.items():
        print(f"  {name:28s} {format_eval(ev)}")
        summary[name] = {k: v for k, v in ev.items() if k != "trajectories"}
    (run / "demo.json").write_text(json.dumps(summary, indent=2))

    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, res in (("MBPO", mbpo), ("robodyna SAC", sac)):
        ax.plot([e["step"] for e in res.evals], [e["mean_return"] for e in res.evals], marker="o", label=name)
    ax.axhline(rows["random"]["mean_return"], color="k", ls="--", label="random policy")
    ax.set(xlabel="real env steps", ylabel="eval return", title=f"{args.robot} reach")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run / "demo.png", dpi=100)
    print(f"wrote {run / 'demo.png'}, {run / 'demo.json'}; policies: {run / 'mbpo' / 'last.pt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
