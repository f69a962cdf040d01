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
