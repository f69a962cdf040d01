"""What a loop config's sim-only policy loses on every reality profile, against the IK oracle on the same profile.

For each profile in ``configs/realities/`` (or ``--profiles``): the loop config's stage-1 checkpoint's policy (the
sim-only policy, ``R_sim``) and the scripted IK oracle (:mod:`robodyna.tasks.oracle`, the limit of what is
reachable on that profile within an episode, ``R_oracle``), both scored as the loop scores every policy
(:func:`robodyna.loop.run.evaluate_on_robot`: the config's evaluation targets, the controller's ``robot.yaml``
overrides, every action through the robot's safety filter). A profile "counts" for the loop (issue 15) only where the
oracle keeps what the sim-only policy loses: success within tolerance and mean final distance both better for the
oracle by more than ``--margin``. Prints a markdown table; writes ``--out`` JSON.

    python tools/bench/profile_loss.py --config panda --episodes 200
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from robodyna.loop.config import load_loop_config
from robodyna.loop.run import evaluate_on_robot, export_checkpoint_policy, repo_path
from robodyna.robots.reality import list_realities


def counts(sim: dict[str, float], orc: dict[str, float], margin: float) -> bool:
    """Whether the oracle keeps more than ``margin`` (success rate, and mean final distance in cm) of what the
    sim-only policy loses on a profile: only then can a loop show a recovery there."""
    return (orc["success_rate"] - sim["success_rate"] > margin
            and 100 * (sim["mean_final_distance_m"] - orc["mean_final_distance_m"]) > margin)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="reacher2")
    ap.add_argument("--profiles", nargs="+", default=None, help="default: every shipped profile")
    ap.add_argument("--episodes", type=int, default=None, help="evaluation episodes (default: the config's)")
    ap.add_argument("--margin", type=float, default=0.05, help="success fraction and cm the oracle must keep")
    ap.add_argument("--out", default="runs/bench-profile-loss.json")
    ap.add_argument("--set", dest="overrides", action="append", default=[])
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    over = [*a.overrides, *([f"eval.episodes={a.episodes}"] if a.episodes else [])]
    cfg = load_loop_config(a.config, over)
    if not cfg.stage1.checkpoint:
        raise SystemExit(f"{a.config}: stage1.checkpoint is null; this benchmark scores a shipped sim-only policy")
    from robodyna.tasks.oracle import make_oracle

    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        sim_onnx = Path(tmp) / "sim_only.onnx"
        export_checkpoint_policy(cfg.robot, repo_path(cfg.stage1.checkpoint), sim_onnx)
        for prof in a.profiles or list_realities():
            sim = evaluate_on_robot(cfg, prof, sim_onnx)
            orc = evaluate_on_robot(cfg, prof, lambda env: make_oracle(env, cfg.seed))
            rows.append({"profile": prof, "sim_only": sim, "ik_oracle": orc, "counts": counts(sim, orc, a.margin)})

    def cell(r: dict[str, float]) -> str:
        return (f"{100 * r['mean_final_distance_m']:.2f} cm, {100 * r['median_final_distance_m']:.2f} cm, "
                f"{100 * r['success_rate']:.1f} %")

    print(f"{cfg.robot}, {cfg.eval.episodes} targets (eval.seed {cfg.eval.seed}), behind the safety filter: "
          "mean / median final distance, success")
    print("| profile | sim-only | IK oracle | counts for the loop? |\n|---|---|---|---|")
    for r in rows:
        verdict = "the simulation itself" if r["profile"] == "nominal" else ("yes" if r["counts"] else "no")
        print(f"| {r['profile']} | {cell(r['sim_only'])} | {cell(r['ik_oracle'])} | {verdict} |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"config": a.config, "episodes": cfg.eval.episodes, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
