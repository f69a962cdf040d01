"""The two ends of exactly-once: a robot's store read by global row index, the trainer's per-robot store.

*Sequence numbers.* A row's sequence number is its global row index in the robot's episode store (segments in
order, rows in order). The store is append-only and a segment lands atomically, so the numbering survives any
crash or restart of the robot.

*Trainer side.* :class:`RobotSink` writes each robot's rows into an episode store of its own, one atomic,
fsynced segment per group commit, with the robot's columns as they are (episode/step index, policy version,
timestamps, intervention) and the sequence range ``[seq0, seq1)`` in the segment footer (key ``link``). On
restart the next expected sequence is read back from the last landed segment's footer, so "persisted" and
"acknowledged" can never disagree: an ack is sent only after the segment (and its directory entry) is fsynced.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from robodyna.data.store_format import (
    COLUMNS,
    FOOTER_KEY,
    FORMAT_VERSION,
    META_FILE,
    SEG_DIR,
    StoreError,
    StoreMeta,
    arrow_schema,
    columns_to_table,
    list_segments,
    lock_store,
    open_segment,
    read_meta,
    read_segment_info,
    remove_tmp_files,
    seg_name,
    table_to_columns,
    write_meta,
    write_segment,
)
from robodyna.transport.protocol import TxBatch

log = logging.getLogger(__name__)
LINK_KEY = "link"


def episode_ranges(ep: np.ndarray, step: np.ndarray) -> list[list[int]]:
    """Footer ``ranges`` ``[episode, first_step, row_start, n]`` of rows with these episode/step indices."""
    n = len(ep)
    if n == 0:
        return []
    cut = np.flatnonzero((ep[1:] != ep[:-1]) | (step[1:] != step[:-1] + 1)) + 1
    starts = np.concatenate([[0], cut])
    ends = np.concatenate([cut, [n]])
    return [[int(ep[s]), int(step[s]), int(s), int(e - s)] for s, e in zip(starts, ends)]


class RobotSink:
    """The trainer's store for one robot: appends contiguous :class:`TxBatch` es as one durable segment."""

    def __init__(self, root: str | Path, meta: StoreMeta, robot: str) -> None:
        self.root = Path(root)
        self.robot = robot
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_store(self.root)
        try:
            self._open(meta)
        except BaseException:
            os.close(self._lock_fd)
            raise

    def _open(self, meta: StoreMeta) -> None:
        seg_dir = self.root / SEG_DIR
        seg_dir.mkdir(exist_ok=True)
        remove_tmp_files(self.root)
        self.seg_dir = seg_dir
        if (self.root / META_FILE).is_file():
            self.meta = read_meta(self.root)
        else:
            write_meta(self.root, meta)
            self.meta = meta
        self._schema = arrow_schema(self.meta.obs_dim, self.meta.act_dim)
        segs = list_segments(self.root)
        self._next_seg = segs[-1][0] + 1 if segs else 0
        self.next_seq = 0
        self.rows = 0
        if segs:
            num, path = segs[-1]
            footer = _footer(path)
            link = footer.get(LINK_KEY)
            if not isinstance(link, dict) or "seq" not in link:
                raise StoreError(f"{path}: no '{LINK_KEY}' sequence in the footer (not a trainer link store)")
            self.next_seq = int(link["seq"][1])
            self.rows = sum(read_segment_info(n, p).rows for n, p in segs)

    def append(self, batches: list[TxBatch]) -> int:
        """Write contiguous batches (``batches[i].seq1 == batches[i+1].seq0``, first at :attr:`next_seq`) as one
        segment, fsynced; returns the new :attr:`next_seq`."""
        if not batches:
            return self.next_seq
        if batches[0].seq0 != self.next_seq or any(a.seq1 != b.seq0 for a, b in zip(batches[:-1], batches[1:])):
            raise ValueError(f"{self.robot}: non-contiguous append at {self.next_seq}: "
                             f"{[(b.seq0, b.seq1) for b in batches][:5]}")
        if len(batches) == 1:
            cols = dict(batches[0].cols)
        else:
            cols = {c: np.concatenate([b.cols[c] for b in batches]) for c in COLUMNS}
        started: dict[str, Any] = {}
        closed: list[int] = []
        for b in batches:
            started.update({str(k): v for k, v in b.started.items()})
            closed.extend(b.closed)
        seq0, seq1 = batches[0].seq0, batches[-1].seq1
        footer = {"format_version": FORMAT_VERSION, "ranges": episode_ranges(cols["episode_index"], cols["step_index"]),
                  "started": started, "closed": sorted(set(closed)),
                  LINK_KEY: {"robot": self.robot, "seq": [seq0, seq1]}}
        write_segment(self.seg_dir, self._next_seg, columns_to_table(cols, self._schema), footer, "lz4")
        self._next_seg += 1
        self.next_seq = seq1
        self.rows += seq1 - seq0
        return seq1

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def _footer(path: Path) -> dict[str, Any]:
    with open_segment(path) as reader:
        raw = (reader.schema.metadata or {}).get(FOOTER_KEY)
    if raw is None:
        raise StoreError(f"{path}: no robodyna footer")
    d = json.loads(raw)
    if not isinstance(d, dict):
        raise StoreError(f"{path}: malformed footer")
    return d


class StoreCursor:
    """Reads a robot's episode store by global row index while a writer appends (landed segments only)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.meta = read_meta(self.root)
        self._schema = arrow_schema(self.meta.obs_dim, self.meta.act_dim)
        self._segs: list[tuple[int, Path, int, int, tuple[int, ...], dict[int, Any]]] = []  # num, path, start, rows
        self.recorded = 0
        self._cache: tuple[int, dict[str, np.ndarray]] | None = None
        self._last_scan = -1e9

    def refresh(self, max_new: int = 64, rescan_s: float = 1.0) -> int:
        """Pick up newly landed segments (at most ``max_new`` per call, so a long backlog is indexed in small
        steps); returns the number of rows recorded (landed) and indexed so far.

        The writer numbers segments consecutively and lands them in order, so the next segment is probed by name
        (O(1), independent of the store's size); the directory is listed only every ``rescan_s`` seconds as a
        fallback (e.g. for a store written by another tool with gaps in the numbering)."""
        now = time.monotonic()
        added = 0
        nxt = self._segs[-1][0] + 1 if self._segs else 0
        while added < max_new:
            path = self.root / SEG_DIR / seg_name(nxt)
            if not path.exists():
                break
            self._add(nxt, path)
            nxt += 1
            added += 1
        if added < max_new and now - self._last_scan >= rescan_s:
            self._last_scan = now
            known = self._segs[-1][0] if self._segs else -1
            for num, path in list_segments(self.root):
                if num > known and added < max_new:
                    self._add(num, path)
                    added += 1
        return self.recorded

    def _add(self, num: int, path: Path) -> None:
        si = read_segment_info(num, path)
        self._segs.append((num, path, self.recorded, si.rows, si.closed, si.started))
        self.recorded += si.rows

    def read(self, seq: int, max_rows: int) -> tuple[dict[str, np.ndarray], dict[int, Any], tuple[int, ...]]:
        """Rows ``[seq, seq + k)`` (``k <= max_rows``, stopping at the last landed row) with the started info and
        closed episodes of the segments they end; ``k == 0`` when nothing is there yet."""
        parts: list[dict[str, np.ndarray]] = []
        started: dict[int, Any] = {}
        closed: list[int] = []
        got = 0
        i = self._find(seq)
        while i is not None and i < len(self._segs) and got < max_rows:
            num, path, start, rows, seg_closed, seg_started = self._segs[i]
            cols = self._segment(num, path)
            lo = seq + got - start
            hi = min(rows, lo + max_rows - got)
            parts.append({c: a[lo:hi] for c, a in cols.items()})
            eps = set(np.unique(cols["episode_index"][lo:hi]).tolist())
            started.update({e: v for e, v in seg_started.items() if e in eps})
            if hi == rows:
                closed.extend(seg_closed)
            got += hi - lo
            i += 1
        if not parts:
            return {}, {}, ()
        out = parts[0] if len(parts) == 1 else {c: np.concatenate([p[c] for p in parts]) for c in COLUMNS}
        return out, started, tuple(closed)

    def _find(self, seq: int) -> int | None:
        if seq >= self.recorded:
            return None
        lo, hi = 0, len(self._segs) - 1
        while lo < hi:  # last segment with start <= seq
            mid = (lo + hi + 1) // 2
            if self._segs[mid][2] <= seq:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def _segment(self, num: int, path: Path) -> dict[str, np.ndarray]:
        if self._cache is not None and self._cache[0] == num:
            return self._cache[1]
        with open_segment(path) as reader:
            table = reader.read_all()
        if tuple(table.schema.names) != COLUMNS:
            table = table.select(list(COLUMNS))
        if not table.schema.equals(self._schema, check_metadata=False):
            try:
                table = table.cast(self._schema)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
                raise StoreError(f"{path}: column types differ from the store schema ({exc})") from exc
        cols = table_to_columns(table)
        self._cache = (num, cols)
        return cols
