"""Loop timing of the onboard controller: absolute-deadline scheduling, the control thread's real-time policy
(``SCHED_FIFO``), loop statistics, rate-limited logs.

:class:`Deadlines` schedules ticks on a monotonic clock at ``t0 + k * period`` (never ``sleep(period)``, which
drifts by the work time). A tick that starts more than a period late counts the deadlines it skipped as missed
and re-aligns to the grid instead of bursting to catch up. :class:`LoopStats` keeps the last ``capacity``
periods, tick overheads and inference times in preallocated arrays (recording a tick allocates nothing) and
summarises them as p50/p99, jitter and counters.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.ma  # noqa: F401 - np.percentile imports it on first use: here, not on the monitor thread mid-loop

monotonic = time.monotonic
SchedPolicy = tuple[int, Any]  # (policy, os.sched_param) of a thread


class RealtimeError(RuntimeError):
    """A real-time scheduling request this process cannot have (platform, permission, priority range)."""


class RateLog:
    """Log a repeated condition once, then at most every ``every_s`` with the count since (a loop that logs every
    tick would spend its period in the logger)."""

    def __init__(self, logger: logging.Logger, level: int, every_s: float = 5.0) -> None:
        self.logger, self.level, self.every_s = logger, level, every_s
        self.count = 0
        self._next = 0.0

    def __call__(self, msg: str, *args: Any) -> None:
        self.count += 1
        now = monotonic()
        if now >= self._next:
            self._next = now + self.every_s
            self.logger.log(self.level, msg + f" ({self.count} so far)", *args)


class Deadlines:
    """Absolute deadlines ``t0 + k * period_s``. ``wait()`` sleeps until the next one (when ``pace``)."""

    def __init__(self, period_s: float, pace: bool = True, spin_s: float = 0.0) -> None:
        self.period_s = float(period_s)
        self.pace = pace
        self.spin_s = spin_s
        self.next_s = monotonic()
        self.missed = 0

    def restart(self) -> None:
        """Start a new grid now (after a reset, whose duration is not part of the control loop)."""
        self.next_s = monotonic()

    def wait(self, warm: Callable[[], object] | None = None) -> float:
        """Wait for the next deadline and return it. Unpaced: return immediately (same bookkeeping).

        With ``spin_s``: sleep until ``spin_s`` before the deadline, call ``warm`` (e.g. one throw-away inference,
        which brings the policy's weights and code back into the caches after the sleep), then busy-wait."""
        d = self.next_s
        if self.pace:
            now = monotonic()
            rest = d - now - self.spin_s
            if rest > 0:
                time.sleep(rest)
            if self.spin_s > 0:
                if warm is not None and rest > 0:
                    warm()
                while monotonic() < d:
                    pass
        return d

    def advance(self, finished_s: float) -> None:
        """Schedule the deadline after the current one; count and skip those already past at ``finished_s``."""
        nxt = self.next_s + self.period_s
        if self.pace and finished_s > nxt:
            late = int((finished_s - nxt) // self.period_s) + 1
            self.missed += late
            nxt += late * self.period_s
        elif not self.pace:
            nxt = finished_s
        self.next_s = nxt


class LoopStats:
    """Rolling tick statistics (the last ``capacity`` ticks) plus counters since start."""

    def __init__(self, period_s: float, capacity: int = 1 << 16) -> None:
        self.period_s = period_s
        self.capacity = capacity
        self.period = np.zeros(capacity)
        self.overhead = np.zeros(capacity)
        self.inference = np.zeros(capacity)
        self.n = 0
        self.n_inference = 0
        self.interventions = 0
        self.watchdog = 0
        self.record_dropped = 0
        self._last_start = math.nan

    def tick(self, start_s: float, overhead_s: float) -> None:
        i = self.n % self.capacity
        self.period[i] = start_s - self._last_start
        self.overhead[i] = overhead_s
        self._last_start = start_s
        self.n += 1

    def inferred(self, seconds: float) -> None:
        self.inference[self.n_inference % self.capacity] = seconds
        self.n_inference += 1

    def break_period(self) -> None:
        """The next tick follows a reset: its period is not a control period."""
        self._last_start = math.nan

    @staticmethod
    def _last(a: np.ndarray, n_total: int, k: int) -> np.ndarray:
        """The last ``k`` values written into ring ``a`` after ``n_total`` writes."""
        cap = a.shape[0]
        k = min(k, n_total, cap)
        end = n_total % cap
        return a[end - k : end] if k <= end else np.concatenate([a[end - k :], a[:end]])

    def summary(self, missed: int, last: int | None = None) -> dict[str, Any]:
        """p50/p99 of period, overhead and inference (µs), jitter (std of the period, µs), counters.

        Over the last ``last`` ticks (default: all kept); counters are always since start."""
        k = self.capacity if last is None else last
        per = self._last(self.period, self.n, k)
        per = per[np.isfinite(per)]
        over = self._last(self.overhead, self.n, k)
        inf = self._last(self.inference, self.n_inference, k)

        def pct(a: np.ndarray, q: float) -> float:
            return float(np.percentile(a, q) * 1e6) if a.size else math.nan

        rate = 1.0 / float(np.mean(per)) if per.size else math.nan
        return {
            "ticks": self.n, "rate_hz": rate, "target_hz": 1.0 / self.period_s,
            "period_p50_us": pct(per, 50), "period_p99_us": pct(per, 99),
            "jitter_us": float(np.std(per) * 1e6) if per.size else math.nan,
            "overhead_p50_us": pct(over, 50), "overhead_p99_us": pct(over, 99),
            "inference_p50_us": pct(inf, 50), "inference_p99_us": pct(inf, 99),
            "deadline_misses": missed, "interventions": self.interventions, "watchdog_faults": self.watchdog,
            "record_dropped": self.record_dropped,
        }


def format_summary(s: dict[str, Any]) -> str:
    return (f"{s['ticks']} ticks at {s['rate_hz']:.1f}/{s['target_hz']:.0f} Hz; period p50 {s['period_p50_us']:.0f} "
            f"p99 {s['period_p99_us']:.0f} us, jitter {s['jitter_us']:.0f} us; overhead p50 "
            f"{s['overhead_p50_us']:.0f} p99 {s['overhead_p99_us']:.0f} us; inference p50 {s['inference_p50_us']:.0f} "
            f"p99 {s['inference_p99_us']:.0f} us; {s['deadline_misses']} deadline misses, {s['interventions']} "
            f"interventions, {s['watchdog_faults']} watchdog faults, {s['record_dropped']} rows dropped")


def check_realtime(priority: int) -> None:
    """Refuse, before any robot moves, a ``SCHED_FIFO`` priority this process may not use (set and reset here)."""
    if not hasattr(os, "sched_setscheduler"):
        raise RealtimeError("rt_priority: SCHED_FIFO scheduling is not available on this platform (Linux only)")
    top = os.sched_get_priority_max(os.SCHED_FIFO)
    if not isinstance(priority, int) or not 1 <= priority <= top:
        raise RealtimeError(f"rt_priority must be an integer in 1..{top} (SCHED_FIFO), got {priority!r}")
    leave_realtime(enter_realtime(priority))


def enter_realtime(priority: int) -> SchedPolicy:
    """Put the calling thread under ``SCHED_FIFO`` at ``priority``; returns its previous (policy, param)."""
    before = (os.sched_getscheduler(0), os.sched_getparam(0))
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except PermissionError as exc:
        raise RealtimeError(f"rt_priority {priority}: SCHED_FIFO not permitted for this user ({exc}); run as "
                              "root, grant CAP_SYS_NICE (setcap cap_sys_nice+ep on the Python binary) or set an "
                              "rtprio limit (/etc/security/limits.conf)") from exc
    return before


def leave_realtime(before: SchedPolicy) -> None:
    """Give the calling thread back the policy :func:`enter_realtime` returned."""
    os.sched_setscheduler(0, *before)
