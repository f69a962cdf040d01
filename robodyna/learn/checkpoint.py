"""Training checkpoints: everything needed to resume bit-for-bit, plus identity checks on load.

A checkpoint names the robot (its :class:`RobotSpec` JSON) and the observation layout; loading it for another
robot or another obs layout is refused by the ``checkpoint`` rule of :mod:`robodyna.identity`. Writes are atomic
(tmp + rename), so a crash or a divergence never leaves a half-written ``last.pt``: the last good checkpoint stays.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from robodyna.identity import Identity, check_identity
from robodyna.spec import RobotSpec

CHECKPOINT_VERSION = 1


class CheckpointMismatchError(ValueError):
    """The file is not a robodyna training checkpoint (made for another robot:
    :class:`~robodyna.identity.IdentityMismatch`)."""


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


def load_checkpoint(
    path: str | Path, spec: RobotSpec | None = None, obs_names: list[str] | None = None
) -> dict[str, Any]:
    """Load a checkpoint, refusing one made for another robot / obs layout (when those are given)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint not found: {p}")
    state = torch.load(p, map_location="cpu", weights_only=False)
    if not isinstance(state, dict) or "meta" not in state:
        raise CheckpointMismatchError(f"{p} is not a robodyna training checkpoint")
    check_identity("checkpoint", checkpoint_identity(state["meta"]), Identity.of(spec, obs_names), str(p))
    return state
