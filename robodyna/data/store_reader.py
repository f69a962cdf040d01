"""Reading an episode store: the episode table (from segment footers), full/episode reads, tailing.

Readers never take the writer lock: landed segments are immutable, so reading while a writer appends is safe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from robodyna.data.batch import FIELDS, Batch
from robodyna.data.store_format import (
    COLUMNS,
    EXTRA_COLUMNS,
    EXTRA_DTYPES,
    SegmentInfo,
    StoreError,
    arrow_schema,
    list_segments,
    open_segment,
    read_meta,
    read_segment_info,
    segment_info_from_reader,
)


def _column_to_numpy(chunks: list[pa.Array], typ: pa.DataType) -> np.ndarray:
    """One writable numpy array from the chunks of one column of several segments (one copy at most).

    Arrow concatenates the chunks (``combine_chunks``); fixed-size lists become ``[N, width]`` views of the
    flat values. Buffers Arrow allocated (concatenated or decompressed) are wrapped without a copy; read-only
    ones (an uncompressed memory-mapped file) are copied, so results never alias the files.
    """
    arr = pa.chunked_array(chunks, type=typ).combine_chunks()
    chunks.clear()  # the per-segment buffers can be reused for the next column
    width = typ.list_size if pa.types.is_fixed_size_list(typ) else 0
    if width:
        arr = arr.flatten()
    if pa.types.is_boolean(arr.type) or arr.null_count or len(arr) == 0:
        out = arr.to_numpy(zero_copy_only=False)
        if not out.flags.writeable:
            out = out.copy()
    else:
        dtype = np.dtype(arr.type.to_pandas_dtype())
        buf = arr.buffers()[1]
        if buf is not None and buf.is_mutable:
            out = np.frombuffer(buf, dtype, count=len(arr), offset=arr.offset * dtype.itemsize)
        else:
            out = arr.to_numpy().copy()
    return out.reshape(-1, width) if width else out


def _all_finite(batch: Batch) -> bool:
    """Fast whole-batch check in one pass per column without temporaries: a sum is finite if every element is;
    a non-finite sum means NaN/inf or, rarely, overflow of large finite values (the caller re-checks exactly)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return all(bool(np.isfinite(np.add.reduce(getattr(batch, k), axis=None)))
                   for k in ("obs", "action", "reward", "next_obs"))


class _Parts:
    """Column chunks of the segments being read, gathered without keeping whole tables alive."""

    def __init__(self, schema: pa.Schema) -> None:
        self.chunks: dict[str, list[pa.Array]] = {name: [] for name in schema.names}
        self.paths: list[Path] = []
        self.rows: list[int] = []

    def add(self, path: Path, table: pa.Table) -> None:
        for name, lst in self.chunks.items():
            lst.extend(table.column(name).chunks)
        self.paths.append(path)
        self.rows.append(table.num_rows)


@dataclass
class EpisodeInfo:
    """One episode as found on disk."""

    index: int
    length: int = 0
    closed: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    segments: list[int] = field(default_factory=list)


@dataclass
class Transitions:
    """Rows read from a store: a :class:`Batch` plus the extra columns as arrays."""

    batch: Batch
    extras: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.batch)

    @property
    def episode_index(self) -> np.ndarray:
        return self.extras["episode_index"]

    @property
    def step_index(self) -> np.ndarray:
        return self.extras["step_index"]

    def columns(self) -> dict[str, np.ndarray]:
        return {**self.batch.as_dict(), **self.extras}

    @classmethod
    def from_columns(cls, cols: dict[str, np.ndarray]) -> Transitions:
        return cls(Batch(**{k: cols[k] for k in FIELDS}), {k: cols[k] for k in EXTRA_COLUMNS})

    @staticmethod
    def concat(parts: list[Transitions], obs_dim: int, act_dim: int) -> Transitions:
        if not parts:
            extras: dict[str, np.ndarray] = {k: np.zeros(0, dtype=v) for k, v in EXTRA_DTYPES.items()}
            extras["policy_action"] = np.zeros((0, act_dim), np.float32)
            return Transitions(Batch.empty(obs_dim, act_dim), extras)
        if len(parts) == 1:
            return parts[0]
        pcols = [p.columns() for p in parts]
        return Transitions.from_columns({k: np.concatenate([c[k] for c in pcols]) for k in COLUMNS})


class EpisodeStore:
    """Read access to a store directory. Safe while a writer appends (segments are immutable)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise StoreError(f"{self.root}: episode store directory does not exist")
        self.meta = read_meta(self.root)
        self._seg_cache: dict[int, SegmentInfo] = {}
        self._schema = arrow_schema(self.meta.obs_dim, self.meta.act_dim)

    # -- index ------------------------------------------------------------------------------------
    def segments(self) -> list[SegmentInfo]:
        """Footers of all landed segments (cached; re-lists the directory on every call)."""
        out = []
        for num, path in list_segments(self.root):
            si = self._seg_cache.get(num)
            if si is None:
                si = read_segment_info(num, path)
                self._seg_cache[num] = si
            out.append(si)
        return out

    def episodes(self) -> list[EpisodeInfo]:
        """The episode table, ordered by index, built from footers only."""
        eps: dict[int, EpisodeInfo] = {}
        for si in self.segments():
            for ep, _first, _start, n in si.ranges:
                e = eps.setdefault(ep, EpisodeInfo(ep))
                e.length += n
                if si.number not in e.segments:
                    e.segments.append(si.number)
            for ep, info in si.started.items():
                eps.setdefault(ep, EpisodeInfo(ep)).info = info
            for ep in si.closed:
                eps.setdefault(ep, EpisodeInfo(ep)).closed = True
        return [eps[k] for k in sorted(eps)]

    def next_episode_index(self) -> int:
        segs = self.segments()
        eps = [r[0] for si in segs for r in si.ranges]
        return max(eps) + 1 if eps else 0

    @property
    def num_transitions(self) -> int:
        return sum(si.rows for si in self.segments())

    # -- data -------------------------------------------------------------------------------------
    def read_segment(self, si: SegmentInfo, check_finite: bool = True) -> Transitions:
        """All rows of one segment."""
        with open_segment(si.path) as reader:
            parts = _Parts(self._schema)
            parts.add(si.path, self._read_table(si, reader))
        return self._assemble(parts, None, check_finite)

    def read(self, episodes: list[int] | None = None, check_finite: bool = True) -> Transitions:
        """Rows of the given episodes (all when ``None``), in store order.

        Every needed segment is opened once (memory-mapped), its record batches are concatenated per column
        by Arrow and converted to numpy once; the NaN/inf check runs once over the result. The returned
        arrays are writable and do not alias the files.
        """
        want = None if episodes is None else {int(e) for e in episodes}

        def skip(si: SegmentInfo) -> bool:
            return want is not None and not any(r[0] in want for r in si.ranges)

        parts = _Parts(self._schema)
        for num, path in list_segments(self.root):
            si = self._seg_cache.get(num)
            if si is not None and skip(si):
                continue
            with open_segment(path) as reader:
                if si is None:
                    si = segment_info_from_reader(num, path, reader)
                    self._seg_cache[num] = si
                    if skip(si):
                        continue
                parts.add(path, self._read_table(si, reader))
        return self._assemble(parts, want, check_finite)

    def _read_table(self, si: SegmentInfo, reader: ipc.RecordBatchFileReader) -> pa.Table:
        """The segment's rows, with the columns checked against ``meta.json`` (names, widths, types)."""
        try:
            table = reader.read_all()
        except Exception as exc:
            raise StoreError(f"{si.path}: unreadable segment ({exc})") from exc
        names = table.schema.names
        if "policy_action" not in names and "action" in names:  # written before the column existed: raw = applied
            table = table.append_column("policy_action", table.column("action"))
            names = table.schema.names
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise StoreError(f"{si.path}: missing columns {missing}")
        if len(names) != len(COLUMNS) or tuple(names) != COLUMNS:
            table = table.select(list(COLUMNS))
        if not table.schema.equals(self._schema):
            table = self._conform(si, table)
        return table

    def _conform(self, si: SegmentInfo, table: pa.Table) -> pa.Table:
        """Cast a segment whose column types differ from the canonical schema (e.g. written by another tool)."""
        width = {}
        for name in ("obs", "action", "next_obs", "policy_action"):
            t = table.schema.field(name).type
            width[name] = t.list_size if pa.types.is_fixed_size_list(t) else -1
        od, ad = self.meta.obs_dim, self.meta.act_dim
        if (width["obs"], width["action"], width["next_obs"], width["policy_action"]) != (od, ad, od, ad):
            raise StoreError(
                f"{si.path}: obs/action widths {width['obs']}/{width['action']} (next_obs {width['next_obs']}) "
                f"do not match meta.json ({od}/{ad})"
            )
        try:
            return table.cast(self._schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
            raise StoreError(f"{si.path}: column types differ from the store schema ({exc})") from exc

    def _assemble(self, parts: _Parts, want: set[int] | None, check_finite: bool) -> Transitions:
        """Concatenate the segments' columns into one :class:`Transitions` (numpy conversion once per column)."""
        cols = {f.name: _column_to_numpy(parts.chunks.pop(f.name), f.type) for f in self._schema}
        mask = None
        if want is not None and len(cols["episode_index"]):
            m = np.isin(cols["episode_index"], np.fromiter(want, np.int64, len(want)))
            if not m.all():
                mask = m
                cols = {k: v[m] for k, v in cols.items()}
        tr = Transitions.from_columns(cols)
        if check_finite and not _all_finite(tr.batch):
            self._raise_nonfinite(tr, parts, mask)
        return tr

    @staticmethod
    def _raise_nonfinite(tr: Transitions, parts: _Parts, mask: np.ndarray | None) -> None:
        """Failure path of the NaN/inf check: name the first bad row's file, episode and step."""
        bad = np.flatnonzero(~tr.batch.finite_mask())
        if not bad.size:  # the fast check overflowed on large finite values
            return
        r = int(bad[0])
        orig = np.flatnonzero(mask) if mask is not None else None
        bad_orig = bad if orig is None else orig[bad]
        ends = np.cumsum(parts.rows)
        k = int(np.searchsorted(ends, bad_orig[0], side="right"))
        lo = ends[k - 1] if k else 0
        n_in_seg = int(np.count_nonzero((bad_orig >= lo) & (bad_orig < ends[k])))
        raise StoreError(
            f"{parts.paths[k]}: {n_in_seg} row(s) with NaN/inf; first at episode {int(tr.episode_index[r])} "
            f"step {int(tr.step_index[r])} (run `robodyna dataset validate` for all)"
        )

    def read_episode(self, index: int, check_finite: bool = True) -> Transitions:
        tr = self.read([index], check_finite=check_finite)
        if len(tr) == 0:
            raise StoreError(f"{self.root}: episode {index} not found ({len(self.episodes())} episodes on disk)")
        return tr

    def tail(self) -> StoreTail:
        """A follower that returns only rows landed since its last poll (for a trainer reading while recording)."""
        return StoreTail(self)


class StoreTail:
    """Incremental reader: ``poll()`` returns the rows of segments that landed since the previous call."""

    def __init__(self, store: EpisodeStore) -> None:
        self.store = store
        self._seen = -1

    def poll(self) -> Transitions | None:
        new = [si for si in self.store.segments() if si.number > self._seen]
        if not new:
            return None
        self._seen = new[-1].number
        parts = _Parts(self.store._schema)
        for si in new:
            with open_segment(si.path) as reader:
                parts.add(si.path, self.store._read_table(si, reader))
        return self.store._assemble(parts, None, True)
