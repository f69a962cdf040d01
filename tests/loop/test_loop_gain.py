"""The product's claim, in CI: the default loop (what `make demo` runs, `configs/loops/reacher2.yaml` unchanged)
makes the "real" robot more precise than the policy trained in simulation.

Two real processes on a CURVE link over loopback, the shipped stage-1 checkpoint, the `laggy` profile as the real
robot, the preset's budget of 3000 real steps, and both policies evaluated on the same 40 targets. About 5 minutes
on 2 cores. Measured over five runs of the preset (loop seeds 0-3 and `make demo`; README): sim-only 55 % within
1.5 cm (median final distance 1.35 cm) -> adapted 72-85 % (median 0.69-0.93 cm), the last SAC iterate; with the
adapted policy averaged over the last 5 versions (now the default), `make demo` got 85 % (median 0.70 cm). The
thresholds below ask for less than half of the smallest gain seen (3 of 40 more targets hit, the median 2 mm
closer), because runs are not bit-reproducible (the trainer keeps updating while the controller collects). The
mean final distance is not asserted: a few far misses move it (seed 1: 1.77 cm adapted against 1.51 cm sim-only,
with a better median and success rate).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from robodyna.loop.config import load_loop_config
from robodyna.loop.run import LoopRun


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_default_loop_makes_the_real_robot_more_precise_than_the_sim_only_policy(tmp_path: Path) -> None:
    cfg = load_loop_config("reacher2", ["timeout_s=1200"])
    assert cfg.reality == "laggy" and cfg.trainer.real_step_budget == 3000 and cfg.eval.episodes == 40
    res = LoopRun.create(cfg, tmp_path / "run").run()
    assert res["summary"]["done"], res["summary"]
    sim, adapted = res["eval"]["sim_only"], res["eval"]["adapted"]
    got = (f"sim-only {sim['success_rate']:.0%} / median {100 * sim['median_final_distance_m']:.2f} cm, adapted "
           f"{adapted['success_rate']:.0%} / median {100 * adapted['median_final_distance_m']:.2f} cm")
    assert adapted["policy"] != sim["policy"], got
    assert adapted["success_rate"] >= sim["success_rate"] + 3 / 40, got
    assert adapted["median_final_distance_m"] <= sim["median_final_distance_m"] - 0.002, got
