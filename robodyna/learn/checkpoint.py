"""Training checkpoints: everything needed to resume bit-for-bit, plus identity checks on load.

A checkpoint names the robot (its :class:`RobotSpec` JSON) and the observation layout; loading it for another
robot or another obs layout is refused with a message naming the mismatch. Writes are atomic (tmp + rename),
so a crash or a divergence never leaves a half-written ``last.pt``: the last good checkpoint stays.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from robodyna.spec import RobotSpec

CHECKPOINT_VERSION = 1


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for another robot, obs layout or action space."""


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


def check_identity(meta: dict[str, Any], spec: RobotSpec | None, obs_names: list[str] | None, where: str) -> None:
    """Raise :class:`CheckpointMismatchError` naming the first field that differs."""
    if spec is not None:
        theirs = RobotSpec.from_dict(json.loads(meta["robot_spec"]))
        if theirs.name != spec.name:
            raise CheckpointMismatchError(f"{where} is for robot {theirs.name!r}, not {spec.name!r}")
        mine, other = spec.to_dict(), theirs.to_dict()
        for key in sorted(mine):
            if mine[key] != other.get(key):
                raise CheckpointMismatchError(
                    f"{where}: robot spec field {key!r} differs: checkpoint {other.get(key)!r}, expected {mine[key]!r}"
                )
    if obs_names is not None:
        theirs_obs = list(meta["obs_names"])
        if theirs_obs != list(obs_names):
            n_common = min(len(theirs_obs), len(obs_names))
            diff = next((i for i, (a, b) in enumerate(zip(theirs_obs, obs_names)) if a != b), n_common)
            raise CheckpointMismatchError(
                f"{where}: observation layout differs ({len(theirs_obs)} vs {len(obs_names)} entries; first difference "
                f"at index {diff}: checkpoint {theirs_obs[diff] if diff < len(theirs_obs) else None!r}, "
                f"expected {obs_names[diff] if diff < len(obs_names) else None!r})"
            )


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
    check_identity(state["meta"], spec, obs_names, str(p))
    return state
