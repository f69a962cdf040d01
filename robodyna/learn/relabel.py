"""Goal relabelling for goal-conditioned tasks (hindsight-style, Andrychowicz et al. 2017 "HER", §3.4).

In a reach task the goal is part of the observation but does not affect the arm's dynamics, so any transition
stays physically valid when its goal is replaced -- only the goal-dependent observation columns and the reward
change, and the task's known reward function recomputes the latter. Relabelling a fraction of every SAC batch
with goals drawn from the task's goal distribution lets the critic and actor see many more goals than the few
dozen episodes a robot has actually run, which is what limits early sample efficiency on reaching.

A task supports relabelling when its task functions provide ``sample_goals(n, rng) -> [n, G]``,
``with_goal(obs [N, O], goals [N, G]) -> obs`` and ``achieved_goal(obs) -> [N, G]``; :func:`supports_goal_relabel`
tells. With ``achieved_fraction``
> 0 that share of the relabelled rows gets the goal the transition actually reached (``achieved_goal(next_obs)``,
HER's "final/future" strategy): the only way a few hundred real steps contain many exact hits, which is what
teaches precision.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robodyna.data.batch import Batch
from robodyna.tasks.gym import task_declares


def supports_goal_relabel(task_fns: Any) -> bool:
    """True when ``task_fns`` can sample goals, rewrite them into observations and read the achieved goal."""
    return task_declares(task_fns, ("sample_goals", "with_goal", "achieved_goal"), "has_goals")


def relabel_goals(
    batch: Batch, task_fns: Any, fraction: float, rng: np.random.Generator, achieved_fraction: float = 0.0
) -> Batch:
    """A copy of ``batch`` in which a random ``fraction`` of rows carry a new goal (reward recomputed): a fresh
    sample from the goal distribution, or for ``achieved_fraction`` of them the goal the transition reached."""
    rows = np.flatnonzero(rng.random(len(batch)) < fraction)
    if rows.size == 0:
        return batch
    goals = task_fns.sample_goals(rows.size, rng)
    if achieved_fraction > 0:
        hit = rng.random(rows.size) < achieved_fraction
        if hit.any():
            goals[hit] = task_fns.achieved_goal(batch.next_obs[rows[hit]])
    obs, nxt, rew, term = batch.obs.copy(), batch.next_obs.copy(), batch.reward.copy(), batch.terminated.copy()
    obs[rows] = task_fns.with_goal(obs[rows], goals)
    nxt[rows] = task_fns.with_goal(nxt[rows], goals)
    act = batch.action[rows]
    rew[rows] = task_fns.reward(obs[rows], act, nxt[rows])
    term[rows] = task_fns.terminated(obs[rows], act, nxt[rows])
    return Batch(obs, batch.action, rew, nxt, term, batch.truncated)
