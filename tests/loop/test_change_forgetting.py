"""A dynamics change the model-error signal detects makes the trainer's learner forget the rows from before it
(``refresh.forget_on_change_ratio``): real reacher2 episodes from MuJoCo, nominal and then laggy, ingested by a
trainer service warm-started from the shipped simulation checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robodyna.data.store_format import EXTRA_DTYPES
from robodyna.data.store_reader import Transitions
from robodyna.loop.refresh import RefreshConfig, change_baseline, dynamics_changed
from robodyna.loop.report import detected_changes
from robodyna.loop.service_config import ServiceConfig

CKPT = Path(__file__).resolve().parents[2] / "configs" / "loops" / "checkpoints" / "reacher2_sim.pt"
OVERRIDES = ["sac.compile=false", "rollout_batch=500", "ensemble.max_fit_batches=200"]


def test_dynamics_changed_needs_a_model_refitted_on_the_robot_and_the_ratio_above_its_threshold() -> None:
    assert dynamics_changed(0.2, 0.01, True, 10.0)
    assert not dynamics_changed(0.2, 0.01, False, 10.0)  # only the warm start's model: the robot is new to it
    assert not dynamics_changed(0.05, 0.01, True, 10.0)
    assert not dynamics_changed(0.2, 0.01, True, 0.0)  # off
    assert not dynamics_changed(float("nan"), 0.01, True, 10.0)
    assert not dynamics_changed(0.2, 0.0, True, 10.0)


def test_a_negative_forget_ratio_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match="forget_on_change_ratio"):
        RefreshConfig(forget_on_change_ratio=-1.0)
    with pytest.raises(ValueError, match="change_baseline_window"):
        RefreshConfig(change_baseline_window=-1)


def test_the_change_baseline_is_the_fitted_error_or_the_recent_new_episodes_median_error_whichever_is_higher() -> None:
    assert change_baseline(0.01, [], 5) == 0.01  # no new episode measured yet
    assert change_baseline(0.01, [0.002, 0.003, 0.004], 5) == 0.01
    assert change_baseline(0.001, [0.002, 0.003, 0.004], 5) == 0.003
    assert change_baseline(0.001, [0.1, 0.1, 0.002, 0.003, 0.004], 3) == 0.003  # the last three only
    assert change_baseline(0.001, [0.002, float("nan"), 0.004], 5) == pytest.approx(0.003)
    assert change_baseline(0.001, [0.002, 0.003, 0.004], 0) == 0.001  # window 0: the fitted error alone


def test_an_unchanging_robot_whose_fitted_error_collapsed_is_no_change_but_a_jump_on_new_episodes_is() -> None:
    """reacher2 `heavy` seed 5 (stationary, 2000 real steps): by 1000 real steps the model's fitted error
    (held-out rows of its own episodes) had fallen to 3.8e-5 while its error on each new episode stayed at
    2-3e-4; against the fitted error alone the next episode came within 10 % of the threshold."""
    fitted, recent = 3.76e-5, [2.6e-4, 1.8e-4, 1.8e-4, 3.4e-4, 2.6e-4]
    assert dynamics_changed(4.1e-4, fitted, True, 10.0)  # the fitted error alone: a false detection
    assert not dynamics_changed(4.1e-4, change_baseline(fitted, recent, 5), True, 10.0)
    assert dynamics_changed(0.2, change_baseline(fitted, recent, 5), True, 10.0)  # laggy after nominal: 20-40x


def _episode(svc: Any, reality: str, index: int) -> Transitions:
    """One real episode on ``reality``, the service's current actor acting (deterministic)."""
    from robodyna.tasks.env import make_env

    env = make_env("reacher2", reality=reality)
    rows: dict[str, list[Any]] = {k: [] for k in ("obs", "action", "reward", "next_obs", "terminated", "truncated")}
    try:
        obs, _ = env.reset(seed=100 + index)
        done = False
        while not done:
            act = np.asarray(svc.learner.act(np.asarray(obs, np.float32), deterministic=True), np.float32)
            nxt, rew, term, trunc, _ = env.step(act)
            for k, v in zip(rows, (obs, act, rew, nxt, term, trunc)):
                rows[k].append(v)
            obs, done = nxt, bool(term or trunc)
    finally:
        env.close()
    n = len(rows["obs"])
    cols: dict[str, np.ndarray] = {k: np.asarray(v, np.float32) for k, v in rows.items()}
    cols["terminated"], cols["truncated"] = (np.asarray(rows[k], np.bool_) for k in ("terminated", "truncated"))
    cols |= {k: np.zeros(n, t) for k, t in EXTRA_DTYPES.items() if k != "policy_action"}
    cols["episode_index"][:] = index
    cols["step_index"] = np.arange(n, dtype=np.int64)
    cols["policy_version"][:] = svc.learner.policy_version
    cols["policy_action"] = cols["action"].copy()
    return Transitions.from_columns(cols)


@pytest.mark.parametrize("ratio", [10.0, 0.0])
def test_a_detected_dynamics_change_makes_the_learner_forget_the_rows_before_it(tmp_path: Path, ratio: float) -> None:
    from robodyna.loop.trainer import TrainerService
    from robodyna.transport.keys import generate_keys

    generate_keys(tmp_path / "keys", "trainer")
    cfg = ServiceConfig(algo_overrides=OVERRIDES,
                        refresh=RefreshConfig(forget_on_change_ratio=ratio, restart_on_change=False))
    svc = TrainerService("reacher2", tmp_path / "svc", "tcp://127.0.0.1:0", tmp_path / "keys", cfg,
                         init_checkpoint=CKPT)
    lr = svc.learner
    for i in range(6):  # five nominal episodes: the model is refitted on them at 250 rows; the sixth is predicted
        svc._ingest("robot0", _episode(svc, "nominal", i))
    assert lr.n_fits > svc._sim_fits and len(lr.real) == 300  # nominal after nominal is no change
    fits = lr.n_fits
    svc._ingest("robot0", _episode(svc, "laggy", 6))  # two ticks of latency: the model is wrong by 20-40x
    if ratio:
        assert len(lr.real) == 50 and len(lr.model_buf) == 0
        assert svc._sim_fits == fits  # SAC waits for a refit on the rows after the change
        assert not svc._may_update()
    else:
        assert len(lr.real) == 350
    assert lr.n_real == svc.real_steps == 350  # the counters (and the store) keep every row


def test_a_change_is_measured_against_the_new_episodes_error_level_when_it_is_above_the_fitted_error(
        tmp_path: Path) -> None:
    """The same laggy episode after the same nominal ones is no change to a trainer whose model erred as much on
    the last new episodes (``refresh.change_baseline_window``): the detector compares out-of-sample errors."""
    from robodyna.loop.trainer import TrainerService
    from robodyna.transport.keys import generate_keys

    generate_keys(tmp_path / "keys", "trainer")
    cfg = ServiceConfig(algo_overrides=OVERRIDES, refresh=RefreshConfig(restart_on_change=False))
    svc = TrainerService("reacher2", tmp_path / "svc", "tcp://127.0.0.1:0", tmp_path / "keys", cfg,
                         init_checkpoint=CKPT)
    for i in range(6):
        svc._ingest("robot0", _episode(svc, "nominal", i))
    assert len(svc.new_errors) == 1 and svc.new_errors[0] < 10 * svc.fitted_error
    svc.new_errors = [1.0] * 5  # as if the model had been that wrong on each of the last five new episodes
    svc._ingest("robot0", _episode(svc, "laggy", 6))
    assert len(svc.learner.real) == 350 and len(svc.new_errors) == 5  # no change: measured, kept in the level


def test_by_default_a_detected_change_also_reloads_the_stage1_agent_and_model(tmp_path: Path) -> None:
    import torch

    from robodyna.learn.checkpoint import load_checkpoint
    from robodyna.loop.trainer import TrainerService
    from robodyna.transport.keys import generate_keys

    generate_keys(tmp_path / "keys", "trainer")
    cfg = ServiceConfig(algo_overrides=OVERRIDES)  # the defaults: forget_on_change_ratio 10, restart_on_change
    svc = TrainerService("reacher2", tmp_path / "trainer", "tcp://127.0.0.1:0", tmp_path / "keys", cfg,
                         init_checkpoint=CKPT)
    lr = svc.learner
    for i in range(5):
        svc._ingest("robot0", _episode(svc, "nominal", i))
    lr.update(200)  # the critics move away from the checkpoint's
    st = load_checkpoint(CKPT, svc.spec, svc.obs_names)["learner"]
    critic = {k: v for k, v in lr.agent.state_dict()["critic"].items()}
    assert any(not torch.equal(v, st["sac"]["critic"][k].to(v.dtype)) for k, v in critic.items())
    fitted = svc.fitted_error
    lr.agent.freeze_actor(100)  # as a rejected round's critic warm-up leaves it, in the agent's update count
    svc._ingest("robot0", _episode(svc, "laggy", 5))
    assert len(lr.real) == 50
    now = lr.agent.state_dict()
    for part in ("actor", "critic"):
        for k, v in now[part].items():
            assert torch.equal(v, st["sac"][part][k].to(v.dtype)), (part, k)
    assert lr.agent.n_updates >= lr.agent.actor_frozen_until  # the actor is not left frozen by the old count
    assert svc.fitted_error != fitted and svc._sim_fits == lr.n_fits  # the simulation model's, measured again
    svc.metrics.flush()
    assert [(n, restarted) for _, n, restarted in detected_changes(tmp_path)] == [(250, True)]  # as a run records it


def test_a_trainer_that_started_fresh_forgets_at_a_change_but_does_not_load_a_stage1_agent(tmp_path: Path) -> None:
    """``warm_start: fresh`` ignores the stage-1 checkpoint at the start, so a restart has nothing to go back to: the
    learner forgets the rows before the change and goes on with its own agent."""
    import torch

    from robodyna.loop.trainer import TrainerService
    from robodyna.transport.keys import generate_keys

    generate_keys(tmp_path / "keys", "trainer")
    cfg = ServiceConfig(algo_overrides=OVERRIDES, warm_start="fresh")
    svc = TrainerService("reacher2", tmp_path / "trainer", "tcp://127.0.0.1:0", tmp_path / "keys", cfg,
                         init_checkpoint=CKPT)
    lr = svc.learner
    for i in range(6):  # refitted at 250 rows: the sixth episode's error is the first of the change detector's level
        svc._ingest("robot0", _episode(svc, "nominal", i))
    own = {k: v.clone() for k, v in lr.agent.state_dict()["actor"].items()}
    assert len(svc.new_errors) == 1
    svc._forget(1.0, svc.fitted_error)  # as a detected change calls it
    assert len(lr.real) == 0 and svc._sim_fits == lr.n_fits and svc.new_errors == []  # the old robot's level
    svc.metrics.flush()
    assert [(n, restarted) for _, n, restarted in detected_changes(tmp_path)] == [(300, False)]
    for k, v in lr.agent.state_dict()["actor"].items():
        assert torch.equal(v, own[k]), k
