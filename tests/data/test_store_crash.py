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


@pytest.mark.parametrize("mode", ["background", "sync"])
def test_sigkill_at_random_moments_then_reopen_validate_and_resume(tmp_path: Path, mode: str) -> None:
    root = tmp_path / "store"
    rng = random.Random(20240611 + (mode == "sync"))
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
