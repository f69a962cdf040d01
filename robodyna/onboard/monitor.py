"""The controller's monitor thread (off the control thread): loop statistics logged every ``stats_every_s``, and a
control loop stuck inside a call noticed, logged and counted (a call cannot be preempted from Python)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from robodyna.onboard.timing import Deadlines, LoopStats, RateLog, format_summary

log = logging.getLogger("robodyna.onboard.controller")
_mono = time.monotonic


class Monitored(Protocol):
    """What the monitor reads of the controller (:class:`robodyna.onboard.controller.Controller`)."""

    period_s: float
    watchdog_timeout_s: float
    stats_every_s: float
    stats: LoopStats
    deadlines: Deadlines
    pace: bool
    running: bool
    stalls: int
    episode_index: int
    _stop: threading.Event
    _beat: float | None
    _log_stall: RateLog


def watch_loop(ctrl: Monitored) -> None:
    """Off the control thread: log loop statistics every ``stats_every_s`` (over the ticks since the previous
    report), and notice a control loop stuck inside a call (it cannot be preempted): log it and count it."""
    # well above scheduling noise (a descheduled process on a busy machine misses a few ms), well below a hang
    limit = max(10 * ctrl.period_s, 0.05) + ctrl.watchdog_timeout_s
    seen: float | None = None
    next_report, ticks_at_report = _mono() + ctrl.stats_every_s, ctrl.stats.n
    while ctrl.running and not ctrl._stop.is_set():
        time.sleep(limit / 2)
        if _mono() >= next_report:
            next_report = _mono() + ctrl.stats_every_s
            n = ctrl.stats.n
            if n > ticks_at_report:
                report_stats(ctrl, last=n - ticks_at_report)
            ticks_at_report = n
        beat = ctrl._beat
        if beat is None or beat == seen:
            continue
        stuck = _mono() - beat
        if stuck > limit:
            seen = beat
            ctrl.stalls += 1
            ctrl._log_stall("control loop made no progress for %.0f ms in episode %d (a driver or inference "
                            "call not returning, or the process starved of CPU; a call cannot be preempted: "
                            "drivers must time out)", stuck * 1e3, ctrl.episode_index)


def report_stats(ctrl: Monitored, final: bool = False, last: int | None = None) -> None:
    """Log the loop statistics (over the last ``last`` ticks; all with None); warn when a paced loop runs slow."""
    s = ctrl.stats.summary(ctrl.deadlines.missed, last)
    log.info("%s%s", "final: " if final else "", format_summary(s))
    if ctrl.pace and s["ticks"] > 10 and s["rate_hz"] < 0.95 * s["target_hz"]:
        log.warning("control loop runs below the requested rate: %.1f Hz of %.0f Hz", s["rate_hz"],
                    s["target_hz"])
