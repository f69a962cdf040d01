"""Branched model rollouts and model-error measurement (MBPO, Janner et al. 2019 §4, Alg. 2).

Pure functions: explicit ``np.random.Generator``, return :class:`~robodyna.data.batch.Batch` es; callers store
them. A rollout starts from real buffer states, takes ``k`` model steps (one random elite per row per step,
rows grouped by member), scores them with the task's reward/termination functions (or the learned reward) and
stops rows that terminate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from robodyna.data.batch import Batch
from robodyna.learn.buffers import ReplayBuffer
from robodyna.learn.envs import has_reward_fn

PolicyFn = Callable[[np.ndarray, np.random.Generator], np.ndarray]


class DynamicsModel(Protocol):
    """What rollouts need of a model: :class:`~robodyna.learn.ensemble.DynamicsEnsemble` or
    :class:`~robodyna.learn.coords.CoordinateModel`."""

    def step_with_std(
        self, obs: np.ndarray, action: np.ndarray, rng: np.random.Generator, members: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...


def branched_rollout(
    model: DynamicsModel,
    start: Batch,
    k: int,
    task_fns: Any,
    rng: np.random.Generator,
    policy: PolicyFn | None = None,
    buffer_actions: bool = False,
    obs_bounds: tuple[np.ndarray, np.ndarray] | None = None,
    stats: dict[str, Any] | None = None,
    uncertainty_penalty: float = 0.0,
    max_std: float | None = None,
    constrain: bool = True,
) -> Batch:
    """Roll ``start.obs`` out ``k`` steps through ``model``.

    Actions come from ``policy(obs, rng)``; with ``buffer_actions`` the first step replays ``start.action``
    (classic Dyna, Sutton 1991). Rows that terminate (or go non-finite) are not continued. With ``obs_bounds``
    (low, high), predictions leaving that box are dropped and not continued: a guard against the critic
    bootstrapping from states the model invents far outside the real data. ``uncertainty_penalty`` λ > 0 scores
    every model transition ``r − λ‖σ(s, a)‖`` (MOPO, Yu et al. 2020 §4.3; ``σ`` the predicted next-state std of the
    member that made it): the policy is steered away from where the model knows it is unsure, such as joint limits.
    With ``constrain`` (and a task that knows them, ``task_fns.constrain``) every prediction is projected onto
    the states the robot can reach — joint limits and kinematics from its model — before it is scored.
    A task with an action history in its observation (``task_fns.action_history``) gets those columns set by
    ``task_fns.push_action``, exactly.
    ``max_std`` drops (and stops) rows whose ``‖σ‖`` exceeds it: only confident predictions are kept (the masking
    of M2AC, Pan et al. 2020 §4, with an absolute threshold); dropped rows count as ``uncertain`` in ``stats``.
    ``stats`` (optional) receives ``members`` (per-step member arrays), ``alive`` (rows alive after each step),
    ``out_of_bounds`` (dropped) and ``mean_std`` (mean ``‖σ‖`` over all model transitions).
    """
    if k < 1:
        raise ValueError(f"rollout length k must be >= 1, got {k}")
    if policy is None and (not buffer_actions or k > 1):
        raise ValueError("a policy is needed for rollouts longer than 1 step or without buffer actions")
    learned_reward = not has_reward_fn(task_fns)
    constrain = constrain and hasattr(task_fns, "constrain")
    history = bool(getattr(task_fns, "action_history", 0))
    obs = start.obs
    out: list[Batch] = []
    members_log: list[np.ndarray] = []
    alive_log: list[int] = []
    dropped = 0
    std_sum, std_n, uncertain = 0.0, 0, 0
    for step in range(k):
        if len(obs) == 0:
            break
        if step == 0 and buffer_actions:
            action = start.action
        else:
            assert policy is not None
            action = np.asarray(policy(obs, rng), dtype=np.float32)
        next_obs, model_reward, members, std = model.step_with_std(obs, action, rng)
        if history:  # the actions in the observation are known, not predicted
            next_obs = task_fns.push_action(obs, action, next_obs)
        if constrain:
            next_obs = task_fns.constrain(obs, next_obs)
        keep = np.ones(len(obs), np.bool_)
        if obs_bounds is not None:
            keep &= ((next_obs >= obs_bounds[0]) & (next_obs <= obs_bounds[1])).all(axis=1)
            dropped += int((~keep).sum())
        if max_std is not None:
            sure = std <= max_std
            uncertain += int((keep & ~sure).sum())
            keep &= sure
        if not keep.all():
            obs, action, next_obs = obs[keep], action[keep], next_obs[keep]
            model_reward, members, std = model_reward[keep], members[keep], std[keep]
        reward = model_reward if learned_reward else task_fns.reward(obs, action, next_obs)
        if uncertainty_penalty > 0:
            reward = (reward - uncertainty_penalty * std).astype(np.float32)
        std_sum, std_n = std_sum + float(std.sum()), std_n + len(std)
        term = np.asarray(task_fns.terminated(obs, action, next_obs), dtype=np.bool_)
        n = len(obs)
        out.append(Batch.create(obs, action, reward, next_obs, term, np.full(n, step == k - 1)))
        members_log.append(members)
        keep = ~term & np.isfinite(next_obs).all(axis=1)
        obs = next_obs[keep]
        alive_log.append(int(keep.sum()))
    if stats is not None:
        stats["members"] = members_log
        stats["alive"] = alive_log
        stats["out_of_bounds"] = dropped
        stats["mean_std"] = std_sum / max(1, std_n)
        stats["uncertain"] = uncertain
    return Batch.concat(out) if out else Batch.empty(start.obs_dim, start.act_dim)


def real_obs_bounds(real: ReplayBuffer, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """The box of observed real states widened by ``margin`` x range per side; constant dims are unbounded."""
    obs = real.all().obs
    lo, hi = obs.min(axis=0), obs.max(axis=0)
    pad = np.where(hi - lo > 1e-6, margin * (hi - lo), np.inf)
    return (lo - pad).astype(np.float32), (hi + pad).astype(np.float32)


def k_step_model_error(
    model: DynamicsModel, episodes: list[Batch], k: int, rng: np.random.Generator
) -> np.ndarray:
    """Mean squared obs error after 1..k open-loop model steps along held-out real trajectories.

    Every start index ``t`` with ``t + k <= len(episode)`` and no termination before ``t + k - 1`` is used; the
    model follows the recorded actions with its mean prediction (random elite per row per step).
    Returns ``[k]`` (NaN where no trajectory is long enough).
    """
    sq: list[list[np.ndarray]] = [[] for _ in range(k)]
    for ep in episodes:
        t_max = len(ep) - k
        if t_max < 0:
            continue
        starts = np.arange(t_max + 1)
        if ep.terminated[:-1].any():
            term_idx = np.flatnonzero(ep.terminated)
            starts = np.array([t for t in starts if not ((term_idx >= t) & (term_idx < t + k - 1)).any()], int)
        if starts.size == 0:
            continue
        obs = ep.obs[starts]
        for h in range(k):
            obs = model.step_with_std(obs, ep.action[starts + h], rng, deterministic=True)[0]
            sq[h].append(((obs - ep.next_obs[starts + h]) ** 2).mean(axis=1))
    return np.array([float(np.mean(np.concatenate(s))) if s else float("nan") for s in sq])
