"""Training checkpoints: everything needed to resume bit-for-bit, plus identity checks on load.

A checkpoint names the robot (its :class:`RobotSpec` JSON) and the observation layout; loading it for another
robot or another obs layout is refused by the ``checkpoint`` rule of :mod:`robodyna.identity`. Writes are atomic
(tmp + rename), so a crash or a divergence never leaves a half-written ``last.pt``: the last good checkpoint stays.

Loading never executes code from the file: ``torch.load(weights_only=True)`` with only the numpy array, dtype
and scalar constructors a checkpoint holds allowed besides tensors and plain containers. A file that is not
a checkpoint (random bytes, truncated, an ONNX model, a pickle that would run code) is refused with
:class:`CheckpointError`, one line naming the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robodyna.identity import Identity, check_identity
from robodyna.spec import RobotSpec

CHECKPOINT_VERSION = 1

_NUMERIC_DTYPES = ("Bool", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64",
                   "Float16", "Float32", "Float64")


def _safe_globals() -> list[Any]:
    """The non-torch globals a checkpoint may name: numpy arrays (and scalars) of numeric dtypes, nothing else.

    Listed under the names numpy 2 and numpy 1 pickle them with (``numpy._core`` / ``numpy.core``); object
    arrays are not allowed (no ``ObjectDType``)."""
    mu = np._core.multiarray  # type: ignore[attr-defined]
    out: list[Any] = [np.ndarray, np.dtype, bytes]  # bytes: an empty array's data (b"") pickles as a call to bytes()
    for fn in (mu._reconstruct, mu.scalar):
        out += [fn, (fn, f"numpy.core.multiarray.{fn.__name__}")]
    out += [getattr(np.dtypes, f"{n}DType") for n in _NUMERIC_DTYPES]
    return out


class CheckpointError(ValueError):
    """The file is not a readable robodyna training checkpoint (the message names it); one made for another
    robot raises :class:`~robodyna.identity.IdentityMismatch`."""


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomically write ``state`` (must contain ``meta`` with ``robot_spec`` and ``obs_names``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(p.suffix + ".tmp")
    state = dict(state)
    state.setdefault("meta", {})["checkpoint_version"] = CHECKPOINT_VERSION
    torch.save(state, tmp)
    os.replace(tmp, p)
    return p


def checkpoint_identity(meta: dict[str, Any]) -> Identity:
    """What a checkpoint was trained for (its ``meta``: ``robot_spec`` JSON and ``obs_names``)."""
    return Identity.from_json(meta["robot_spec"], meta["obs_names"])


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, loaded without running code from the file (no identity checks).

    Raises :class:`CheckpointError` (one line naming the file) for anything that is not a robodyna checkpoint.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    with open(p, "rb") as f:
        head = f.read(8)
    if not head.startswith(b"PK\x03\x04"):  # torch.save writes a zip archive; anything else is not a checkpoint
        raise CheckpointError(f"{p}: not a robodyna training checkpoint ({_what_is(head)})")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises many types (UnpicklingError, RuntimeError, OSError...)
        raise CheckpointError(f"{p}: not a robodyna training checkpoint ({_reason(exc)})") from exc
    if not isinstance(state, dict) or not isinstance(state.get("meta"), dict):
        raise CheckpointError(f"{p}: not a robodyna training checkpoint (no 'meta' entry)")
    missing = [k for k in ("robot_spec", "obs_names") if k not in state["meta"]]
    if missing:
        raise CheckpointError(f"{p}: not a robodyna training checkpoint (meta lacks {', '.join(missing)})")
    return state


def _what_is(head: bytes) -> str:
    if not head:
        return "the file is empty"
    if head[:1] == b"\x08" and head[2:3] in (b"\x12", b"\x1a", b"\x22", b"\x3a"):
        return "it looks like an ONNX model: give a .onnx file to `eval --policy`; `export` and `--resume` need last.pt"
    if head[:1] == b"\x80":
        return "a bare pickle, not a PyTorch archive; refused without unpickling it"
    return "not a PyTorch archive"


def _reason(exc: BaseException) -> str:
    """A one-line reason for a failed ``torch.load`` of a zip archive."""
    text = str(exc)
    if "Weights only load failed" in text:
        detail = next((ln.split("error:", 1)[-1].strip() for ln in text.splitlines() if "Unpickler error" in ln), "")
        if not detail:
            detail = next((ln.strip() for ln in text.splitlines()[1:] if ln.strip()), "")
        return ("it names Python objects a checkpoint never holds; refused without running them"
                + (f": {detail[:200]}" if detail else ""))
    first = text.strip().splitlines()[0][:200] if text.strip() else ""
    return f"truncated or corrupt archive: {type(exc).__name__}" + (f": {first}" if first else "")


def load_checkpoint(
    path: str | Path, spec: RobotSpec | None = None, obs_names: list[str] | None = None
) -> dict[str, Any]:
    """Load a checkpoint, refusing one made for another robot / obs layout (when those are given)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    state = read_checkpoint(p)
    check_identity("checkpoint", checkpoint_identity(state["meta"]), Identity.of(spec, obs_names), str(p))
    return state
