"""``tasks.reach.action_history``: the last N actions sent are part of the observation — in the env, in what the
onboard controller records and feeds its policy, and (exactly, not predicted) in model rollouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import robodyna
from robodyna.data.batch import Batch
from robodyna.data.store import EpisodeStore
from robodyna.learn.config import EnsembleConfig
from robodyna.learn.ensemble import DynamicsEnsemble
from robodyna.learn.rollouts import branched_rollout
from robodyna.onboard.controller import Controller
from robodyna.tasks import robot_task
from tests.onboard.policies import make_policy, spec_and_obs

H = ["tasks.reach.action_history=2"]


def test_env_observes_the_last_actions_sent_newest_first_and_zeros_after_a_reset() -> None:
    env = robodyna.make_env("reacher2", seed=0, overrides=H)
    u = env.unwrapped
    n = u.robot_spec.n_joints
    h = 2 * n + 6
    assert u.obs_names[h:] == [f"joint{j}.torque_t-{k}_Nm" for k in (1, 2) for j in range(n)]
    assert env.observation_space.shape == (h + 2 * n,)
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(obs[h:], 0.0)
    sent = []
    for t in range(6):
        obs, *_, info = env.step(env.action_space.sample() * 3)  # beyond the limits: the clipped action is sent
        sent.append(info["applied_action"])
        older = sent[-2] if t > 0 else np.zeros(n)
        np.testing.assert_allclose(obs[h:], np.concatenate([sent[-1], older]), atol=1e-6)
    obs, _ = env.reset(seed=2)
    np.testing.assert_array_equal(obs[h:], 0.0)


def test_without_the_key_the_observation_has_no_history() -> None:
    rt = robot_task("reacher2", overrides=["tasks.reach.action_history=0"])
    assert len(rt.obs_names) == rt.fns.obs_dim == 10


def test_controller_feeds_and_records_the_same_history_the_env_builds(tmp_path: Path) -> None:
    spec, names = spec_and_obs(overrides=H)
    assert len(names) == 14
    pol = tmp_path / "p.onnx"
    make_policy(pol, spec, names, "tanh", version=1)
    c = Controller("reacher2", pol, tmp_path / "s", pace=False, episode_steps=15, overrides=H)
    c.run(episodes=2)
    tr = EpisodeStore(tmp_path / "s").read()
    obs, act, nxt = tr.batch.obs, tr.batch.action, tr.batch.next_obs
    ep = tr.extras["episode_index"]
    assert len(tr) == 30
    for e in (0, 1):
        o, a, x = obs[ep == e], act[ep == e], nxt[ep == e]
        np.testing.assert_array_equal(o[0, 10:], 0.0)  # the hold action before the first tick
        np.testing.assert_allclose(x[:, 10:12], a, atol=1e-6)  # newest: the action applied on that tick
        np.testing.assert_allclose(x[1:, 12:], a[:-1], atol=1e-6)
        np.testing.assert_array_equal(o[1:], x[:-1])
    # the raw policy output was computed on the recorded observation, history included
    from robodyna.onboard.policy import OnnxPolicy

    np.testing.assert_allclose(tr.extras["policy_action"], OnnxPolicy(pol)(obs), rtol=1e-5, atol=1e-6)


def test_model_rollouts_set_the_history_columns_exactly() -> None:
    fns = robot_task("reacher2", overrides=H).fns
    od, ad = fns.obs_dim, 2
    model = DynamicsEnsemble(od, ad, EnsembleConfig(n_members=3, n_elites=2, hidden=16, layers=1, max_epochs=2),
                             seed=0)
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.3, (256, od)).astype(np.float32)  # a model whose predictions are anything but a shift
    model.fit(Batch.create(noise[:128], noise[:128, :ad], np.zeros(128, np.float32), noise[128:],
                           np.zeros(128, bool), np.zeros(128, bool)), rng)
    obs = rng.normal(0, 0.3, (64, od)).astype(np.float32)
    start = Batch.create(obs, np.zeros((64, ad), np.float32), np.zeros(64, np.float32), obs,
                         np.zeros(64, bool), np.zeros(64, bool))
    acts: list[np.ndarray] = []

    def policy(o: np.ndarray, g: np.random.Generator) -> np.ndarray:
        a = g.uniform(-0.1, 0.1, (len(o), ad)).astype(np.float32)
        acts.append(a)
        return a

    out = branched_rollout(model, start, 3, fns, rng, policy=policy, constrain=False)
    assert len(out) == 3 * 64
    first, second = out.take(slice(0, 64)), out.take(slice(64, 128))
    np.testing.assert_array_equal(first.next_obs[:, 10:12], acts[0])
    np.testing.assert_array_equal(first.next_obs[:, 12:], obs[:, 10:12])
    np.testing.assert_array_equal(second.next_obs[:, 10:12], acts[1])
    np.testing.assert_array_equal(second.next_obs[:, 12:], acts[0])
