"""The vectorised full read: same rows as segment-by-segment reading, writable arrays, exact NaN/inf reports."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from conftest import toy_meta, write_toy

from robodyna.data.store import EpisodeStore, EpisodeWriter, StoreError


def test_full_and_episode_reads_equal_the_segments_read_one_by_one(tmp_path: Path) -> None:
    root = write_toy(tmp_path / "s", episodes=5, length=9, flush_every=4)
    s = EpisodeStore(root)
    parts = [s.read_segment(si).columns() for si in s.segments()]
    assert len(parts) > 5
    full = s.read()
    for k, v in full.columns().items():
        np.testing.assert_array_equal(v, np.concatenate([p[k] for p in parts]))
        assert v.flags.writeable and v.dtype == parts[0][k].dtype
    ep = s.read([3, 1])
    np.testing.assert_array_equal(ep.episode_index, [1] * 9 + [3] * 9)
    np.testing.assert_array_equal(ep.batch.obs, full.batch.obs[np.isin(full.episode_index, [1, 3])])
    assert len(s.read([99])) == 0 and s.read([99]).batch.obs.shape == (0, 4)
    tail = s.tail()
    first = tail.poll()
    assert first is not None and len(first) == len(full) and tail.poll() is None


def _nan_store(root: Path) -> Path:
    """Episodes of 6 rows in segments of 4 rows; NaN at episode 1 step 1 (row 7: segment 1, shared with ep 0)."""
    with EpisodeWriter(root, toy_meta(), flush_every=4, flush_on_episode_end=False) as w:
        for e in range(3):
            for t in range(6):
                o = np.full(4, np.nan if (e, t) == (1, 1) else float(t))
                w.append(o, np.zeros(2), 0.0, np.zeros(4), False, t == 5)
    return root


def test_nan_report_names_the_right_segment_episode_and_step(tmp_path: Path) -> None:
    s = EpisodeStore(_nan_store(tmp_path / "s"))
    with pytest.raises(StoreError, match=r"seg-000001\.arrow: 1 row\(s\) with NaN/inf; first at episode 1 step 1"):
        s.read()
    with pytest.raises(StoreError, match=r"seg-000001\.arrow.*episode 1 step 1"):
        s.read([2, 1])
    # only the rows returned are checked: episode 0 shares segment 1 with the bad row but is clean
    assert len(s.read([0])) == 6 and len(s.read([2])) == 6
    assert len(s.read(check_finite=False)) == 18


def test_large_finite_values_are_not_mistaken_for_inf(tmp_path: Path) -> None:
    with EpisodeWriter(tmp_path / "s", toy_meta(), flush_every=3) as w:
        for t in range(8):
            big = np.full(4, 3e38, np.float32)
            w.append(big, np.full(2, -3e38), 3e38, big, False, t == 7)
    assert len(EpisodeStore(tmp_path / "s").read()) == 8


def test_a_segment_with_other_column_widths_is_named(tmp_path: Path) -> None:
    root = write_toy(tmp_path / "s", episodes=1, length=4, flush_every=4)
    seg = next((root / "segments").iterdir())
    t = ipc.open_file(pa.memory_map(str(seg))).read_all()
    wide = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(4 * 5, np.float32)), 5)
    t = t.set_column(t.schema.get_field_index("obs"), "obs", wide)
    with pa.OSFile(str(seg), "wb") as f, ipc.new_file(f, t.schema) as wr:
        wr.write_table(t)
    with pytest.raises(StoreError, match=r"seg-000000\.arrow: obs/action widths 5/2 .*meta\.json \(4/2\)"):
        EpisodeStore(root).read()


def test_a_quiet_hand_over_lands_its_segment_within_the_writer_poll_time_without_close(tmp_path: Path) -> None:
    """``writer_poll_s``: the recording thread only enqueues; the writer finds the segment by polling."""
    m = toy_meta()
    w = EpisodeWriter(tmp_path / "s", m, flush_every=64, flush_on_episode_end=False, writer_poll_s=0.02)
    try:
        w.begin_episode()
        for t in range(5):
            o = np.full(m.obs_dim, t, np.float32)
            w.append(o, np.zeros(m.act_dim, np.float32), 0.0, o + 1, False, False)
        assert w.try_flush()
        deadline = time.monotonic() + 5.0
        while w.pending_segments and time.monotonic() < deadline:
            time.sleep(0.005)
        assert w.pending_segments == 0, "the writer never picked up a segment handed over quietly"
        obs = EpisodeStore(tmp_path / "s").read().batch.obs  # readable by another reader while the writer is open
        np.testing.assert_array_equal(obs[:, 0], np.arange(5, dtype=np.float32))
    finally:
        w.close()


@pytest.mark.parametrize("writer_process", [True, False])
def test_many_hand_overs_with_warm_ups_between_them_land_every_row_and_free_every_buffer(
        tmp_path: Path, writer_process: bool) -> None:
    """A control loop (here 1 kHz) warms the hand-over before each flush tick (``warm``) and never waits: 50
    hand-overs through 5 buffers must all land, in order, without a refused hand-over (a buffer lost on the way back
    makes every hand-over after the fifth refuse)."""
    m = toy_meta()
    w = EpisodeWriter(tmp_path / "s", m, flush_every=64, flush_on_episode_end=False, max_pending=4,
                      writer_poll_s=0.005, writer_process=writer_process)
    refused = dropped = 0
    try:
        w.begin_episode({"seed": 3})
        for t in range(1000):
            time.sleep(0.001)
            o = np.full(m.obs_dim, t, np.float32)
            if w.buffer_full and not w.can_hand_over():
                dropped += 1
                continue
            w.append(o, np.zeros(m.act_dim, np.float32), 0.0, o + 1, False, t == 999)
            if t % 20 == 18:
                w.warm()
            if t % 20 == 19 and not w.try_flush():
                refused += 1
    finally:
        w.close()
    assert (refused, dropped) == (0, 0)
    tr = EpisodeStore(tmp_path / "s").read()
    np.testing.assert_array_equal(tr.batch.obs[:, 0], np.arange(1000, dtype=np.float32))
    assert w.writer_pid != os.getpid() if writer_process else w.writer_pid == os.getpid()


def test_a_writer_poll_time_that_is_not_positive_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="writer_poll_s"):
        EpisodeWriter(tmp_path / "s", toy_meta(), writer_poll_s=0.0)


def test_writing_a_segment_does_not_import_pandas(tmp_path: Path) -> None:
    """The writer thread shares the GIL with the control loop: a first flush must not import pandas (0.4 s)."""
    code = (
        "import sys, numpy as np\n"
        "from conftest import write_toy\n"
        "from pathlib import Path\n"
        f"write_toy(Path({str(tmp_path / 's')!r}))\n"
        "assert 'pandas' not in sys.modules, 'writing a segment imported pandas'\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
