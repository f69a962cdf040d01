"""Pairing sim2real results by seed (tools/bench/paired.py): only seeds both sides ran count, the differences are
taken per seed before averaging, and the standard error is that of the paired differences."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools" / "bench"))

from paired import load_rows, main, paired  # noqa: E402


def _row(seed: int, variant: str, gap_s: float, gap_d: float, succ: float = 0.8, dist: float = 0.01,
         profile: str = "laggy") -> dict[str, Any]:
    v = {"success_rate": succ, "mean_final_distance_m": dist, "gap_recovered_success_rate": gap_s,
         "gap_recovered_mean_final_distance_m": gap_d, "real_steps": 2000}
    return {"profile": profile, "seed": seed, "budget": 2000, "sim": {}, "oracle": {}, variant: v}


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(rows))
    return path


def test_only_seeds_on_both_sides_count_and_the_difference_is_taken_per_seed(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.json", [_row(0, "loop", 1.0, 0.9), _row(1, "loop", 0.8, 0.7), _row(2, "loop", 0.5, 0.5)])
    b = _write(tmp_path / "b.json",
               [_row(0, "fixed", 0.9, 0.9), _row(1, "fixed", 0.6, 0.8), _row(3, "fixed", 0.0, 0.0)])
    res = paired(load_rows([a], "loop"), "loop", load_rows([b], "fixed"), "fixed")
    assert res["n"] == 2 and [s["seed"] for s in res["seeds"]] == [0, 1]
    m = res["mean"]["success_rate"]
    assert m["gap_a"] == pytest.approx(90.0) and m["gap_b"] == pytest.approx(75.0)
    assert m["diff"] == pytest.approx(15.0)
    # differences 10 and 20: SD 7.07, SE 5.0 (the unpaired SEs would be 10 and 15)
    assert m["se_diff"] == pytest.approx(5.0)
    assert res["mean"]["mean_final_distance_m"]["diff"] == pytest.approx(-5.0)


def test_runs_that_ended_alike_are_counted_and_a_later_file_replaces_a_seed(tmp_path: Path) -> None:
    first = _write(tmp_path / "a1.json", [_row(0, "loop", 0.2, 0.2, succ=0.5)])
    rerun = _write(tmp_path / "a2.json", [_row(0, "loop", 0.9, 0.8, succ=0.8, dist=0.01)])
    b = _write(tmp_path / "b.json", [_row(0, "fixed", 0.9, 0.8, succ=0.8, dist=0.01)])
    res = paired(load_rows([first, rerun], "loop"), "loop", load_rows([b], "fixed"), "fixed")
    assert res["identical"] == 1 and res["mean"]["success_rate"]["diff"] == pytest.approx(0.0)
    assert math.isnan(res["mean"]["success_rate"]["se_diff"])  # one seed: no spread to estimate


def test_profiles_pair_separately_and_no_common_seed_is_an_error(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.json", [_row(0, "loop", 1.0, 1.0, profile="laggy")])
    b = _write(tmp_path / "b.json", [_row(0, "fixed", 0.5, 0.5, profile="nominal")])
    with pytest.raises(ValueError, match="no seed has both 'loop' and 'fixed'"):
        paired(load_rows([a], "loop"), "loop", load_rows([b], "fixed"), "fixed")
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="bad.json: not a sim2real results.json"):
        load_rows([bad], "loop")


def test_the_command_prints_the_paired_means_and_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) \
        -> None:
    a = _write(tmp_path / "a.json", [_row(s, "loop", 0.9, 0.8) for s in range(3)])
    b = _write(tmp_path / "b.json", [_row(s, "fixed", 0.8, 0.8) for s in range(3)])
    assert main(["--a", str(a), "--b", str(b), "--json", str(tmp_path / "out.json")]) == 0
    out = capsys.readouterr().out
    assert "paired difference +10.0 points (SE 0.0), n = 3" in out
    assert json.loads((tmp_path / "out.json").read_text())["n"] == 3
