"""The two stores behind exactly-once: reading a robot store by global row index, the trainer's per-robot sink."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from robodyna.data.store import EpisodeStore, StoreError
from robodyna.transport.stores import RobotSink, StoreCursor, episode_ranges
from tests.transport.conftest import reacher_meta, write_rows


def test_cursor_reads_any_range_across_segments(tmp_path: Path) -> None:
    write_rows(tmp_path / "s", 1000, flush_every=37)
    write_rows(tmp_path / "s", 500, start=1000, flush_every=64)
    want = EpisodeStore(tmp_path / "s").read().columns()
    cur = StoreCursor(tmp_path / "s")
    while cur.refresh(max_new=5) < 1500:  # a backlog is indexed a few segments per call
        pass
    rng = np.random.default_rng(0)
    for seq, k in [(0, 1500), (36, 2), (999, 3), (1499, 10), *((int(rng.integers(0, 1500)), int(rng.integers(1, 300)))
                                                               for _ in range(50))]:
        cols, started, closed = cur.read(seq, k)
        hi = min(1500, seq + k)
        for c, a in want.items():
            assert np.array_equal(cols[c], a[seq:hi]), (c, seq, k)
    assert cur.read(1500, 10) == ({}, {}, ())


def test_cursor_falls_back_to_a_directory_scan_for_gaps_in_segment_numbers(tmp_path: Path) -> None:
    write_rows(tmp_path / "s", 300, flush_every=100)
    seg = tmp_path / "s" / "segments"
    os.rename(seg / "seg-000002.arrow", seg / "seg-000007.arrow")
    cur = StoreCursor(tmp_path / "s")
    assert cur.refresh() == 300


def test_episode_ranges_split_on_episode_and_step_breaks() -> None:
    ep = np.array([0, 0, 0, 1, 1, 2])
    step = np.array([5, 6, 7, 0, 1, 0])
    assert episode_ranges(ep, step) == [[0, 5, 0, 3], [1, 0, 3, 2], [2, 0, 5, 1]]


def test_sink_recovers_its_sequence_and_holds_its_lock(tmp_path: Path) -> None:
    from robodyna.transport.protocol import TxBatch
    from tests.transport.test_bad_input import cols

    sink = RobotSink(tmp_path / "t", reacher_meta(), "r1")
    sink.append([TxBatch("r1", 0, cols(100, 0)), TxBatch("r1", 100, cols(50, 100))])
    with pytest.raises(ValueError, match="non-contiguous"):
        sink.append([TxBatch("r1", 200, cols(10, 200))])
    with pytest.raises(StoreError, match="another writer"):
        RobotSink(tmp_path / "t", reacher_meta(), "r1")
    sink.close()
    again = RobotSink(tmp_path / "t", reacher_meta(), "r1")
    assert again.next_seq == 150 and again.rows == 150
    again.close()
    assert len(EpisodeStore(tmp_path / "t").read()) == 150
