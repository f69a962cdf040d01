"""`train --init-data DIR`: a recorded episode store warm-starts MBPO's real buffer and model."""

from __future__ import annotations

from pathlib import Path

import pytest

from robodyna.cli.main import main
from robodyna.identity import IdentityMismatch
from robodyna.learn.checkpoint import load_checkpoint
from robodyna.learn.config import load_algo_config
from robodyna.learn.mbpo import train

from .conftest import tiny_overrides


def record(tmp_path: Path, robot: str, episodes: int) -> Path:
    out = tmp_path / f"{robot}_store"
    assert main(["record", "--robot", robot, "--policy", "random", "--episodes", str(episodes),
                 "--out", str(out), "--no-progress"]) == 0
    return out


def test_init_data_fills_the_real_buffer_and_fits_the_model_before_the_first_step(tmp_path: Path) -> None:
    store = record(tmp_path, "reacher2", 4)  # 4 x 50 transitions
    cfg = load_algo_config("mbpo", "reacher2", tiny_overrides(steps_start=300) + ["model_train_every=1000"])
    res = train(cfg, "reacher2", tmp_path / "run", 60, progress=False, tensorboard=False, init_data=store)
    st = load_checkpoint(res.checkpoint)
    assert st["learner"]["real_buffer"]["size"] == 200 + 60
    assert st["learner"]["model"]["n_fits"] == 1  # the warm start; no refit within 60 steps (model_train_every=1000)
    assert st["learner"]["counters"]["init"] == 200


def test_init_data_from_another_robot_is_refused_naming_the_mismatch(tmp_path: Path) -> None:
    store = record(tmp_path, "panda", 1)
    cfg = load_algo_config("mbpo", "reacher2", tiny_overrides())
    with pytest.raises(IdentityMismatch, match=r"\(init_data\): name is 'panda' there, 'reacher2' here"):
        train(cfg, "reacher2", tmp_path / "run", 10, progress=False, tensorboard=False, init_data=store)
