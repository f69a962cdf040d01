from __future__ import annotations

import logging

import numpy as np
import pytest

from robodyna.data.batch import Batch
from robodyna.learn.buffers import ReplayBuffer, sample_mixed
from robodyna.learn.rollouts import branched_rollout, k_step_model_error, real_obs_bounds
from robodyna.tasks.gym import SimpleTaskFns

from .test_ensemble import signature_ensemble


def rows(n: int, start: float = 0.0, obs_dim: int = 2) -> Batch:
    obs = np.full((n, obs_dim), start, np.float32) + np.arange(n, dtype=np.float32)[:, None]
    return Batch.create(obs, np.zeros((n, 1)), np.zeros(n), obs + 1, np.zeros(n, bool), np.zeros(n, bool))


def test_rollouts_stop_rows_at_termination_and_never_mix_members() -> None:
    ens = signature_ensemble()
    # terminate once the first coordinate passes 7: members with larger Δ stop earlier
    fns = SimpleTaskFns(lambda o, a, n: -np.abs(n[:, 0]), lambda o, a, n: n[:, 0] > 7.0)
    start = Batch.create(np.zeros((3000, 2)), np.zeros((3000, 1)), np.zeros(3000), np.zeros((3000, 2)),
                         np.zeros(3000, bool), np.zeros(3000, bool))
    stats: dict = {}
    out = branched_rollout(ens, start, 5, fns, np.random.default_rng(0), policy=lambda o, r: np.zeros((len(o), 1)),
                           stats=stats)
    # every transition's Δobs is exactly one elite member's signature
    delta = out.next_obs - out.obs
    assert np.allclose(delta[:, 0], delta[:, 1], atol=1e-4)
    assert np.allclose(delta[:, 0], np.round(delta[:, 0]), atol=1e-4)
    assert set(np.unique(np.round(delta[:, 0]))) <= {0.0, 2.0, 3.0, 5.0, 6.0}
    # no transition starts from a state past the termination threshold
    assert not (out.obs[:, 0] > 7.0).any()
    assert out.terminated.any()
    assert np.array_equal(out.reward, -np.abs(out.next_obs[:, 0]).astype(np.float32))
    # rows alive per step shrink once rows terminate, and the output holds exactly the rows that were stepped
    alive = stats["alive"]
    assert alive == sorted(alive, reverse=True) and alive[-1] < 3000
    assert len(out) == 3000 + sum(alive[:-1])


def test_rollouts_drop_predictions_outside_the_obs_bounds() -> None:
    ens = signature_ensemble()
    ens.elites = np.array([2, 6])  # members adding 2 or 6 per step
    start = rows(1000, start=0.0)
    start = Batch.create(np.zeros((1000, 2)), start.action, start.reward, start.next_obs, start.terminated,
                         start.truncated)
    fns = SimpleTaskFns(lambda o, a, n: np.zeros(len(o)))
    stats: dict = {}
    bounds = (np.full(2, -1.0, np.float32), np.full(2, 4.5, np.float32))
    out = branched_rollout(ens, start, 3, fns, np.random.default_rng(0), policy=lambda o, r: np.zeros((len(o), 1)),
                           obs_bounds=bounds, stats=stats)
    assert (out.next_obs <= 4.5).all() and stats["out_of_bounds"] > 0
    assert set(np.unique(np.round(out.next_obs[:, 0]))) <= {2.0, 4.0}


def test_obs_bounds_widen_the_real_box_and_leave_constant_dims_unbounded() -> None:
    buf = ReplayBuffer(100, 2, 1)
    obs = np.stack([np.linspace(-1, 1, 20), np.full(20, 0.01)], axis=1)
    buf.add(Batch.create(obs, np.zeros((20, 1)), np.zeros(20), obs, np.zeros(20, bool), np.zeros(20, bool)))
    lo, hi = real_obs_bounds(buf, 0.5)
    assert np.allclose([lo[0], hi[0]], [-2.0, 2.0]) and lo[1] == -np.inf and hi[1] == np.inf


def test_dyna_rollouts_replay_buffer_actions_for_one_step() -> None:
    ens = signature_ensemble()
    start = rows(50)
    start = Batch.create(start.obs, np.linspace(-1, 1, 50)[:, None], start.reward, start.next_obs,
                         start.terminated, start.truncated)
    fns = SimpleTaskFns(None)  # unknown task -> learned reward
    out = branched_rollout(ens, start, 1, fns, np.random.default_rng(0), buffer_actions=True)
    assert np.array_equal(out.action, start.action) and np.array_equal(out.obs, start.obs)
    assert np.allclose(out.reward, -(out.next_obs - out.obs)[:, 0], atol=1e-4)  # the signature model's learned reward
    with pytest.raises(ValueError, match="policy is needed"):
        branched_rollout(ens, start, 2, fns, np.random.default_rng(0), buffer_actions=True)


def test_k_step_model_error_is_zero_for_a_model_that_matches_the_trajectories() -> None:
    ens = signature_ensemble()
    ens.elites = np.array([2])
    obs = np.arange(30, dtype=np.float32)[:, None].repeat(2, 1) * 2.0
    ep = Batch.create(obs, np.zeros((30, 1)), np.zeros(30), obs + 2.0, np.zeros(30, bool), np.zeros(30, bool))
    err = k_step_model_error(ens, [ep], 4, np.random.default_rng(0))
    assert err.shape == (4,) and np.allclose(err, 0.0)


def test_buffer_rejects_nan_and_inf_rows_with_a_logged_count(caplog: pytest.LogCaptureFixture) -> None:
    buf = ReplayBuffer(100, 2, 1, name="real buffer")
    b = rows(10)
    b.obs[3, 0] = np.nan
    b.reward[5] = np.inf
    with caplog.at_level(logging.WARNING):
        bad = buf.add(b)
    assert bad == 2 and buf.rejected == 2 and len(buf) == 8
    assert "rejected 2 non-finite" in caplog.text
    assert np.isfinite(buf.all().obs).all()


def test_buffer_is_a_fifo_ring_and_resizes_keeping_the_newest_rows() -> None:
    buf = ReplayBuffer(10, 2, 1)
    buf.add(rows(7))
    buf.add(rows(7, start=100.0))
    data = buf.all()
    assert len(buf) == 10 and data.obs[0, 0] == 4.0 and data.obs[-1, 0] == 106.0
    buf.resize(4)
    assert list(buf.all().obs[:, 0]) == [103.0, 104.0, 105.0, 106.0]
    restored = ReplayBuffer(1, 2, 1)
    restored.load_state_dict(buf.state_dict())
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    assert np.array_equal(buf.sample(20, rng1).obs, restored.sample(20, rng2).obs)


def test_mixed_batches_hold_the_real_ratio_within_every_batch() -> None:
    real, model = ReplayBuffer(100, 2, 1), ReplayBuffer(100, 2, 1)
    real.add(rows(50, start=0.0))
    model.add(rows(50, start=1000.0))
    for _ in range(5):
        b = sample_mixed(real, model, 200, 0.05, np.random.default_rng())
        assert len(b) == 200 and int((b.obs[:, 0] < 1000).sum()) == 10


def test_uncertainty_penalty_and_mask_act_where_the_model_predicts_spread() -> None:
    # Real data: deterministic motion for x < 0, a noisy "contact" region for x > 0 (like a soft joint limit).
    from .test_ensemble import small_cfg

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(1000, 1)).astype(np.float32)
    nxt = x + 0.1 + np.where(x > 0, rng.normal(0, 0.3, size=x.shape), 0.0).astype(np.float32)
    data = Batch.create(x, np.zeros((1000, 1)), np.zeros(1000), nxt, np.zeros(1000, bool), np.zeros(1000, bool))
    from robodyna.learn.ensemble import DynamicsEnsemble

    ens = DynamicsEnsemble(1, 1, small_cfg(max_epochs=60), seed=0)
    rep = ens.fit(data, rng)
    assert rep.stopped_by != "time", rep
    fns = SimpleTaskFns(lambda o, a, n: np.zeros(len(o)))
    start = Batch.create(np.linspace(-0.9, 0.9, 400)[:, None], np.zeros((400, 1)), np.zeros(400),
                         np.zeros((400, 1)), np.zeros(400, bool), np.zeros(400, bool))
    policy = lambda o, r: np.zeros((len(o), 1))  # noqa: E731
    plain = branched_rollout(ens, start, 1, fns, np.random.default_rng(1), policy=policy)
    stats: dict = {}
    pen = branched_rollout(ens, start, 1, fns, np.random.default_rng(1), policy=policy, stats=stats,
                           uncertainty_penalty=2.0)
    assert np.array_equal(plain.next_obs, pen.next_obs) and np.all(plain.reward == 0.0)
    # the penalty is λ‖σ‖ of the member that made the row: ~0 where motion is deterministic, ~λ·0.3 in contact
    _, _, _, std = ens.step_with_std(start.obs, start.action, np.random.default_rng(1))
    assert np.allclose(pen.reward, -2.0 * std, atol=1e-6)
    free, contact = start.obs[:, 0] < -0.2, start.obs[:, 0] > 0.2
    assert -pen.reward[free].mean() < 0.1 < 0.4 < -pen.reward[contact].mean() < 1.0
    assert stats["mean_std"] == pytest.approx(float(std.mean()), rel=1e-5)
    # masking: rows above max_std are dropped (not continued), the rest kept unchanged
    stats = {}
    masked = branched_rollout(ens, start, 1, fns, np.random.default_rng(1), policy=policy, stats=stats, max_std=0.15)
    keep = std <= 0.15
    assert stats["uncertain"] == int((~keep).sum()) > 100 and keep.sum() > 100
    assert np.array_equal(masked.obs, start.obs[keep]) and np.array_equal(masked.next_obs, plain.next_obs[keep])
    assert (masked.obs[:, 0] < 0.3).all()


def test_mixed_batches_drawn_together_hold_the_real_ratio_within_every_batch() -> None:
    real, model = ReplayBuffer(100, 2, 1), ReplayBuffer(100, 2, 1)
    real.add(rows(50, start=0.0))
    model.add(rows(50, start=1000.0))
    many = sample_mixed(real, model, 200, 0.05, np.random.default_rng(0), n_batches=20)
    assert len(many) == 4000
    for i in range(20):
        b = many.take(slice(i * 200, (i + 1) * 200))
        assert int((b.obs[:, 0] < 1000).sum()) == 10
        assert np.array_equal(b.next_obs, b.obs + 1)  # rows stay whole (every field reordered alike)
    assert len(np.unique(many.obs[:, 0])) > 90  # drawn from both buffers, not one row repeated


@pytest.mark.parametrize("override, message", [
    ("ensemble.early_stop_on=nlll", r"ensemble\.early_stop_on: got 'nlll'; expected one of 'nll', 'mse'"),
    ("rollout_uncertainty_penalty=-1", r"rollout_uncertainty_penalty: got -1; must be >= 0"),
    ("rollout_max_std=-0.5", r"rollout_max_std: got -0\.5; must be > 0"),
    ("rollout_max_std=abc", r"rollout_max_std: got .abc.; expected float or null"),
    ("rollout_constraints=maybe", r"rollout_constraints: got 'maybe'; expected true or false"),
])
def test_bad_rollout_and_early_stopping_options_fail_at_load_naming_the_key(override: str, message: str) -> None:
    from robodyna.config import ConfigError
    from robodyna.learn.config import load_algo_config

    with pytest.raises(ConfigError, match=message):
        load_algo_config("mbpo", "Reacher-v5", [override])
