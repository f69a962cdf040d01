"""Final-policy selection by the model against the averaged policy, on finished loop runs.

For each run directory (``robodyna loop`` or ``tools/bench/sim2real.py`` output) it loads the trainer's final
learner, scores every pushed ONNX version (behind the learner's safety filter) in the final model as
``trainer.final_selection: model`` does (:mod:`robodyna.learn.select`: one episode from real episode starts with
fresh goals, common random numbers), and evaluates the model's choice and the run's adapted policy (its last
version) on the run's "real" robot, behind the safety filter, on the run's evaluation targets. Prints both and
their difference, writes JSON.

    tools/bench/final_selection.py RUN_DIR [RUN_DIR ...] --out results.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from robodyna.learn.action_filter import filter_numpy
from robodyna.learn.checkpoint import load_checkpoint
from robodyna.learn.config import load_algo_config
from robodyna.learn.envs import episode_steps_for_env, make_env, obs_names_for_env, spec_for_env, task_fns_for_env
from robodyna.learn.learner import Learner
from robodyna.learn.select import model_returns, selection_starts
from robodyna.loop.config import load_loop_config
from robodyna.loop.final import episode_starts
from robodyna.loop.run import evaluate_on_robot
from robodyna.loop.trainer import warm_start_shapes

log = logging.getLogger("final_selection")


def onnx_batch_policy(path: Path) -> Any:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    return lambda obs: np.asarray(sess.run(None, {name: np.asarray(obs, np.float32)})[0])


def study(run: Path, n_starts: int) -> dict[str, Any]:
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
    rng = np.random.default_rng(lr.n_real)
    x0 = selection_starts(episode_starts(run / "trainer" / "store", len(names)), fns, n_starts, rng)
    filt = lr.agent.action_filter  # the robot filters every action (policies exported without it, e.g. v1)

    def filtered(path: Path) -> Any:
        pol = onnx_batch_policy(path)
        return pol if filt is None else (lambda obs: filter_numpy(filt, obs, pol(obs)))

    scores = model_returns(lr.model, fns, x0, [filtered(p) for p in pols], T,
                           seed=int(rng.integers(2**31 - 1)), constrain=lr.cfg.rollout_constraints)
    best = int(np.argmax(scores))
    chosen = evaluate_on_robot(cfg, cfg.reality, pols[best])
    last = evaluate_on_robot(cfg, cfg.reality, pols[-1])
    out = {"run": str(run), "versions": [p.stem for p in pols], "model_returns": scores.tolist(),
           "chosen": pols[best].stem, "chosen_eval": chosen, "last": pols[-1].stem, "last_eval": last}
    log.info("%s: chosen %s %.2f cm %.1f %% | last %s %.2f cm %.1f %% | success +%.1f points",
             run, pols[best].stem, 100 * chosen["mean_final_distance_m"], 100 * chosen["success_rate"],
             pols[-1].stem, 100 * last["mean_final_distance_m"], 100 * last["success_rate"],
             100 * (chosen["success_rate"] - last["success_rate"]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--starts", type=int, default=200)
    ap.add_argument("--out", type=Path, default=Path("final_selection.json"))
    a = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(1)
    res = [study(r, a.starts) for r in a.runs]
    d = [r["chosen_eval"]["success_rate"] - r["last_eval"]["success_rate"] for r in res]
    dd = [r["chosen_eval"]["mean_final_distance_m"] - r["last_eval"]["mean_final_distance_m"] for r in res]
    log.info("%d runs: chosen - last, success %+.1f points (mean), final distance %+.2f cm (mean)",
             len(res), 100 * float(np.mean(d)), 100 * float(np.mean(dd)))
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
