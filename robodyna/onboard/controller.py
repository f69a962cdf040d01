"""The onboard controller: a fixed-rate ONNX control loop with a safety filter, a watchdog, verified policy
hot-swap and durable recording (``robodyna controller``). Torch-free: numpy, onnxruntime and the robot side only.

One tick (period ``1 / control_hz``, absolute deadlines on the monotonic clock, :mod:`robodyna.onboard.timing`):

1. wait for the deadline (``pace=False``: no wait, same code path otherwise);
2. observe (the task's observation layout: ``[qpos, qvel, ee, target]``, exactly what the policy was trained on)
   and record the previous tick's transition ``(obs, applied action, reward, obs')`` with the policy's raw
   action, the integer policy version, wall and monotonic time and the intervention bitmask;
3. run the policy (onnxruntime, one intra-op thread, session created once per policy);
4. filter the action (:mod:`robodyna.onboard.filter`) and send it (``Robot.send_action`` checks and clamps again);
5. hand buffered rows to the store's writer every ``flush_interval_s`` without waking it (waking a sleeping
   thread cost the tick ~40 µs here; the writer polls every 10 ms). The writer is a child process
   (:mod:`robodyna.data.store_proc`): it shares no GIL with the loop (a writer thread held it for a few hundred
   µs per segment and made ticks start late: the period tail at 1 kHz), and it outlives a ``kill -9`` of the
   controller long enough to land every segment handed to it, so a ``kill -9`` loses at most the last
   ``flush_interval_s`` of rows.

**Watchdog.** A tick whose inference or driver call ends more than ``safety.watchdog_timeout_ms`` (0: one period)
after its deadline, a driver call that raises, or a policy output that is NaN/inf or of the wrong shape is a
fault: the hold action is sent at once when the fault is detected before sending, else on the next tick (so the
robot holds within at most 2 ticks). After ``safety.max_consecutive_faults`` faults in a row the episode is
stopped (hold sent, episode closed, reported in ``status()["stops"]``). A driver call that blocks forever cannot
be preempted from Python: drivers must bound their own calls (the example socket driver times out); a monitor
thread logs a loop stuck for more than ten periods (at least 50 ms) plus the timeout and counts it
(``status()["stalls"]``).

**Hot-swap.** :meth:`Controller.offer_policy` (thread-safe, runs on the caller's thread) verifies a policy
(:mod:`robodyna.onboard.swap`) and stages it; the control thread swaps it in at the next episode boundary (or
the next tick with ``swap_at="tick"``) by replacing a reference, so no tick is missed. ``policy_dir`` watches a
folder for new versions. Verification shares the process, hence Python's GIL, with the loop: about 1 ms of work
per offer of a small policy here (more for a large one); a caller hammering offers back to back delays ticks.

**Recording.** A full write queue never blocks the loop: the row is dropped, counted (``record_dropped``) and
logged. A store that fails (disk error) is reported (``status()["queue"]["record_error"]``) and the loop keeps
controlling the robot, counting every row it cannot record. Restarting on the same store continues it (new
episodes after the last one on disk).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any, Literal

import numpy as np

from robodyna.data.store import EpisodeStore, EpisodeWriter, StoreError, StoreMeta
from robodyna.data.validate import INTERVENTION_BITS
from robodyna.onboard.filter import INVALID_OUTPUT, WATCHDOG, FilterParams, filter_action
from robodyna.onboard.monitor import report_stats, watch_loop
from robodyna.onboard.policy import OnnxPolicy
from robodyna.onboard.record import LoopRecorder, PendingRow, obs_units
from robodyna.onboard.swap import PolicyDirWatcher, PolicyRejected, VerifiedPolicy, check_outputs, verify_policy
from robodyna.onboard.timing import (
    Deadlines,
    LoopStats,
    RateLog,
    SchedPolicy,
    check_realtime,
    enter_realtime,
    leave_realtime,
)
from robodyna.robots.reality import load_reality
from robodyna.robots.registry import load_robot, robot_folder
from robodyna.spec import load_robot_config, rate_overrides
from robodyna.tasks.env import RobotEnv
from robodyna.tasks.reach import ReachLayout, shift_in

log = logging.getLogger(__name__)

SwapAt = Literal["episode", "tick"]
Warmup = Literal["tick", "calls", "none"]
_mono = time.monotonic
_wall = time.time


class ControllerError(RuntimeError):
    """The controller cannot start or continue (bad policy at start, robot that cannot be reset...)."""


class Controller:
    """The onboard control loop for one robot (see the module docstring for the tick).

    Args:
        robot: robot name (``robots/NAME``) or folder path; simulated, reality-profiled or a driver plugin.
        policy: the ONNX policy to start with (verified against the robot; refused with the reason otherwise).
        record: episode store directory (created, or continued when it exists); None: no recording.
        reality: reality profile name or path (simulated robots only).
        reality_change: ``(rows, profile)``: at the first episode start once the record store holds ``rows``
            rows (any process's), the simulated robot becomes that reality profile: a dynamics change at a real
            step count, whatever the timing (tests, benchmarks). Noted in the episode's info and the status.
        hz: control rate (overrides ``control_hz``; the policy must have been made for that rate).
        pace: wait for each deadline (real time); False runs the same loop as fast as it goes.
        policy_dir: folder watched for new policy versions (``*.onnx``, optional ``*.onnx.sha256``).
        swap_at: default moment of a verified swap: ``"episode"`` boundary or next ``"tick"``.
        seed: episode seeds are ``seed * 1_000_003 + episode index`` (reset noise, target).
        overrides: ``robot.yaml`` overrides (``key.path=value``).
        episode_steps: ticks per episode (default: the task's ``episode_steps``).
        flush_interval_s: the longest buffered rows wait before being handed to the store writer.
        stats_every_s: loop statistics are logged this often (at episode boundaries) and at exit.
        verify_on_start: test the start policy on the first real observation like an offered one.
        trace: keep ``(episode, tick, mono_s, bits, applied, fault)`` of every tick in ``self.trace`` (tests).
        writer_process: write the store in a child process (default); False: in a thread of this process.
        spin_us: sleep until this long before each deadline, run the warm-up, then busy-wait: less wake-up latency
            and tick overhead for more CPU. Default (``None``): 200 µs, at most a fifth of the period.
        warmup: what runs before each deadline (the caches the sleep let go cold come back): ``"tick"`` (default)
            a dry run of the tick on scratch buffers (the robot's side-effect-free read where the driver has one,
            :meth:`~robodyna.robots.base.Robot.peek_into`; inference, filter, reward, the store row, the action
            history); ``"calls"`` inference, filter and reward only; ``"none"`` nothing. Read every tick (the
            benchmark switches it while the loop runs).
        rt_priority: run the control thread under ``SCHED_FIFO`` at this priority (1-99) while :meth:`run` runs
            (Linux; needs root, ``CAP_SYS_NICE`` or an ``rtprio`` limit): it then preempts every ordinary process
            when its deadline comes, so a busy machine no longer wakes it late. The monitor and folder-watcher
            threads and the store's writer process keep the normal policy. None: the normal policy. A priority
            this process may not use raises :class:`~robodyna.onboard.timing.RealtimeError` at construction.
    """

    def __init__(
        self,
        robot: str | Path,
        policy: str | Path,
        record: str | Path | None = None,
        reality: str | Path | None = None,
        hz: float | None = None,
        pace: bool = True,
        policy_dir: str | Path | None = None,
        swap_at: SwapAt = "episode",
        seed: int = 0,
        overrides: list[str] | None = None,
        engine: str | None = None,
        episode_steps: int | None = None,
        flush_interval_s: float = 0.05,
        stats_every_s: float = 5.0,
        verify_on_start: bool = True,
        trace: bool = False,
        spin_us: float | None = None,
        writer_process: bool = True,
        rt_priority: int | None = None,
        warmup: Warmup = "tick",
        reality_change: tuple[int, str] | None = None,
    ) -> None:
        if swap_at not in ("episode", "tick"):
            raise ValueError(f"swap_at must be 'episode' or 'tick', got {swap_at!r}")
        if warmup not in ("tick", "calls", "none"):
            raise ValueError(f"warmup must be 'tick', 'calls' or 'none', got {warmup!r}")
        self.warmup: Warmup = warmup
        self.rt_priority = rt_priority
        if rt_priority is not None:
            check_realtime(rt_priority)
        folder = robot_folder(robot)
        cfg0, _ = load_robot_config(folder, overrides)
        self.overrides = list(overrides or []) + rate_overrides(cfg0.physics_hz, hz)
        self.cfg, _ = load_robot_config(folder, self.overrides)
        profile = load_reality(reality) if reality is not None else None
        self.robot = load_robot(folder, engine=engine, reality=profile, overrides=self.overrides)
        self.reality_name = profile.name if profile else ""
        self._robot_source = (folder, engine)  # reality_change's profile loaded now: a bad one fails at the start
        self._change = None if reality_change is None else (int(reality_change[0]), load_reality(reality_change[1]))
        try:
            self._setup(policy, record, profile, pace, policy_dir, swap_at, seed, episode_steps, flush_interval_s,
                        stats_every_s, verify_on_start, trace, spin_us, writer_process)
        except BaseException:
            rec = getattr(self, "recorder", None)
            if rec is not None:
                rec.close()
            self.robot.close()
            raise

    def _setup(self, policy: str | Path, record: str | Path | None, profile: Any, pace: bool,
               policy_dir: str | Path | None, swap_at: SwapAt, seed: int, episode_steps: int | None,
               flush_interval_s: float, stats_every_s: float, verify_on_start: bool, trace: bool,
               spin_us: float | None, writer_process: bool) -> None:
        self.env = RobotEnv(self.robot, self.cfg, "reach", reality_name=profile.name if profile else "")
        self.spec = self.robot.spec
        self.obs_names = list(self.env.obs_names)
        n = self.spec.n_joints
        self._n = n
        self._obs_dim = len(self.obs_names)
        lay = ReachLayout(n)
        self._target_at, self._ee = lay.target.start, lay.ee
        self.episode_steps = int(episode_steps or self.env.task_cfg.episode_steps)
        self.period_s = 1.0 / float(self.spec.control_hz)
        s = self.cfg.safety
        self.watchdog_timeout_s = (s.watchdog_timeout_ms / 1000.0) or self.period_s
        self.max_consecutive_faults = s.max_consecutive_faults
        self.filter = FilterParams.from_config(self.spec, self.cfg)
        self.policy = OnnxPolicy(policy, expected_spec=self.spec, expected_obs_names=self.obs_names)
        self.policy_version = self.policy.policy_version
        self.pace = pace
        self.swap_at: SwapAt = swap_at
        self.seed = int(seed)
        self.flush_interval_s = flush_interval_s
        self.stats_every_s = stats_every_s
        self.verify_on_start = verify_on_start
        self.trace: list[tuple[int, int, float, int, np.ndarray, str]] | None = [] if trace else None
        self.stats = LoopStats(self.period_s)
        self.spin_s = min(200e-6, self.period_s / 5) if spin_us is None else spin_us * 1e-6
        self.deadlines = Deadlines(self.period_s, pace, spin_s=self.spin_s)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._more = threading.Condition(self._lock)
        self._staged: tuple[VerifiedPolicy, SwapAt] | None = None
        self._recent = np.zeros((64, self._obs_dim), np.float32)
        self._n_recent = 0
        self._budget: int | None = None
        self.episodes_done = 0
        self.steps_done = 0
        self.episode_index = -1
        self.bit_counts: dict[int, int] = {}
        self.faults: dict[str, int] = {}
        self.stops: list[dict[str, Any]] = []
        self.swaps: list[dict[str, Any]] = []
        self.rejections: list[dict[str, Any]] = []
        self.running = False
        self.stalls = 0
        self._beat: float | None = None
        self._log_invalid = RateLog(log, logging.ERROR)
        self._log_fault = RateLog(log, logging.ERROR)
        self._log_stall = RateLog(log, logging.ERROR)
        self.recorder: LoopRecorder | None = None
        if record is not None:
            meta = StoreMeta.from_spec(
                self.spec, self.obs_names, obs_units(self.obs_names), reality=profile.name if profile else None,
                reality_profile=dataclasses.asdict(profile) if profile else None, task="reach",
                extra={"recorder": "robodyna controller", "overrides": self.overrides},
            )
            self.recorder = LoopRecorder(Path(record), meta, self.spec.control_hz, flush_interval_s, writer_process,
                                         self.policy_version, self.stats)
        self.watcher = PolicyDirWatcher(policy_dir, self._offer_from_dir, lambda: self.policy_version) \
            if policy_dir is not None else None
        self._rows_at_start = EpisodeStore(record).num_transitions if record is not None and self._change else 0

    @property
    def writer(self) -> EpisodeWriter | None:
        """The episode store's writer (None: not recording)."""
        return self.recorder.writer if self.recorder is not None else None

    @property
    def record_error(self) -> str | None:
        """Why recording stopped (a store error), or None."""
        return self.recorder.error if self.recorder is not None else None

    # -- public API (thread-safe) -------------------------------------------------------------------------------
    def offer_policy(self, onnx_bytes: bytes, sha256: str, version: int, swap_at: SwapAt | None = None,
                     source: str = "offered policy") -> tuple[bool, str]:
        """Verify a new policy on the calling thread and stage it for the control loop.

        Checks (:func:`robodyna.onboard.swap.verify_policy`): the sha256 of ``onnx_bytes`` is ``sha256``, it
        parses and loads, the identity rule ``policy`` accepts it for this robot and observation layout, its
        embedded version equals ``version``, and a test inference on up to 64 recent real observations is finite
        and within the action limits. Returns ``(True, "staged ...")`` or ``(False, reason)``; a rejected policy
        changes nothing (the running one continues). The swap happens at the next episode boundary, or the next
        tick with ``swap_at="tick"``; a later accepted offer replaces a staged one that has not been swapped in.
        """
        with self._lock:
            recent = self._recent[: min(self._n_recent, len(self._recent))].copy()
        try:
            vp = verify_policy(onnx_bytes, sha256, version, self.spec, self.obs_names, recent, where=source)
        except PolicyRejected as exc:
            reason = str(exc)
            log.error("policy v%s rejected, keeping v%d: %s", version, self.policy_version, reason)
            with self._lock:
                self.rejections.append({"version": version, "source": source, "reason": reason, "wall_s": _wall()})
            return False, reason
        when = swap_at or self.swap_at
        with self._lock:
            self._staged = (vp, when)
        log.info("policy v%d (%s, sha256 %s) verified; swapping at the next %s", vp.version, source,
                 vp.sha256[:12], when)
        return True, f"staged v{vp.version}; swaps at the next {when}"

    def request_episodes(self, n: int) -> None:
        """Ask for ``n`` more episodes (e.g. a trainer refreshing its data); wakes an idle ``run``."""
        with self._more:
            if not (self.running and self._budget is None):  # an unbounded run needs no more
                self._budget = (self._budget or 0) + int(n)
            self._more.notify_all()

    def stop(self) -> None:
        """Ask the loop to stop at the next tick (the open episode is closed and recorded)."""
        self._stop.set()
        with self._more:
            self._more.notify_all()

    def status(self) -> dict[str, Any]:
        """A snapshot: policy version, episodes/steps, loop statistics (over the last 5000 ticks; counters since
        start), interventions, faults, swaps, rejections, staged policy, recording queue. Cheap enough to poll."""
        with self._lock:
            staged = None if self._staged is None else {"version": self._staged[0].version, "at": self._staged[1]}
            budget = self._budget
            rejections = list(self.rejections[-10:])
        w = self.writer
        return {
            "robot": self.spec.name, "running": self.running, "policy_version": self.policy_version,
            "episodes": self.episodes_done, "steps": self.steps_done, "episode_index": self.episode_index,
            "reality": self.reality_name,
            "episodes_requested_left": budget,
            "loop": self.stats.summary(self.deadlines.missed, last=5000),
            "interventions": {INTERVENTION_BITS.get(b, str(b)): c for b, c in sorted(self.bit_counts.items())},
            "faults": dict(self.faults), "stops": list(self.stops), "swaps": list(self.swaps), "stalls": self.stalls,
            "rejections": rejections, "staged": staged,
            "queue": {"pending_segments": w.pending_segments if w else 0, "record_dropped": self.stats.record_dropped,
                      "record_error": self.record_error,
                      "flush_deferred": self.recorder.log_behind.count if self.recorder else 0},
        }

    # -- the loop ------------------------------------------------------------------------------------------------
    def run(self, episodes: int | None = None, steps: int | None = None, idle_when_done: bool = False) -> dict:
        """Run episodes until ``episodes`` (plus any :meth:`request_episodes`) or ``steps`` are done, or
        :meth:`stop`. ``episodes=None`` and no ``steps``: run until stopped. ``idle_when_done``: when the
        episode budget is used up, wait (sending nothing) for more requests or a stop instead of returning.
        Returns :meth:`status`. Closes the robot, the store writer and the folder watcher."""
        with self._more:
            if episodes is None and not idle_when_done:
                self._budget = None  # unbounded: until stop() or steps
            else:
                self._budget = (self._budget or 0) + int(episodes or 0)
        self.running = True
        monitor = threading.Thread(target=watch_loop, args=(self,), name="controller-monitor", daemon=True)
        monitor.start()
        if self.watcher is not None:
            self.watcher.start()
        normal: SchedPolicy | None = None
        try:
            if self.rt_priority is not None:  # this thread only: threads started before keep their policy
                normal = enter_realtime(self.rt_priority)
            first = True
            while not self._stop.is_set():
                if steps is not None and self.steps_done >= steps:
                    break
                with self._more:
                    if self._budget is not None and self._budget <= 0:
                        if not idle_when_done:
                            break
                        self._more.wait(timeout=0.5)
                        continue
                    if self._budget is not None:
                        self._budget -= 1
                self._maybe_swap(boundary=True)
                self._maybe_change_reality()
                obs = self._reset()
                if first and self.verify_on_start:
                    try:
                        check_outputs(self.policy(obs[None]), 1, self.filter.low, self.filter.high,
                                      str(self.policy.path))
                    except PolicyRejected as exc:
                        raise ControllerError(f"start policy refused: {exc}") from exc
                first = False
                self._episode(obs, None if steps is None else steps - self.steps_done)
                self.episodes_done += 1
        finally:
            if normal is not None:
                leave_realtime(normal)
            self.running = False
            self._beat = None
            with self._more:
                self._more.notify_all()
            monitor.join(timeout=5)
            self._shutdown()
        return self.status()

    def _shutdown(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
        try:
            if self.recorder is not None:
                self.recorder.close()
        finally:
            report_stats(self, final=True)
            self.robot.close()

    def _offer_from_dir(self, data: bytes, sha: str, version: int, source: str) -> tuple[bool, str]:
        return self.offer_policy(data, sha, version, source=source)

    def _maybe_swap(self, boundary: bool) -> None:
        with self._lock:
            st = self._staged
            if st is None or (not boundary and st[1] != "tick"):
                return
            self._staged = None
        vp = st[0]
        old = self.policy_version
        self.policy, self.policy_version = vp.policy, vp.version
        if self.writer is not None:
            self.writer.set_policy_version(vp.version)
        self.swaps.append({"from": old, "to": vp.version, "episode": self.episode_index + int(boundary),
                           "at": "episode" if boundary else "tick", "wall_s": _wall()})
        log.info("swapped policy v%d -> v%d (%s)", old, vp.version, "episode boundary" if boundary else "tick")

    def _fault(self, kind: str, exc: BaseException | str) -> None:
        self.faults[kind] = self.faults.get(kind, 0) + 1
        self.stats.watchdog += 1
        self._log_fault("watchdog: %s fault on episode %d: %s; holding", kind, self.episode_index, exc)

    def _maybe_change_reality(self) -> None:
        """``reality_change``: the simulated robot becomes another reality profile at an episode boundary."""
        if self._change is None or self._rows_at_start + self.steps_done < self._change[0]:
            return
        profile = self._change[1]
        folder, engine = self._robot_source
        old, self.robot = self.robot, load_robot(folder, engine=engine, reality=profile, overrides=self.overrides)
        self.env = RobotEnv(self.robot, self.cfg, "reach", reality_name=profile.name)
        old.close()
        log.warning("dynamics change: the robot is now reality %s (after %d rows)", profile.name,
                    self._rows_at_start + self.steps_done)
        self.reality_name, self._change = profile.name, None

    def _reset(self) -> np.ndarray:
        for attempt in range(1, self.max_consecutive_faults + 1):
            if self._stop.is_set():
                break
            ep = self.writer.next_episode_index if self.writer is not None else self.episodes_done
            seed = self.seed * 1_000_003 + ep
            try:
                obs, info = self.env.reset(seed=seed)
            except Exception as exc:  # noqa: BLE001 - a driver failing at reset: retried, then fatal
                self._fault("reset", exc)
                time.sleep(min(0.1 * attempt, 1.0))
                continue
            self.episode_index = ep
            self._target = np.asarray(info["target_m"], np.float64)
            if self.writer is not None:
                self.writer.begin_episode({
                    "seed": seed, "qpos": np.asarray(info["qpos"]).tolist(), "qvel": np.asarray(info["qvel"]).tolist(),
                    "target_m": self._target.tolist(), "policy_version": self.policy_version,
                    "control_hz": self.spec.control_hz, "reality": self.reality_name,
                })
            return np.asarray(obs, np.float32)
        raise ControllerError(f"{self.spec.name}: reset failed {self.max_consecutive_faults} times in a row "
                              f"(last faults: {self.faults})")

    def _episode(self, obs0: np.ndarray, max_steps: int | None) -> None:
        """One episode of ``episode_steps`` actions (fewer when ``max_steps`` or a stop says so)."""
        robot, fp, stats, dl = self.robot, self.filter, self.stats, self.deadlines
        writer, rec, fns, trace = self.writer, self.recorder, self.env.task_fns, self.trace
        n, od, tat, target, ee = self._n, self._obs_dim, self._target_at, self._target, self._ee
        hist = np.zeros(od - tat - 3, np.float32)  # actions sent, newest first (task action_history; hold at reset)
        hat = tat + 3
        hold = fp.hold
        timeout = self.watchdog_timeout_s
        ring, rcap = self._recent, len(self._recent)
        stop = self._stop
        horizon = self.episode_steps if max_steps is None else min(self.episode_steps, max_steps)
        ep = self.episode_index
        prev_applied = hold.copy()
        obs: np.ndarray | None = obs0
        pending: PendingRow | None = None
        hold_next = False
        consecutive = 0
        last_flush = _mono()
        period, flush_every_s = self.period_s, self.flush_interval_s
        dl.restart()
        stats.break_period()
        last_obs = obs0
        scratch, hist_w = np.zeros(od, np.float32), hist.copy()

        def warm() -> None:
            # Before the deadline, results thrown away (see ``warmup``): a dry run of the tick on scratch buffers, or
            # only its pure calls; before a tick that hands rows to the store writer, that hand-over's code too
            # (nothing is handed over here). Nothing the tick reads is changed.
            mode = self.warmup
            if mode == "none":
                return
            try:
                if mode == "tick" and robot.peek_into(scratch):
                    scratch[tat:hat] = target
                    scratch[hat:] = hist
                raw_w = self.policy.run_one(last_obs)
                a_w, _ = filter_action(raw_w, prev_applied, last_obs[:n], last_obs[ee], fp)
                r_w = fns.step_values(prev_applied, last_obs)[0]
                if mode == "tick":
                    if rec is not None and rec.error is None:
                        rec.writer.warm_append(last_obs, a_w, r_w, scratch, a_w, _wall(), _mono())
                    hist_w[:] = hist
                    shift_in(hist_w, a_w)
            except Exception:  # noqa: BLE001, S110 - a failing policy is met (and counted) at the tick itself
                pass
            if writer is not None and _mono() + period - last_flush >= flush_every_s and self.record_error is None:
                try:
                    writer.warm()
                except StoreError:  # met (and reported) at the hand-over itself
                    pass

        for k in range(horizon + 1):
            deadline = dl.wait(warm)
            t0 = _mono()
            self._beat = t0
            fault = ""
            if k > 0:
                nobs = np.empty(od, np.float32)
                try:
                    robot.observe_into(nobs)
                    nobs[tat:hat] = target
                    nobs[hat:] = hist
                except Exception as exc:  # noqa: BLE001 - a driver that raises: hold, count, stop after N
                    self._fault("observe", exc)
                    fault = "observe"
                    obs = None
                else:
                    if pending is not None and rec is not None:
                        rec.row(pending, nobs, fns, k == horizon)
                    obs = nobs
                    last_obs = nobs
                pending = None
            if k == horizon or stop.is_set():
                if k < horizon:
                    horizon = k
                break
            if self._staged is not None:
                self._maybe_swap(boundary=False)
            raw: np.ndarray = hold
            if obs is None or hold_next:
                applied, bits = hold.copy(), WATCHDOG
            else:
                with self._lock:
                    ring[self._n_recent % rcap] = obs
                    self._n_recent += 1
                ti = _mono()
                try:
                    raw = self.policy.run_one(obs)
                except Exception as exc:  # noqa: BLE001 - inference failure: hold
                    self._fault("inference", exc)
                    fault = "inference"
                    raw = np.full(n, np.nan)
                t1 = _mono()
                stats.inferred(t1 - ti)
                applied, bits = filter_action(raw, prev_applied, obs[:n], obs[ee], fp)
                if bits & INVALID_OUTPUT:
                    self._log_invalid("policy v%d output invalid (NaN/inf or shape %s); hold sent", self.policy_version,
                                      np.shape(raw))
                    fault = fault or "invalid_output"
                    self.faults["invalid_output"] = self.faults.get("invalid_output", 0) + 1
                if t1 - deadline > timeout:
                    self._fault("inference_overrun", f"{(t1 - deadline) * 1e3:.2f} ms after the deadline")
                    fault = "inference_overrun"
                    applied, bits = hold.copy(), bits | WATCHDOG
                raw = np.asarray(raw, np.float64).reshape(-1)
                if raw.shape != (n,):
                    raw = np.full(n, np.nan)
            ts = _mono()
            try:
                robot.send_action(applied)
                sent = True
            except Exception as exc:  # noqa: BLE001 - a driver that raises: hold next tick
                self._fault("send", exc)
                fault, sent = "send", False
            te = _mono()
            if te - deadline > timeout and not fault:
                self._fault("driver_overrun", f"{(te - deadline) * 1e3:.2f} ms after the deadline")
                fault = "driver_overrun"
            shift_in(hist, applied if sent else hold)  # what the robot was sent: hold when the driver refused it
            if sent:
                prev_applied = applied
                if obs is not None:
                    pending = (obs, applied, raw, bits, _wall(), t0)
            if bits:
                stats.interventions += 1
                bc = self.bit_counts
                b = 1
                while b <= bits:
                    if bits & b:
                        bc[b] = bc.get(b, 0) + 1
                    b <<= 1
            if trace is not None:
                trace.append((ep, k, t0, bits, applied, fault))
            if fault:
                consecutive += 1
            elif not hold_next:  # a hold tick after a driver fault neither counts nor clears the run of faults
                consecutive = 0
            hold_next = fault in ("send", "driver_overrun")
            if consecutive >= self.max_consecutive_faults:
                self._safe_stop(k, fault)
                horizon = k + 1
                break
            if rec is not None and te - last_flush >= self.flush_interval_s:
                last_flush = te
                rec.hand_over()
            stats.tick(t0, (_mono() - t0) - (te - ts))
            dl.advance(_mono())
        self._beat = None
        self.steps_done += horizon
        if rec is not None:
            rec.writer.end_episode()
            rec.hand_over(log_behind=False)

    def _safe_stop(self, tick: int, fault: str) -> None:
        try:
            self.robot.send_action(self.filter.hold)
        except Exception as exc:  # noqa: BLE001 - reported below; the driver is already failing
            log.error("could not send the hold action at the safety stop: %s", exc)
        info = {"episode": self.episode_index, "tick": tick, "last_fault": fault, "faults": dict(self.faults),
                "wall_s": _wall()}
        self.stops.append(info)
        log.error("watchdog: %d consecutive faults (last: %s) on episode %d tick %d: episode stopped safely",
                  self.max_consecutive_faults, fault, self.episode_index, tick)

