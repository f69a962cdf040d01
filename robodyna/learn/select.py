"""Choose among policies by their return in the learned model (model-based policy validation).

SAC's iterates do not improve monotonically: on laggy reacher2 one fine-tuning run's real success went 45 % →
53 % → 29 % → 40 % over its pushed versions; the final model's predicted return of the same versions rose and fell
with it, and its predicted final distance ranked them as the robot did (rank correlation 0.7-0.8). Scoring a
candidate policy in the ensemble before it is deployed is the policy validation of ME-TRPO (Kurutach et al. 2018,
§4.3: stop when the policy no longer improves on the models); the trainer uses it to keep a round's policy the
model predicts worse than the deployed one off the robot, and optionally to choose the final adapted policy.

The scores are pure functions of the model, the start states, the policies and an explicit seed: every policy is
rolled out from the same starts with the same random numbers (common random numbers), so the differences between
scores are the policies' and not the draws'.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from robodyna.data.batch import Batch
from robodyna.learn.rollouts import DynamicsModel, branched_rollout

#: ``policy(obs [N, O]) -> action [N, A]``, deterministic.
Policy = Callable[[np.ndarray], np.ndarray]


def selection_starts(
    episode_starts: np.ndarray, task_fns: Any, n: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` start states for scoring: real episode starts (cycled), each with a fresh goal from the task's goal
    distribution when it has one (the same knowledge goal relabelling uses), else as recorded."""
    s = np.asarray(episode_starts, np.float32)
    if s.ndim != 2 or len(s) == 0:
        raise ValueError(f"selection needs real episode starts [N, obs_dim], got shape {s.shape}")
    if not np.isfinite(s).all():
        raise ValueError("selection: non-finite values in the real episode starts")
    out = s[np.arange(n) % len(s)]
    if getattr(task_fns, "has_goals", False):
        out = task_fns.with_goal(out, task_fns.sample_goals(n, rng))
    return np.asarray(out, np.float32)


#: What a policy is scored by in the model: ``return``, the mean predicted return over the horizon; ``final_distance``
#: (reach tasks, ``task_fns.distance``), minus the mean predicted end-effector-to-target distance after the last
#: step: the precision reach is scored by, which the return, summed over the whole approach, hides.
SCORES = ("return", "final_distance")


def task_scores(task_fns: Any) -> tuple[str, ...]:
    """The :data:`SCORES` a task supports: ``final_distance`` needs ``task_fns.distance``."""
    return tuple(k for k in SCORES if k == "return" or getattr(task_fns, "distance", None) is not None)


def model_scores(
    model: DynamicsModel,
    task_fns: Any,
    starts: np.ndarray,
    policies: Sequence[Policy],
    horizon: int,
    seed: int,
    reps: int = 2,
    constrain: bool = True,
) -> dict[str, np.ndarray]:
    """Every :data:`SCORES` entry the task supports (``{score: [len(policies)]}``, higher better) from the same
    model rollouts: each repetition ``r`` draws the model's members and noise from ``seed + r`` for every policy
    alike. ``final_distance`` leaves out the starts whose predicted last state is NaN (or that stopped before it);
    with none left, or an infinite distance, it is -inf."""
    if horizon < 1 or reps < 1:
        raise ValueError(f"horizon and reps must be >= 1, got {horizon}, {reps}")
    if not policies:
        raise ValueError("selection needs at least one policy")
    n = len(starts)
    z = np.zeros(n, np.float32)
    act_dim = int(np.asarray(policies[0](starts[:1])).shape[-1])
    start = Batch.create(starts, np.zeros((n, act_dim), np.float32), z, starts, z.astype(bool), z.astype(bool))
    out = {k: np.zeros(len(policies)) for k in task_scores(task_fns)}
    for i, pol in enumerate(policies):

        def act(obs: np.ndarray, rng: np.random.Generator, p: Policy = pol) -> np.ndarray:
            return p(obs)

        for r in range(reps):
            ro = branched_rollout(model, start, horizon, task_fns, np.random.default_rng(seed + r), policy=act,
                                  constrain=constrain)
            out["return"][i] += float(ro.reward.sum()) / n / reps
            if "final_distance" in out:
                d = np.asarray(task_fns.distance(ro.next_obs[ro.truncated]), np.float64)
                d = d[~np.isnan(d)]
                out["final_distance"][i] -= float(d.mean()) / reps if len(d) else np.inf
    return out

