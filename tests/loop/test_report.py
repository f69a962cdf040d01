"""The loop's report for a loop that stopped before the trainer wrote anything (a trainer that died at its start):
every plot is drawn, empty where there is no data yet, and the report says why the loop stopped."""

from __future__ import annotations

import warnings
from pathlib import Path

from robodyna.loop.config import load_loop_config
from robodyna.loop.report import write_report


def test_a_loop_stopped_before_any_real_data_gets_every_plot_and_says_why_without_warnings(tmp_path: Path) -> None:
    cfg = load_loop_config("reacher2", [])
    score = {"mean_return": -9.5, "mean_final_distance_m": 0.02, "success_rate": 0.4, "filtered_tick_fraction": 0.3}
    result = {"summary": {"done": False, "real_steps": 0, "rounds": 0, "policy_version": None,
                          "sim_policy_version": None, "error": "the trainer failed 4 times (see trainer.log)"},
              "eval": {"reality": "laggy", "episodes": 5, "sim_only": score | {"policy": "sim_only.onnx"},
                       "adapted": score | {"policy": "sim_only.onnx"}}}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. matplotlib's "no artists with labels" for a legend of nothing
        report = write_report(tmp_path, cfg, result)
    text = report.read_text()
    assert "The loop stopped early: the trainer failed 4 times" in text
    for name in ("real_vs_steps", "sim_only_vs_adapted", "model_error", "drift_signals"):
        assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 1000, name


def test_the_report_names_an_injected_dynamics_change_the_refreshes_after_it_and_the_change_the_trainer_detected(
        tmp_path: Path) -> None:
    import csv
    import json

    cfg = load_loop_config("reacher2", ["reality=nominal", "inject.after_real_steps=1000", "inject.reality=laggy"])
    score = {"mean_return": -9.5, "mean_final_distance_m": 0.02, "success_rate": 0.4, "filtered_tick_fraction": 0.3}
    result = {"summary": {"done": True, "real_steps": 1200, "rounds": 5, "policy_version": 3,
                          "sim_policy_version": 2},
              "eval": {"reality": "laggy", "episodes": 5, "sim_only": score | {"policy": "sim_only.onnx"},
                       "adapted": score | {"policy": "policy_v3.onnx"}}}
    (tmp_path / "trainer").mkdir()
    with open(tmp_path / "trainer" / "refresh.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["round", "real_steps", "updates", "reason"])
        w.writeheader()
        for i, (steps, reason) in enumerate([(950, "update_cap"), (1050, "model_error_ratio"),
                                             (1100, "model_error_ratio"), (1150, "policy_age")]):
            w.writerow({"round": i + 1, "real_steps": steps, "updates": 500 * i, "reason": reason})
    (tmp_path / "events.jsonl").write_text(
        json.dumps({"event": "controller_started", "reality": "nominal"}) + "\n"
        + json.dumps({"event": "dynamics_change", "reality": "laggy", "real_steps": 1000}) + "\n{\"event\": \"dyn")
    (tmp_path / "trainer" / "metrics.csv").write_text(
        "step,key,value\n1000,real/return,-9.1\n1050,drift/forgotten_rows,1000\n1050,drift/restarted,1.0\n"
        "1600,drift/forgotten_rows,450\n1600,drift/restarted,0.0\n1650,drift/forgotten_r")
    text = write_report(tmp_path, cfg, result).read_text()
    assert ("The trainer detected a dynamics change at 1050 real steps** (the newest rows predicted over 10 x worse "
            "than the model's error level, its fitted error or its error on the last new episodes if higher): it "
            "forgot the 1000 real rows before it (the store keeps them) and "
            "restarted the agent and the model from the stage-1 checkpoint") in text
    assert ("change at 1600 real steps** (the newest rows predicted over 10 x worse than the model's error level, "
            "its fitted error or its error on the last new episodes if higher): "
            "it forgot the 450 real rows before it (the store keeps them) and went on from the agent it had") in text
    assert ("Dynamics change injected at 1000 real steps (the robot became `laggy`): of the 3 refresh requests "
            "after it, 2 were triggered by the model-error signal") in text


def test_the_report_lists_process_exits_re_sent_requests_and_refused_policies_under_incidents(tmp_path: Path) -> None:
    import json

    cfg = load_loop_config("reacher2", [])
    score = {"mean_return": -9.5, "mean_final_distance_m": 0.02, "success_rate": 0.4, "filtered_tick_fraction": 0.3}
    result = {"summary": {"done": True, "real_steps": 400, "rounds": 5, "policy_version": 4, "sim_policy_version": 2},
              "eval": {"reality": "laggy", "episodes": 5, "sim_only": score | {"policy": "sim_only.onnx"},
                       "adapted": score | {"policy": "policy_v4.onnx"}}}
    clean = tmp_path / "clean"
    clean.mkdir()
    text = write_report(clean, cfg, result).read_text()
    assert "## Incidents\n\nNone: no process exited early, no refresh request was re-sent, the robot took every " \
           "pushed policy.\n" in text
    rd = tmp_path / "run"
    (rd / "trainer").mkdir(parents=True)
    (rd / "events.jsonl").write_text("\n".join(json.dumps(e) for e in [
        {"event": "controller_exited", "code": -9, "restart": 1}, {"event": "trainer_exited", "code": 1, "restart": 1},
        {"event": "controller_exited", "code": 0, "restart": 2}]) + "\n{\"event\": \"trainer_ex")
    (rd / "trainer" / "metrics.csv").write_text("step,key,value\n100,refresh/resent,2\n100,refresh/resent,2\n"
                                                "150,real/return,-3\n")
    (rd / "trainer" / "policy_results.csv").write_text(
        "robot,version,accepted,reason,wall_s\nrobot0,3,1,staged v3,1\nrobot0,4,0,test inference gave NaN,2\n")
    text = write_report(rd, cfg, result).read_text()
    assert "The trainer process exited early 1 time (exit codes 1;" in text
    assert "The controller process exited early 2 times (exit codes -9, 0;" in text
    assert "2 refresh requests were re-sent after `trainer.refresh.request_timeout_s` without an answer" in text
    assert "The robot refused 1 pushed policy and kept the one it ran (first: v4, test inference gave NaN;" in text
    assert "None: no process" not in text
