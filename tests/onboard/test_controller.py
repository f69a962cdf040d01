"""The onboard controller on a real MuJoCo reacher2 with real onnxruntime policies and a real episode store.

Runs unpaced unless pacing is what is tested (then at most ~1.5 s)."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from robodyna.config import ConfigError
from robodyna.data.store import EpisodeStore
from robodyna.data.validate import validate
from robodyna.identity import IdentityMismatch
from robodyna.onboard.controller import Controller, ControllerError
from robodyna.onboard.filter import CLAMPED, INVALID_OUTPUT, RATE_LIMITED, WATCHDOG
from robodyna.onboard.policy import PolicyMismatchError
from robodyna.onboard.timing import RealtimeError, check_realtime
from tests.onboard.policies import make_policy, spec_and_obs

SPEC, OBS = spec_and_obs()


def errors(root: Path) -> list[str]:
    return [str(p) for p in validate(root) if p.severity == "error"]


@pytest.fixture
def good(tmp_path: Path) -> Path:
    p = tmp_path / "good.onnx"
    make_policy(p, SPEC, OBS, "tanh", version=1)
    return p


def test_records_every_transition_with_version_raw_and_applied_action_and_continues_the_store(
        tmp_path: Path, good: Path) -> None:
    store = tmp_path / "store"
    slow_changes = ["safety.max_action_change_frac_per_tick=0.02"]  # so that applied != raw on many rows
    c = Controller("reacher2", good, store, pace=False, episode_steps=20, overrides=slow_changes)
    st = c.run(episodes=3)
    assert st["episodes"] == 3 and st["steps"] == 60 and st["policy_version"] == 1
    assert errors(store) == []
    tr = EpisodeStore(store).read()
    assert len(tr) == 60 and set(tr.extras["policy_version"].tolist()) == {1}
    assert tr.batch.truncated.sum() == 3 and [e.closed for e in EpisodeStore(store).episodes()] == [True] * 3
    a, raw = tr.batch.action, tr.extras["policy_action"]
    assert np.all(np.abs(a) <= 0.2 + 1e-7)
    # the raw column is the policy's own output on the recorded observation
    from robodyna.onboard.policy import OnnxPolicy

    np.testing.assert_allclose(raw, OnnxPolicy(good)(tr.batch.obs), rtol=1e-5, atol=1e-6)
    changed = np.any(np.abs(a - raw) > 1e-6, axis=1)
    assert np.array_equal(changed, tr.extras["intervention"] != 0)  # every difference is flagged
    assert changed.sum() >= 10 and np.all(tr.extras["intervention"][changed] & RATE_LIMITED)
    assert np.all(np.diff(tr.extras["time_mono_s"]) >= 0) and np.all(tr.extras["time_wall_s"] > 1.6e9)
    # next start continues the store
    Controller("reacher2", good, store, pace=False, episode_steps=20, overrides=slow_changes).run(episodes=2)
    eps = EpisodeStore(store).episodes()
    assert [e.index for e in eps] == [0, 1, 2, 3, 4] and errors(store) == []


def test_a_reality_change_makes_the_robot_another_reality_at_the_first_episode_start_past_the_row_count(
        tmp_path: Path, good: Path) -> None:
    """``reality_change=(rows, profile)``: episodes that start once the store holds ``rows`` rows run on the other
    profile (here `heavy`: 50 % heavier links), counted across controller processes; replaying each recorded episode's
    actions from its seed in MuJoCo reproduces it on the profile its info names and not on the other."""
    from robodyna.tasks.env import make_env

    store = tmp_path / "store"
    Controller("reacher2", good, store, pace=False, episode_steps=20, reality_change=(50, "heavy")).run(episodes=2)
    c = Controller("reacher2", good, store, pace=False, episode_steps=20, reality_change=(50, "heavy"))
    st = c.run(episodes=2)  # starts at 40 rows: the first of its episodes still nominal, the next one heavy
    assert st["reality"] == "heavy" and errors(store) == []
    infos = [e.info for e in EpisodeStore(store).episodes()]
    assert [i["reality"] for i in infos] == ["", "", "", "heavy"]
    tr = EpisodeStore(store).read()
    for ep, info in enumerate(infos):
        rows = tr.episode_index == ep
        gaps = {}
        for name in ("", "heavy"):
            env = make_env("reacher2", reality=name or None)
            try:
                obs, _ = env.reset(seed=info["seed"])
                got = [np.asarray(env.step(a)[0], np.float32) for a in tr.batch.action[rows]]
            finally:
                env.close()
            assert np.allclose(obs, tr.batch.obs[rows][0], atol=1e-5)
            gaps[name] = float(np.abs(np.asarray(got) - tr.batch.next_obs[rows]).max())
        ran, other = info["reality"], "heavy" if info["reality"] == "" else ""
        assert gaps[ran] < 1e-4 < gaps[other], (ep, gaps)
    with pytest.raises(ConfigError, match="unknown reality profile"):  # at the start, not at the change
        Controller("reacher2", good, None, pace=False, reality_change=(50, "no_such_profile"))


def at(hz: float, tmp_path: Path, kind: str = "tanh", version: int = 1, **kw: int) -> Path:
    p = tmp_path / f"{kind}-{hz:g}hz-v{version}.onnx"
    make_policy(p, *spec_and_obs(hz=hz), kind, version=version, **kw)
    return p


def test_a_paced_recording_loop_that_hands_rows_over_every_10_ms_records_every_row(tmp_path: Path) -> None:
    """Paced, the loop warms each hand-over before its tick (``EpisodeWriter.warm``) and writes a throw-away row
    into the next free row (``EpisodeWriter.warm_append``): 100 hand-overs in 2 s at 500 Hz through the writer
    process must land every transition, drop none, and store no throw-away row (the store validates: a leaked one
    breaks the obs/next_obs continuity)."""
    store = tmp_path / "store"
    c = Controller("reacher2", at(500, tmp_path), store, pace=True, hz=500, episode_steps=1000, flush_interval_s=0.01)
    st = c.run(steps=1000)
    assert st["loop"]["record_dropped"] == 0 and st["queue"]["pending_segments"] == 0
    assert errors(store) == []
    assert len(EpisodeStore(store).read()) == 1000 and len(list((store / "segments").iterdir())) >= 50


def test_paced_loop_keeps_the_rate_on_absolute_deadlines(tmp_path: Path) -> None:
    c = Controller("reacher2", at(100, tmp_path), None, pace=True, hz=100, episode_steps=1000)
    t0 = time.monotonic()
    st = c.run(steps=100)
    dt = time.monotonic() - t0
    # 100 ticks at 100 Hz: ~1 s; sleep(1/hz) after the work would drift by the work time each tick
    assert 0.95 <= dt <= 1.5, dt
    assert st["loop"]["period_p50_us"] == pytest.approx(10_000, rel=0.05)


# -- bad policies at start --------------------------------------------------------------------------------------------
def test_corrupt_onnx_is_refused_at_start_naming_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 10)
    with pytest.raises(PolicyMismatchError, match="broken.onnx: not a readable ONNX file"):
        Controller("reacher2", bad, tmp_path / "s", pace=False)
    assert not (tmp_path / "s" / "segments").exists() or not any((tmp_path / "s" / "segments").iterdir())


def test_policy_for_another_robot_is_refused_at_start(tmp_path: Path) -> None:
    spec, obs = spec_and_obs("panda")
    p = tmp_path / "panda.onnx"
    make_policy(p, spec, obs)
    with pytest.raises(IdentityMismatch, match="made for another robot"):
        Controller("reacher2", p, None, pace=False)


@pytest.mark.parametrize(("kind", "msg"), [("nan", "non-finite"), ("huge", "outside the limits")])
def test_nan_or_huge_policy_is_refused_before_the_first_action(tmp_path: Path, kind: str, msg: str) -> None:
    p = tmp_path / f"{kind}.onnx"
    make_policy(p, SPEC, OBS, kind)
    c = Controller("reacher2", p, tmp_path / "s", pace=False, trace=True)
    with pytest.raises(ControllerError, match=msg):
        c.run(episodes=1)
    assert c.trace == []  # nothing was sent


# -- runtime protections (the policy got past the start check) ------------------------------------------------------
def test_nan_output_holds_counts_and_stops_the_episode(tmp_path: Path) -> None:
    p = tmp_path / "nan.onnx"
    make_policy(p, SPEC, OBS, "nan")
    c = Controller("reacher2", p, tmp_path / "s", pace=False, verify_on_start=False, trace=True, episode_steps=50)
    st = c.run(episodes=2)
    assert c.trace is not None and c.trace
    assert all(bits & INVALID_OUTPUT and np.array_equal(a, np.zeros(2)) for _, _, _, bits, a, _ in c.trace)
    n = c.max_consecutive_faults
    assert len(st["stops"]) == 2 and all(s["tick"] == n - 1 for s in st["stops"])
    assert st["faults"]["invalid_output"] == 2 * n
    tr = EpisodeStore(tmp_path / "s").read()
    assert np.all(tr.batch.action == 0) and np.all(np.isnan(tr.extras["policy_action"]))
    assert np.all(tr.extras["intervention"] & INVALID_OUTPUT) and errors(tmp_path / "s") == []


def test_wrong_shape_output_is_held(tmp_path: Path) -> None:
    p = tmp_path / "wide.onnx"
    make_policy(p, SPEC, OBS, "wide")
    c = Controller("reacher2", p, None, pace=False, verify_on_start=False, trace=True)
    c.run(episodes=1)
    assert c.trace and all(b & INVALID_OUTPUT and not a.any() for _, _, _, b, a, _ in c.trace)


def test_1000x_policy_is_clipped_and_rate_limited_with_the_raw_output_recorded(tmp_path: Path) -> None:
    p = tmp_path / "huge.onnx"
    make_policy(p, SPEC, OBS, "huge")
    c = Controller("reacher2", p, tmp_path / "s", pace=False, verify_on_start=False, episode_steps=40)
    c.run(episodes=2)
    tr = EpisodeStore(tmp_path / "s").read()
    a, raw, itv = tr.batch.action, tr.extras["policy_action"], tr.extras["intervention"]
    assert np.all(np.abs(raw) == pytest.approx(200.0))
    assert np.all(np.abs(a) <= 0.2 + 1e-7) and np.all(itv & CLAMPED)
    step = 0.25 * 0.4  # max_action_change_frac_per_tick of the range
    for e in np.unique(tr.episode_index):
        ae = a[tr.episode_index == e]
        assert np.all(np.abs(np.diff(ae, axis=0)) <= step + 1e-6)


def test_full_range_oscillation_is_rate_limited(tmp_path: Path) -> None:
    p = tmp_path / "osc.onnx"
    make_policy(p, SPEC, OBS, "oscillate")
    c = Controller("reacher2", p, tmp_path / "s", pace=False, episode_steps=50)
    c.run(episodes=2)
    tr = EpisodeStore(tmp_path / "s").read()
    raw, a = tr.extras["policy_action"], tr.batch.action
    assert np.any(np.abs(np.diff(raw, axis=0)) > 0.39)  # the policy flips between -0.2 and 0.2
    for e in np.unique(tr.episode_index):
        d = np.abs(np.diff(a[tr.episode_index == e], axis=0))
        assert np.all(d <= 0.1 + 1e-6)
    assert np.any(tr.extras["intervention"] & RATE_LIMITED)


def test_inference_overrunning_the_deadline_is_held_on_the_same_tick(tmp_path: Path,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    p = at(2000, tmp_path, "slow", slow_layers=150)  # inference takes longer than the 0.5 ms period
    c = Controller("reacher2", p, None, pace=True, hz=2000, trace=True, overrides=["safety.watchdog_timeout_ms=0.2"])
    st = c.run(steps=30)
    assert c.trace
    over = [t for t in c.trace if t[5] == "inference_overrun"]
    assert over, st["faults"]
    assert all(b & WATCHDOG and not a.any() for _, _, _, b, a, _ in over)
    assert st["stops"] and st["stops"][0]["last_fault"] == "inference_overrun"
    assert "control loop runs below the requested rate" in caplog.text


# -- hot-swap ---------------------------------------------------------------------------------------------------------
def _offer(c: Controller, data: bytes, version: int, **kw: object) -> tuple[bool, str]:
    return c.offer_policy(data, hashlib.sha256(data).hexdigest(), version, **kw)  # type: ignore[arg-type]


def test_rejected_offers_say_why_and_leave_the_running_policy(tmp_path: Path, good: Path) -> None:
    c = Controller("reacher2", good, None, pace=False, episode_steps=5)
    c.run(episodes=1)  # gather recent real observations
    pspec, pobs = spec_and_obs("panda")
    cases = {
        "not a readable ONNX file": (b"\x00garbage" * 20, 2),
        "made for another robot": (make_policy(None, pspec, pobs, version=2), 2),
        "non-finite": (make_policy(None, SPEC, OBS, "nan", version=2), 2),
        "outside the limits": (make_policy(None, SPEC, OBS, "huge", version=2), 2),
        "announced as version 3 but the file says 2": (make_policy(None, SPEC, OBS, version=2), 3),
    }
    for why, (data, version) in cases.items():
        ok, reason = _offer(c, data, version)
        assert not ok and why in reason, (why, reason)
    data = make_policy(None, SPEC, OBS, version=2)
    ok, reason = c.offer_policy(data, "0" * 64, 2)
    assert not ok and "sha256" in reason and "does not match" in reason
    st = c.status()
    assert st["policy_version"] == 1 and st["staged"] is None and len(st["rejections"]) == 6


# 512x512 products: verifying on 64 observations takes 0.1-0.3 s (200 took 57 ms on a quiet machine: too close to
# the 3 periods the test needs to tell a blocked loop from noise), one tick a few ms
SLOW_TO_VERIFY = 400


def test_hot_swap_under_load_at_the_episode_boundary_without_a_missed_tick(tmp_path: Path) -> None:
    """Offers are verified on this (the caller's) thread while the loop runs; no tick during an offer or at a swap
    is delayed by the verification. The offered policies are slow to verify (a test inference on 64 observations
    through a chain of large products takes several control periods), so verification on the control thread would
    stretch a period by far more than the allowance; the allowance (half an offer) absorbs a shared machine's
    scheduling noise. Late ticks elsewhere would be the machine's doing and are not attributed to the swap."""
    store = tmp_path / "s"
    spec, obs = SPEC, OBS  # reacher2's own 50 Hz
    c = Controller("reacher2", at(50, tmp_path), store, pace=True, episode_steps=10, trace=True)
    th = threading.Thread(target=c.run, kwargs={"steps": 150})
    th.start()
    while c.status()["steps"] < 10:  # first episode done: there are observations to test on
        time.sleep(0.01)
    results, windows = [], []
    for v in (2, 3, 4):  # each offer parses, builds a session and runs a test inference while the loop runs
        good_v = make_policy(None, spec, obs, "slow", version=v, seed=v, slow_layers=SLOW_TO_VERIFY)
        bad_v = make_policy(None, spec, obs, "nan", version=v + 10)
        t = time.monotonic()
        results.append(_offer(c, good_v, v))
        _offer(c, bad_v, v + 10)  # rejected in between
        windows.append((t, time.monotonic()))
        time.sleep(0.25)
    th.join()
    st = c.status()
    assert all(ok for ok, _ in results), results
    assert st["steps"] == 150 and st["policy_version"] == 4 and len(st["swaps"]) >= 2
    assert c.trace is not None
    period = 1 / 50
    offer_s = min(b - a for a, b in windows)
    assert offer_s > 3 * period, f"an offer took {offer_s * 1e3:.0f} ms: too quick to tell a blocked loop from noise"
    allowed = period + offer_s / 2
    swapped = {s["episode"] for s in st["swaps"]}
    late = []
    for prev, cur in zip(c.trace[:-1], c.trace[1:]):
        if cur[0] != prev[0]:
            continue  # a reset lies between episodes: not a control period
        during_offer = any(a - period <= cur[2] <= b + period for a, b in windows)
        swap_tick = cur[1] == 1 and cur[0] in swapped  # swaps happen before tick 0: tick 1 ends the first period
        if (during_offer or swap_tick) and cur[2] - prev[2] > allowed:
            late.append((cur[0], cur[1], round((cur[2] - prev[2]) * 1e3, 1)))
    assert late == [], (late, round(allowed * 1e3, 1), st["loop"])
    tr = EpisodeStore(store).read()
    pv, ep, step = tr.extras["policy_version"], tr.episode_index, tr.step_index
    for e in np.unique(ep):  # one version per episode: swaps happen at the boundary only
        assert len(set(pv[ep == e].tolist())) == 1
        assert step[ep == e].tolist() == list(range(int((ep == e).sum())))
    assert {3, 4} <= set(pv.tolist())
    assert errors(store) == []


def test_swap_at_tick_changes_the_version_mid_episode(tmp_path: Path) -> None:
    store = tmp_path / "s"
    spec, obs = spec_and_obs(hz=100)
    c = Controller("reacher2", at(100, tmp_path), store, pace=True, hz=100, episode_steps=1000)
    th = threading.Thread(target=c.run, kwargs={"steps": 60})
    th.start()
    while c.status()["steps"] == 0 and c.stats.n < 10:
        time.sleep(0.01)
    ok, _ = _offer(c, make_policy(None, spec, obs, version=7), 7, swap_at="tick")
    th.join()
    assert ok
    tr = EpisodeStore(store).read()
    pv = tr.extras["policy_version"]
    assert set(tr.episode_index.tolist()) == {0} and pv[0] == 1 and pv[-1] == 7
    assert np.all(np.diff(pv) >= 0) and tr.step_index.tolist() == list(range(60))
    assert c.status()["swaps"][0]["at"] == "tick"


def test_policy_dir_swaps_new_versions_and_reports_bad_files(tmp_path: Path) -> None:
    pdir = tmp_path / "policies"
    pdir.mkdir()
    spec, obs = spec_and_obs(hz=200)
    c = Controller("reacher2", at(200, tmp_path), None, pace=True, hz=200, episode_steps=20, policy_dir=pdir)
    th = threading.Thread(target=c.run, kwargs={"steps": 300})
    th.start()
    time.sleep(0.2)
    (pdir / "v5.onnx").write_bytes(b"not onnx at all")
    data = make_policy(None, spec, obs, version=6)
    (pdir / ".v6.onnx.tmp").write_bytes(data)
    (pdir / "v6.onnx.sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
    (pdir / ".v6.onnx.tmp").rename(pdir / "v6.onnx")
    th.join()
    st = c.status()
    assert st["policy_version"] == 6, st
    assert any("v5.onnx" in r["source"] and "not a readable ONNX" in r["reason"] for r in st["rejections"])


@pytest.mark.parametrize("writer", ["process", "thread"])
def test_a_stuck_disk_never_blocks_the_loop_rows_are_dropped_counted_and_reported(tmp_path: Path, good: Path,
                                                                                   writer: str) -> None:
    """The store's writer (process, or thread) is stuck opening its first segment (a FIFO sits at its temp name, so
    open() waits for a reader, like a hung disk); then the write fails (fsync on a FIFO). The loop runs on
    regardless."""
    import os

    c = Controller("reacher2", good, tmp_path / "s", pace=False, episode_steps=3000, flush_interval_s=0.0005,
                   writer_process=writer == "process")
    assert c.writer is not None
    fifo = c.writer.seg_dir / f".tmp-seg-000000.arrow.{c.writer.writer_pid}"
    os.mkfifo(fifo)
    th = threading.Thread(target=c.run, kwargs={"steps": 3000}, daemon=True)  # daemon: a blocked loop fails, not hangs
    t0 = time.monotonic()
    th.start()
    while c.stats.n < 3000 and time.monotonic() - t0 < 20:
        time.sleep(0.01)
    ticked_s = time.monotonic() - t0
    assert c.stats.n == 3000  # every tick ran while the disk was stuck
    dropped = c.stats.record_dropped
    assert dropped > 0 and c.status()["queue"]["pending_segments"] > 0
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # let the writer through; its fsync on a FIFO then fails
    try:
        end = time.monotonic() + 30
        while th.is_alive() and time.monotonic() < end:
            try:
                os.read(fd, 1 << 16)
            except BlockingIOError:
                time.sleep(0.005)
    finally:
        os.close(fd)
    th.join(timeout=5)
    assert not th.is_alive()
    st = c.status()
    assert st["queue"]["record_error"] is not None and "segment writer failed" in st["queue"]["record_error"]
    assert st["loop"]["record_dropped"] >= dropped and ticked_s < 30


@pytest.mark.parametrize(("engine", "reality", "runs_in"), [("pybullet", None, "pybullet"), (None, "laggy", "mujoco"),
                                                           (None, "harsh", "pybullet")])
def test_runs_on_pybullet_and_reality_profiled_robots(tmp_path: Path, good: Path, engine: str | None,
                                                      reality: str | None, runs_in: str) -> None:
    c = Controller("reacher2", good, tmp_path / "s", pace=False, engine=engine, reality=reality, episode_steps=15)
    st = c.run(episodes=2)
    assert st["steps"] == 30 and st["faults"] == {} and errors(tmp_path / "s") == []
    meta = EpisodeStore(tmp_path / "s").meta
    assert meta.reality == reality and meta.robot_spec is not None
    assert meta.robot_spec["engine"] == runs_in


def test_request_episodes_wakes_an_idle_controller_and_stop_ends_it(tmp_path: Path, good: Path) -> None:
    c = Controller("reacher2", good, tmp_path / "s", pace=False, episode_steps=10)
    th = threading.Thread(target=c.run, kwargs={"episodes": 1, "idle_when_done": True}, daemon=True)
    th.start()
    t0 = time.monotonic()
    while c.status()["episodes"] < 1 and time.monotonic() - t0 < 10:
        time.sleep(0.01)
    time.sleep(0.1)
    assert c.status()["episodes"] == 1 and c.running  # idle, waiting for requests
    c.request_episodes(2)  # e.g. a trainer asking for fresh data
    while c.status()["episodes"] < 3 and time.monotonic() - t0 < 10:
        time.sleep(0.01)
    c.stop()
    th.join(timeout=10)
    assert not th.is_alive() and c.status()["episodes"] == 3
    assert [e.index for e in EpisodeStore(tmp_path / "s").episodes()] == [0, 1, 2]


def test_the_running_loop_imports_no_module_after_it_starts(tmp_path: Path, good: Path) -> None:
    """An import on any of the controller's threads holds the GIL for milliseconds (pandas on the store writer's
    first segment: 0.4 s of held ticks). In a fresh process, everything is imported before the first tick."""
    import subprocess
    import sys

    code = (
        "import sys, logging\n"
        "from robodyna.onboard.controller import Controller\n"
        f"c = Controller('reacher2', {str(good)!r}, {str(tmp_path / 'store')!r}, pace=True, "
        "episode_steps=15, stats_every_s=0.05)\n"
        "before = set(sys.modules)\n"
        "st = c.run(steps=30)\n"
        "assert st['steps'] == 30, st\n"
        "new = sorted(set(sys.modules) - before)\n"
        "assert not new, f'imported while the loop ran: {new}'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).parents[2])
    assert r.returncode == 0, r.stderr[-2000:]


def _fifo_permitted() -> bool:
    try:
        check_realtime(1)
    except RealtimeError:
        return False
    return True


@pytest.mark.skipif(not _fifo_permitted(), reason="SCHED_FIFO not permitted for this user")
def test_rt_priority_runs_only_the_control_thread_under_sched_fifo_and_restores_it(good: Path) -> None:
    import os

    c = Controller("reacher2", good, None, pace=True, episode_steps=25, rt_priority=7)
    control = threading.get_native_id()
    seen: dict[str, tuple[int, int]] = {}

    def probe() -> None:  # from another thread, while the loop runs: the kernel's view of the control thread
        while "control" not in seen:
            if c.steps_done or c._beat is not None:
                seen["control"] = (os.sched_getscheduler(control), os.sched_getparam(control).sched_priority)
                seen["probe"] = (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority)
            time.sleep(0.005)

    t = threading.Thread(target=probe)
    t.start()
    c.run(episodes=1)
    t.join(5)
    assert seen["control"] == (os.SCHED_FIFO, 7)
    assert seen["probe"][0] == os.SCHED_OTHER  # threads started before the switch keep the normal policy
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # restored when run returns


@pytest.mark.parametrize("priority", [0, 100, -3])
def test_an_rt_priority_out_of_range_is_refused_before_the_robot_is_loaded(good: Path, priority: int) -> None:
    msg = rf"rt_priority must be an integer in 1\.\.\d+ \(SCHED_FIFO\), got {priority}"
    with pytest.raises(RealtimeError, match=msg):
        Controller("no-such-robot", good, None, rt_priority=priority)


@pytest.mark.parametrize("warmup", ["all", "", None])
def test_an_unknown_warmup_is_refused_before_the_robot_is_loaded(good: Path, warmup: object) -> None:
    with pytest.raises(ValueError, match=rf"warmup must be 'tick', 'calls' or 'none', got {warmup!r}"):
        Controller("no-such-robot", good, None, warmup=warmup)  # type: ignore[arg-type]
