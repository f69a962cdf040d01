"""On-disk format of the episode store: constants, metadata, schema, segment names/footers, atomic writes.

See :mod:`robodyna.data.store` for the layout and the crash contract. Everything here is stateless; the
writer lives in :mod:`robodyna.data.store_writer`, readers in :mod:`robodyna.data.store_reader`.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from robodyna.data.batch import FIELDS
from robodyna.identity import Identity, identity_problems

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
    "policy_action",
)
#: Columns a segment may lack (written before they existed); readers fill them (see EpisodeStore._read_table).
OPTIONAL_COLUMNS: tuple[str, ...] = ("policy_action",)
COLUMNS: tuple[str, ...] = FIELDS + EXTRA_COLUMNS
EXTRA_DTYPES: dict[str, type] = {
    "time_wall_s": np.float64,
    "time_mono_s": np.float64,
    "episode_index": np.int64,
    "step_index": np.int64,
    "policy_version": np.int64,
    "intervention": np.int32,
    "policy_action": np.float32,  # [N, act_dim]: the policy's raw output (``action`` is what was applied)
}
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
        """Metadata for a :class:`~robodyna.spec.RobotSpec` and an observation layout."""
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
            ("policy_action", pa.list_(f32, act_dim)),
        ]
    )


def _arrow_array(a: np.ndarray, typ: pa.DataType) -> pa.Array:
    """A 1-D numpy column as an Arrow array of ``typ`` (zero-copy except booleans, which Arrow stores as bits).

    Built from buffers rather than with ``pa.array``, which imports pandas on first use (0.4 s with the GIL held,
    on the recording thread's writer, next to a control loop) only to ask whether the column is a pandas object."""
    if pa.types.is_boolean(typ):
        bits = np.packbits(np.asarray(a, np.bool_), bitorder="little")
        return pa.Array.from_buffers(typ, len(a), [None, pa.py_buffer(bits)])
    a = np.ascontiguousarray(a, dtype=typ.to_pandas_dtype())
    return pa.Array.from_buffers(typ, len(a), [None, pa.py_buffer(a)])


def columns_to_table(cols: dict[str, np.ndarray], schema: pa.Schema) -> pa.Table:
    """Numpy columns (Batch fields + extras) -> Arrow table (zero-copy for contiguous arrays)."""
    arrays = []
    for f in schema:
        a = cols[f.name]
        if pa.types.is_fixed_size_list(f.type):
            flat = np.ascontiguousarray(a, dtype=np.float32).reshape(-1)
            arrays.append(pa.FixedSizeListArray.from_arrays(_arrow_array(flat, f.type.value_type), f.type.list_size))
        else:
            arrays.append(_arrow_array(a, f.type))
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
            ("policy_action", np.float32, (act_dim,)),
        ]
    )


def write_rows(seg_dir: Path, schema: pa.Schema, compression: str, rows: np.ndarray, number: int,
               ep_marks: list[tuple[int, int, int]], pv_marks: list[tuple[int, int]],
               started: dict[int, dict[str, Any]], closed: list[int]) -> Path:
    """Write buffered rows (:func:`row_dtype`) as segment ``number``.

    ``ep_marks``: ``(row_start, episode, first_step)`` where an episode's rows begin; ``pv_marks``:
    ``(row_start, policy_version)``; ``started``: info of episodes whose first row is here; ``closed``: episodes
    that end here."""
    n = len(rows)
    cols: dict[str, np.ndarray] = {name: np.ascontiguousarray(rows[name]) for name in rows.dtype.names or ()}
    ep = np.empty(n, np.int64)
    step = np.empty(n, np.int64)
    pv = np.empty(n, np.int64)
    ranges = []
    marks = list(ep_marks) + [(n, -1, 0)]
    for (r0, e, s0), (r1, _, _) in zip(marks[:-1], marks[1:]):
        ep[r0:r1] = e
        step[r0:r1] = np.arange(s0, s0 + r1 - r0)
        ranges.append([e, s0, r0, r1 - r0])
    pmarks = list(pv_marks) + [(n, 0)]
    for (r0, v), (r1, _) in zip(pmarks[:-1], pmarks[1:]):
        pv[r0:r1] = v
    cols["episode_index"], cols["step_index"], cols["policy_version"] = ep, step, pv
    footer = {
        "format_version": FORMAT_VERSION,
        "ranges": [r for r in ranges if r[3] > 0],
        "started": {str(k): v for k, v in started.items()},
        "closed": list(closed),
    }
    return write_segment(seg_dir, number, columns_to_table(cols, schema), footer, compression)


@dataclass(frozen=True)
class SegmentInfo:
    """What a segment's footer says: row ranges per episode, started/closed episodes."""

    number: int
    path: Path
    rows: int
    ranges: tuple[tuple[int, int, int, int], ...]  # (episode, first_step, row_start, n_rows)
    started: dict[int, dict[str, Any]]
    closed: tuple[int, ...]


_READ_OPTIONS = ipc.IpcReadOptions(use_threads=False)  # segments are small: pool dispatch costs more than it saves


def open_segment(path: Path) -> ipc.RecordBatchFileReader:
    """Open a segment memory-mapped (raises :class:`StoreError` naming the file if it is not Arrow IPC)."""
    try:
        return ipc.open_file(pa.memory_map(str(path)), options=_READ_OPTIONS)
    except Exception as exc:
        raise StoreError(f"{path}: unreadable segment (truncated or not Arrow IPC: {exc})") from exc


def segment_info_from_reader(number: int, path: Path, reader: ipc.RecordBatchFileReader) -> SegmentInfo:
    """Parse the footer of an open segment (raises :class:`StoreError` naming the file if it is corrupt)."""
    try:
        schema = reader.schema
        num_rows = reader.count_rows()
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


def read_segment_info(number: int, path: Path) -> SegmentInfo:
    """Parse a segment footer (raises :class:`StoreError` naming the file if it is corrupt)."""
    with open_segment(path) as reader:
        return segment_info_from_reader(number, path, reader)


def store_identity(m: StoreMeta) -> Identity:
    """What a store's rows were recorded for (:mod:`robodyna.identity`)."""
    return Identity.of(m.robot_spec, m.obs_names, m.obs_units, name=m.robot_name, action_names=m.action_names,
                       action_units=m.action_units, control_hz=m.control_hz)


def compatibility_problems(a: StoreMeta, b: StoreMeta, strict_robot: bool = True) -> list[str]:
    """Differences that make two stores' rows incompatible (the ``dataset`` identity rule; empty = compatible)."""
    problems = identity_problems("dataset", store_identity(b), store_identity(a),
                                 ignore=() if strict_robot else ("name",))
    return [f"{k}: {va!r} != {vb!r}" for k, vb, va in problems]


def lock_store(root: Path, wait_s: float = 0.0) -> int:
    """Take the store's exclusive writer lock (``LOCK_FILE``, released when the returned fd is closed or the
    process dies); a store another writer holds raises :class:`StoreError`, after retrying for ``wait_s`` (a
    recorder killed with SIGKILL leaves its writer process finishing the segments it was handed; it holds the lock
    until they have landed)."""
    fd = os.open(str(root / LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                os.close(fd)
                raise
            if time.monotonic() >= deadline:
                os.close(fd)
                waited = f" (waited {wait_s:g} s)" if wait_s > 0 else ""
                raise StoreError(f"{root}: another writer holds {LOCK_FILE}{waited}") from exc
        time.sleep(0.02)


def remove_tmp_files(root: Path) -> None:
    """Delete a crashed writer's temporary files (segments and meta) — only while holding the writer lock."""
    for d in (root / SEG_DIR, root):
        for name in os.listdir(d):
            if name.startswith(TMP_PREFIX):
                with contextlib.suppress(OSError):
                    os.unlink(d / name)
