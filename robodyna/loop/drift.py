"""Drift signals that need the learned model: policies rolled out in it from recent real episode starts.

The pure signal functions are in :mod:`robodyna.loop.refresh`; these produce their inputs. Each policy is rolled
out with the same random numbers (seeded by the caller), so two policies differ only by what they do.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from robodyna.data.batch import Batch
from robodyna.learn.learner import Learner
from robodyna.learn.rollouts import branched_rollout
from robodyna.loop.final import actor_restored
from robodyna.loop.refresh import policy_shift, return_gap, state_novelty


def policy_rollouts(
    learner: Learner, task_fns: Any, actors: list[dict[str, torch.Tensor] | None], start: Batch, horizon: int,
    seed: int,
) -> list[Batch]:
    """One model rollout of ``horizon`` steps from ``start`` per actor state (None: the learner's current actor),
    deterministic actions, common random numbers; the learner's actor is left as it was."""
    if learner.model is None:
        raise ValueError("policy rollouts need a learner with a dynamics model")
    model, out = learner.model, []
    with actor_restored(learner):
        for st in actors:
            if st is not None:
                learner.agent.actor.load_state_dict(st)
            out.append(branched_rollout(model, start, horizon, task_fns, np.random.default_rng(seed),
                                        constrain=learner.cfg.rollout_constraints,
                                        policy=lambda o, g: learner.agent.act(o, deterministic=True)))
    return out


def real_states(learner: Learner, max_rows: int, seed: int) -> np.ndarray:
    """Up to ``max_rows`` of the real buffer's next states (a seeded sample when it holds more)."""
    obs = learner.real.all().next_obs
    if len(obs) > max_rows:
        obs = obs[np.sort(np.random.default_rng(seed).choice(len(obs), max_rows, replace=False))]
    return np.asarray(obs)


def normalised_actions(learner: Learner, actor: dict[str, torch.Tensor] | None, obs: np.ndarray) -> np.ndarray:
    """The deterministic actions of an actor state (None: the learner's current actor) for raw observations
    ``[N, O]``, before scaling to the robot's limits and before any action filter (each dimension in [-1, 1])."""
    with actor_restored(learner) if actor is not None else nullcontext(), torch.no_grad():
        if actor is not None:  # the current actor needs no copy put back
            learner.agent.actor.load_state_dict(actor)
        mean, _ = learner.agent.actor(torch.as_tensor(np.atleast_2d(obs), dtype=torch.float32))
        return torch.tanh(mean).numpy()


def actor_shift(learner: Learner, deployed: dict[str, torch.Tensor] | None, max_rows: int = 1024) -> float:
    """:func:`~robodyna.loop.refresh.policy_shift` of the current actor against ``deployed`` on up to
    ``max_rows`` real states (NaN: no deployed actor or no real row)."""
    if deployed is None or len(learner.real) == 0:
        return float("nan")
    obs = real_states(learner, max_rows, learner.n_real)
    return policy_shift(normalised_actions(learner, None, obs), normalised_actions(learner, deployed, obs))


@dataclass
class RealEpisode:
    """A complete real episode as the trainer scores it: the policy version that ran it, its return, final
    distance and success, its first row, its length."""

    version: int
    ret: float
    final_distance_m: float
    success: float
    start: Batch
    steps: int


def recent_starts(episodes: list[RealEpisode], n: int = 10) -> tuple[list[RealEpisode], Batch] | None:
    """The newest policy's episodes among the last ``n`` and their first rows (None: no episode yet)."""
    if not episodes:
        return None
    v = episodes[-1].version
    eps = [e for e in episodes[-n:] if e.version == v]
    return eps, Batch.concat([e.start for e in eps])


def rollout_signals(
    learner: Learner, task_fns: Any, episodes: list[RealEpisode], horizon: int,
    deployed: dict[str, torch.Tensor] | None,
) -> dict[str, float]:
    """The signals that roll policies out in the model, from the newest policy's real episode starts (one rollout
    of the current actor serves both): ``return_gap`` (:func:`~robodyna.loop.refresh.return_gap`, the current
    actor's model return against those episodes' real return) and ``state_novelty``
    (:func:`~robodyna.loop.refresh.state_novelty`, the current actor against the ``deployed`` one). NaN: no fitted
    model or no episode (and for the novelty, no deployed actor)."""
    nan = float("nan")
    rec = recent_starts(episodes)
    if rec is None or learner.model is None or not learner.model.fitted:
        return {"return_gap": nan, "state_novelty": nan}
    eps, start = rec
    actors: list[dict[str, torch.Tensor] | None] = [None] if deployed is None else [None, deployed]
    ro = policy_rollouts(learner, task_fns, actors, start, horizon, learner.n_real)
    gap = return_gap(float(ro[0].reward.sum()) / len(eps), float(np.mean([e.ret for e in eps])))
    novelty = nan if deployed is None else state_novelty(ro[0].next_obs, ro[1].next_obs,
                                                         real_states(learner, 4096, learner.n_real))
    return {"return_gap": gap, "state_novelty": novelty}
