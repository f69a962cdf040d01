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
