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


def run_from_metrics(run_dir: str | Path, algos: Sequence[str]) -> dict[str, Any]:
    """A sample-efficiency run rebuilt from the ``metrics.csv`` its learner wrote into ``ENV_ALGO_SEED/`` (every
    evaluation lands there as it happens), for a run stopped before it wrote its ``sample_efficiency.json``
    (killed, or its machine lost): the evaluation curve (``eval/mean_return``) and precision (``eval/success_rate``,
    ``eval/mean_final_distance_m``) up to its last evaluation, which then bounds the steps it did not reach."""
    import csv

    d = Path(run_dir)
    env, algo, seed = (d.name.rsplit("_", 2) + ["", ""])[:3]
    if algo not in algos or not seed.isdigit():
        raise ValueError(f"{d}: a run folder is named ENV_ALGO_SEED with ALGO one of {', '.join(algos)} "
                         f"(got {d.name!r})")
    evals: dict[int, dict[str, float]] = {}
    with open(d / "metrics.csv", newline="") as fh:
        rows = csv.DictReader(fh)
        if rows.fieldnames != ["step", "key", "value"]:
            raise ValueError(f"{d / 'metrics.csv'}: header {rows.fieldnames}, expected step,key,value")
        for i, row in enumerate(rows, start=2):
            if row["key"].startswith("eval/"):
                try:
                    evals.setdefault(int(row["step"]), {})[row["key"]] = float(row["value"])
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{d / 'metrics.csv'} line {i}: {exc}") from exc
    keys = ("eval/mean_return", "eval/success_rate", "eval/mean_final_distance_m")
    steps = sorted(s for s, e in evals.items() if all(k in e for k in keys))
    if not steps:
        raise ValueError(f"{d / 'metrics.csv'}: no complete evaluation ({', '.join(keys)})")
    curve = [(s, evals[s][keys[0]]) for s in steps]
    precision = [(s, evals[s][keys[1]], evals[s][keys[2]]) for s in steps]
    return {"env": env, "algo": algo, "seed": int(seed), "curve": curve, "precision": precision,
            "seconds": math.nan, "seconds_to_threshold": math.nan, "final_success_rate": precision[-1][1],
            "final_distance_m": precision[-1][2], "from_metrics": str(d / "metrics.csv")}
