"""The sample-efficiency benchmark's medians and ratios of step counts from runs that may have stopped before
reaching the level (tools/bench/_common.py): a run that stopped short only bounds its value from below."""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "bench"))

from _common import censored_median, censored_ratio, first_step_at, format_censored  # noqa: E402


def test_a_run_that_never_reached_the_level_gives_its_last_step_as_a_lower_bound() -> None:
    evals = [(5000, 0.0, 0.3), (10000, 0.5, 0.02), (15000, 0.85, 0.01)]
    assert first_step_at(evals, 0.8) == (15000.0, True)
    assert first_step_at(evals, 0.9) == (15000.0, False)
    assert first_step_at(evals, 0.5) == (10000.0, True)


def test_the_median_is_exact_only_when_no_lower_bound_can_move_it() -> None:
    # one short run above the median of three: the median is known
    assert censored_median([(26000, True), (28000, True), (140000, False)]) == (28000.0, True)
    # the middle value is a bound: the median is only a bound
    assert censored_median([(120000, True), (140000, False), (140000, False)]) == (140000.0, False)
    # a bound below the exact values moves the median when it is replaced by its true (larger) value
    assert censored_median([(1000, False), (5000, True), (9000, True)]) == (5000.0, False)


def test_ratios_say_which_side_is_a_bound() -> None:
    assert censored_ratio((140000, False), (28000, True)) == (5.0, ">=")
    assert censored_ratio((120000, True), (36000, True))[1] == "="
    assert censored_ratio((20000, True), (40000, False)) == (0.5, "<=")
    v, rel = censored_ratio((140000, False), (40000, False))
    assert rel == "?" and math.isnan(v)
    assert format_censored(5.0, ">=", "{:.1f}") == ">=5.0"
    assert format_censored(28000.0, "=") == "28000"
    assert format_censored(math.nan, "?") == "?"


def test_a_stopped_run_is_rebuilt_from_the_evaluations_its_learner_logged(tmp_path: Path) -> None:
    from _common import run_from_metrics

    d = tmp_path / "panda_mbpo_0"
    d.mkdir()
    rows = ["step,key,value", "150,train/episode_return,-59.1", "2000,eval/mean_return,-27.6",
            "2000,eval/success_rate,0.0", "2000,eval/mean_final_distance_m,0.19", "2000,eval/std_return,3.0",
            "4000,eval/mean_return,38.0", "4000,eval/success_rate,0.85", "4000,eval/mean_final_distance_m,0.009",
            "6000,eval/mean_return,30.0"]  # killed mid-evaluation: the incomplete one is left out
    (d / "metrics.csv").write_text("\n".join(rows) + "\n")
    r = run_from_metrics(d, ("mbpo", "sb3"))
    assert (r["env"], r["algo"], r["seed"]) == ("panda", "mbpo", 0)
    assert r["curve"] == [(2000, -27.6), (4000, 38.0)]
    assert r["precision"] == [(2000, 0.0, 0.19), (4000, 0.85, 0.009)]
    assert first_step_at(r["precision"], 0.8) == (4000.0, True)
    assert first_step_at(r["precision"], 0.9) == (4000.0, False)  # stopped there: a lower bound


def test_a_run_folder_that_is_not_one_is_refused_with_what_is_wrong(tmp_path: Path) -> None:
    import pytest
    from _common import run_from_metrics

    bad_name = tmp_path / "panda_ppo_0"
    bad_name.mkdir()
    (bad_name / "metrics.csv").write_text("step,key,value\n")
    with pytest.raises(ValueError, match="named ENV_ALGO_SEED"):
        run_from_metrics(bad_name, ("mbpo",))
    for name, text, msg in (("a_mbpo_1", "step,value\n1,2\n", "expected step,key,value"),
                            ("b_mbpo_1", "step,key,value\nx,eval/success_rate,0.5\n", "line 2"),
                            ("c_mbpo_1", "step,key,value\n10,train/loss,0.5\n", "no complete evaluation")):
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.csv").write_text(text)
        with pytest.raises(ValueError, match=msg):
            run_from_metrics(d, ("mbpo",))
