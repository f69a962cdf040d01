"""Make the small stage-1 checkpoint a loop config may name (``stage1.checkpoint``) from a ``robodyna train`` run.

Keeps what the trainer service warm-starts from — the SAC agent and the dynamics model (weights stored in float16,
optimizer moments and buffers dropped: the service starts fresh optimizers and an empty real buffer) — plus the
identity and config, so ``load_checkpoint`` checks it like any checkpoint. A model-free stage 1 (SAC) gets its
dynamics model fitted on the run's own simulation buffer first (``--add-model PRESET``). The shipped
``configs/loops/checkpoints/reacher2_sim.pt`` was made with::

    robodyna train --robot reacher2 --algo sac --steps 60000 --seed 0 --set sac.num_threads=1 \
        --set eval_every=5000 --set eval_episodes=20 --set sac.critic_layer_norm=false --set sac.init_alpha=1.0 \
        --run-dir RUN
    python tools/loop_checkpoint.py RUN/last.pt configs/loops/checkpoints/reacher2_sim.pt --add-model mbpo \
        --robot reacher2

(the SAC preset's defaults then: no critic LayerNorm, alpha from 1.0; the exact figures are in
``configs/loops/reacher2.yaml``).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from robodyna.learn.checkpoint import read_checkpoint, save_checkpoint


def _half(sd: dict[str, Any]) -> dict[str, Any]:
    return {k: v.half() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in sd.items()}


def strip(st: dict[str, Any], source: str) -> dict[str, Any]:
    """The small copy of checkpoint state ``st``: SAC agent and model in float16, no optimizer moments, no buffers."""
    lr = st["learner"]
    sac = dict(lr["sac"])
    for k in ("actor", "critic", "critic_target"):
        sac[k] = _half(sac[k])
    sac["optim"] = {**sac["optim"], "state": {}}
    model = None
    if lr["model"] is not None:
        model = dict(lr["model"])
        model["net"] = _half(model["net"])
        model["optim"] = {**model["optim"], "state": {}}
    learner = {k: lr[k] for k in ("version", "config", "counters", "start_steps", "k", "run_id")}
    learner.update(sac=sac, model=model, real_buffer=None, model_buffer=None)
    return {"meta": {**st["meta"], "stripped_from": source}, "config": st["config"], "learner": learner}


def add_model(st: dict[str, Any], robot: str, algo: str, overrides: list[str]) -> dict[str, Any]:
    """Checkpoint state ``st`` of a model-free run (SAC agent + its real buffer) with a dynamics model of ``algo``'s
    preset fitted on that buffer. The agent is loaded unchanged (its observation normaliser included); the model is
    fitted once, on simulation data only. The learner config stored with the result is ``algo``'s with the run's
    SAC network shapes, so a warm start (:func:`robodyna.loop.trainer.warm_start_shapes`) builds both networks
    as they were saved."""
    from robodyna.config import to_dict
    from robodyna.learn.buffers import ReplayBuffer
    from robodyna.learn.config import load_algo_config
    from robodyna.learn.envs import episode_steps_for_env, make_env, obs_names_for_env, spec_for_env, task_fns_for_env
    from robodyna.learn.learner import Learner

    if st["learner"].get("real_buffer") is None:
        raise SystemExit("--add-model: the checkpoint holds no real buffer to fit the model on (a stripped one?)")
    env = make_env(robot)
    spec, names, fns, ep = spec_for_env(env), obs_names_for_env(env), task_fns_for_env(env), episode_steps_for_env(env)
    env.close()
    from robodyna.loop.trainer import warm_start_shapes

    sac_shapes = [o for o in warm_start_shapes(st["learner"]["config"]) if o.startswith("sac.")]
    cfg = load_algo_config(algo, robot, [*sac_shapes, *overrides])
    lr = Learner(cfg, spec, names, fns, ep, name=robot)
    if lr.model is None:
        raise SystemExit(f"--add-model {algo}: that preset has no dynamics model")
    lr.agent.load_state_dict(st["learner"]["sac"])
    buf = ReplayBuffer(1, len(names), spec.act_dim)
    buf.load_state_dict(st["learner"]["real_buffer"])
    rep = lr.model.fit(buf.all(), lr.rng)
    print(f"model fitted on {rep.n_train} + {rep.n_holdout} held-out simulation transitions: {rep.epochs} epochs "
          f"({rep.stopped_by}), val mse {min(rep.val_mse):.2e}..{max(rep.val_mse):.2e}")
    return {**st, "meta": {**st["meta"], "model_fitted_by": f"tools/loop_checkpoint.py --add-model {algo}"},
            "learner": {**st["learner"], "model": lr.model.state_dict(), "config": to_dict(lr.cfg)}}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--add-model", metavar="ALGO", help="fit ALGO's dynamics model on SRC's buffer first (SAC runs)")
    ap.add_argument("--robot", help="the robot (with --add-model)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="algo override (with --add-model)")
    a = ap.parse_args()
    if a.add_model and not a.robot:
        ap.error("--add-model needs --robot")
    state = read_checkpoint(a.src)
    if a.add_model:
        state = add_model(state, a.robot, a.add_model, a.overrides)
    save_checkpoint(a.dst, strip(state, str(a.src)))
