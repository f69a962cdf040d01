from __future__ import annotations

import numpy as np
import pytest
import torch

from robodyna.data.batch import Batch
from robodyna.learn.config import EnsembleConfig
from robodyna.learn.ensemble import DynamicsEnsemble, NotFittedError


def smooth_data(n: int, rng: np.random.Generator, lo: float = -1.0, hi: float = 1.0) -> Batch:
    x = rng.uniform(lo, hi, size=(n, 1)).astype(np.float32)
    a = np.zeros((n, 1), np.float32)
    nxt = x + 0.5 * np.sin(3 * x)
    return Batch.create(x, a, (x[:, 0] ** 2), nxt, np.zeros(n, bool), np.zeros(n, bool))


def small_cfg(**kw: object) -> EnsembleConfig:
    base = dict(hidden=64, layers=3, max_epochs=150, patience=10, max_fit_seconds=60.0)
    base.update(kw)
    return EnsembleConfig(**base)  # type: ignore[arg-type]


def test_ensemble_fits_a_smooth_function_and_its_variance_rises_off_distribution() -> None:
    rng = np.random.default_rng(0)
    ens = DynamicsEnsemble(1, 1, small_cfg(), seed=0)
    rep = ens.fit(smooth_data(1500, rng), rng)
    assert max(rep.val_mse) < 5e-3, rep
    test = smooth_data(200, np.random.default_rng(1))
    nxt, rew, _ = ens.step(test.obs, test.action, rng, deterministic=True)
    assert np.abs(nxt - test.next_obs).mean() < 0.05
    assert np.abs(rew - test.reward).mean() < 0.05
    far = smooth_data(200, np.random.default_rng(2), lo=3.0, hi=4.0)
    u_in = ens.uncertainty(test.obs, test.action).mean()
    u_out = ens.uncertainty(far.obs, far.action).mean()
    assert u_out > 10 * u_in, (u_in, u_out)


def test_elites_are_the_members_with_the_lowest_validation_error() -> None:
    rng = np.random.default_rng(0)
    ens = DynamicsEnsemble(1, 1, small_cfg(max_epochs=20), seed=0)
    data = smooth_data(800, rng)
    ens.fit(data, rng)
    assert set(ens.elites) == set(np.argsort(ens.val_mse)[: ens.cfg.n_elites])
    # Ruin two members; a (warm-started) refit that cannot repair them in one epoch must drop them.
    with torch.no_grad():
        for w in ens.net.weights:
            w[1].mul_(-30.0)
            w[4].mul_(30.0)
    ens.cfg = small_cfg(max_epochs=1)
    ens.fit(data, rng)
    assert 1 not in ens.elites and 4 not in ens.elites
    assert set(ens.elites) == set(np.argsort(ens.val_mse)[: ens.cfg.n_elites])


def test_a_fit_ends_after_the_epoch_that_reaches_max_fit_batches_whatever_the_data_size() -> None:
    rng = np.random.default_rng(0)
    for n_train_rows, expect_epochs in ((1000, 3), (4000, 1)):  # 4 and 13 minibatches of 256 per epoch
        ens = DynamicsEnsemble(1, 1, small_cfg(max_fit_batches=10, patience=100, holdout_ratio=0.2), seed=0)
        rep = ens.fit(smooth_data(int(n_train_rows / 0.8), rng), rng)
        assert rep.n_train == n_train_rows
        assert (rep.epochs, rep.stopped_by) == (expect_epochs, "max_fit_batches"), rep
    rep = DynamicsEnsemble(1, 1, small_cfg(max_epochs=2, patience=100), seed=0).fit(smooth_data(500, rng), rng)
    assert (rep.epochs, rep.stopped_by) == (2, "max_epochs")  # unset (the default): no batch cap


def test_batched_ensemble_equals_a_loop_of_separate_members_with_the_same_weights() -> None:
    ens = DynamicsEnsemble(5, 2, EnsembleConfig(), seed=3)
    x = torch.randn(64, 7)
    with torch.no_grad():
        ens.net.in_mean.copy_(torch.randn(7))
        ens.net.in_std.copy_(torch.rand(7) + 0.5)
        mean, logvar = ens.net(x.unsqueeze(0).expand(7, -1, -1))
        xn = (x - ens.net.in_mean) / ens.net.in_std
        for m, mod in enumerate(ens.net.member_modules()):
            out = mod(xn)
            torch.testing.assert_close(out[:, :6], mean[m], rtol=1e-5, atol=1e-5)
            single_mean, single_logvar = ens.net.forward_member(x, m)
            torch.testing.assert_close(single_mean, mean[m], rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(single_logvar, logvar[m], rtol=1e-5, atol=1e-5)


def test_rollout_before_fit_raises_a_clear_error() -> None:
    ens = DynamicsEnsemble(2, 1, EnsembleConfig(), seed=0)
    with pytest.raises(NotFittedError, match="not been fit"):
        ens.step(np.zeros((3, 2), np.float32), np.zeros((3, 1), np.float32), np.random.default_rng(0))


def signature_ensemble(obs_dim: int = 2, act_dim: int = 1) -> DynamicsEnsemble:
    """An ensemble whose member m predicts Δobs = m exactly (reward = -m), to trace which member ran a row."""
    ens = DynamicsEnsemble(obs_dim, act_dim, EnsembleConfig(hidden=8, layers=1), seed=0)
    with torch.no_grad():
        ens.net.weights[-1].zero_()
        ens.net.biases[-1].zero_()
        ens.net.biases[-1][:, :, obs_dim + 1 :] = -100.0  # log-variance -> min bound: (almost) no sampling noise
        ens.net.min_logvar.fill_(-30.0)
        for m in range(ens.cfg.n_members):
            ens.net.biases[-1][m, 0, :obs_dim] = float(m)
            ens.net.biases[-1][m, 0, obs_dim] = -float(m)
    ens.fitted = True
    ens.elites = np.array([0, 2, 3, 5, 6])
    return ens


def test_grouped_step_runs_each_row_only_through_its_own_member() -> None:
    ens = signature_ensemble()
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(5000, 2)).astype(np.float32)
    nxt, rew, members = ens.step(obs, np.zeros((5000, 1), np.float32), rng, deterministic=True)
    assert set(np.unique(members)) <= set(ens.elites)
    np.testing.assert_allclose(nxt - obs, np.repeat(members[:, None], 2, 1).astype(np.float32), atol=1e-5)
    np.testing.assert_allclose(rew, -members.astype(np.float32), atol=1e-5)


def test_early_stopping_on_nll_learns_where_the_data_is_noisy_and_mse_stopping_does_not() -> None:
    # Deterministic for x < 0, noisy (σ = 0.3) for x > 0: the mean fits in a few epochs, the variance needs more.
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(1000, 1)).astype(np.float32)
    nxt = x + 0.1 + np.where(x > 0, rng.normal(0, 0.3, size=x.shape), 0.0).astype(np.float32)
    data = Batch.create(x, np.zeros((1000, 1)), np.zeros(1000), nxt, np.zeros(1000, bool), np.zeros(1000, bool))
    probe = np.array([[-0.8], [-0.5], [0.5], [0.8]], np.float32)
    stds = {}
    for metric in ("nll", "mse"):
        ens = DynamicsEnsemble(1, 1, small_cfg(max_epochs=60, early_stop_on=metric), seed=0)
        ens.fit(data, np.random.default_rng(1))
        _, _, _, stds[metric] = ens.step_with_std(probe, np.zeros_like(probe), np.random.default_rng(2))
    assert stds["nll"][:2].max() < 0.05 and 0.2 < stds["nll"][2:].min() < 0.4, stds["nll"]
    # stopping on the mean's error restores early weights whose variance has not separated the two regions
    assert stds["mse"][2:].min() / stds["mse"][:2].max() < 2.0, stds["mse"]


def _goal_data(n: int, rng: np.random.Generator, goals: np.ndarray) -> Batch:
    """A joint moved by its action, beside a goal column copied unchanged (a reach task's target)."""
    q = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    g = goals[rng.integers(len(goals), size=n)].reshape(-1, 1).astype(np.float32)
    a = rng.uniform(-1, 1, size=(n, 1)).astype(np.float32)
    obs = np.concatenate([q, g], 1)
    nxt = np.concatenate([q + 0.3 * a + 0.2 * np.sin(3 * q), g], 1)
    return Batch.create(obs, a, -np.abs(q[:, 0] - g[:, 0]), nxt, np.zeros(n, bool), np.zeros(n, bool))


def test_refit_on_a_few_episodes_keeps_the_warm_model_where_the_normalizer_is_kept() -> None:
    """A model warm-started on wide data (many goals) and refit on a few episodes (two goals: a near-constant
    column) still predicts across all goals when its normaliser is kept from the first fit; re-estimated from the
    few episodes, the goal column is standardised far out of range everywhere else and the warm start is lost."""
    wide = _goal_data(3000, np.random.default_rng(0), np.random.default_rng(1).uniform(-1, 1, 500))
    few = _goal_data(300, np.random.default_rng(2), np.array([0.1, 0.12]))
    test = _goal_data(500, np.random.default_rng(3), np.random.default_rng(4).uniform(-1, 1, 500))
    err = {}
    for mode in ("every_fit", "first_fit"):
        rng = np.random.default_rng(5)
        ens = DynamicsEnsemble(2, 1, small_cfg(normalizer=mode), seed=0)
        ens.fit(wide, rng)
        before = np.abs(ens.step(test.obs, test.action, rng, deterministic=True)[0] - test.next_obs).mean()
        ens.fit(few, rng)
        err[mode] = np.abs(ens.step(test.obs, test.action, rng, deterministic=True)[0] - test.next_obs).mean()
    assert before < 0.05, before
    assert err["first_fit"] < 0.05 and err["every_fit"] > 5 * err["first_fit"], (before, err)  # 0.016 vs 0.35
