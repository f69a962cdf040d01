"""Goal relabelling: a relabelled transition is exactly what the simulator does for the new goal."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import robodyna
from robodyna.data.batch import Batch
from robodyna.learn.config import load_algo_config
from robodyna.learn.envs import task_fns_for_env
from robodyna.learn.mbpo import train
from robodyna.learn.relabel import relabel_goals, supports_goal_relabel


def _collect(env: gym.Env, n: int, seed: int) -> Batch:
    rng = np.random.default_rng(seed)
    rows, (obs, _) = [], env.reset(seed=seed)
    for _ in range(n):
        a = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        nxt, r, term, trunc, _ = env.step(a)
        rows.append(Batch.create(obs, a, float(r), nxt, term, trunc))
        obs = env.reset()[0] if term or trunc else nxt
    return Batch.concat(rows)


def test_relabelled_reacher_v5_transitions_match_the_simulator_with_the_new_goal() -> None:
    env = gym.make("Reacher-v5")
    fns = task_fns_for_env(env)
    assert supports_goal_relabel(fns)
    data = _collect(env, 40, seed=1)
    new = relabel_goals(data, fns, 1.0, np.random.default_rng(2))
    assert not np.allclose(new.obs[:, 4:6], data.obs[:, 4:6])  # the goals really moved
    u = env.unwrapped
    for i in range(0, 40, 7):
        o = new.obs[i]
        qpos = np.concatenate([np.arctan2(o[2:4], o[0:2]), o[4:6]])
        qvel = np.concatenate([o[6:8], np.zeros(2)])
        u.set_state(qpos, qvel)
        nxt, r, *_ = env.step(new.action[i])
        np.testing.assert_allclose(nxt, new.next_obs[i], atol=1e-5)
        assert r == pytest.approx(float(new.reward[i]), abs=1e-5)


def test_relabelled_reach_transitions_match_the_simulator_with_the_new_target() -> None:
    env = robodyna.make_env("reacher2", seed=0)
    fns = env.unwrapped.task_fns
    data = _collect(env, 30, seed=3)
    new = relabel_goals(data, fns, 1.0, np.random.default_rng(4))
    n = env.unwrapped.robot_spec.n_joints
    goal = slice(2 * n + 3, 2 * n + 6)
    assert not np.allclose(new.obs[:, goal], data.obs[:, goal])
    lo, hi = fns.goal_low_m, fns.goal_high_m
    assert np.all(new.obs[:, goal] >= np.array(lo) - 1e-6) and np.all(new.obs[:, goal] <= np.array(hi) + 1e-6)
    for i in range(0, 30, 6):
        o = new.obs[i]
        env.reset(options={"qpos": o[:n].astype(np.float64), "qvel": o[n : 2 * n].astype(np.float64),
                           "target_m": o[goal].astype(np.float64)})
        nxt, r, *_ = env.step(new.action[i])
        h = 2 * n + 6  # the action history after it: a reset clears it, the transition carries it over
        np.testing.assert_allclose(nxt[:h], new.next_obs[i, :h], atol=1e-4)
        np.testing.assert_allclose(fns.push_action(o, new.action[i], nxt)[h:], new.next_obs[i, h:], atol=1e-6)
        assert r == pytest.approx(float(new.reward[i]), abs=1e-4)


def test_relabelling_leaves_the_other_rows_untouched() -> None:
    env = robodyna.make_env("reacher2", seed=0)
    data = _collect(env, 200, seed=5)
    new = relabel_goals(data, env.unwrapped.task_fns, 0.3, np.random.default_rng(6))
    changed = np.any(new.obs != data.obs, axis=1)
    assert 30 < changed.sum() < 90  # about 30% of 200
    np.testing.assert_array_equal(new.reward[~changed], data.reward[~changed])
    np.testing.assert_array_equal(new.action, data.action)


def test_goal_relabelling_is_refused_for_a_task_without_goals(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = load_algo_config("sac", None, ["goal_relabel_ratio=0.5", "start_steps=10"])
    with pytest.raises(ValueError, match="goal_relabel_ratio=0.5: Pendulum-v1 has no known goal distribution"):
        train(cfg, "Pendulum-v1", tmp_path, 20, progress=False, tensorboard=False)


def test_auto_goal_relabelling_is_half_on_a_goal_task_and_off_on_a_task_without_goals() -> None:
    from robodyna.learn.envs import episode_steps_for_env, obs_names_for_env, spec_for_env
    from robodyna.learn.learner import Learner

    for algo in ("mbpo", "sac"):
        cfg = load_algo_config(algo, None, ["start_steps=10"])
        assert cfg.goal_relabel_ratio == cfg.achieved_goal_ratio == "auto"
        for env_id, want in (("reacher2", 0.5), ("Pendulum-v1", 0.0)):
            env = robodyna.make_env(env_id, seed=0)
            lr = Learner(cfg, spec_for_env(env), obs_names_for_env(env), task_fns_for_env(env),
                         episode_steps_for_env(env), name=env_id)
            env.close()
            assert (lr.cfg.goal_relabel_ratio, lr.cfg.achieved_goal_ratio) == (want, want), (algo, env_id)


@pytest.mark.parametrize("env_id", ["Reacher-v5", "reacher2"])
def test_achieved_goal_relabelling_puts_the_goal_where_the_arm_ended(env_id: str) -> None:
    env = robodyna.make_env(env_id, seed=0)
    fns = task_fns_for_env(env)
    data = _collect(env, 60, seed=7)
    new = relabel_goals(data, fns, 1.0, np.random.default_rng(8), achieved_fraction=1.0)
    np.testing.assert_allclose(fns.achieved_goal(new.next_obs), fns.achieved_goal(data.next_obs), atol=1e-6)
    # every row now ends exactly on its goal: without the action cost its reward is its value at distance zero
    # (-distance = 0, plus the precision term's full bonus where the task has one: reacher2)
    at_goal = float(getattr(fns, "precision_bonus", 0.0))
    np.testing.assert_allclose(fns.reward(new.obs, np.zeros_like(new.action), new.next_obs), at_goal, atol=1e-5)
    assert np.all(new.reward < at_goal) and np.all(new.reward > data.reward - 1e-6)  # only the action cost is off


def test_achieved_goals_without_goal_relabelling_are_a_config_error() -> None:
    from robodyna.config import ConfigError

    with pytest.raises(ConfigError, match=r"achieved_goal_ratio.*0\.5.*needs goal_relabel_ratio > 0"):
        load_algo_config("mbpo", None, ["goal_relabel_ratio=0", "achieved_goal_ratio=0.5"])


def test_a_goal_task_without_an_achieved_goal_function_does_not_support_relabelling() -> None:
    from robodyna.tasks.gym import GYM_TASK_FNS, SimpleTaskFns

    full = GYM_TASK_FNS["Reacher-v5"]
    assert supports_goal_relabel(full)
    partial = SimpleTaskFns(full.reward_fn, None, full.sample_goals_fn, full.with_goal_fn, None)
    assert not supports_goal_relabel(partial)
