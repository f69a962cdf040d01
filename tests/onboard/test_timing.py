"""Loop timing: absolute deadlines that skip (and count) missed ticks instead of bursting; rolling statistics."""

from __future__ import annotations

import pytest

from robodyna.onboard.timing import Deadlines, LoopStats


def test_a_late_tick_counts_the_deadlines_it_skipped_and_stays_on_the_grid() -> None:
    d = Deadlines(0.01, pace=True)
    d.next_s = 100.0
    d.advance(100.004)  # on time
    assert d.next_s == pytest.approx(100.01) and d.missed == 0
    d.advance(100.045)  # finished 3.5 periods after 100.01: 100.02, .03, .04 are gone
    assert d.missed == 3 and d.next_s == pytest.approx(100.05)
    unpaced = Deadlines(0.01, pace=False)
    unpaced.advance(5.0)
    assert unpaced.next_s == 5.0 and unpaced.missed == 0


def test_stats_summarise_the_last_ticks_of_the_ring() -> None:
    s = LoopStats(0.001, capacity=8)
    for i in range(11):
        s.tick(i * 0.001, (i + 1) * 1e-6)
        s.inferred(2e-6)
    assert s.summary(0, last=3)["overhead_p50_us"] == pytest.approx(10.0)
    full = s.summary(4)
    assert full["overhead_p50_us"] == pytest.approx(7.5) and full["ticks"] == 11 and full["deadline_misses"] == 4
    assert full["period_p50_us"] == pytest.approx(1000.0) and full["rate_hz"] == pytest.approx(1000.0)
    s.break_period()  # the first tick after a reset has no period
    s.tick(1.0, 1e-6)
    assert s.summary(0)["period_p99_us"] == pytest.approx(1000.0)


def test_spin_window_warms_up_once_after_the_sleep_and_returns_at_the_deadline() -> None:
    import time

    calls: list[float] = []
    d = Deadlines(0.02, pace=True, spin_s=0.005)
    d.next_s = time.monotonic() + 0.015
    got = d.wait(lambda: calls.append(time.monotonic()))
    now = time.monotonic()
    assert len(calls) == 1 and calls[0] < got  # warmed before the deadline, not after it
    assert now >= got  # busy-waited up to the deadline
    d.next_s = time.monotonic() - 0.001  # already late: no sleep, hence no warm-up (the tick is due now)
    d.wait(lambda: calls.append(time.monotonic()))
    assert len(calls) == 1
    Deadlines(0.02, pace=False, spin_s=0.005).wait(lambda: calls.append(0.0))  # unpaced: never waits nor warms
    assert len(calls) == 1
