from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from robodyna.config import ConfigError
from robodyna.identity import IdentityMismatch
from robodyna.learn.checkpoint import load_checkpoint
from robodyna.learn.config import load_algo_config
from robodyna.learn.envs import make_env, obs_names_for_env, spec_for_env
from robodyna.learn.export import export_policy, read_metadata
from robodyna.learn.mbpo import agent_from_checkpoint, evaluate, train
from robodyna.learn.sac import DivergenceError
from robodyna.onboard.policy import OnnxPolicy

from .conftest import POINT_ID, tiny_overrides


def test_the_three_presets_run_through_the_same_loop(tmp_path: Path) -> None:
    for algo in ("mbpo", "dyna", "sac"):
        cfg = load_algo_config(algo, POINT_ID, tiny_overrides())
        res = train(cfg, POINT_ID, tmp_path / algo, 300, progress=False, tensorboard=False)
        assert res.steps == 300 and [e["step"] for e in res.evals] == [100.0, 200.0, 300.0]
        st = load_checkpoint(res.checkpoint)
        if algo == "sac":
            assert st["learner"]["model"] is None and st["learner"]["model_buffer"] is None
        else:
            assert st["learner"]["model"]["n_fits"] == 3 and st["learner"]["model_buffer"]["size"] > 0
            assert "model_error_1step" in res.evals[-1]
        assert (tmp_path / algo / "config.yaml").exists() and (tmp_path / algo / "metrics.csv").exists()


def test_rollout_rounds_between_refits_branch_from_the_current_model(tmp_path: Path) -> None:
    import csv

    cfg = load_algo_config("mbpo", POINT_ID, tiny_overrides() + ["rollout_every=25", "rollout_schedule=[0,1,2,2]"])
    assert cfg.model_buffer_size(2) == 4 * 400 * 2  # one epoch (100 steps) of rounds every 25 steps, k = 2
    res = train(cfg, POINT_ID, tmp_path / "r", 200, progress=False, tensorboard=False)
    rows = list(csv.DictReader(open(tmp_path / "r" / "metrics.csv")))
    fits = [int(r["step"]) for r in rows if r["key"] == "model/epochs"]
    rounds = [int(r["step"]) for r in rows if r["key"] == "rollout/transitions"]
    assert fits == [100, 200] and rounds == [100, 125, 150, 175, 200]
    assert load_checkpoint(res.checkpoint)["learner"]["model_buffer"]["size"] == 4 * 400 * 2  # FIFO full


def test_sac_learns_the_point_task_far_better_than_random(tmp_path: Path) -> None:
    cfg = load_algo_config("sac", POINT_ID, [
        "start_steps=200", "eval_every=2000", "eval_episodes=10", "sac.hidden=64", "sac.batch_size=64",
        "updates_per_step=1", "checkpoint_every=100000",
    ])
    res = train(cfg, POINT_ID, tmp_path / "sac", 2000, progress=False, tensorboard=False)
    env = make_env(POINT_ID)
    rand = evaluate(lambda o: np.random.default_rng(0).uniform(-1, 1, 1), env, 20, seed=1)["mean_return"]
    learned = res.evals[-1]["mean_return"]
    assert learned > 0.4 * rand, (learned, rand)  # returns are negative distances: 60% less distance
    assert res.evals[-1]["mean_final_distance_m"] < 0.15


def test_resume_continues_with_exactly_the_same_numbers(tmp_path: Path) -> None:
    over = tiny_overrides() + ["checkpoint_every=150"]
    cfg = load_algo_config("mbpo", POINT_ID, over)
    full = train(cfg, POINT_ID, tmp_path / "full", 330, progress=False, tensorboard=False)
    train(cfg, POINT_ID, tmp_path / "split", 170, progress=False, tensorboard=False)  # stops mid-episode
    resumed = train(cfg, POINT_ID, tmp_path / "split", 330, resume=True, progress=False, tensorboard=False)
    def on_schedule(evals: list[dict]) -> list[dict]:  # runs also evaluate when they stop
        return [e for e in evals if e["step"] % 100 == 0]

    assert on_schedule(full.evals) == on_schedule(resumed.evals) and len(on_schedule(full.evals)) == 3
    assert full.evals[-1] == resumed.evals[-1]
    a, b = load_checkpoint(full.checkpoint), load_checkpoint(resumed.checkpoint)
    for key, val in a["learner"]["sac"]["actor"].items():
        assert torch.equal(val, b["learner"]["sac"]["actor"][key]), key
    for key, val in a["learner"]["model"]["net"].items():
        assert torch.equal(val, b["learner"]["model"]["net"][key]), key


def test_divergence_stops_with_a_message_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    cfg = load_algo_config("sac", POINT_ID, tiny_overrides() + ["checkpoint_every=50", "max_abs_q=0.000000001"])
    with pytest.raises(DivergenceError, match=r"\|Q\| reached .* last good checkpoint kept at"):
        train(cfg, POINT_ID, tmp_path, 300, progress=False, tensorboard=False)
    assert load_checkpoint(tmp_path / "last.pt")["learner"]["counters"]["real"] == 50


def test_export_matches_torch_and_carries_robot_metadata(tmp_path: Path) -> None:
    env = make_env("Reacher-v5")
    spec, names = spec_for_env(env), obs_names_for_env(env)
    cfg = load_algo_config("sac", "Reacher-v5")
    from robodyna.learn.sac import SAC

    agent = SAC(10, 2, spec.action_low_array, spec.action_high_array, cfg.sac, seed=1)
    rng = np.random.default_rng(0)
    agent.set_obs_normalizer(rng.normal(size=10), rng.uniform(0.5, 2.0, size=10))
    path = export_policy(agent, spec, names, tmp_path / "p.onnx", policy_version=7, run_id="abc")
    onnx.checker.check_model(onnx.load(str(path)))
    assert not list(tmp_path.glob("*.data"))  # self-contained
    meta = read_metadata(path)
    assert meta["robot_name"] == "Reacher-v5" and meta["policy_version"] == "7" and meta["training_run_id"] == "abc"
    obs = (rng.normal(size=(10_000, 10)) * 3).astype(np.float32)
    ours = ort.InferenceSession(str(path)).run(None, {"obs": obs})[0]
    np.testing.assert_allclose(ours, agent.act(obs, deterministic=True), atol=1e-5)
    pol = OnnxPolicy(path, spec, names)
    np.testing.assert_allclose(pol(obs[0]), ours[0], atol=1e-6)
    other = spec.__class__(**{**spec.__dict__, "name": "panda"})
    with pytest.raises(IdentityMismatch, match=r"\(policy\): name is 'Reacher-v5' there, 'panda' here"):
        OnnxPolicy(path, other)
    wider = spec.__class__(**{**spec.__dict__, "action_high": (2.0, 2.0)})
    with pytest.raises(IdentityMismatch, match=r"action_high is \[1\.0, 1\.0\] there, \[2\.0, 2\.0\] here"):
        OnnxPolicy(path, wider)


def test_checkpoint_for_another_robot_or_obs_layout_is_refused(tmp_path: Path) -> None:
    cfg = load_algo_config("sac", POINT_ID, tiny_overrides())
    res = train(cfg, POINT_ID, tmp_path, 120, progress=False, tensorboard=False)
    with pytest.raises(IdentityMismatch, match=f"\\(checkpoint\\): name is '{POINT_ID}' there, 'Reacher-v5' here"):
        agent_from_checkpoint(res.checkpoint, make_env("Reacher-v5"))
    with pytest.raises(IdentityMismatch, match=r"obs_names is \['obs0', 'obs1'.*there, \['obs0', 'target_x'\] here"):
        load_checkpoint(res.checkpoint, obs_names=["obs0", "target_x"])


def test_config_robot_sections_merge_and_typos_fail_at_load(tmp_path: Path) -> None:
    cfg = load_algo_config("mbpo", "panda", ["real_ratio=0.1"])
    assert cfg.start_steps == 500 and cfg.real_ratio == 0.1 and cfg.ensemble.n_members == 7
    assert load_algo_config("mbpo").start_steps == "5 episodes"
    assert load_algo_config("mbpo", "Reacher-v5").rollout_batch == 100000
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo: mbpo\nrobots:\n  arm:\n    updates_per_stepp: 3\n")
    with pytest.raises(ConfigError, match="robots.arm.*updates_per_stepp"):
        load_algo_config(bad)
    with pytest.raises(ConfigError, match=r"start_steps.*'5 epsiodes'.*'N episodes' or 'T s'"):
        load_algo_config("mbpo", None, ["start_steps=5 epsiodes"])
    assert load_algo_config("mbpo", None, ["start_steps=2.5 s"]).in_steps(50, 50.0).start_steps == 125
    assert cfg.rollout_length(0) == 1
    sched = load_algo_config("mbpo", None, ["rollout_schedule=[20, 100, 1, 15]"])
    assert [sched.rollout_length(e) for e in (0, 20, 60, 100, 200)] == [1, 1, 8, 15, 15]


def test_cli_train_eval_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse
    import csv
    import json
    import re

    from robodyna.cli.learn import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(required=True))
    run = tmp_path / "run"
    argv = ["train", "--env", POINT_ID, "--algo", "sac", "--steps", "150", "--run-dir", str(run), "--no-progress"]
    argv += sum((["--set", o] for o in tiny_overrides()), [])
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    m = re.search(r"trained sac on \S+ for (\d+) steps with (\d+) SAC update\(s\); eval return (\S+) ± (\S+);", out)
    assert m, out
    # the printed numbers are the run's: steps and updates in the checkpoint, the last eval row of metrics.csv
    counters = load_checkpoint(run / "last.pt")["learner"]["counters"]
    assert int(m.group(1)) == 150 == counters["real"]
    assert int(m.group(2)) == counters["updates"] == 2 * (150 - 100 + 1)  # G=2 from start_steps=100 on
    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    last_step = max(int(float(r["step"])) for r in rows if r["key"] == "eval/mean_return")
    logged = {r["key"]: float(r["value"]) for r in rows
              if int(float(r["step"])) == last_step and r["key"].startswith("eval/")}
    assert float(m.group(3)) == pytest.approx(logged["eval/mean_return"], abs=5e-4)
    assert float(m.group(4)) == pytest.approx(logged["eval/std_return"], abs=5e-4)

    args = parser.parse_args(["export", str(run / "last.pt"), "--out", str(tmp_path / "x.onnx")])
    assert args.func(args) == 0
    assert f"policy (step 150, 102 SAC update(s)) to {tmp_path / 'x.onnx'}" in capsys.readouterr().out
    # the exported policy is the checkpoint's deterministic policy
    env = make_env(POINT_ID)
    agent, _ = agent_from_checkpoint(run / "last.pt", env)
    obs = np.random.default_rng(0).uniform(-2, 2, (64, 2)).astype(np.float32)
    onnx_out = ort.InferenceSession(str(tmp_path / "x.onnx")).run(None, {"obs": obs})[0]
    np.testing.assert_allclose(onnx_out, agent.act(obs, deterministic=True), atol=1e-5)
    assert read_metadata(tmp_path / "x.onnx")["policy_version"] == "1"  # the run exported version 1

    # eval: the printed numbers equal an in-process evaluation of the same policy with the same seed
    base = ["eval", "--policy", str(tmp_path / "x.onnx"), "--env", POINT_ID, "--episodes", "2"]
    args = parser.parse_args(base + ["--json"])
    assert args.func(args) == 0
    got = json.loads(capsys.readouterr().out)
    pol = OnnxPolicy(tmp_path / "x.onnx", spec_for_env(env), obs_names_for_env(env))
    want = evaluate(pol, make_env(POINT_ID), 2, seed=12345)
    for k in ("mean_return", "std_return", "mean_final_distance_m", "success_rate"):
        assert got[k] == pytest.approx(want[k], rel=1e-9, abs=1e-12), k
    assert got["episodes"] == 2
    args = parser.parse_args(base)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    m = re.search(r"return\s+(\S+) ± (\S+) \| final distance (\S+) cm \(median (\S+)\) \| success (\d+)%", out)
    assert m, out
    assert float(m.group(1)) == pytest.approx(want["mean_return"], abs=5e-4)
    assert float(m.group(2)) == pytest.approx(want["std_return"], abs=5e-4)
    assert float(m.group(3)) == pytest.approx(100 * want["mean_final_distance_m"], abs=5e-3)
    assert float(m.group(4)) == pytest.approx(100 * want["median_final_distance_m"], abs=5e-3)
    assert int(m.group(5)) == round(100 * want["success_rate"])


def test_onboard_policy_does_not_import_torch() -> None:
    code = "import sys, robodyna.onboard.policy; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
