"""The episode store: one crash-safe, columnar transition store used everywhere.

Layout of a store directory::

    DIR/meta.json                      # StoreMeta, written atomically (temp + fsync + os.replace)
    DIR/segments/seg-000000.arrow      # immutable Arrow IPC files, each written to a temp name, fsynced, renamed
    DIR/.writer.lock                   # flock held by the one live writer (released by the kernel on SIGKILL)

Every row is one transition: the :class:`~robodyna.data.batch.Batch` fields (``obs, action, reward,
next_obs, terminated, truncated``) plus :data:`EXTRA_COLUMNS` (wall/monotonic time, episode and step index,
policy version, safety ``intervention`` bitmask). ``obs``/``action``/``next_obs`` are fixed-size-list float32
columns. Segments are Arrow IPC files (lz4 by default; ``pandas.read_feather`` / ``pyarrow.ipc.open_file`` /
``pyarrow.dataset.dataset(DIR/"segments", format="arrow")`` read them directly). Arrow IPC instead of parquet:
parquet encodes fixed-size lists as nested columns and wrote ~8x slower in ``tools/bench/datasets.py``.

Crash semantics (the contract):

* A segment is either fully present under its final name or absent; temp files are ignored by readers and
  removed by the next writer. A SIGKILL loses at most the rows not yet in a landed segment.
* Segments land strictly in order (one writer thread), so what is on disk is always a prefix of what was
  recorded: episode indices on disk are contiguous from 0 and step indices within an episode start at 0
  without gaps.
* An episode whose closing segment never landed is kept (its completed segments are valid transitions) and
  reported as *unfinished* (``EpisodeInfo.closed == False``). Appending after a crash (resume) starts a new
  episode at ``max(episode on disk) + 1``; the unfinished episode is never continued.
* An episode index is consumed only when its first row is appended, so empty episodes leave no gaps.

Each segment's schema metadata carries JSON metadata (key ``robodyna``): the episode row ranges it holds,
the per-episode info of episodes that start in it (e.g. the initial state used by replay) and the episodes
it closes. The episode table is built from footers only, without reading data.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import queue
import re
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from robodyna.data.batch import FIELDS, Batch

log = logging.getLogger(__name__)

FORMAT = "robodyna.episodes"
FORMAT_VERSION = 1
META_FILE = "meta.json"
SEG_DIR = "segments"
LOCK_FILE = ".writer.lock"
FOOTER_KEY = b"robodyna"
EXTRA_COLUMNS: tuple[str, ...] = (
    "time_wall_s",
    "time_mono_s",
    "episode_index",
    "step_index",
    "policy_version",
    "intervention",
)
COLUMNS: tuple[str, ...] = FIELDS + EXTRA_COLUMNS
EXTRA_DTYPES: dict[str, type] = {
    "time_wall_s": np.float64,
    "time_mono_s": np.float64,
    "episode_index": np.int64,
    "step_index": np.int64,
    "policy_version": np.int64,
    "intervention": np.int32,
}
_wall = time.time
_mono = time.monotonic
SEG_SUFFIX = ".arrow"
_SEG_RE = re.compile(r"^seg-(\d{6,})\.arrow$")
TMP_PREFIX = ".tmp-"


class StoreError(RuntimeError):
    """A store is missing, corrupt, incompatible or contains bad values (the message names file/episode/step)."""


def software_version() -> str:
    """The installed robodyna version (``unknown`` when not installed)."""
    try:
        from importlib.metadata import version

        return version("robodyna")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


@dataclass
class StoreMeta:
    """Dataset-level metadata: robot, rates, observation/action names and units, provenance."""

    robot_name: str
    obs_names: list[str]
    obs_units: list[str]
    action_names: list[str]
    action_units: list[str]
    control_hz: float
    robot_spec: dict[str, Any] | None = None
    reality: str | None = None
    reality_profile: dict[str, Any] | None = None
    task: str | None = None
    software_version: str = field(default_factory=software_version)
    created_wall_s: float = field(default_factory=time.time)
    extra: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if len(self.obs_names) != len(self.obs_units):
            raise StoreError(f"meta: {len(self.obs_names)} obs_names but {len(self.obs_units)} obs_units")
        if len(self.action_names) != len(self.action_units):
            raise StoreError(f"meta: {len(self.action_names)} action_names but {len(self.action_units)} units")
        if not self.obs_names or not self.action_names:
            raise StoreError("meta: obs_names and action_names must not be empty")

    @property
    def obs_dim(self) -> int:
        return len(self.obs_names)

    @property
    def act_dim(self) -> int:
        return len(self.action_names)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = META_FILE) -> StoreMeta:
        if d.get("format") != FORMAT:
            raise StoreError(f"{source}: not a robodyna episode store (format={d.get('format')!r})")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise StoreError(f"{source}: format_version {d.get('format_version')} is newer than {FORMAT_VERSION}")
        known = {f for f in cls.__dataclass_fields__}
        missing = [k for k in ("robot_name", "obs_names", "obs_units", "action_names", "action_units", "control_hz")
                   if k not in d]
        if missing:
            raise StoreError(f"{source}: missing keys {missing}")
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except (TypeError, StoreError) as exc:
            raise StoreError(f"{source}: {exc}") from exc

    @classmethod
    def from_spec(
        cls,
        spec: Any,
        obs_names: list[str],
        obs_units: list[str],
        reality: str | None = None,
        reality_profile: dict[str, Any] | None = None,
        task: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> StoreMeta:
        """Metadata for a :class:`~robodyna.robots.spec.RobotSpec` and an observation layout."""
        return cls(
            robot_name=spec.name,
            obs_names=list(obs_names),
            obs_units=list(obs_units),
            action_names=list(spec.action_names),
            action_units=list(spec.action_units),
            control_hz=float(spec.control_hz),
            robot_spec=spec.to_dict(),
            reality=reality,
            reality_profile=reality_profile,
            task=task,
            extra=dict(extra or {}),
        )


def _fsync_dir(path: Path) -> None:
    fd = os.open(str(path), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file, fsync and ``os.replace`` (never a half-written file)."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}.{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def write_meta(root: Path, meta: StoreMeta) -> None:
    atomic_write_bytes(root / META_FILE, (json.dumps(meta.to_dict(), indent=2, sort_keys=True) + "\n").encode())


def read_meta(root: Path) -> StoreMeta:
    p = Path(root) / META_FILE
    if not p.is_file():
        raise StoreError(f"{p}: missing (not an episode store, or it was never created)")
    try:
        d = json.loads(p.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(f"{p}: unreadable JSON: {exc}") from exc
    if not isinstance(d, dict):
        raise StoreError(f"{p}: top level must be an object")
    return StoreMeta.from_dict(d, source=str(p))


def seg_name(number: int) -> str:
    return f"seg-{number:06d}{SEG_SUFFIX}"


def list_segments(root: Path) -> list[tuple[int, Path]]:
    """Landed segments (final names only), in order."""
    d = Path(root) / SEG_DIR
    if not d.is_dir():
        return []
    out = []
    for name in os.listdir(d):
        m = _SEG_RE.match(name)
        if m:
            out.append((int(m.group(1)), d / name))
    out.sort()
    return out


def arrow_schema(obs_dim: int, act_dim: int) -> pa.Schema:
    """The column schema of every segment."""
    f32 = pa.float32()
    return pa.schema(
        [
            ("obs", pa.list_(f32, obs_dim)),
            ("action", pa.list_(f32, act_dim)),
            ("reward", f32),
            ("next_obs", pa.list_(f32, obs_dim)),
            ("terminated", pa.bool_()),
            ("truncated", pa.bool_()),
            ("time_wall_s", pa.float64()),
            ("time_mono_s", pa.float64()),
            ("episode_index", pa.int64()),
            ("step_index", pa.int64()),
            ("policy_version", pa.int64()),
            ("intervention", pa.int32()),
        ]
    )


def columns_to_table(cols: dict[str, np.ndarray], schema: pa.Schema) -> pa.Table:
    """Numpy columns (Batch fields + extras) -> Arrow table (zero-copy for contiguous arrays)."""
    arrays = []
    for f in schema:
        a = cols[f.name]
        if pa.types.is_fixed_size_list(f.type):
            a = np.ascontiguousarray(a, dtype=np.float32)
            arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1)), f.type.list_size))
        else:
            arrays.append(pa.array(np.ascontiguousarray(a, dtype=f.type.to_pandas_dtype())))
    return pa.Table.from_arrays(arrays, schema=schema)


def table_to_columns(table: pa.Table) -> dict[str, np.ndarray]:
    """Arrow table -> numpy columns (2-D for the list columns)."""
    out: dict[str, np.ndarray] = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_fixed_size_list(col.type):
            d = col.type.list_size
            flat = [c.flatten().to_numpy(zero_copy_only=False) for c in col.chunks]
            vals = np.concatenate(flat) if len(flat) != 1 else flat[0]
            out[name] = vals.reshape(-1, d)
        else:
            out[name] = col.to_numpy()
    return out


def write_segment(seg_dir: Path, number: int, table: pa.Table, footer: dict[str, Any], compression: str) -> Path:
    """Write one immutable segment atomically; returns its final path."""
    final = seg_dir / seg_name(number)
    tmp = seg_dir / f"{TMP_PREFIX}{final.name}.{os.getpid()}"
    md = dict(table.schema.metadata or {})
    md[FOOTER_KEY] = json.dumps(footer, sort_keys=True).encode()
    table = table.replace_schema_metadata(md)
    opts = ipc.IpcWriteOptions(compression=None if compression in ("none", "", None) else compression)
    with open(tmp, "wb") as f:
        with ipc.new_file(f, table.schema, options=opts) as w:
            w.write_table(table)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(seg_dir)
    return final


# --------------------------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class SegmentInfo:
    """What a segment's footer says: row ranges per episode, started/closed episodes."""

    number: int
    path: Path
    rows: int
    ranges: tuple[tuple[int, int, int, int], ...]  # (episode, first_step, row_start, n_rows)
    started: dict[int, dict[str, Any]]
    closed: tuple[int, ...]


@dataclass
class EpisodeInfo:
    """One episode as found on disk."""

    index: int
    length: int = 0
    closed: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    segments: list[int] = field(default_factory=list)


def read_segment_info(number: int, path: Path) -> SegmentInfo:
    """Parse a segment footer (raises :class:`StoreError` naming the file if it is corrupt)."""
    try:
        with ipc.open_file(pa.memory_map(str(path))) as r:
            schema = r.schema
            num_rows = r.count_rows()
    except Exception as exc:
        raise StoreError(f"{path}: unreadable segment (truncated or not Arrow IPC: {exc})") from exc
    raw = (schema.metadata or {}).get(FOOTER_KEY)
    if raw is None:
        raise StoreError(f"{path}: no robodyna footer metadata (not written by the episode store)")
    try:
        d = json.loads(raw)
        ranges = tuple(tuple(int(x) for x in r) for r in d["ranges"])
        started = {int(k): v for k, v in d.get("started", {}).items()}
        closed = tuple(int(x) for x in d.get("closed", []))
    except (ValueError, KeyError, TypeError) as exc:
        raise StoreError(f"{path}: malformed robodyna footer ({exc})") from exc
    if num_rows != sum(r[3] for r in ranges):
        raise StoreError(f"{path}: footer ranges cover {sum(r[3] for r in ranges)} rows, file has {num_rows}")
    return SegmentInfo(number, path, num_rows, ranges, started, closed)  # type: ignore[arg-type]


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
            extras = {k: np.zeros(0, dtype=v) for k, v in EXTRA_DTYPES.items()}
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
        try:
            with ipc.open_file(pa.memory_map(str(si.path))) as r:
                table = r.read_all()
        except Exception as exc:
            raise StoreError(f"{si.path}: unreadable segment ({exc})") from exc
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise StoreError(f"{si.path}: missing columns {missing}")
        cols = table_to_columns(table.select(list(COLUMNS)))
        od, ad = self.meta.obs_dim, self.meta.act_dim
        if cols["obs"].shape[1] != od or cols["action"].shape[1] != ad:
            raise StoreError(
                f"{si.path}: obs/action widths {cols['obs'].shape[1]}/{cols['action'].shape[1]} "
                f"do not match meta.json ({od}/{ad})"
            )
        tr = Transitions.from_columns(cols)
        if check_finite:
            bad = np.flatnonzero(~tr.batch.finite_mask())
            if bad.size:
                r = int(bad[0])
                raise StoreError(
                    f"{si.path}: {bad.size} row(s) with NaN/inf; first at episode {int(cols['episode_index'][r])} "
                    f"step {int(cols['step_index'][r])} (run `robodyna dataset validate` for all)"
                )
        return tr

    def read(self, episodes: list[int] | None = None, check_finite: bool = True) -> Transitions:
        """Rows of the given episodes (all when ``None``), in store order."""
        want = None if episodes is None else set(int(e) for e in episodes)
        parts = []
        for si in self.segments():
            if want is not None and not any(r[0] in want for r in si.ranges):
                continue
            tr = self.read_segment(si, check_finite=check_finite)
            if want is not None:
                mask = np.isin(tr.episode_index, list(want))
                if not mask.all():
                    cols = {k: v[mask] for k, v in tr.columns().items()}
                    tr = Transitions.from_columns(cols)
            parts.append(tr)
        return Transitions.concat(parts, self.meta.obs_dim, self.meta.act_dim)

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
        parts = [self.store.read_segment(si) for si in new]
        return Transitions.concat(parts, self.store.meta.obs_dim, self.store.meta.act_dim)


# --------------------------------------------------------------------------------------------- writing


def row_dtype(obs_dim: int, act_dim: int) -> np.dtype:
    """Structured dtype of one buffered row (one assignment per transition on the recording thread)."""
    return np.dtype(
        [
            ("obs", np.float32, (obs_dim,)),
            ("action", np.float32, (act_dim,)),
            ("reward", np.float32),
            ("next_obs", np.float32, (obs_dim,)),
            ("terminated", np.bool_),
            ("truncated", np.bool_),
            ("intervention", np.int32),
            ("time_wall_s", np.float64),
            ("time_mono_s", np.float64),
        ]
    )


class _Buffer:
    """Preallocated rows for one segment plus the episode/policy-version marks."""

    __slots__ = ("rows", "ep_marks", "pv_marks", "started", "closed")

    def __init__(self, cap: int, od: int, ad: int) -> None:
        self.rows = np.zeros(cap, row_dtype(od, ad))
        self.reset()

    def reset(self) -> None:
        self.ep_marks: list[tuple[int, int, int]] = []  # (row_start, episode, first_step)
        self.pv_marks: list[tuple[int, int]] = []  # (row_start, policy_version)
        self.started: dict[int, dict[str, Any]] = {}
        self.closed: list[int] = []


class EpisodeWriter:
    """Appends transitions to a store. One writer per store (an flock guards it).

    ``append`` costs a few numpy element writes (no allocation, no I/O); every ``flush_every`` rows and at each
    episode end the filled buffer is handed to a background thread (``background=True``) that writes, fsyncs
    and renames the segment. Segments land in order. A transition with ``terminated`` or ``truncated`` set
    ends its episode.

    Args:
        root: store directory (created if missing).
        meta: required when creating; when resuming it must be compatible with ``meta.json``.
        resume: append to an existing non-empty store (otherwise a non-empty store is an error).
        flush_every: rows per segment at most.
        flush_on_episode_end: write a segment when an episode ends (durability per episode).
        background: write segments on a thread; ``False`` writes synchronously inside ``flush``.
        max_pending: segments queued before ``append`` blocks (bounds what a crash can lose).
        compression: Arrow IPC codec (``lz4``, ``zstd``, ``none``).
    """

    def __init__(
        self,
        root: str | Path,
        meta: StoreMeta | None = None,
        resume: bool = False,
        flush_every: int = 1024,
        flush_on_episode_end: bool = True,
        background: bool = True,
        max_pending: int = 4,
        compression: str = "lz4",
    ) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(str(self.root / LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise StoreError(f"{self.root}: another writer holds {LOCK_FILE}") from exc
            raise
        try:
            self._setup(meta, resume)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.flush_every = int(flush_every)
        if self.flush_every < 1:
            raise ValueError("flush_every must be >= 1")
        self.flush_on_episode_end = flush_on_episode_end
        self.compression = compression
        self._schema = arrow_schema(self.meta.obs_dim, self.meta.act_dim)
        od, ad = self.meta.obs_dim, self.meta.act_dim
        self._free: list[_Buffer] = []
        self._nbuf = 0
        self._max_buf = max(2, max_pending + 1)
        self._buf = self._new_buffer(od, ad)
        self._n = 0
        self._bind()
        self._ep_open = False
        self._ep_rows = 0
        self._pending_info: dict[str, Any] = {}
        self._policy_version = 0
        self._closed = False
        self._error: BaseException | None = None
        self.background = background
        self._q: queue.Queue[_Buffer | tuple[_Buffer, int] | None] = queue.Queue()
        self._free_cv = threading.Condition()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="episode-writer", daemon=True)
            self._thread.start()

    # -- setup ------------------------------------------------------------------------------------
    def _setup(self, meta: StoreMeta | None, resume: bool) -> None:
        seg_dir = self.root / SEG_DIR
        seg_dir.mkdir(exist_ok=True)
        for name in os.listdir(seg_dir):  # leftovers of a crashed writer (we hold the lock: none is live)
            if name.startswith(TMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(seg_dir / name)
        for name in os.listdir(self.root):
            if name.startswith(TMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(self.root / name)
        segs = list_segments(self.root)
        has_meta = (self.root / META_FILE).is_file()
        if has_meta:
            on_disk = read_meta(self.root)
            if segs and not resume:
                raise StoreError(f"{self.root}: store already holds {len(segs)} segment(s); pass resume=True "
                                 "(--resume) to append")
            if meta is not None:
                problems = compatibility_problems(on_disk, meta)
                if problems:
                    raise StoreError(f"{self.root}: cannot append, metadata differs: " + "; ".join(problems))
            self.meta = on_disk
        else:
            if segs:
                raise StoreError(f"{self.root}: segments present but {META_FILE} missing")
            if meta is None:
                raise StoreError(f"{self.root}: new store needs metadata")
            write_meta(self.root, meta)
            self.meta = meta
        self.seg_dir = seg_dir
        store = EpisodeStore(self.root)
        self._next_seg = segs[-1][0] + 1 if segs else 0
        self._next_ep = store.next_episode_index()
        self._ep = self._next_ep
        self._step = 0
        unfinished = [e.index for e in store.episodes() if not e.closed]
        if unfinished:
            log.warning("%s: episode(s) %s unfinished (recorder stopped mid-episode); new episodes start at %d",
                        self.root, unfinished, self._next_ep)

    def _new_buffer(self, od: int, ad: int) -> _Buffer:
        self._nbuf += 1
        return _Buffer(self.flush_every, od, ad)

    def _bind(self) -> None:
        self._rows = self._buf.rows

    # -- recording API ----------------------------------------------------------------------------
    @property
    def episode_index(self) -> int:
        """Index the current (or next) episode has / will get."""
        return self._ep

    @property
    def next_episode_index(self) -> int:
        return self._next_ep

    def set_policy_version(self, version: int) -> None:
        """Tag the following rows with ``version``."""
        self._policy_version = int(version)
        pm = self._buf.pv_marks
        if pm and pm[-1][0] == self._n:
            pm[-1] = (self._n, self._policy_version)
        elif pm:
            pm.append((self._n, self._policy_version))

    def begin_episode(self, info: dict[str, Any] | None = None) -> int:
        """Start an episode (ends an open one first). ``info`` (JSON-able) is stored with its first segment."""
        if self._ep_open:
            self.end_episode()
        self._ep_open = True
        self._ep = self._next_ep
        self._step = 0
        self._ep_rows = 0
        self._pending_info = dict(info or {})
        return self._ep

    def append(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
        truncated: bool,
        intervention: int = 0,
        time_wall_s: float | None = None,
        time_mono_s: float | None = None,
    ) -> None:
        """Record one transition (cheap: element writes into preallocated columns)."""
        i = self._n
        if i == self.flush_every:
            self._rotate()
            i = 0
        if self._ep_rows == 0:
            self._first_row(i)
        self._rows[i] = (
            obs,
            action,
            reward,
            next_obs,
            terminated,
            truncated,
            intervention,
            _wall() if time_wall_s is None else time_wall_s,
            _mono() if time_mono_s is None else time_mono_s,
        )
        self._n = i + 1
        self._ep_rows += 1
        if terminated or truncated:
            self.end_episode()

    def append_batch(
        self,
        batch: Batch,
        intervention: np.ndarray | None = None,
        time_wall_s: np.ndarray | None = None,
        time_mono_s: np.ndarray | None = None,
        split_episodes: bool = True,
    ) -> None:
        """Record many transitions; episodes end after each terminated/truncated row (if ``split_episodes``)."""
        n = len(batch)
        now_w, now_m = time.time(), time.monotonic()
        tw = np.full(n, now_w) if time_wall_s is None else np.asarray(time_wall_s, np.float64)
        tm = np.full(n, now_m) if time_mono_s is None else np.asarray(time_mono_s, np.float64)
        itv = np.zeros(n, np.int32) if intervention is None else np.asarray(intervention, np.int32)
        done = (batch.terminated | batch.truncated) if split_episodes else np.zeros(n, bool)
        pos = 0
        while pos < n:
            if self._n == self.flush_every:
                self._rotate()
            if self._ep_rows == 0:
                self._first_row(self._n)
            room = self.flush_every - self._n
            stop = min(n, pos + room)
            ends = np.flatnonzero(done[pos:stop])
            if ends.size:
                stop = pos + int(ends[0]) + 1
            k, j = stop - pos, self._n
            dst = self._rows[j:j + k]
            for name in FIELDS:
                dst[name] = getattr(batch, name)[pos:stop]
            dst["intervention"] = itv[pos:stop]
            dst["time_wall_s"] = tw[pos:stop]
            dst["time_mono_s"] = tm[pos:stop]
            self._n += k
            self._ep_rows += k
            pos = stop
            if ends.size:
                self.end_episode()

    def _first_row(self, i: int) -> None:
        if not self._ep_open:
            self._ep_open = True
            self._ep = self._next_ep
            self._step = 0
        self._next_ep = self._ep + 1
        b = self._buf
        b.ep_marks.append((i, self._ep, 0))
        if not b.pv_marks or b.pv_marks[-1][1] != self._policy_version:
            b.pv_marks.append((i, self._policy_version))
        b.started[self._ep] = self._pending_info
        self._pending_info = {}

    def end_episode(self, finished: bool = True) -> None:
        """Close the current episode; flushes a segment if ``flush_on_episode_end``.

        ``finished=False`` stops it without marking it closed (it stays *unfinished*, as after a crash; used
        when copying unfinished episodes).
        """
        if not self._ep_open:
            return
        self._ep_open = False
        if self._ep_rows == 0:  # nothing recorded: index not consumed
            return
        if finished:
            self._buf.closed.append(self._ep)
        self._ep_rows = 0
        if self.flush_on_episode_end:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered rows to the writer (segment lands asynchronously when ``background``)."""
        if self._n or self._buf.closed:
            self._rotate()

    def wait(self) -> None:
        """Block until every handed-over segment has landed."""
        if self._thread is not None:
            self._q.join()
        self._raise_if_failed()

    def close(self) -> None:
        """Flush, wait for the writer and release the lock. An open episode stays unfinished on disk."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
            if self._thread is not None:
                self._q.put(None)
                self._thread.join()
            self._raise_if_failed()
        finally:
            os.close(self._lock_fd)

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------
    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise StoreError(f"{self.root}: segment writer failed: {self._error}") from self._error

    def _rotate(self) -> None:
        """Seal the current buffer as segment ``_next_seg`` and switch to a free buffer."""
        self._raise_if_failed()
        b, n = self._buf, self._n
        carry_ep = self._ep_open and self._ep_rows > 0
        number = self._next_seg
        self._next_seg += 1
        if self._thread is None:
            self._write(b, n, number)
            b.reset()
        else:
            self._q.put((b, n, number))  # type: ignore[arg-type]
            b = self._take_free()
        self._buf = b
        self._n = 0
        self._bind()
        if carry_ep:  # the open episode continues in the next segment
            b.ep_marks.append((0, self._ep, self._step_of_next_row()))
            b.pv_marks.append((0, self._policy_version))

    def _step_of_next_row(self) -> int:
        return self._ep_rows

    def _take_free(self) -> _Buffer:
        with self._free_cv:
            while not self._free:
                if self._nbuf < self._max_buf:
                    return self._new_buffer(self.meta.obs_dim, self.meta.act_dim)
                self._free_cv.wait(timeout=1.0)
                self._raise_if_failed()
            return self._free.pop()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            try:
                if item is None:
                    return
                b, n, number = item  # type: ignore[misc]
                if self._error is None:
                    try:
                        self._write(b, n, number)
                    except BaseException as exc:  # surfaced on the recording thread
                        log.exception("segment writer failed")
                        self._error = exc
                b.reset()
                with self._free_cv:
                    self._free.append(b)
                    self._free_cv.notify()
            finally:
                self._q.task_done()

    def _write(self, b: _Buffer, n: int, number: int) -> None:
        rows = b.rows[:n]
        cols: dict[str, np.ndarray] = {name: np.ascontiguousarray(rows[name]) for name in rows.dtype.names or ()}
        ep = np.empty(n, np.int64)
        step = np.empty(n, np.int64)
        pv = np.empty(n, np.int64)
        ranges = []
        marks = b.ep_marks + [(n, -1, 0)]
        for (r0, e, s0), (r1, _, _) in zip(marks[:-1], marks[1:]):
            ep[r0:r1] = e
            step[r0:r1] = np.arange(s0, s0 + r1 - r0)
            ranges.append([e, s0, r0, r1 - r0])
        pmarks = b.pv_marks + [(n, 0)]
        for (r0, v), (r1, _) in zip(pmarks[:-1], pmarks[1:]):
            pv[r0:r1] = v
        cols["episode_index"], cols["step_index"], cols["policy_version"] = ep, step, pv
        footer = {
            "format_version": FORMAT_VERSION,
            "ranges": [r for r in ranges if r[3] > 0],
            "started": {str(k): v for k, v in b.started.items()},
            "closed": list(b.closed),
        }
        write_segment(self.seg_dir, number, columns_to_table(cols, self._schema), footer, self.compression)


def compatibility_problems(a: StoreMeta, b: StoreMeta, strict_robot: bool = True) -> list[str]:
    """Differences that make two stores' rows incompatible (empty list = compatible)."""
    out = []
    keys = ["obs_names", "obs_units", "action_names", "action_units", "control_hz"]
    if strict_robot:
        keys.insert(0, "robot_name")
    for k in keys:
        va, vb = getattr(a, k), getattr(b, k)
        if va != vb:
            out.append(f"{k}: {va!r} != {vb!r}")
    if a.robot_spec and b.robot_spec:
        ignore = {"name", "engine"}
        for k in sorted(set(a.robot_spec) | set(b.robot_spec)):
            if k in ignore:
                continue
            if a.robot_spec.get(k) != b.robot_spec.get(k):
                out.append(f"robot_spec.{k}: {a.robot_spec.get(k)!r} != {b.robot_spec.get(k)!r}")
    return out
