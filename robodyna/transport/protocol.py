"""The robodyna link protocol, version 1 (see ``docs/protocol.md``): encoding and a strict, pure decoder.

Every message is one ZeroMQ multipart message ``[header, *frames]``. ``header`` is a msgpack map with at least
``p`` (protocol version, int) and ``t`` (message type, str); ``frames`` are raw little-endian array bytes
(``transitions``) or the ONNX file (``policy``). Nothing is ever unpickled: msgpack is decoded with extension
types refused, arrays are rebuilt with ``numpy.frombuffer`` from a dtype/shape the decoder checked against the
expected schema (:data:`WIRE_DTYPES`: the :class:`~robodyna.data.batch.Batch` fields plus the store's extra
columns).

:func:`decode` raises :class:`ProtocolError` with a short machine-readable ``reason`` (the counter name) and a
human-readable message for anything that is not a well-formed message of this version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

from robodyna.data.store_format import COLUMNS, OPTIONAL_COLUMNS, StoreMeta, store_identity
from robodyna.identity import RULES

PROTOCOL_VERSION = 1
#: types robot -> trainer
ROBOT_TYPES = ("hello", "tx", "heartbeat", "policy_result", "status")
#: types trainer -> robot
TRAINER_TYPES = ("ack", "policy", "heartbeat", "refresh", "reject")
#: what a transitions message carries, in this order, with these little-endian dtypes
WIRE_DTYPES: dict[str, str] = {
    "obs": "<f4",
    "action": "<f4",
    "reward": "<f4",
    "next_obs": "<f4",
    "terminated": "|b1",
    "truncated": "|b1",
    "time_wall_s": "<f8",
    "time_mono_s": "<f8",
    "episode_index": "<i8",
    "step_index": "<i8",
    "policy_version": "<i8",
    "intervention": "<i4",
    "policy_action": "<f4",  # the policy's raw output (may be NaN where it was invalid and the arm held)
}
assert tuple(WIRE_DTYPES) == COLUMNS
# 2-D columns and which width they use
_WIDE = {"obs": "obs", "next_obs": "obs", "action": "act", "policy_action": "act"}
_FINITE = ("obs", "action", "reward", "next_obs", "time_wall_s", "time_mono_s")
_NONNEG = ("episode_index", "step_index", "policy_version")
MAX_HEADER_BYTES = 1 << 20
POLICY_SIG_CONTEXT = b"robodyna.policy/1"


class ProtocolError(ValueError):
    """A message that is not a valid message of this protocol; ``reason`` names the counter it increments."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(f"{reason}: {message}")


@dataclass(frozen=True)
class Message:
    """A decoded message: its type, header map and raw frames (checked only for count at this level)."""

    type: str
    header: dict[str, Any]
    frames: tuple[Any, ...] = ()  # bytes or zero-copy memoryviews of the received ZeroMQ frames


@dataclass
class TxBatch:
    """A decoded ``tx`` message: rows ``[seq0, seq0 + n)`` of robot ``robot``'s store, as numpy columns."""

    robot: str
    seq0: int
    cols: dict[str, np.ndarray]
    started: dict[int, dict[str, Any]] = field(default_factory=dict)
    closed: tuple[int, ...] = ()

    @property
    def n(self) -> int:
        return int(self.cols["reward"].shape[0])

    @property
    def seq1(self) -> int:
        return self.seq0 + self.n

    def slice_from(self, seq: int) -> TxBatch:
        """The rows at and after ``seq`` (``seq0 <= seq < seq1``)."""
        k = seq - self.seq0
        eps = set(np.unique(self.cols["episode_index"][k:]).tolist())
        return TxBatch(self.robot, seq, {c: a[k:] for c, a in self.cols.items()},
                       {e: i for e, i in self.started.items() if e in eps}, tuple(e for e in self.closed if e in eps))


# -- encoding ------------------------------------------------------------------------------------------------
def _pack(header: dict[str, Any]) -> bytes:
    return msgpack.packb({"p": PROTOCOL_VERSION, **header}, use_bin_type=True)


def encode(type_: str, **header: Any) -> list[bytes]:
    """A frame-less message (hello, ack, heartbeat, refresh, reject, status, policy_result)."""
    return [_pack({"t": type_, **header})]


def encode_tx(robot: str, seq0: int, cols: dict[str, np.ndarray], started: dict[int, dict[str, Any]] | None = None,
              closed: Sequence[int] = ()) -> list[bytes]:
    """A ``tx`` message: rows ``[seq0, seq0 + n)`` as one little-endian frame per column of :data:`WIRE_DTYPES`
    (an optional column the rows lack, ``policy_action``, travels as the applied action, as the store reads it)."""
    frames: list[bytes] = []
    dtypes, shapes = [], []
    for name, dt in WIRE_DTYPES.items():
        src = cols[name] if name in cols or name not in OPTIONAL_COLUMNS else cols["action"]
        a = np.ascontiguousarray(src, dtype=np.dtype(dt))
        dtypes.append(dt)
        shapes.append(list(a.shape))
        frames.append(a.data.cast("B") if a.size else b"")  # type: ignore[arg-type]
    n = int(np.shape(cols["reward"])[0])
    header = {"t": "tx", "robot": robot, "seq": [int(seq0), int(seq0) + n], "fields": list(WIRE_DTYPES),
              "dtypes": dtypes, "shapes": shapes,
              "episodes": [int(cols["episode_index"][0]), int(cols["episode_index"][-1])] if n else [],
              "started": {int(k): v for k, v in (started or {}).items()}, "closed": [int(e) for e in closed]}
    return [_pack(header), *frames]


def policy_signed_bytes(version: int, sha256: str, metadata: dict[str, str]) -> bytes:
    """What the trainer's Ed25519 key signs: context, version, the ONNX bytes' sha256 and the metadata."""
    return msgpack.packb([POLICY_SIG_CONTEXT, int(version), sha256, json.dumps(metadata, sort_keys=True)],
                         use_bin_type=True)


def encode_policy(version: int, onnx_bytes: bytes, sha256: str, signature: bytes,
                  metadata: dict[str, str]) -> list[bytes]:
    return [_pack({"t": "policy", "version": int(version), "sha256": sha256, "sig": signature,
                   "metadata": dict(metadata), "size": len(onnx_bytes)}), onnx_bytes]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- decoding ------------------------------------------------------------------------------------------------
def _refuse_ext(code: int, data: bytes) -> Any:
    raise ProtocolError("malformed", f"msgpack extension type {code} is not allowed")


def _need(h: dict[str, Any], key: str, typ: type | tuple[type, ...], what: str) -> Any:
    v = h.get(key)
    if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
        raise ProtocolError("malformed", f"{what}: header field {key!r} must be {getattr(typ, '__name__', typ)}, "
                                         f"got {type(v).__name__}")
    return v


_SCHEMA: dict[str, tuple[tuple[str, ...], int]] = {
    # type: (required header fields, number of frames)
    "hello": (("robot", "meta", "spec_hash", "software", "recorded"), 0),
    "tx": (("robot", "seq", "fields", "dtypes", "shapes", "started", "closed"), len(WIRE_DTYPES)),
    "ack": (("seq",), 0),
    "heartbeat": ((), 0),
    "policy": (("version", "sha256", "sig", "metadata", "size"), 1),
    "policy_result": (("version", "accepted", "reason"), 0),
    "refresh": (("n", "unit"), 0),
    "reject": (("reason", "message"), 0),
    "status": ((), 0),
}


def decode(frames: Sequence[Any], allowed: Sequence[str] | None = None, max_bytes: int | None = None) -> Message:
    """Check the envelope: header parses as a msgpack map of this version, a known (allowed) type, the right
    number of frames, and (``max_bytes``) a total size cap. Raises :class:`ProtocolError`."""
    if not frames:
        raise ProtocolError("malformed", "empty message")
    if max_bytes is not None:
        total = sum(len(f) for f in frames)
        if total > max_bytes:
            raise ProtocolError("oversized", f"{total} bytes > cap {max_bytes}")
    raw = bytes(frames[0])
    if len(raw) > MAX_HEADER_BYTES:
        raise ProtocolError("oversized", f"header of {len(raw)} bytes > {MAX_HEADER_BYTES}")
    try:
        h = msgpack.unpackb(raw, raw=False, strict_map_key=False, ext_hook=_refuse_ext, use_list=True)
    except ProtocolError:
        raise
    except Exception as exc:  # msgpack raises many types (ExtraData, FormatError, ValueError, UnicodeError...)
        raise ProtocolError("malformed", f"header is not msgpack ({type(exc).__name__})") from None
    if not isinstance(h, dict):
        raise ProtocolError("malformed", f"header must be a map, got {type(h).__name__}")
    p = h.get("p")
    if not isinstance(p, int) or isinstance(p, bool):
        raise ProtocolError("malformed", "header lacks the protocol version 'p'")
    if p != PROTOCOL_VERSION:
        raise ProtocolError("version", f"protocol version {p}, this side speaks {PROTOCOL_VERSION}")
    t = h.get("t")
    if not isinstance(t, str) or t not in _SCHEMA or (allowed is not None and t not in allowed):
        raise ProtocolError("type", f"unexpected message type {t!r}")
    keys, nframes = _SCHEMA[t]
    missing = [k for k in keys if k not in h]
    if missing:
        raise ProtocolError("malformed", f"{t}: header lacks {missing}")
    if len(frames) != 1 + nframes:
        raise ProtocolError("malformed", f"{t}: {len(frames) - 1} data frame(s), expected {nframes}")
    return Message(t, h, tuple(frames[1:]))


def _int(v: Any, what: str) -> int:
    if not isinstance(v, int) or isinstance(v, bool):
        raise ProtocolError("malformed", f"{what} must be an int, got {type(v).__name__}")
    return v


def decode_tx(msg: Message, obs_dim: int, act_dim: int, max_rows: int) -> TxBatch:
    """Check a ``tx`` message against the schema (field names, dtypes, shapes, byte lengths, finite values,
    non-negative indices, booleans 0/1) and rebuild its columns (read-only views of the frames)."""
    h = msg.header
    robot = _need(h, "robot", str, "tx")
    seq = _need(h, "seq", list, "tx")
    if len(seq) != 2:
        raise ProtocolError("malformed", "tx: seq must be [first, end)")
    s0, s1 = _int(seq[0], "tx seq[0]"), _int(seq[1], "tx seq[1]")
    n = s1 - s0
    if s0 < 0 or n <= 0 or n > max_rows:
        raise ProtocolError("shape", f"tx: sequence range [{s0}, {s1}) is empty, negative or > {max_rows} rows")
    fields, dtypes, shapes = h["fields"], h["dtypes"], h["shapes"]
    if fields != list(WIRE_DTYPES):
        raise ProtocolError("schema", f"tx: fields {str(fields)[:200]} != {list(WIRE_DTYPES)}")
    if not isinstance(dtypes, list) or not isinstance(shapes, list) or len(dtypes) != len(fields) \
            or len(shapes) != len(fields):
        raise ProtocolError("malformed", "tx: dtypes/shapes must be lists, one per field")
    width = {"obs": obs_dim, "act": act_dim}
    cols: dict[str, np.ndarray] = {}
    for name, dt, shape, frame in zip(fields, dtypes, shapes, msg.frames):
        want_dt = WIRE_DTYPES[name]
        if dt != want_dt:
            raise ProtocolError("dtype", f"tx: {name} has dtype {str(dt)[:40]!r}, expected {want_dt!r}")
        want_shape = [n, width[_WIDE[name]]] if name in _WIDE else [n]
        if shape != want_shape:
            raise ProtocolError("shape", f"tx: {name} has shape {str(shape)[:60]}, expected {want_shape}")
        dtype = np.dtype(want_dt)
        nbytes = n * (want_shape[1] if len(want_shape) == 2 else 1) * dtype.itemsize
        if len(frame) != nbytes:
            raise ProtocolError("size", f"tx: {name} frame has {len(frame)} bytes, expected {nbytes}")
        if name in ("terminated", "truncated"):
            u8 = np.frombuffer(frame, np.uint8)
            if u8.size and int(u8.max()) > 1:
                raise ProtocolError("bad_value", f"tx: {name} holds a byte other than 0/1")
        a = np.frombuffer(frame, dtype).reshape(want_shape)
        cols[name] = a
    with np.errstate(over="ignore", invalid="ignore"):
        for name in _FINITE:
            if not np.isfinite(np.add.reduce(cols[name], axis=None)) and not np.isfinite(cols[name]).all():
                raise ProtocolError("nonfinite", f"tx: {name} holds NaN/inf")
    for name in _NONNEG:
        if int(cols[name].min()) < 0:
            raise ProtocolError("bad_value", f"tx: {name} holds a negative value")
    started_raw, closed_raw = h["started"], h["closed"]
    if not isinstance(started_raw, dict) or not isinstance(closed_raw, list):
        raise ProtocolError("malformed", "tx: started must be a map, closed a list")
    started: dict[int, dict[str, Any]] = {}
    for k, v in started_raw.items():
        if not isinstance(v, dict):
            raise ProtocolError("malformed", "tx: started values must be maps")
        started[_int(k, "tx started key")] = v
    closed = tuple(_int(e, "tx closed episode") for e in closed_raw)
    try:
        json.dumps(started)
    except (TypeError, ValueError):
        raise ProtocolError("malformed", "tx: started info is not JSON-able") from None
    return TxBatch(robot, s0, cols, started, closed)


def decode_policy(msg: Message, max_bytes: int) -> tuple[int, bytes, str, bytes, dict[str, str]]:
    """``(version, onnx_bytes, sha256, signature, metadata)`` of a ``policy`` message (signature not checked)."""
    h = msg.header
    version = _int(h["version"], "policy version")
    sha, sig, md = h["sha256"], h["sig"], h["metadata"]
    if version < 0 or not isinstance(sha, str) or not isinstance(sig, bytes) or not isinstance(md, dict):
        raise ProtocolError("malformed", "policy: version >= 0, sha256 str, sig bytes and metadata map required")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in md.items()):
        raise ProtocolError("malformed", "policy: metadata must map str to str")
    data = bytes(msg.frames[0])
    if len(data) > max_bytes or len(data) != h["size"]:
        raise ProtocolError("size", f"policy: {len(data)} bytes (header says {h['size']}, cap {max_bytes})")
    return version, data, sha, sig, md


def spec_hash(meta: StoreMeta) -> str:
    """sha256 of what the ``link`` identity rule compares, as canonical JSON (sent in the hello)."""
    ident = store_identity(meta)
    return sha256_hex(json.dumps({f: ident.get(f) for f in RULES["link"]}, sort_keys=True, default=str).encode())
