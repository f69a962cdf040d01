"""The learner state the trainer service checkpoints every round loads back (an empty model buffer included: the
safe checkpoint loader once refused the b"" of an empty array)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robodyna.learn.checkpoint import read_checkpoint, save_checkpoint
from robodyna.learn.config import load_algo_config
from robodyna.learn.envs import episode_steps_for_env, make_env, obs_names_for_env, spec_for_env, task_fns_for_env
from robodyna.learn.learner import Learner


def test_learner_state_with_empty_model_buffer_round_trips(tmp_path: Path) -> None:
    env = make_env("reacher2")
    try:
        cfg = load_algo_config("mbpo", "reacher2", ["ensemble.hidden=16", "sac.hidden=16", "sac.compile=false"])
        lr = Learner(cfg, spec_for_env(env), obs_names_for_env(env), task_fns_for_env(env), episode_steps_for_env(env))
        assert lr.model_buf is not None and len(lr.model_buf) == 0
        save_checkpoint(tmp_path / "s.pt", {"meta": lr.meta(), "learner": lr.state_dict()})
        st = read_checkpoint(tmp_path / "s.pt")
        assert st["learner"]["model_buffer"] is not None
        lr2 = Learner(cfg, spec_for_env(env), obs_names_for_env(env), task_fns_for_env(env),
                      episode_steps_for_env(env))
        lr2.load_state_dict(st["learner"])
        assert len(lr2.model_buf) == 0 and np.array_equal(lr2.counters()["real"], 0)
    finally:
        env.close()


def test_warm_start_keeps_the_checkpoint_network_shapes_when_the_preset_defaults_changed() -> None:
    """The shipped stage-1 checkpoint has critics without LayerNorm; the mbpo preset now adds it by default."""
    import pytest

    from robodyna.learn.checkpoint import load_checkpoint
    from robodyna.loop.trainer import warm_start_shapes

    ckpt = Path(__file__).resolve().parents[2] / "configs" / "loops" / "checkpoints" / "reacher2_sim.pt"
    env = make_env("reacher2")
    try:
        spec, names = spec_for_env(env), obs_names_for_env(env)
        state = load_checkpoint(ckpt, spec, names)["learner"]
        shapes = warm_start_shapes(state["config"])
        assert "sac.critic_layer_norm=false" in shapes
        args = (spec, names, task_fns_for_env(env), episode_steps_for_env(env))
        preset = load_algo_config("mbpo", "reacher2", ["sac.compile=false"])
        assert preset.sac.critic_layer_norm
        assert Learner(preset, *args).agent.critic.layer_norm
        lr = Learner(load_algo_config("mbpo", "reacher2", [*shapes, "sac.compile=false"]), *args)
        lr.agent.load_state_dict(state["sac"])
        assert not lr.agent.critic.layer_norm  # the function the checkpoint's critic was trained as
        assert lr.model is not None
        lr.model.load_state_dict(state["model"])
        # a checkpoint that says which critic it has is refused by the other (LayerNorm has no weights to clash)
        saved = lr.agent.state_dict()
        with pytest.raises(ValueError, match="critic_layer_norm=False, this config sac.critic_layer_norm=True"):
            Learner(preset, *args).agent.load_state_dict(saved)
    finally:
        env.close()


CKPT = Path(__file__).resolve().parents[2] / "configs" / "loops" / "checkpoints" / "reacher2_sim.pt"


def _service(tmp_path: Path, name: str, cfg: Any, warm: bool = True) -> Any:
    """A reacher2 trainer service in ``tmp_path/name`` (warm-started from the shipped checkpoint unless ``warm`` is
    False; the trainer's keys made once in ``tmp_path/keys``); it resumes from a ``learner.pt`` already there."""
    from robodyna.loop.trainer import TrainerService
    from robodyna.transport.keys import generate_keys

    if not (tmp_path / "keys").is_dir():
        generate_keys(tmp_path / "keys", "trainer")
    return TrainerService("reacher2", tmp_path / name, "tcp://127.0.0.1:0", tmp_path / "keys", cfg,
                          init_checkpoint=CKPT if warm else None)


def test_trainer_service_warm_starts_the_shipped_checkpoint_with_its_own_critic(tmp_path: Path) -> None:
    from robodyna.loop.trainer import ServiceConfig

    cfg = ServiceConfig(algo_overrides=["sac.compile=false"])
    svc = _service(tmp_path, "svc", cfg)
    assert not svc.learner.agent.critic.layer_norm and svc.learner.cfg.ensemble.normalizer == "first_fit"
    fresh = _service(tmp_path, "fresh", cfg, warm=False)
    assert fresh.learner.agent.critic.layer_norm  # the preset's own default


def test_a_warm_start_takes_the_configs_learning_rate_and_keeps_the_critic_warm_up_across_a_resume(
        tmp_path: Path) -> None:
    from robodyna.loop.trainer import ServiceConfig

    cfg = ServiceConfig(algo_overrides=["sac.compile=false", "sac.lr=0.0001"], critic_warmup_updates=500)
    svc = _service(tmp_path, "svc", cfg)
    agent = svc.learner.agent
    assert {g["lr"] for g in agent.optim.param_groups} == {1e-4}  # not the checkpoint's 3e-4
    sim_updates = agent.n_updates
    assert sim_updates > 0 and agent.actor_frozen_until == sim_updates + 500
    svc._save()
    resumed = _service(tmp_path, "svc", cfg)
    assert resumed.learner.agent.actor_frozen_until == sim_updates + 500


def test_the_refresh_schedulers_data_and_deferral_marks_survive_a_resume(tmp_path: Path) -> None:
    """A restarted trainer counts ``min_updates_between`` from the same marks as before (data and deferral), and
    measures a dynamics change against the same error level."""
    from robodyna.loop.trainer import ServiceConfig

    cfg = ServiceConfig(algo_overrides=["sac.compile=false"])
    svc = _service(tmp_path, "svc", cfg)
    svc.scheduler.updates_at_data, svc.scheduler.updates_at_defer = 1200, 1500
    svc.new_errors = [0.003, 0.002]  # and the change detector's error level of new episodes
    svc._save()
    resumed = _service(tmp_path, "svc", cfg)
    assert (resumed.scheduler.updates_at_data, resumed.scheduler.updates_at_defer) == (1200, 1500)
    assert resumed.new_errors == [0.003, 0.002]


def test_a_negative_final_average_is_refused_naming_the_key_and_value() -> None:
    from robodyna.loop.config import load_loop_config

    with pytest.raises(ValueError, match=r"trainer\.final_average_versions.*got -1"):
        load_loop_config("reacher2", ["trainer.final_average_versions=-1"])
    assert load_loop_config("reacher2", ["trainer.final_average_versions=0"]).trainer.final_average_versions == 0


@pytest.mark.parametrize("name", ["reacher2", "panda"])
def test_a_shipped_loop_checkpoint_is_made_for_its_robot_and_warm_starts_the_trainers_learner(name: str) -> None:
    """The identity rule accepts the preset's stage-1 checkpoint for its robot folder as it is now (observation
    layout included), and the trainer's learner, built with the checkpoint's network shapes, loads its agent and
    model: a robot.yaml change that outdates a shipped checkpoint fails here, not in a long loop run."""
    from robodyna.learn.checkpoint import load_checkpoint
    from robodyna.loop.config import load_loop_config
    from robodyna.loop.run import repo_path
    from robodyna.loop.trainer import warm_start_shapes

    cfg = load_loop_config(name)
    assert cfg.stage1.checkpoint
    env = make_env(cfg.robot)
    try:
        spec, names = spec_for_env(env), obs_names_for_env(env)
        state = load_checkpoint(repo_path(cfg.stage1.checkpoint), spec, names)["learner"]
        algo = load_algo_config(cfg.trainer.algo, cfg.robot,
                                [*warm_start_shapes(state["config"]), *cfg.trainer.algo_overrides, "sac.compile=false"])
        lr = Learner(algo, spec, names, task_fns_for_env(env), episode_steps_for_env(env))
        lr.agent.load_state_dict(state["sac"])
        assert lr.model is not None and state["model"] is not None
        lr.model.load_state_dict(state["model"])
    finally:
        env.close()


def test_lr_final_frac_anneals_the_sac_step_size_linearly_over_the_budgets_updates(tmp_path: Path) -> None:
    from robodyna.loop.trainer import ServiceConfig, TrainerService
    from robodyna.transport.keys import generate_keys

    generate_keys(tmp_path / "keys", "trainer")
    cfg = ServiceConfig(algo_overrides=["sac.compile=false", "sac.lr=0.0001", "updates_per_step=10",
                                        "ensemble.hidden=16", "sac.hidden=16"],
                        real_step_budget=100, lr_final_frac=0.1)
    svc = TrainerService("reacher2", tmp_path / "svc", "tcp://127.0.0.1:0", tmp_path / "keys", cfg)
    agent, lr = svc.learner.agent, svc.learner
    seen = []
    for n in (0, 500, 1000, 5000):  # the budget's updates: 10 x 100
        lr.n_updates = n
        svc._anneal_lr()
        seen.append({g["lr"] for g in agent.optim.param_groups})
    assert [len(s) for s in seen] == [1, 1, 1, 1]
    np.testing.assert_allclose([s.pop() for s in seen], [1e-4, 5.5e-5, 1e-5, 1e-5], rtol=1e-9)
    const = TrainerService("reacher2", tmp_path / "const", "tcp://127.0.0.1:0", tmp_path / "keys",
                           ServiceConfig(algo_overrides=["sac.compile=false", "sac.lr=0.0001", "ensemble.hidden=16",
                                                         "sac.hidden=16"]))
    const.learner.n_updates = 10_000
    const._anneal_lr()  # null: the step size stays sac.lr
    assert {g["lr"] for g in const.learner.agent.optim.param_groups} == {1e-4}


@pytest.mark.parametrize("bad", ["0", "1.5", "-0.1"])
def test_an_lr_final_frac_outside_zero_one_is_refused_naming_the_key(bad: str) -> None:
    from robodyna.loop.config import load_loop_config

    with pytest.raises(ValueError, match=rf"trainer\.lr_final_frac.*got {bad}"):
        load_loop_config("reacher2", [f"trainer.lr_final_frac={bad}"])


def test_a_loop_config_naming_no_algo_overrides_fine_tunes_behind_the_robots_filter(tmp_path: Path) -> None:
    from robodyna.loop.config import load_loop_config

    (tmp_path / "untuned.yaml").write_text("name: untuned\nrobot: reacher2\nreality: laggy\n")
    cfg = load_loop_config(tmp_path / "untuned.yaml")
    tuned = load_algo_config(cfg.trainer.algo, cfg.robot, cfg.trainer.algo_overrides)
    scratch = load_algo_config(cfg.trainer.algo, cfg.robot, [])  # the preset for training from scratch
    assert tuned.policy_filter and not scratch.policy_filter
    assert tuned.sac.lr < scratch.sac.lr and tuned.real_ratio > scratch.real_ratio
    assert tuned.sac.critic_lr is not None and tuned.sac.critic_lr > tuned.sac.lr  # two timescales
    # a config's own list replaces the default as a whole
    own = load_loop_config(tmp_path / "untuned.yaml", ["trainer.algo_overrides=[real_ratio=0.2]"])
    assert own.trainer.algo_overrides == ["real_ratio=0.2"]
    assert not load_algo_config(own.trainer.algo, own.robot, own.trainer.algo_overrides).policy_filter
