"""The learner state the trainer service checkpoints every round loads back (an empty model buffer included: the
safe checkpoint loader once refused the b"" of an empty array)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
