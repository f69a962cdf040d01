"""The ensemble reads only the robot's state (``model_inputs: state``) and rollouts branch towards fresh goals."""

from __future__ import annotations

import numpy as np
import pytest

import robodyna
from robodyna.data.batch import Batch
from robodyna.learn.config import EnsembleConfig, load_algo_config
from robodyna.learn.ensemble import DynamicsEnsemble
from robodyna.learn.envs import task_fns_for_env
from robodyna.learn.mbpo import train


def _arm_state_twice_with_two_targets(env_id: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two next observations from the same arm state and action, with two different targets."""
    env = robodyna.make_env(env_id, seed=seed)
    fns = task_fns_for_env(env)
    rng = np.random.default_rng(seed)
    obs = env.reset(seed=seed)[0]
    for _ in range(int(rng.integers(3, 20))):
        obs = env.step(env.action_space.sample())[0]
    action = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
    out = []
    for target in fns.sample_goals(2, rng):
        if env_id == "Reacher-v5":  # MuJoCo state: qpos = (q0, q1, target x, target y)
            q = np.array([np.arctan2(obs[2], obs[0]), np.arctan2(obs[3], obs[1]), *target])
            env.unwrapped.set_state(q, np.array([obs[6], obs[7], 0.0, 0.0]))
        else:
            n = env.unwrapped.robot_spec.n_joints
            env.reset(options={"qpos": obs[:n].astype(np.float64), "qvel": obs[n : 2 * n].astype(np.float64),
                               "target_m": np.asarray(target, np.float64)})
        out.append(np.asarray(env.step(action)[0], np.float32))
    env.close()
    return out[0], out[1]


@pytest.mark.parametrize("env_id", ["Reacher-v5", "reacher2"])
def test_the_arm_state_columns_evolve_the_same_whatever_the_target(env_id: str) -> None:
    fns = task_fns_for_env(robodyna.make_env(env_id, seed=0))
    cols = list(fns.dynamics_columns)
    for seed in range(3):
        a, b = _arm_state_twice_with_two_targets(env_id, seed)
        np.testing.assert_allclose(a[cols], b[cols], atol=1e-6)
        assert not np.allclose(a, b)  # the goal columns did differ


def test_reacher_constraints_rebuild_every_other_column_from_the_state_columns() -> None:
    env = robodyna.make_env("Reacher-v5", seed=0)
    fns = task_fns_for_env(env)
    rng = np.random.default_rng(1)
    obs, _ = env.reset(seed=1)
    cols = list(fns.dynamics_columns)
    checked = 0
    for _ in range(40):
        nxt, *_ = env.step(rng.uniform(-1, 1, 2).astype(np.float32))
        garbled = nxt.copy()
        others = [c for c in range(len(nxt)) if c not in cols]
        garbled[others] += rng.normal(0, 0.3, len(others))  # a model that gets only the state columns right
        rebuilt = fns.constrain(obs[None], garbled[None].astype(np.float32))[0]
        if abs(np.arctan2(nxt[3], nxt[1])) <= 3.0:  # (MuJoCo's soft limit lets the elbow overshoot 3 rad a little)
            np.testing.assert_allclose(rebuilt, nxt, atol=1e-5)
            checked += 1
        obs = nxt
    assert checked > 30


def _data(n: int, rng: np.random.Generator) -> Batch:
    obs = rng.uniform(-1, 1, (n, 3)).astype(np.float32)
    act = rng.uniform(-1, 1, (n, 1)).astype(np.float32)
    nxt = obs.copy()
    nxt[:, 0] = obs[:, 0] + 0.3 * act[:, 0]  # column 0 is the state; 1 and 2 are goals that never move
    return Batch.create(obs, act, -np.abs(nxt[:, 0] - obs[:, 1]), nxt, np.zeros(n, bool), np.zeros(n, bool))


def test_an_ensemble_on_state_columns_ignores_the_other_columns() -> None:
    cfg = EnsembleConfig(hidden=32, layers=2, max_epochs=30, patience=5)
    rng = np.random.default_rng(0)
    data = _data(600, rng)
    state_only = DynamicsEnsemble(3, 1, cfg, seed=0, input_columns=[0])
    every = DynamicsEnsemble(3, 1, cfg, seed=0)
    state_only.fit(data, np.random.default_rng(1))
    every.fit(data, np.random.default_rng(1))
    moved = data.obs[:50].copy()
    moved[:, 1:] += 0.5
    for ens, same in ((state_only, True), (every, False)):
        mean_a, _ = ens.predict_all(data.obs[:50], data.action[:50])
        mean_b, _ = ens.predict_all(moved, data.action[:50])
        assert np.allclose(mean_a, mean_b) == same


def test_an_ensemble_reads_its_input_columns_in_the_order_given() -> None:
    ens = DynamicsEnsemble(3, 1, EnsembleConfig(hidden=8, layers=1), input_columns=[2, 0, 1])
    obs = np.arange(6, dtype=np.float32).reshape(2, 3)
    x = ens._inputs(obs, np.full((2, 1), 9.0, np.float32))
    np.testing.assert_array_equal(x, [[2, 0, 1, 9], [5, 3, 4, 9]])


def test_an_ensemble_checkpoint_with_other_input_columns_is_refused() -> None:
    cfg = EnsembleConfig(hidden=16, layers=2, max_epochs=2)
    saved = DynamicsEnsemble(3, 1, cfg, seed=0).state_dict()
    with pytest.raises(ValueError, match=r"reads observation columns \[0, 1, 2\] as inputs, this ensemble \[0\]"):
        DynamicsEnsemble(3, 1, cfg, seed=0, input_columns=[0]).load_state_dict(saved)
    with pytest.raises(ValueError, match=r"input_columns must be distinct observation indices in \[0, 3\)"):
        DynamicsEnsemble(3, 1, cfg, input_columns=[0, 3])


def test_rollout_goal_relabelling_is_refused_for_a_task_without_goals(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = load_algo_config("mbpo", None, ["rollout_goal_relabel=0.5", "start_steps=10"])
    with pytest.raises(ValueError, match="rollout_goal_relabel=0.5: Pendulum-v1 has no known goal distribution"):
        train(cfg, "Pendulum-v1", tmp_path, 20, progress=False, tensorboard=False)
