"""The adapted policy chosen by the model against the run's own, on finished loop runs.

For each run directory (``robodyna loop`` or ``tools/bench/sim2real.py`` output) it loads the trainer's final
learner, reads the actor weights of every pushed ONNX version (the exported actor's initializers), builds the
candidates of a ``trainer.final_selection`` mode (:func:`robodyna.loop.final.final_candidates`: ``window``, the
averages of the last k versions; ``model``, every version), scores them in the final model as the trainer does
(:func:`robodyna.loop.final.score_actors`: one episode from real episode starts with fresh goals, the learner's
safety filter, common random numbers), and evaluates the model's choice and the run's adapted policy (its last
version) on the run's "real" robot, behind the safety filter, on the run's evaluation targets. Runs whose adapted
policy was itself chosen this way come out equal. Prints both and their difference, writes JSON.

    tools/bench/final_selection.py RUN_DIR [RUN_DIR ...] [--mode window|model] [--eval-all] --out results.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robodyna.learn.checkpoint import load_checkpoint
from robodyna.learn.config import load_algo_config
from robodyna.learn.envs import episode_steps_for_env, make_env, obs_names_for_env, spec_for_env, task_fns_for_env
from robodyna.learn.learner import Learner
from robodyna.loop.config import load_loop_config
from robodyna.loop.final import (
    actor_restored,
    episode_starts,
    final_candidates,
    onnx_actor_state,
    score_actors,
)
from robodyna.loop.run import evaluate_on_robot
from robodyna.loop.service_config import warm_start_shapes

log = logging.getLogger("final_selection")


def study(run: Path, mode: str, n_starts: int, eval_all: bool) -> dict[str, Any]:
    cfg = load_loop_config(run / "config.yaml")
    env = make_env(cfg.robot)
    try:
        spec, names, fns = spec_for_env(env), obs_names_for_env(env), task_fns_for_env(env)
        T = episode_steps_for_env(env)
    finally:
        env.close()
    st = load_checkpoint(run / "trainer" / "learner.pt", spec, names)["learner"]
    algo = load_algo_config(cfg.trainer.algo, cfg.robot,
                            [*warm_start_shapes(st["config"]), *cfg.trainer.algo_overrides])
    lr = Learner(algo, spec, names, fns, T)
    lr.load_state_dict(st)
    if lr.model is None:
        raise SystemExit(f"{run}: the learner has no model")
    pols = sorted((run / "trainer" / "policies").glob("policy_v*.onnx"), key=lambda p: int(p.stem.split("_v")[1]))
    last = pols[-1]  # the run's adapted policy; the versions before it are what its trainer pushed
    template = lr.agent.actor.state_dict()
    versions = [(f"v{p.stem.split('_v')[1]}", onnx_actor_state(p, template)) for p in pols[:-1]]
    cands = final_candidates(mode, versions, [], 0)
    with tempfile.TemporaryDirectory() as tmp:  # the candidates exported for the robot
        d = Path(tmp)
        starts = episode_starts(run / "trainer" / "store", len(names))
        scores = score_actors(lr, fns, [s for _, s in cands], starts, n_starts, T)
        best = int(np.argmax(scores))

        def real(state: dict[str, torch.Tensor], name: str) -> dict[str, float]:
            with actor_restored(lr):
                lr.agent.actor.load_state_dict(state)
                return evaluate_on_robot(cfg, cfg.reality, lr.export(d / f"{name}.onnx"))

        rows: list[dict[str, Any]] = [{"candidate": n, "model_return": float(s),
                                       **({"real": real(c, f"c{i}")} if eval_all or i == best else {})}
                                      for i, ((n, c), s) in enumerate(zip(cands, scores))]
    last_eval = evaluate_on_robot(cfg, cfg.reality, last)
    chosen = rows[best]["real"]
    log.info("%s: chosen %s %.2f cm %.1f %% | adapted %s %.2f cm %.1f %% | success %+.1f points",
             run, cands[best][0], 100 * chosen["mean_final_distance_m"], 100 * chosen["success_rate"],
             last.stem, 100 * last_eval["mean_final_distance_m"], 100 * last_eval["success_rate"],
             100 * (chosen["success_rate"] - last_eval["success_rate"]))
    return {"run": str(run), "mode": mode, "candidates": rows, "chosen": cands[best][0], "chosen_eval": chosen,
            "last": last.stem, "last_eval": last_eval}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--mode", choices=("window", "model"), default="window")
    ap.add_argument("--starts", type=int, default=200)
    ap.add_argument("--eval-all", action="store_true", help="evaluate every candidate on the robot, not only the "
                                                             "model's choice")
    ap.add_argument("--out", type=Path, default=Path("final_selection.json"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    res = [study(r, a.mode, a.starts, a.eval_all) for r in a.runs]
    d = [r["chosen_eval"]["success_rate"] - r["last_eval"]["success_rate"] for r in res]
    dd = [r["chosen_eval"]["mean_final_distance_m"] - r["last_eval"]["mean_final_distance_m"] for r in res]
    log.info("%d runs: chosen - adapted, success %+.1f points (mean), final distance %+.2f cm (mean)",
             len(res), 100 * float(np.mean(d)), 100 * float(np.mean(dd)))
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
