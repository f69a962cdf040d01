"""The adapted policy a loop ends with, chosen by the learned model among the versions it pushed.

``trainer.final_selection: model`` (robodyna/loop/publish.py): the candidates are the actor weights of the
simulation policy and of every pushed version (``policies/actor_vN.pt``, kept as they are pushed, so a restarted
trainer still has them) plus the averaged actor; each is rolled out for one episode in the final model from real
episode starts with fresh goals (:mod:`robodyna.learn.select`), and the one with the highest predicted return is
pushed as the next version. ``final_selection: window`` scores the averages of the last k pushed versions
instead (:func:`window_candidates`): how many versions to average, chosen by the model.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robodyna.learn.learner import Learner
from robodyna.learn.select import model_scores, selection_starts


def averaged_state(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The element-wise mean of same-shaped state dicts (a copy; one dict: a detached copy of it)."""
    return {k: torch.stack([st[k].detach().float() for st in states]).mean(0).to(states[0][k].dtype)
            for k in states[0]}


def stepped_state(start: dict[str, torch.Tensor], end: dict[str, torch.Tensor], frac: float) -> dict[str, torch.Tensor]:
    """``start + frac * (end - start)`` element-wise (a copy): the weights ``frac`` of the way from ``start`` to
    ``end``, a shorter step in the direction SAC took (a backtracking line search, as in TRPO: Schulman et al. 2015,
    Appendix C)."""
    return {k: (start[k].detach().float() + frac * (end[k].detach().float() - start[k].detach().float()))
            .to(start[k].dtype) for k in start}


@contextmanager
def actor_restored(learner: Learner) -> Iterator[dict[str, torch.Tensor]]:
    """Yields a copy of the learner's actor weights and puts them back on exit: other weights (candidates, an
    average) can be loaded inside to score or export them while training goes on from the last iterate."""
    actor = learner.agent.actor
    latest = averaged_state([actor.state_dict()])
    try:
        yield latest
    finally:
        actor.load_state_dict(latest)


def actor_candidates(policies_dir: Path) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """``[(vN, actor state)]`` of every ``actor_vN.pt`` in ``policies_dir``, by version."""
    files = sorted(Path(policies_dir).glob("actor_v*.pt"), key=lambda p: int(p.stem[len("actor_v"):]))
    return [(f"v{f.stem[len('actor_v'):]}", torch.load(f, weights_only=True)) for f in files]


def window_candidates(
    versions: list[tuple[str, dict[str, torch.Tensor]]],
) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """``trainer.final_selection: window``: the averages of the last k of ``versions`` (``[(vN, actor state)]`` in
    push order), k = 1 (the last one as is) to all of them, named by the versions they average."""
    if not versions:
        return []
    last = versions[-1][0]
    return [(last if k == 1 else f"average of {versions[-k][0]}-{last}",
             averaged_state([st for _, st in versions[-k:]])) for k in range(1, len(versions) + 1)]


def final_candidates(
    mode: str, versions: list[tuple[str, dict[str, torch.Tensor]]], recent: list[dict[str, torch.Tensor]],
    version: int,
) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """The adapted policy's candidates from every pushed version (``[(vN, actor state)]`` in push order, e.g.
    :func:`actor_candidates`): ``model``: those versions plus the average of the ``recent`` actors (the last of them
    pushed as ``version``); ``window``: :func:`window_candidates` of them."""
    if mode == "window":
        return window_candidates(versions)
    if len(recent) >= 2:
        return [*versions, (f"average of v{version - len(recent) + 1}-v{version}", averaged_state(recent))]
    return list(versions)


def opening_rows(episode_index: np.ndarray, previous: int | None = None) -> np.ndarray:
    """Mask of the rows that open an episode: their episode index differs from the row before (``previous``: the
    index of the last row that came before these, None when none did)."""
    ep = np.asarray(episode_index)
    if len(ep) == 0:
        return np.zeros(0, bool)
    return np.r_[previous is None or ep[0] != previous, ep[1:] != ep[:-1]]


def finite_starts(parts: list[np.ndarray], obs_dim: int) -> np.ndarray:
    """The concatenated episode starts without the rows holding a NaN or inf."""
    obs = np.concatenate(parts) if parts else np.empty((0, obs_dim), np.float32)
    return obs[np.isfinite(obs).all(axis=1)]


def episode_starts(store_root: Path, obs_dim: int) -> np.ndarray:
    """The first observation of every real episode in a trainer's store (every robot's; finite rows only)."""
    from robodyna.data.store import EpisodeStore

    out = []
    root = Path(store_root)
    for d in sorted(p for p in root.iterdir() if (p / "meta.json").is_file()) if root.is_dir() else []:
        tr = EpisodeStore(d).read(check_finite=False)
        if len(tr):
            out.append(tr.batch.obs[opening_rows(tr.episode_index)])
    return finite_starts(out, obs_dim)


def onnx_actor_state(path: Path, template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The actor weights an exported policy holds (its initializers ``actor.<name>``), shaped as ``template``
    (the learner's actor state); a file of another network is refused naming the weight that does not fit."""
    import onnx
    from onnx import numpy_helper

    inits = {i.name: i for i in onnx.load(str(path)).graph.initializer}
    out = {}
    for k, v in template.items():
        init = inits.get(f"actor.{k}")
        if init is None or tuple(init.dims) != tuple(v.shape):
            raise ValueError(f"{path}: no actor weight actor.{k} of shape {tuple(v.shape)} (another network?)")
        out[k] = torch.as_tensor(numpy_helper.to_array(init).copy(), dtype=v.dtype)
    return out


def score_actors(
    learner: Learner, task_fns: Any, states: list[dict[str, torch.Tensor]], starts: np.ndarray, n_starts: int,
    horizon: int,
) -> dict[str, np.ndarray]:
    """Model-predicted scores of each actor state (:func:`robodyna.learn.select.model_scores`: the return, and on
    reach the final distance, from the same rollouts; the learner's own policy filter applied, common random numbers
    seeded by the learner's real-step count). The learner's actor is left as it was."""
    if learner.model is None:
        raise ValueError("scoring policies in the model needs a learner with a dynamics model")
    rng = np.random.default_rng(learner.n_real)
    x0 = selection_starts(starts, task_fns, n_starts, rng)
    actor = learner.agent.actor

    def policy(state: dict[str, torch.Tensor]) -> Any:
        def act(obs: np.ndarray) -> np.ndarray:
            actor.load_state_dict(state)
            return learner.agent.act(obs, deterministic=True)
        return act

    with actor_restored(learner):
        return model_scores(learner.model, task_fns, x0, [policy(st) for st in states], horizon,
                             seed=int(rng.integers(2**31 - 1)), constrain=learner.cfg.rollout_constraints)
