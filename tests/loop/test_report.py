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
