"""Sim-to-real benchmark: how much of the sim-to-real gap the loop recovers, against two baselines.

For each reality profile and seed, on the "real" robot (the profile), all at the same real-step budget:

- ``R_sim``: the sim-only policy (the loop config's stage-1 checkpoint);
- ``R_loop``: after ``robodyna loop`` (drift-driven refreshes);
- ``R_fixed``: the loop with a fixed refresh schedule (``trainer.refresh.mode=fixed``);
- ``R_sac``: SAC fine-tuning on real data only (``trainer.algo=sac``: the same service, no model);
- ``R_oracle``: a policy trained directly on the "real" robot with a large budget (``--oracle-steps``, or an
  existing checkpoint with ``--oracle-checkpoint``), or the scripted IK oracle (``--oracle-checkpoint ik``:
  :mod:`robodyna.tasks.oracle`, IK + joint control with the engine's own model, run on the profile).

Gap recovered = (R_x − R_sim) / (R_oracle − R_sim), for success rate and for final distance. Every run is a
``LoopRun`` in ``--out/PROFILE/seedN/VARIANT``; results go to ``--out/results.json`` and one line per run is
printed; ``tools/bench/paired.py`` compares two variants seed by seed across results files. Expensive:
``--profiles weak --seeds 1 --variants loop`` is the smallest useful call.

With a dynamics change injected mid-run (``--set inject.after_real_steps=N --set inject.reality=X``: the "real"
robot is the profile for its first N real steps, then X), every policy and the oracle are scored on X, the robot
the run ends on (the reality the run's own evaluation used: a budget that ends before N scores on the profile);
the gap is the one the change opened, and the loop has the steps after N to close it.

Seed ``s`` seeds the learner (``seed``) and the "real" robot's episodes (``controller.seed`` = the config's + ``s``:
the targets it is given), so seeds are independent runs; the variants of one seed see the same targets.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

from robodyna.loop.config import LoopConfig, load_loop_config
from robodyna.loop.run import LoopRun, evaluate_on_robot

VARIANTS = {
    "loop": [],
    "fixed": ["trainer.refresh.mode=fixed"],
    "sac": ["trainer.algo=sac"],
}


def gap(r_x: float, r_sim: float, r_oracle: float) -> float:
    d = r_oracle - r_sim
    return float("nan") if abs(d) < 1e-12 else (r_x - r_sim) / d


def oracle(cfg: LoopConfig, profile: str, seed: int, steps: int, out: Path, ckpt: str | None) -> dict[str, float]:
    """The oracle on ``profile`` as the loop scores every policy (:func:`evaluate_on_robot`: the loop config's
    episodes and seed, behind the robot's safety filter)."""
    from robodyna.learn.config import load_algo_config
    from robodyna.learn.mbpo import train

    if ckpt is None:
        algo = load_algo_config(cfg.stage1.algo, cfg.robot, [f"seed={seed}", "sac.num_threads=1"])
        res = train(algo, cfg.robot, out, steps, reality=profile, resume=(out / "last.pt").exists(),
                    progress=False, tensorboard=False, export_to=out / "oracle.onnx")
        path = out / "oracle.onnx"
        del res
    else:
        path = Path(ckpt)
    if ckpt == "ik":
        from robodyna.tasks.oracle import make_oracle

        return evaluate_on_robot(cfg, profile, lambda env: make_oracle(env, seed))
    return evaluate_on_robot(cfg, profile, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="reacher2")
    ap.add_argument("--profiles", nargs="+", default=["weak", "heavy", "laggy"])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="seeds first-seed .. first-seed + seeds - 1")
    ap.add_argument("--budget", type=int, default=2000, help="real steps per run")
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--oracle-steps", type=int, default=0, help="train an oracle on the profile (0: skip)")
    ap.add_argument("--oracle-checkpoint", default=None,
                    help="an ONNX oracle policy for the profile instead, or `ik`: the scripted IK oracle")
    ap.add_argument("--out", default="runs/bench-sim2real")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = Path(a.out)
    results: list[dict[str, Any]] = []
    for prof in a.profiles:
        for seed in range(a.first_seed, a.first_seed + a.seeds):
            row: dict[str, Any] = {"profile": prof, "seed": seed, "budget": a.budget}
            base = load_loop_config(a.config, a.overrides)
            robot_seed = base.controller.seed + seed
            for v in a.variants:
                rd = out / prof / f"seed{seed}" / v
                ov = [*a.overrides, *VARIANTS[v], f"reality={prof}", f"seed={seed}", f"controller.seed={robot_seed}",
                      f"trainer.real_step_budget={a.budget}"]
                cfg = load_loop_config(a.config, ov)
                if (rd / "config.yaml").exists():  # resumed; a finished run only evaluates again
                    run = LoopRun.resume(rd)
                    # evaluation is not part of the run: it is scored on the targets asked for now (``--set
                    # eval.episodes=200`` re-scores finished runs on more targets without training them again)
                    run.cfg = dataclasses.replace(run.cfg, eval=cfg.eval)
                else:
                    run = LoopRun.create(cfg, rd)
                res = run.run()
                row["sim"] = res["eval"]["sim_only"]
                row["scored_on"] = res["eval"]["reality"]  # the robot the run ended on (after any injected change)
                row[v] = res["eval"]["adapted"] | {"real_steps": res["summary"]["real_steps"]}
                print(f"{prof} seed {seed} {v:6s}: sim-only {row['sim']['mean_final_distance_m'] * 100:.2f} cm "
                      f"{row['sim'].get('success_rate', 0) * 100:.0f}% -> {row[v]['mean_final_distance_m'] * 100:.2f}"
                      f" cm {row[v].get('success_rate', 0) * 100:.0f}% ({row[v]['real_steps']} real steps)",
                      flush=True)
            if a.oracle_steps or a.oracle_checkpoint:
                row["oracle"] = oracle(base, row["scored_on"], seed, a.oracle_steps,
                                       out / prof / f"seed{seed}" / "oracle", a.oracle_checkpoint)
                for v in a.variants:
                    for k in ("mean_final_distance_m", "success_rate"):
                        row[v][f"gap_recovered_{k}"] = gap(row[v][k], row["sim"][k], row["oracle"][k])
                print(f"{prof} seed {seed} oracle: {row['oracle']}", flush=True)
            results.append(row)
            (out / "results.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
