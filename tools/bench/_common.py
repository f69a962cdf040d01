"""Shared by the benchmarks: writing their JSON results, a quiet logger for SB3, and medians and ratios of
right-censored step counts (runs that stopped before reaching a level)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def write_json(path: str | Path, result: dict[str, Any]) -> None:
    """Write ``result`` as indented JSON (creating the folder) and say where."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=2))
    print(f"wrote {p}")


def silence_sb3_logger(model: Any) -> None:
    """Give an SB3 model a logger with no outputs. Without one, every ``learn()`` call configures a fresh logger,
    and each of those creates an empty ``SB3-<timestamp>`` folder in the temp directory (thousands per benchmark)."""
    from stable_baselines3.common.logger import Logger

    model.set_logger(Logger(folder=None, output_formats=[]))


# A step count known exactly (``True``) or only as a lower bound (``False``: the run stopped, at its step cap or by
# its own stop rule, before reaching the level, so it needs more than the steps it ran).
Censored = tuple[float, bool]


def first_step_at(evals: Sequence[Sequence[float]], level: float) -> Censored:
    """The first evaluation step whose value (``row[1]``) reached ``level`` (exact), else the last evaluated step
    as a lower bound. ``evals``: rows ``(step, value, ...)`` in step order."""
    for row in evals:
        if row[1] >= level:
            return float(row[0]), True
    return (float(evals[-1][0]) if len(evals) else 0.0), False


def censored_median(values: Sequence[Censored]) -> Censored:
    """Median of possibly censored values: exact when the lower bounds cannot move it (the same median with every
    bound replaced by +inf), else the median of the bounds as a lower bound (the median is monotone in each value)."""
    if not values:
        return math.nan, True
    low = float(np.median([v for v, _ in values]))
    high = float(np.median([v if exact else math.inf for v, exact in values]))
    return low, low == high


def censored_ratio(baseline: Censored, algo: Censored) -> tuple[float, str]:
    """``baseline / algo`` steps with what is known of it: ``("=", r)`` both exact, ``(">=", r)`` the baseline only
    a lower bound (it needs at least r times the steps), ``("<=", r)`` the algo only a lower bound, ``("?", nan)``
    both (returned as (value, relation))."""
    (b, b_exact), (a, a_exact) = baseline, algo
    if math.isnan(b) or math.isnan(a) or a <= 0:
        return math.nan, "?"
    if b_exact and a_exact:
        return b / a, "="
    if a_exact:
        return b / a, ">="
    if b_exact:
        return b / a, "<="
    return math.nan, "?"


def format_censored(value: float, relation: str, fmt: str = "{:g}") -> str:
    """``12000`` (relation ``=``), ``>=140000``, ``<=0.25``, ``?``."""
    if relation == "?" or math.isnan(value):
        return "?"
    return ("" if relation == "=" else relation) + fmt.format(value)


def relation_of(exact: bool) -> str:
    """``=`` for an exact value, ``>=`` for a lower bound."""
    return "=" if exact else ">="
