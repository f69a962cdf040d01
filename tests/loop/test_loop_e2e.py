"""The sim-to-real loop end to end: the trainer service and the controller as two real processes on a CURVE link
over loopback, a reality profile as the "real" robot, warm-started from the shipped reacher2 simulation checkpoint.

- rounds run until the real-step budget: every pushed version is accepted and swapped in, both policies are
  evaluated on the "real" robot and reported (that the adapted policy ends closer to the target needs the
  preset's 2000 real steps: ``test_loop_gain.py`` asserts it on the default loop, unchanged);
- a trainer killed mid-run is restarted and the loop still finishes; an interrupted loop resumes with --resume;
  every real row the controller recorded reaches the trainer's store and the learner exactly once;
- a controller that dies with a refresh request outstanding and comes back after the request timeout is asked again;
- a dynamics change injected mid-run makes the model-error signal trigger refresh requests.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from robodyna.data.store import EpisodeStore
from robodyna.loop.config import LoopConfig, load_loop_config
from robodyna.loop.report import detected_changes
from robodyna.loop.run import LoopRun
from tests.conftest import process_alive

# make test runs these beside the other heavy tests: the loops are in lockstep (the same rows and weights however busy
# the cores) and their time limits are minutes
pytestmark = pytest.mark.heavy

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "configs" / "loops" / "checkpoints" / "reacher2_sim.pt"

FAST = [
    f"stage1.checkpoint={CKPT}",
    "trainer.algo_overrides=[ensemble.max_fit_batches=60,rollout_batch=5000,updates_per_step=5,model_train_every=100]",
    "timeout_s=300",
]


def cfg(*overrides: str) -> LoopConfig:
    return load_loop_config("reacher2", [*FAST, *overrides])


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def onnx_weights(path: Path) -> dict[str, np.ndarray]:
    import onnx
    from onnx import numpy_helper

    return {i.name: numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
            if numpy_helper.to_array(i).dtype.kind == "f" and numpy_helper.to_array(i).size > 1}


def check_no_real_data_lost(run_dir: Path) -> int:
    rec = EpisodeStore(run_dir / "controller" / "record").read()
    got = EpisodeStore(run_dir / "trainer" / "store" / "robot0").read()
    assert len(got) == len(rec)
    for k in ("obs", "action", "reward", "next_obs"):
        assert np.array_equal(getattr(rec.batch, k), getattr(got.batch, k))
    summary = json.loads((run_dir / "trainer" / "summary.json").read_text())
    assert summary["ingested"]["robot0"] == len(rec) == summary["counters"]["real"]
    return len(rec)


def test_loop_end_to_end_two_processes_real_sockets(tmp_path: Path) -> None:
    run = LoopRun.create(cfg("trainer.real_step_budget=300", "eval.episodes=5"), tmp_path / "run")
    res = run.run()
    ev = res["eval"]
    assert np.isfinite(ev["sim_only"]["mean_final_distance_m"]) and np.isfinite(ev["adapted"]["mean_final_distance_m"])
    assert ev["adapted"]["policy"] != ev["sim_only"]["policy"]
    assert res["summary"]["done"] and res["summary"]["real_steps"] >= 300
    assert check_no_real_data_lost(tmp_path / "run") == res["summary"]["real_steps"]
    versions = {int(p.stem.split("_v")[1]) for p in (tmp_path / "run" / "trainer" / "policies").glob("*.onnx")}
    assert versions == set(range(res["summary"]["sim_policy_version"], res["summary"]["policy_version"] + 1))
    accepted = rows(tmp_path / "run" / "trainer" / "policy_results.csv")
    assert accepted and all(r["accepted"] == "1" for r in accepted)
    rec = EpisodeStore(tmp_path / "run" / "controller" / "record").read()
    assert len(np.unique(rec.extras["policy_version"])) >= 3  # the controller ran the pushed versions
    # no SAC update before the first model refit on real data (200 rows) filled the model buffer
    pushed = rows(tmp_path / "run" / "trainer" / "policies.csv")
    assert all(int(r["updates"]) == 0 for r in pushed if int(r["real_steps"]) < 200), pushed
    assert any(int(r["updates"]) > 0 for r in pushed), pushed
    # the adapted policy (pushed last) averages the actor weights of the last k pushed versions, the final iterate
    # included, k chosen by the model (final_selection: window): every window is a row of selection.csv
    assert pushed[-2]["reason"] == "final" and int(pushed[-1]["version"]) == int(pushed[-2]["version"]) + 1
    sel = rows(tmp_path / "run" / "trainer" / "selection.csv")
    final, sim = int(pushed[-2]["version"]), res["summary"]["sim_policy_version"]
    assert len(sel) == final - sim + 1 and sum(r["chosen"] == "1" for r in sel) == 1, sel
    chosen = next(r for r in sel if r["chosen"] == "1")
    assert float(chosen["model_score"]) == max(float(r["model_score"]) for r in sel)
    assert pushed[-1]["reason"].startswith(f"selected {chosen['candidate']} (model return")
    name = chosen["candidate"].removeprefix("average of ")
    first, last = (int(v) for v in name.removeprefix("v").split("-v")) if "-" in name else (final, final)
    assert last == final and sim <= first <= final, chosen
    pol = tmp_path / "run" / "trainer" / "policies"
    actor = lambda v: {k: w for k, w in onnx_weights(pol / f"policy_v{v}.onnx").items()  # noqa: E731
                       if k.startswith("actor.")}
    averaged, parts = actor(final + 1), [actor(v) for v in range(first, final + 1)]
    assert averaged.keys() == parts[0].keys() and len(averaged) >= 4
    for k, w in averaged.items():
        np.testing.assert_allclose(w, np.mean([p[k] for p in parts], axis=0), rtol=1e-5, atol=1e-6, err_msg=k)
    assert f"The adapted policy (v{final + 1}): selected {chosen['candidate']}" in \
        (tmp_path / "run" / "report.md").read_text()
    # the service's metrics against real steps: metrics.csv and TensorBoard, one real/ row per real episode
    metrics = rows(tmp_path / "run" / "trainer" / "metrics.csv")
    keys = {r["key"] for r in metrics}
    assert {"real/final_distance_m", "drift/model_error_ratio", "drift/state_novelty", "policy/version",
            "model/train_loss"} <= keys, keys
    n_eps = len(rows(tmp_path / "run" / "trainer" / "real_episodes.csv"))
    assert sum(r["key"] == "real/return" for r in metrics) == n_eps > 0
    assert any(p.stat().st_size > 0 for p in (tmp_path / "run" / "trainer" / "tb").glob("events.out.tfevents.*"))
    report = (tmp_path / "run" / "report.md").read_text()
    assert "sim-only" in report and (tmp_path / "run" / "plots" / "drift_signals.png").stat().st_size > 1000
    # the preset validates every round's policy in the model before it is pushed: one row per round, in the report
    val = rows(tmp_path / "run" / "trainer" / "validation.csv")
    assert len(val) >= 2 and {r["pushed"] for r in val} <= {"0", "1"}
    off = sum(r["pushed"] == "0" for r in val)
    assert f"predicted {off} of {len(val)} rounds' policies worse" in report
    assert "None: no process exited early" in report
    assert f"Every one of the {res['summary']['real_steps']} rows the controller recorded is in the trainer's" in report


def test_trainer_killed_mid_run_restarts_and_interrupted_loop_resumes(tmp_path: Path) -> None:
    rd = tmp_path / "run"
    run = LoopRun.create(cfg("trainer.real_step_budget=300", "eval.episodes=2"), rd)
    ckpt = run.stage1()
    killed = {"done": False}
    real_start = run._start_trainer

    def start_trainer(c: Path) -> str:  # the first trainer is SIGKILLed once it has persisted two episodes
        ep = real_start(c)
        if not killed["done"]:
            killed["done"] = True
            proc = run.trainer
            assert proc is not None

            def kill_later() -> None:
                end = time.monotonic() + 120
                while time.monotonic() < end and proc.poll() is None:
                    p = rd / "trainer" / "real_episodes.csv"
                    if p.exists() and len(rows(p)) >= 2:
                        os.kill(proc.pid, signal.SIGKILL)
                        return
                    time.sleep(0.05)

            import threading

            threading.Thread(target=kill_later, daemon=True).start()
        return ep

    run._start_trainer = start_trainer  # type: ignore[method-assign]
    run.cfg = cfg("trainer.real_step_budget=300", "eval.episodes=2", "timeout_s=15")
    del ckpt
    with pytest.raises(RuntimeError, match="did not finish"):  # the loop stops cleanly, with a report
        run.run()
    assert "stopped early" in (rd / "report.md").read_text()
    assert "The trainer process exited early" in (rd / "report.md").read_text()
    events = [json.loads(x)["event"] for x in (rd / "events.jsonl").read_text().splitlines()]
    assert "trainer_exited" in events and events.count("trainer_started") >= 2
    res = LoopRun.resume(rd).run()
    assert res["summary"]["done"]
    check_no_real_data_lost(rd)


def test_a_controller_away_past_the_request_timeout_is_asked_again_when_it_comes_back(tmp_path: Path) -> None:
    """A controller dies while the trainer's refresh request is outstanding and comes back after longer than
    ``refresh.request_timeout_s`` knowing of no request (started with no episodes of its own, as a controller
    restarted by hand on the robot's machine): the trainer asks again, the loop finishes and no real row is lost.
    Without the re-sent request the lockstep trainer would wait for rows that never come."""
    rd = tmp_path / "run"
    run = LoopRun.create(cfg("trainer.real_step_budget=250", "eval.episodes=1", "controller.pace=true",
                             "trainer.refresh.refresh_episodes=2", "trainer.refresh.request_timeout_s=3",
                             "timeout_s=120"), rd)
    real_start = run._start_controller
    away = {"killed": False, "away_s": 6.0}

    def start_controller(endpoint: str, episodes: int) -> None:
        if away["killed"]:  # the loop restarts the controller it lost: it was away, and comes back knowing nothing
            time.sleep(away["away_s"])
            real_start(endpoint, 0)
            return
        real_start(endpoint, episodes)
        proc = run.controller
        assert proc is not None

        def kill_at_the_first_request() -> None:  # paced (50 Hz): the two episodes asked for take 2 s
            end = time.monotonic() + 150
            p = rd / "trainer" / "refresh.csv"
            while time.monotonic() < end and proc.poll() is None:
                if p.exists() and rows(p):
                    away["killed"] = True
                    os.kill(proc.pid, signal.SIGKILL)
                    return
                time.sleep(0.01)

        import threading

        threading.Thread(target=kill_at_the_first_request, daemon=True).start()

    run._start_controller = start_controller  # type: ignore[method-assign]
    res = run.run()
    assert away["killed"] and res["summary"]["done"]
    events = [json.loads(x) for x in (rd / "events.jsonl").read_text().splitlines()]
    assert [e["episodes"] for e in events if e["event"] == "controller_started"][1:] == [0]
    assert "unanswered for 3 s: sending it again" in (rd / "trainer" / "trainer.log").read_text()
    n = check_no_real_data_lost(rd)
    assert n == res["summary"]["real_steps"] >= 250
    report = (rd / "report.md").read_text()  # and the report says what happened
    assert "The controller process exited early 1 time (exit codes -9;" in report
    # once at least (under load the answer to the re-sent request can itself take longer than the timeout)
    assert re.search(r"\d+ refresh requests? (was|were) re-sent after `trainer.refresh.request_timeout_s`", report)
    assert f"Every one of the {n} rows the controller recorded is in the trainer's store." in report


def test_a_lockstep_loop_repeats_bit_for_bit_whether_the_robot_runs_at_its_real_rate_or_flat_out(
        tmp_path: Path) -> None:
    # paced: 50 Hz, a second per episode, in which a trainer not in lockstep runs more SAC updates than while an
    # unpaced robot collects the same episode (so without lockstep the two runs part at the first refresh). Across a
    # dynamics change too: the controller changes the robot at a real step count (``--reality-change``)
    runs = {}
    for pace in ("false", "true"):
        rd = runs[pace] = tmp_path / f"pace_{pace}"
        LoopRun.create(cfg("trainer.lockstep=true", f"controller.pace={pace}", "trainer.real_step_budget=300",
                           "eval.episodes=1", "reality=nominal", "inject.after_real_steps=200",
                           "inject.reality=heavy"), rd).run()
        assert detected_changes(rd), "the change was not detected"
    fast, paced = (sorted((runs[p] / "trainer" / "policies").glob("policy_v*.onnx")) for p in ("false", "true"))
    assert len(fast) >= 3 and [f.name for f in fast] == [f.name for f in paced]
    for a, b in zip(fast, paced):
        wa, wb = onnx_weights(a), onnx_weights(b)
        assert all(np.array_equal(w, wb[k]) for k, w in wa.items()), f"{a.name}: weights differ"
    for name in ("refresh.csv", "validation.csv", "policies.csv"):
        ra, rb = ([{k: v for k, v in r.items() if k != "wall_s"} for r in rows(runs[p] / "trainer" / name)]
                  for p in ("false", "true"))
        assert ra == rb, name


def test_dynamics_change_mid_run_triggers_model_error_refreshes(tmp_path: Path) -> None:
    rd = tmp_path / "run"
    c = cfg("reality=nominal", "inject.after_real_steps=200", "inject.reality=heavy", "trainer.real_step_budget=450",
            "eval.episodes=2", "trainer.refresh.policy_age=100", "trainer.refresh.return_gap=100",
            "trainer.final_selection=average")
    first_eval = LoopRun.create(c, rd).run()["eval"]
    assert first_eval["reality"] == "heavy"
    # resumed after it finished (to re-evaluate): still the robot it changed to, not the one it started on
    again = LoopRun.resume(rd)
    again.stage2(CKPT)
    assert again.reality == "heavy"
    assert again.evaluate()["adapted"] == first_eval["adapted"]
    dec = rows(rd / "trainer" / "refresh.csv")
    change = [json.loads(x) for x in (rd / "events.jsonl").read_text().splitlines()
              if json.loads(x)["event"] == "dynamics_change"]
    assert change, "the dynamics change was not injected"
    before = [d for d in dec if int(d["real_steps"]) <= 200]
    after = [d for d in dec if int(d["real_steps"]) > 200]
    assert not [d for d in before if d["reason"] == "model_error_ratio"], before
    assert [d for d in after if d["reason"] == "model_error_ratio"], after
    # the trainer detects it once, on the first episodes after it, and restarts from the stage-1 agent and model
    # (refresh.forget_on_change_ratio, restart_on_change: the defaults)
    detected = detected_changes(rd)
    assert len(detected) == 1 and 200 <= detected[0][0] <= 300, detected
    assert "restarted from" in (rd / "trainer" / "trainer.log").read_text()
    # final_selection: average: the adapted policy averages the final iterate and the final_average_versions (4)
    # versions pushed before it (the sim-only one is not among them)
    pushed = rows(rd / "trainer" / "policies.csv")
    first, last = (int(v) for v in pushed[-1]["reason"].removeprefix("average of v").split("-v"))
    assert pushed[-2]["reason"] == "final" and last == int(pushed[-2]["version"]) == int(pushed[-1]["version"]) - 1
    assert first == max(last - 4, int(pushed[0]["version"])), pushed
    pol = rd / "trainer" / "policies"
    averaged = onnx_weights(pol / f"policy_v{last + 1}.onnx")
    parts = [onnx_weights(pol / f"policy_v{v}.onnx") for v in range(first, last + 1)]
    for k, w in averaged.items():
        np.testing.assert_allclose(w, np.mean([p[k] for p in parts], axis=0), rtol=1e-5, atol=1e-6, err_msg=k)
    assert any(not np.allclose(w, parts[-1][k]) for k, w in averaged.items())  # not the final iterate itself


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_loop_killed_with_sigkill_takes_its_trainer_and_controller_with_it(tmp_path: Path) -> None:
    import subprocess
    import sys

    rd = tmp_path / "run"
    sets = [a for o in [*FAST, "trainer.real_step_budget=100000"] for a in ("--set", o)]
    loop = subprocess.Popen([sys.executable, "-m", "robodyna.cli.main", "loop", "--config", "reacher2",
                             "--run-dir", str(rd), *sets], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pids: dict[str, int] = {}
    try:
        end = time.monotonic() + 180
        rec_dir = rd / "controller" / "record"
        # the store is readable once its meta.json is (written atomically after the folder is made: a CI run
        # once polled in between)
        while len(pids) < 2 or not (rec_dir / "meta.json").is_file() or EpisodeStore(rec_dir).num_transitions < 100:
            assert time.monotonic() < end and loop.poll() is None, (pids, loop.returncode)
            time.sleep(0.2)
            if (rd / "events.jsonl").exists():
                for e in map(json.loads, (rd / "events.jsonl").read_text().splitlines()):
                    if e["event"] in ("trainer_started", "controller_started"):
                        pids[e["event"].split("_")[0]] = e["pid"]
        assert all(process_alive(p) for p in pids.values())
    finally:
        loop.kill()  # no clean stop of its own: the kernel tells the children
        loop.wait()
    end = time.monotonic() + 90  # a clean stop, else lifetime.EXIT_GRACE_S (45 s) ends it
    while time.monotonic() < end and any(process_alive(p) for p in pids.values()):
        time.sleep(0.2)
    left = {k: p for k, p in pids.items() if process_alive(p)}
    for p in left.values():
        os.kill(p, signal.SIGKILL)
    assert not left, f"orphans still running after the loop was killed: {left}"
    rec = EpisodeStore(rd / "controller" / "record").read()  # what was recorded stays readable
    assert len(rec) >= 100
