"""Dynamics models in a task's coordinates (``model_inputs: coordinates``): the coordinates describe the real
arm, the model built on them is invariant to what the physics ignores, and a task without them is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import robodyna
from robodyna.data.batch import Batch
from robodyna.learn.checkpoint import load_checkpoint
from robodyna.learn.config import EnsembleConfig, load_algo_config
from robodyna.learn.coords import CoordinateModel
from robodyna.learn.ensemble import DynamicsEnsemble
from robodyna.learn.envs import task_fns_for_env
from robodyna.learn.learner import make_model
from robodyna.learn.mbpo import train

from .conftest import POINT_ID, tiny_overrides


def _reacher_random_transitions(n: int, seed: int) -> Batch:
    env = robodyna.make_env("Reacher-v5", seed=seed)
    rng = np.random.default_rng(seed)
    obs = env.reset(seed=seed)[0]
    rows: list[tuple[np.ndarray, ...]] = []
    for _ in range(n):
        action = rng.uniform(-1, 1, 2).astype(np.float32)
        nxt, _, term, trunc, _ = env.step(action)
        rows.append((obs, action, nxt))
        obs = env.reset()[0] if term or trunc else nxt
    env.close()
    o, a, nx = (np.asarray(c, np.float32) for c in zip(*rows))
    return Batch.create(o, a, np.zeros(n, np.float32), nx, np.zeros(n, bool), np.zeros(n, bool))


def test_reacher_coordinates_decode_every_real_step_back_to_the_observation() -> None:
    """decode(obs, encode(next_obs)) is the real next observation (the fingertip from the kinematics, the target
    kept), for real MuJoCo steps under random torques, including steps where the shoulder crosses ±π."""
    data = _reacher_random_transitions(2000, seed=1)
    coords = task_fns_for_env(robodyna.make_env("Reacher-v5")).model_coordinates
    model = CoordinateModel(coords, 2, EnsembleConfig(hidden=8, layers=1))
    z = model.to_coordinates(data)
    decoded = coords.decode(data.obs, z.next_obs)
    err = np.abs(decoded - data.next_obs).max(axis=1)
    assert np.quantile(err, 0.9) < 1e-5, np.quantile(err, 0.9)
    wrapped = np.abs(np.arctan2(data.next_obs[:, 2], data.next_obs[:, 0])
                     - np.arctan2(data.obs[:, 2], data.obs[:, 0])) > np.pi
    assert wrapped.any()  # the data does cross ±π ...
    assert np.abs(z.next_obs[:, 0] - z.obs[:, 0]).max() < 1.0  # ... and the model's angle change stays one step


def test_a_reacher_coordinate_model_steps_a_turned_arm_to_the_turned_next_state() -> None:
    """The shoulder angle is not an input: the model's prediction for the arm turned about its base is the turned
    prediction, exactly (the symmetry that SAC learns by augmentation, built into the model)."""
    fns = task_fns_for_env(robodyna.make_env("Reacher-v5"))
    data = _reacher_random_transitions(600, seed=2)
    model = CoordinateModel(fns.model_coordinates, 2, EnsembleConfig(hidden=32, layers=2, max_epochs=3))
    model.fit(data, np.random.default_rng(0))
    obs, action = data.obs[:200], data.action[:200]
    members = np.random.default_rng(1).integers(0, 7, size=200)
    phi = fns.sample_symmetry(200, np.random.default_rng(2))

    def predict(m: CoordinateModel | DynamicsEnsemble, o: np.ndarray) -> np.ndarray:
        return m.step_with_std(o, action, np.random.default_rng(3), members=members, deterministic=True)[0]

    np.testing.assert_allclose(predict(model, fns.apply_symmetry(obs, phi)),
                               fns.apply_symmetry(predict(model, obs), phi), atol=2e-5)
    plain = DynamicsEnsemble(10, 2, EnsembleConfig(hidden=32, layers=2, max_epochs=3))
    plain.fit(data, np.random.default_rng(0))  # an observation-space model has no such guarantee
    turned_error = predict(plain, fns.apply_symmetry(obs, phi)) - fns.apply_symmetry(predict(plain, obs), phi)
    assert np.abs(turned_error).max() > 1e-3


def test_coordinates_are_refused_for_a_task_that_declares_none() -> None:
    cfg = load_algo_config("mbpo", POINT_ID, [*tiny_overrides(), "model_inputs=coordinates"])
    fns = task_fns_for_env(robodyna.make_env(POINT_ID))
    with pytest.raises(ValueError, match=f"model_inputs=coordinates: {POINT_ID} declares no model coordinates"):
        make_model(cfg, POINT_ID, fns, 4, 2)


def test_an_observation_model_checkpoint_is_refused_by_a_coordinate_model() -> None:
    fns = task_fns_for_env(robodyna.make_env("Reacher-v5"))
    saved = DynamicsEnsemble(10, 2, EnsembleConfig(hidden=8, layers=1)).state_dict()
    model = CoordinateModel(fns.model_coordinates, 2, EnsembleConfig(hidden=8, layers=1))
    with pytest.raises(ValueError, match="not trained in this task's model coordinates"):
        model.load_state_dict(saved)
    model.load_state_dict(CoordinateModel(fns.model_coordinates, 2, EnsembleConfig(hidden=8, layers=1)).state_dict())


def test_the_reacher_preset_trains_in_coordinates_and_resumes_with_the_same_model(tmp_path: Path) -> None:
    """Reacher-v5's preset (model_inputs: coordinates) runs the loop, fills the model buffer, and a resumed run
    ends with the same model weights as one that did not stop."""
    over = [*tiny_overrides(), "checkpoint_every=120", "sac.compile=false", "goal_relabel_ratio=0.5"]
    cfg = load_algo_config("mbpo", "Reacher-v5", over)
    assert cfg.model_inputs == "coordinates"
    full = train(cfg, "Reacher-v5", tmp_path / "full", 220, progress=False, tensorboard=False)
    train(cfg, "Reacher-v5", tmp_path / "split", 120, progress=False, tensorboard=False)
    resumed = train(cfg, "Reacher-v5", tmp_path / "split", 220, resume=True, progress=False, tensorboard=False)
    a, b = load_checkpoint(full.checkpoint), load_checkpoint(resumed.checkpoint)
    assert a["learner"]["model"]["coordinates"] == 6 and a["learner"]["model_buffer"]["size"] > 0
    for key, val in a["learner"]["model"]["net"].items():
        assert torch.equal(val, b["learner"]["model"]["net"][key]), key
    assert full.evals[-1] == resumed.evals[-1]
