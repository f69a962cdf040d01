"""``policy_filter``: the robot's safety filter inside the policy is the controller's filter exactly, the learner acts
and rolls out with filtered actions, and an exported policy gives actions the controller's filter leaves alone."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import robodyna
from robodyna.data.batch import Batch
from robodyna.learn.action_filter import filter_numpy, policy_filter_for
from robodyna.learn.config import load_algo_config
from robodyna.learn.learner import Learner
from robodyna.learn.mbpo import evaluate
from robodyna.loop.run import onnx_policy
from robodyna.onboard.filter import FilteredPolicy, FilterParams, filter_action
from robodyna.tasks import robot_task

TINY = ["ensemble.n_members=2", "ensemble.n_elites=1", "ensemble.hidden=16", "ensemble.layers=2",
        "ensemble.max_epochs=3", "sac.hidden=16", "sac.batch_size=16", "sac.compile=false", "sac.bf16_hidden=false",
        "rollout_batch=64", "updates_per_step=2", "start_steps=2 episodes", "model_train_every=2 episodes",
        "rollout_every=30", "epoch_length=4 episodes", "min_real_for_model=50", "sac.num_threads=1"]


def _rows(n: int, rng: np.random.Generator, obs_dim: int, q_hi: float) -> np.ndarray:
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32) * 0.1
    obs[:, :2] = rng.uniform(-q_hi, q_hi, (n, 2))  # joint positions, many inside the soft-limit margin
    obs[:, 10:12] = rng.uniform(-0.2, 0.2, (n, 2))  # the previous torques
    return obs


def test_the_policy_filter_is_the_controllers_filter_row_by_row() -> None:
    task = robot_task("reacher2")
    f = policy_filter_for(task.fns, task.spec)
    params = FilterParams.from_safety(task.spec, task.fns.safety)
    rng = np.random.default_rng(0)
    obs = _rows(3000, rng, len(task.obs_names), 3.3)
    raw = rng.uniform(-0.5, 0.5, (3000, 2)).astype(np.float32)  # outside the limits too
    got = filter_numpy(f, obs, raw)
    changed = 0
    for o, a, g in zip(obs, raw, got):
        want, bits = filter_action(a.astype(np.float64), o[10:12].astype(np.float64), o[:2], o[4:7], params)
        np.testing.assert_allclose(g, want, atol=2e-6)
        changed += bits != 0
    assert changed > 1500  # the rows exercise the clip, the soft limits and the rate limit


def test_an_exported_filtered_policy_reaches_the_robot_unchanged(tmp_path: Path) -> None:
    """The controller's filter (run after the exported graph) changes its actions by rounding only; without the
    filter in the policy it trims them on most ticks."""
    task = robot_task("reacher2")
    trimmed = {}
    for on in (True, False):
        cfg = load_algo_config("mbpo", None, [*TINY, f"policy_filter={str(on).lower()}"])
        lr = Learner(cfg, task.spec, task.obs_names, task.fns, task.episode_steps)
        with torch.no_grad():  # a policy that wants large, jumpy torques
            lr.agent.actor.head.weight.mul_(50.0)
            lr.agent.actor.head.bias.add_(torch.randn_like(lr.agent.actor.head.bias) * 3.0)
        onnx = onnx_policy(lr.export(tmp_path / f"p{on}.onnx"))
        raws: list[np.ndarray] = []

        def policy(obs: np.ndarray, onnx: Any = onnx, raws: list[np.ndarray] = raws) -> np.ndarray:
            raws.append(np.asarray(onnx(obs), np.float64))
            return raws[-1]

        env = robodyna.make_env("reacher2", reality="laggy")
        u: Any = env.unwrapped
        r = evaluate(FilteredPolicy(policy, FilterParams.from_config(u.robot_spec, u.robot_cfg)), env, 3, 0)
        env.close()
        applied = np.concatenate([t.action for t in r["trajectories"]]).astype(np.float64)
        trimmed[on] = np.abs(applied - np.array(raws)).max(axis=1)
    assert (trimmed[False] > 1e-3).sum() > 20  # unfiltered, the controller trims it often
    assert trimmed[True].max() < 2e-6, trimmed[True].max()


def test_the_learner_acts_and_rolls_out_with_filtered_actions() -> None:
    task = robot_task("reacher2")
    cfg = load_algo_config("mbpo", None, [*TINY, "policy_filter=true"])
    lr = Learner(cfg, task.spec, task.obs_names, task.fns, task.episode_steps)
    params = FilterParams.from_safety(task.spec, task.fns.safety)
    rng = np.random.default_rng(1)
    obs = _rows(200, rng, len(task.obs_names), 3.0)
    acts = lr.agent.act(obs, rng)
    for o, a in zip(obs, acts):
        want, _ = filter_action(a.astype(np.float64), o[10:12].astype(np.float64), o[:2], o[4:7], params)
        np.testing.assert_allclose(a, want, atol=2e-6)  # already what the controller would send


def test_policy_filter_is_refused_for_a_task_without_safety_settings(tmp_path: Path) -> None:
    from robodyna.learn.mbpo import train

    cfg = load_algo_config("sac", "Pendulum-v1", ["policy_filter=true", "start_steps=10"])
    with pytest.raises(ValueError, match="policy_filter=true: .* no safety settings"):
        train(cfg, "Pendulum-v1", tmp_path / "r", 20, progress=False, tensorboard=False)


def test_sac_updates_with_the_filter_stay_finite() -> None:
    task = robot_task("reacher2")
    cfg = load_algo_config("sac", None, [*TINY, "policy_filter=true"])
    lr = Learner(cfg, task.spec, task.obs_names, task.fns, task.episode_steps)
    rng = np.random.default_rng(2)
    n = 64
    obs = _rows(n, rng, len(task.obs_names), 3.0)
    b = Batch.create(obs, lr.agent.act(obs, rng), rng.normal(size=n).astype(np.float32), obs + 0.01,
                     np.zeros(n, bool), np.zeros(n, bool))
    for _ in range(5):
        stats = lr.agent.update(b)
    assert all(torch.isfinite(v).all() for v in stats.values())
