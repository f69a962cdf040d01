"""Symmetry augmentation (``symmetry_augment_ratio``): the declared symmetry is one of the real physics, and the
augmentation moves whole transitions into one frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import robodyna
from robodyna.data.batch import Batch
from robodyna.learn.config import load_algo_config
from robodyna.learn.envs import task_fns_for_env
from robodyna.learn.mbpo import train
from robodyna.learn.symmetry import augment_symmetry, supports_symmetry

from .conftest import POINT_ID, tiny_overrides


def _reacher_step_from(env: object, obs: np.ndarray, action: np.ndarray) -> tuple[np.ndarray, float]:
    """Put Reacher-v5's MuJoCo state at ``obs`` (qpos = q0, q1, target xy) and take one step."""
    q = np.array([np.arctan2(obs[2], obs[0]), np.arctan2(obs[3], obs[1]), obs[4], obs[5]])
    env.unwrapped.set_state(q, np.array([obs[6], obs[7], 0.0, 0.0]))  # type: ignore[attr-defined]
    nxt, r, *_ = env.step(action)  # type: ignore[attr-defined]
    return np.asarray(nxt, np.float32), float(r)


def test_reacher_turned_about_its_base_steps_exactly_like_the_original() -> None:
    """MuJoCo from a turned state gives the turned next state and the same reward (so the augmentation is exact)."""
    env = robodyna.make_env("Reacher-v5", seed=0)
    fns = task_fns_for_env(env)
    assert supports_symmetry(fns)
    rng = np.random.default_rng(0)
    for trial in range(5):
        obs = np.asarray(env.reset(seed=trial)[0], np.float32)
        for _ in range(int(rng.integers(3, 30))):
            obs = np.asarray(env.step(env.action_space.sample())[0], np.float32)
        action = rng.uniform(-1, 1, 2).astype(np.float32)
        nxt, r = _reacher_step_from(env, obs, action)
        phi = fns.sample_symmetry(1, rng)
        turned = fns.apply_symmetry(obs[None], phi)[0]
        nxt_t, r_t = _reacher_step_from(env, turned, action)
        np.testing.assert_allclose(nxt_t, fns.apply_symmetry(nxt[None], phi)[0], atol=2e-5)
        assert r_t == pytest.approx(r, abs=1e-5)
        assert not np.allclose(turned, obs, atol=1e-3)  # it really was another frame
    env.close()


def test_augmentation_moves_obs_and_next_obs_into_the_same_frame_and_keeps_the_rest() -> None:
    fns = task_fns_for_env(robodyna.make_env("Reacher-v5", seed=0))
    rng = np.random.default_rng(1)
    n = 400
    q = rng.uniform(-np.pi, np.pi, (n, 2))
    tgt = rng.uniform(-0.2, 0.2, (n, 2))
    obs = np.concatenate([np.cos(q), np.sin(q), tgt, rng.normal(size=(n, 2)), rng.normal(size=(n, 2)) * 0.1], 1)
    obs = obs.astype(np.float32)
    nxt = obs + rng.normal(size=obs.shape).astype(np.float32) * 0.01
    batch = Batch.create(obs, rng.uniform(-1, 1, (n, 2)).astype(np.float32), rng.normal(size=n).astype(np.float32),
                         nxt, np.zeros(n, bool), np.zeros(n, bool))
    out = augment_symmetry(batch, fns, 0.5, rng)
    moved = ~np.isclose(out.obs, batch.obs).all(axis=1)
    assert 0.35 < moved.mean() < 0.65
    np.testing.assert_array_equal(out.action, batch.action)
    np.testing.assert_array_equal(out.reward, batch.reward)
    np.testing.assert_array_equal(out.obs[~moved], batch.obs[~moved])
    # invariants of a turn about the base: elbow, velocities, distances to the target and of the target
    for b in (lambda x: x.obs, lambda x: x.next_obs):
        np.testing.assert_allclose(b(out)[:, [1, 3, 6, 7]], b(batch)[:, [1, 3, 6, 7]], atol=1e-6)
        for cols in ((4, 5), (8, 9), (0, 2)):
            np.testing.assert_allclose(np.linalg.norm(b(out)[:, cols], axis=1),
                                       np.linalg.norm(b(batch)[:, cols], axis=1), atol=1e-5)
    # one angle per row for obs and next_obs: the target (which does not move) lands in the same place
    ang = lambda x: np.arctan2(x[:, 5], x[:, 4])  # noqa: E731
    turn_obs = (ang(out.obs) - ang(batch.obs)) % (2 * np.pi)
    turn_nxt = (ang(out.next_obs) - ang(batch.next_obs)) % (2 * np.pi)
    np.testing.assert_allclose(np.cos(turn_obs - turn_nxt), 1.0, atol=1e-3)


def test_symmetry_augmentation_is_refused_for_a_task_without_a_symmetry(tmp_path: Path) -> None:
    cfg = load_algo_config("mbpo", POINT_ID, tiny_overrides() + ["symmetry_augment_ratio=0.5"])
    with pytest.raises(ValueError, match=r"symmetry_augment_ratio=0.5: .* declares no symmetry"):
        train(cfg, POINT_ID, tmp_path / "r", 10, progress=False, tensorboard=False)
