"""SIGKILL the recorder at seeded random moments; the store must reopen, validate, and resume without gaps."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from robodyna.data.store import EpisodeStore, EpisodeWriter
from robodyna.data.store_format import lock_store
from robodyna.data.validate import validate

sys.path.insert(0, str(Path(__file__).parent))
from _crash_child import episode_length, meta, obs_of  # noqa: E402

CHILD = Path(__file__).parent / "_crash_child.py"


def _check_store(root: Path, min_rows: int) -> tuple[int, int]:
    problems = validate(root)
    errors = [p for p in problems if p.severity == "error"]
    assert not errors, "\n".join(map(str, errors))
    store = EpisodeStore(root)
    eps = store.episodes()
    assert [e.index for e in eps] == list(range(len(eps))), "episode index gap"
    tr = store.read()
    assert len(tr) >= min_rows, f"lost acknowledged rows: {len(tr)} < {min_rows}"
    ep, st = tr.episode_index, tr.step_index
    expect = np.stack([obs_of(int(e), int(s)) for e, s in zip(ep, st)]) if len(tr) else tr.batch.obs
    np.testing.assert_array_equal(tr.batch.obs, expect)
    np.testing.assert_array_equal(tr.batch.next_obs[:, 0], expect[:, 0] + 1)
    for e in eps:
        full = episode_length(e.index)
        assert e.length == full if e.closed else e.length < full, (e, full)
    unfinished = [e.index for e in eps if not e.closed]
    return len(tr), len(unfinished)


def wait_for_writer_to_finish(root: Path, timeout_s: float = 30.0) -> None:
    """Block until no writer holds the store's lock (a killed recorder's writer process is done)."""
    os.close(lock_store(root, wait_s=timeout_s))


@pytest.mark.parametrize("mode", ["background", "sync", "process"])
def test_sigkill_at_random_moments_then_reopen_validate_and_resume(tmp_path: Path, mode: str) -> None:
    root = tmp_path / "store"
    rng = random.Random(20240611 + (mode == "sync") + 2 * (mode == "process"))
    acknowledged = 0
    kills = 0
    unfinished_seen = 0
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    for k in range(6):
        p = subprocess.Popen([sys.executable, str(CHILD), str(root), str(k), mode], stdout=subprocess.PIPE,
                             text=True, env=env)
        assert p.stdout is not None
        assert p.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        kills += 1
        for line in p.stdout.read().splitlines():
            if line.startswith("committed"):
                acknowledged = max(acknowledged, int(line.split()[1]))
        p.stdout.close()
        wait_for_writer_to_finish(root)
        rows, unfinished = _check_store(root, acknowledged)
        unfinished_seen += unfinished
        assert rows >= acknowledged
    assert kills == 6
    print(f"{mode}: {kills} kills, {acknowledged} acknowledged rows, {unfinished_seen} unfinished-episode sightings")
    # a final clean append after all the crashes: new episode gets the next index, store stays gap-free
    before = EpisodeStore(root).next_episode_index()
    with EpisodeWriter(root, meta(), resume=True, flush_every=16) as w:
        ep = w.begin_episode()
        assert ep == before
        n = episode_length(ep)
        for t in range(n):
            w.append(obs_of(ep, t), np.zeros(2), 0.0, obs_of(ep, t + 1), False, t == n - 1)
    rows, _ = _check_store(root, acknowledged)
    eps = EpisodeStore(root).episodes()
    assert eps[-1].index == before and eps[-1].closed


HAND_OVER_CHILD = """
import sys, numpy as np
sys.path.insert(0, sys.argv[3])
from _crash_child import meta, obs_of
from robodyna.data.store import EpisodeWriter
w = EpisodeWriter(sys.argv[1], meta(), flush_every=16, flush_on_episode_end=False, max_pending=32,
                  writer_process=sys.argv[2] == "process", writer_poll_s=0.2)
w.begin_episode({"seed": 0})
for t in range(16 * 20):
    w.append(obs_of(0, t), np.zeros(2), 0.0, obs_of(0, t + 1), False, False)
    if (t + 1) % 16 == 0:
        assert w.try_flush()
print("handed", 16 * 20, "pending", w.pending_segments, flush=True)
sys.stdin.readline()  # killed here
"""


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_segments_handed_to_the_writer_process_land_after_the_recorder_is_killed(tmp_path: Path, mode: str) -> None:
    """With ``writer_process``, a SIGKILL loses only rows not yet handed over: the orphaned writer writes what it
    was sent (here 20 segments, handed over faster than its 0.2 s poll), then exits and frees the lock. A writer
    thread dies with its recorder and loses the queued segments."""
    root = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    p = subprocess.Popen([sys.executable, "-c", HAND_OVER_CHILD, str(root), mode, str(Path(__file__).parent)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert p.stdout is not None and p.stdin is not None
    line = p.stdout.readline().split()
    assert line[:2] == ["handed", "320"] and int(line[3]) > 0, line  # segments were still pending at the kill
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    p.stdin.close()
    p.stdout.close()
    wait_for_writer_to_finish(root)
    rows = len(EpisodeStore(root).read())
    if mode == "process":
        assert rows == 320
        assert not [q for q in validate(root) if q.severity == "error"]
    else:
        assert rows < 320


def test_reader_ignores_temp_files_and_writer_removes_them(tmp_path: Path) -> None:
    root = tmp_path / "s"
    with EpisodeWriter(root, meta(), flush_every=8) as w:
        for t in range(10):
            w.append(obs_of(0, t), np.zeros(2), 0.0, obs_of(0, t + 1), False, t == 9)
    junk = root / "segments" / ".tmp-seg-000099.arrow.12345"
    junk.write_bytes(b"ARROW1 half a file")
    assert len(EpisodeStore(root).read()) == 10
    assert any(p.severity == "warning" and "temp" in p.message for p in validate(root))
    EpisodeWriter(root, meta(), resume=True).close()
    assert not junk.exists()


def test_second_writer_on_same_store_is_refused(tmp_path: Path) -> None:
    from robodyna.data.store import StoreError

    with EpisodeWriter(tmp_path / "s", meta()):
        with pytest.raises(StoreError, match="another writer"):
            EpisodeWriter(tmp_path / "s", meta(), resume=True)


# -- deterministic: a crash at a chosen byte of a chosen segment write ------------------------------------------
FAULT_CHILD = Path(__file__).parent / "_write_fault_child.py"
FAULT_EPISODES = 6
KILL_SEGMENT = 3  # the 4th segment the child writes: earlier ones have landed


def _run_fault_child(root: Path, kill_segment: int, offset: int, mode: str = "sync") -> tuple[int, int, str]:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    r = subprocess.run([sys.executable, str(FAULT_CHILD), str(root), str(FAULT_EPISODES), str(kill_segment),
                        str(offset), mode], capture_output=True, text=True, env=env, timeout=120)
    acked = [int(line.split()[1]) for line in r.stdout.splitlines() if line.startswith("committed")]
    return r.returncode, (acked[-1] if acked else 0), r.stdout + r.stderr


@pytest.fixture(scope="module")
def reference_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same recording without a crash: its segments are byte-identical to what the crashing child writes."""
    root = tmp_path_factory.mktemp("ref") / "store"
    rc, _, out = _run_fault_child(root, -1, 0)
    assert rc == 0 and out.splitlines()[-1] == "done", out
    return root


def _segment_size(root: Path, number: int) -> int:
    return (root / "segments" / f"seg-{number:06d}.arrow").stat().st_size


@pytest.mark.parametrize(("mode", "where"), [("sync", "0"), ("sync", "1"), ("sync", "100"), ("sync", "half"),
                                             ("sync", "size-1"), ("sync", "size"), ("background", "half")])
def test_crash_at_a_chosen_byte_of_a_segment_write_leaves_every_acknowledged_row_and_no_partial_segment(
        reference_store: Path, tmp_path: Path, mode: str, where: str) -> None:
    size = _segment_size(reference_store, KILL_SEGMENT)
    offset = {"half": size // 2, "size-1": size - 1, "size": size}.get(where) or int(where)  # "size": all bytes
    root = tmp_path / "store"
    rc, acked, out = _run_fault_child(root, KILL_SEGMENT, offset, mode)
    assert rc == -signal.SIGKILL, f"the fault never fired (child exited {rc}):\n{out}"
    # the store reopens, validates, and holds exactly the segments that landed before the crash, byte for byte
    assert not [p for p in validate(root) if p.severity == "error"]
    store = EpisodeStore(root)
    got, ref = store.read(), EpisodeStore(reference_store).read()
    landed = sorted(p.name for p in (root / "segments").iterdir() if p.name.startswith("seg-"))
    # killed before its last byte, the segment must not be there; with every byte written (killed before
    # fsync/rename) it may be absent (temp + rename) or whole, never partial
    allowed = [KILL_SEGMENT] if offset < size else [KILL_SEGMENT, KILL_SEGMENT + 1]
    assert len(landed) in allowed, landed
    for name in landed:  # every segment under a final name is whole: byte-identical to the crash-free run
        assert (root / "segments" / name).read_bytes() == (reference_store / "segments" / name).read_bytes(), name
    assert acked <= len(got) < len(ref), (acked, len(got))
    for name, col in got.columns().items():
        np.testing.assert_array_equal(col, ref.columns()[name][: len(got)], err_msg=name)
    # resuming removes the leftover temp file and records the rest without a gap
    with EpisodeWriter(root, meta(), resume=True, flush_every=16) as w:
        ep = w.begin_episode()
        assert ep == store.next_episode_index()
        n = episode_length(ep)
        for t in range(n):
            w.append(obs_of(ep, t), np.zeros(2), 0.0, obs_of(ep, t + 1), False, t == n - 1)
    assert not [p.name for p in (root / "segments").iterdir() if not p.name.startswith("seg-")]
    _check_store(root, acked)
