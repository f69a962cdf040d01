"""The adapted policy chosen by the model against the run's own, on finished loop runs.

For each run directory (``robodyna loop`` or ``tools/bench/sim2real.py`` output) it loads the trainer's final
learner, reads the actor weights of every pushed ONNX version (the exported actor's initializers), builds the
candidates of a ``trainer.final_selection`` mode (:func:`robodyna.loop.final.final_candidates`: ``window``, the
averages of the last k versions; ``model``, every version), scores them in the final model as the trainer does
(:func:`robodyna.loop.final.score_actors`: one episode from real episode starts with fresh goals, the learner's
safety filter, common random numbers) by every score the task has (``robodyna.learn.select.SCORES``: the
predicted return; on reach, the predicted final distance), and evaluates each score's choice and the run's adapted
policy (its last version) on the run's "real" robot, behind the safety filter, on the run's evaluation targets.
A run whose adapted policy was itself chosen by a score comes out equal on that score. Prints each choice against the
adapted policy (mean difference over the runs, with its standard error), writes JSON.

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
from robodyna.learn.select import SCORES
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


def se(x: list[float]) -> float:
    """Standard error of the mean (0 for fewer than two values)."""
    return float(np.std(x, ddof=1) / np.sqrt(len(x))) if len(x) > 1 else 0.0


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
        best = {k: int(np.argmax(v)) for k, v in scores.items()}

        def real(state: dict[str, torch.Tensor], name: str) -> dict[str, float]:
            with actor_restored(lr):
                lr.agent.actor.load_state_dict(state)
                return evaluate_on_robot(cfg, cfg.reality, lr.export(d / f"{name}.onnx"))

        picked = set(best.values())
        rows: list[dict[str, Any]] = [{"candidate": n, **{f"model_{k}": float(v[i]) for k, v in scores.items()},
                                       **({"real": real(c, f"c{i}")} if eval_all or i in picked else {})}
                                      for i, (n, c) in enumerate(cands)]
    last_eval = evaluate_on_robot(cfg, cfg.reality, last)
    out: dict[str, Any] = {"run": str(run), "mode": mode, "candidates": rows, "last": last.stem,
                           "last_eval": last_eval}
    for k, i in best.items():
        ev = rows[i]["real"]
        out[k] = {"chosen": cands[i][0], "eval": ev}
        log.info("%s: by %s: %s %.2f cm %.1f %% | adapted %s %.2f cm %.1f %%", run, k, cands[i][0],
                 100 * ev["mean_final_distance_m"], 100 * ev["success_rate"], last.stem,
                 100 * last_eval["mean_final_distance_m"], 100 * last_eval["success_rate"])
    return out


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
    for k in SCORES:
        if all(k in r for r in res):
            d = [r[k]["eval"]["success_rate"] - r["last_eval"]["success_rate"] for r in res]
            dd = [r[k]["eval"]["mean_final_distance_m"] - r["last_eval"]["mean_final_distance_m"] for r in res]
            log.info("%d runs, chosen by %s - adapted: success %+.1f points (mean, SE %.1f), final distance %+.3f cm "
                     "(SE %.3f)", len(res), k, 100 * float(np.mean(d)), 100 * se(d), 100 * float(np.mean(dd)),
                     100 * se(dd))
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
