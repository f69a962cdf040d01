"""``model fit``: fits the trainer's ensemble from a store and reports k-step error on held-out episodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robodyna.data.batch import Batch


def _independent_k_step_mse(predict, episodes: list[Batch], k: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Open loop from every start t (t + k <= T): predict k steps with the recorded actions, one start at a time."""
    sq: list[list[float]] = [[] for _ in range(k)]
    for ep in episodes:
        for t in range(len(ep) - k + 1):
            x = ep.obs[t].astype(np.float64)
            for h in range(k):
                x = predict(x, ep.action[t + h])
                sq[h].append(float(np.mean((x - ep.next_obs[t + h]) ** 2)))
    return np.array([np.mean(s) for s in sq])


class LinearModel:
    """x' = A x + B a, as a DynamicsModel (what k_step_model_error calls)."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.a, self.b = a, b

    def predict(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        return self.a @ x + self.b @ u

    def step_with_std(self, obs, action, rng, members=None, deterministic=False):  # type: ignore[no-untyped-def]
        nxt = obs @ self.a.T + action @ self.b.T
        return nxt, np.zeros(len(obs)), np.zeros_like(nxt), np.zeros(len(obs), int)


def test_k_step_error_is_zero_for_the_true_model_and_the_open_loop_error_for_a_wrong_one() -> None:
    from robodyna.learn.rollouts import k_step_model_error

    rng = np.random.default_rng(0)
    a_true = np.array([[1.0, 0.1], [-0.2, 0.95]])
    b_true = np.array([[0.0], [0.1]])
    episodes = []
    for _ in range(3):
        x, obs, act, nxt = rng.normal(size=2), [], [], []
        for _ in range(12):
            u = rng.uniform(-1, 1, 1)
            obs.append(x)
            act.append(u)
            x = a_true @ x + b_true @ u
            nxt.append(x)
        n = len(obs)
        episodes.append(Batch.create(np.array(obs, np.float32), np.array(act, np.float32), np.zeros(n),
                                     np.array(nxt, np.float32), np.zeros(n, bool), np.zeros(n, bool)))
    right = LinearModel(a_true, b_true)
    wrong = LinearModel(a_true + np.array([[0.0, 0.0], [0.05, 0.0]]), b_true)
    k = 4
    err_right = k_step_model_error(right, episodes, k, rng)
    err_wrong = k_step_model_error(wrong, episodes, k, rng)
    assert err_right.shape == (k,) and np.all(err_right < 1e-10)
    np.testing.assert_allclose(err_wrong, _independent_k_step_mse(wrong.predict, episodes, k), rtol=1e-4)
    assert np.all(err_wrong > 100 * np.maximum(err_right, 1e-12))
    assert np.all(np.diff(err_wrong) > 0)  # open loop: the error of a wrong model compounds with k


def test_model_fit_reports_k_step_error_on_heldout_episodes(reacher_store: Path, tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from robodyna.data.store import EpisodeStore
    from robodyna.learn.ensemble import DynamicsEnsemble
    from robodyna.learn.fit import ensemble_config, fit_model

    overrides = ["n_members=2", "n_elites=1", "hidden=32", "layers=2", "max_epochs=5"]
    res = fit_model(reacher_store, tmp_path / "m.pt", k=3, seed=0, png=tmp_path / "fit.png", overrides=overrides)
    assert res["heldout_episodes"] == 1 and res["train_episodes"] == 2
    assert (tmp_path / "m.pt").is_file() and (tmp_path / "fit.png").stat().st_size > 0
    assert json.loads((tmp_path / "m.json").read_text())["n_train"] == 100
    # recompute the reported error independently: the saved model, the saved held-out episode, one start at a time
    saved = torch.load(tmp_path / "m.pt", weights_only=False)
    model = DynamicsEnsemble(saved["obs_dim"], saved["act_dim"], ensemble_config(overrides), seed=0)
    model.load_state_dict(saved["state_dict"])
    assert len(model.elites) == 1  # one elite: the deterministic prediction does not depend on the rng
    store = EpisodeStore(reacher_store)
    tr = store.read()
    heldout = [tr.batch.take(np.flatnonzero(tr.episode_index == e)) for e in saved["heldout_episodes"]]
    train = [tr.batch.take(np.flatnonzero(tr.episode_index == e)) for e in saved["train_episodes"]]
    assert sorted(saved["heldout_episodes"] + saved["train_episodes"]) == [0, 1, 2]

    def predict(x: np.ndarray, u: np.ndarray) -> np.ndarray:
        nxt = model.step_with_std(x[None].astype(np.float32), u[None], np.random.default_rng(1), deterministic=True)[0]
        return np.asarray(nxt[0], np.float64)

    want = _independent_k_step_mse(predict, heldout, 3)
    np.testing.assert_allclose(res["k_step_obs_mse"], want, rtol=1e-4)
    assert res["one_step_obs_mse"] == res["k_step_obs_mse"][0]
    # the held-out error is not the training error
    assert not np.allclose(want, _independent_k_step_mse(predict, train, 3), rtol=1e-3)
    baseline = np.mean((Batch.concat(heldout).next_obs - Batch.concat(heldout).obs) ** 2)
    assert res["copy_last_obs_mse"] == pytest.approx(float(baseline), rel=1e-6)
