"""Make the small stage-1 checkpoint a loop config may name (``stage1.checkpoint``) from a ``robodyna train`` run.

Keeps what the trainer service warm-starts from — the SAC agent and the dynamics model (weights stored in float16,
optimizer moments and buffers dropped: the service starts fresh optimizers and an empty real buffer) — plus the
identity and config, so ``load_checkpoint`` checks it like any checkpoint. The shipped
``configs/loops/checkpoints/reacher2_sim.pt`` was made with::

    robodyna train --robot reacher2 --algo mbpo --steps 4000 --seed 0 --set sac.num_threads=1 --run-dir RUN
    robodyna train --robot reacher2 --steps 10000 --run-dir RUN --resume      # continued to 10000 steps
    python tools/loop_checkpoint.py RUN/last.pt configs/loops/checkpoints/reacher2_sim.pt

(its policy, 30 episodes: 2.54 cm final distance, 23% within the 1.5 cm tolerance in nominal simulation).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch

from robodyna.learn.checkpoint import read_checkpoint, save_checkpoint


def _half(sd: dict[str, Any]) -> dict[str, Any]:
    return {k: v.half() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in sd.items()}


def strip(src: str, dst: str) -> None:
    st = read_checkpoint(src)
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
    save_checkpoint(dst, {"meta": {**st["meta"], "stripped_from": str(src)}, "config": st["config"],
                          "learner": learner})


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("dst")
    a = ap.parse_args()
    strip(a.src, a.dst)
