"""The env-free Learner: chunked ingestion gives the same work as row by row, non-finite rows are dropped and
counted, the update-to-data cap holds, and the default presets (periods in episodes) train a robot nobody tuned."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

import robodyna
from robodyna.data.batch import Batch
from robodyna.learn.config import load_algo_config
from robodyna.learn.learner import Learner
from robodyna.learn.mbpo import train
from robodyna.tasks import robot_task

TINY = ["ensemble.n_members=2", "ensemble.n_elites=1", "ensemble.hidden=16", "ensemble.layers=2",
        "ensemble.max_epochs=3", "sac.hidden=16", "sac.batch_size=16", "sac.compile=false", "sac.bf16_hidden=false",
        "rollout_batch=64", "updates_per_step=2", "start_steps=2 episodes", "model_train_every=2 episodes",
        "rollout_every=30", "epoch_length=4 episodes", "min_real_for_model=50", "sac.num_threads=1"]


@pytest.fixture(scope="module")
def real_rows() -> Batch:
    """600 real reacher2 transitions (12 episodes) from MuJoCo with random torques."""
    env = robodyna.make_env("reacher2", seed=0)
    rng = np.random.default_rng(0)
    rows = []
    obs, _ = env.reset(seed=0)
    for _ in range(600):
        a = rng.uniform(env.action_space.low, env.action_space.high).astype(np.float32)
        nxt, r, term, trunc, _ = env.step(a)
        rows.append(Batch.create(obs, a, float(r), nxt, term, trunc))
        obs = env.reset()[0] if term or trunc else nxt
    env.close()
    return Batch.concat(rows)


def make_learner() -> Learner:
    task = robot_task("reacher2")
    cfg = load_algo_config("mbpo", None, TINY)
    return Learner(cfg, task.spec, task.obs_names, task.fns, task.episode_steps)


@pytest.mark.parametrize("chunk", [7, 500])
def test_chunks_give_the_same_fits_rollouts_and_updates_as_rows_one_by_one(real_rows: Batch, chunk: int) -> None:
    one, chunked = make_learner(), make_learner()
    for i in range(len(real_rows)):
        one.ingest(real_rows.take(slice(i, i + 1)))
        one.update()
    for i in range(0, len(real_rows), chunk):
        chunked.ingest(real_rows.take(slice(i, i + chunk)))
        chunked.update()
    assert one.cfg.steps("model_train_every") == 100 and one.start_steps == 100  # 2 episodes of 50 steps
    assert one.counters() == chunked.counters()
    # refits at 100, 200, ... 600; rounds every 30 rows once the model is fitted (120 ... 600)
    assert one.counters()["fits"] == 6 and one.counters()["rollout_rounds"] == len(range(120, 601, 30))
    assert one.n_updates == 2 * (600 - 100 + 1)
    np.testing.assert_array_equal(one.real.all().obs, chunked.real.all().obs)


def test_rows_with_non_finite_values_are_dropped_and_counted_never_stored(real_rows: Batch) -> None:
    lr = make_learner()
    bad = real_rows.take(slice(0, 40))
    obs, rew = bad.obs.copy(), bad.reward.copy()
    obs[3, 1], rew[7], obs[9, 0] = np.nan, np.inf, -np.inf
    bad = Batch(obs, bad.action, rew, bad.next_obs, bad.terminated, bad.truncated)
    assert lr.ingest(bad) == 37
    assert lr.n_dropped == 3 and lr.n_real == 37 and len(lr.real) == 37
    assert np.isfinite(lr.real.all().obs).all() and np.isfinite(lr.real.all().reward).all()


def test_updates_never_exceed_the_update_to_data_cap(real_rows: Batch) -> None:
    lr = make_learner()
    lr.ingest(real_rows.take(slice(0, 99)))
    assert lr.update(10_000) == 0  # still exploring: start_steps = 100
    lr.ingest(real_rows.take(slice(99, 150)))
    assert lr.update(10_000) == 2 * 51 and lr.update(10_000) == 0
    lr.ingest(real_rows.take(slice(150, 151)))
    assert lr.update(1) == 1 and lr.update() == 1


def test_a_chunk_of_the_wrong_width_is_refused_naming_both(real_rows: Batch) -> None:
    lr = make_learner()
    narrow = Batch(real_rows.obs[:5, :4], real_rows.action[:5], real_rows.reward[:5], real_rows.next_obs[:5, :4],
                   real_rows.terminated[:5], real_rows.truncated[:5])
    with pytest.raises(ValueError, match=f"obs 4/action 2 columns, the learner expects {len(lr.obs_names)}/2"):
        lr.ingest(narrow)


def test_state_dict_round_trip_continues_with_the_same_counters_and_generator(real_rows: Batch) -> None:
    a = make_learner()
    a.ingest(real_rows.take(slice(0, 300)))
    a.update()
    b = make_learner()
    b.load_state_dict(a.state_dict())
    for lr in (a, b):
        lr.ingest(real_rows.take(slice(300, 400)))
        lr.update()
    assert a.counters() == b.counters()
    assert a.rng.integers(1 << 30) == b.rng.integers(1 << 30)


def test_default_presets_train_a_robot_folder_nobody_tuned(tmp_path: Path) -> None:
    folder = tmp_path / "arm_copy"
    shutil.copytree(Path(robodyna.__file__).parents[1] / "robots" / "reacher2", folder)
    spec = yaml.safe_load((folder / "robot.yaml").read_text())
    spec["name"] = "arm_copy"  # no `robots:` section of any preset applies to it
    (folder / "robot.yaml").write_text(yaml.safe_dump(spec))
    speed = ["ensemble.n_members=3", "ensemble.n_elites=2", "ensemble.hidden=32", "ensemble.max_epochs=20",
             "sac.hidden=32", "sac.compile=false", "rollout_batch=2000", "sac.num_threads=1"]
    cfg = load_algo_config("mbpo", "arm_copy", speed)
    assert cfg.start_steps == "5 episodes" and cfg.model_train_every == "5 episodes"
    res = train(cfg, str(folder), tmp_path / "run", 300, progress=False, tensorboard=False,
                export_to=tmp_path / "run" / "policy.onnx")
    lr = res.learner
    assert lr is not None and lr.cfg.start_steps == 250 and lr.cfg.eval_every == 250
    assert lr.n_fits == 1 and lr.n_rollout_rounds == 1 and lr.n_updates == 10 * (300 - 250 + 1)
    assert lr.policy_version == 1 and (tmp_path / "run" / "policy.onnx").is_file()
