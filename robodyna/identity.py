"""One identity rule: what "made for this robot" means, for every artefact that crosses a boundary.

A policy, a checkpoint, a dataset, a warm-start dataset, a network link and an open-loop replay each carry an
:class:`Identity` (the robot's :class:`~robodyna.spec.RobotSpec` fields plus the observation layout). Whether an
artefact fits a robot is decided by :func:`check_identity` with a named *purpose*; each purpose compares the fields
listed once in :data:`RULES`, and a mismatch raises :class:`IdentityMismatch` naming the field and both values.

What is deliberately *not* compared: the physics engine and its internal rate (``engine``, ``physics_hz``). A
reality profile may run the "real" robot in another engine (``cross-engine``) — a policy, checkpoint or dataset
made in MuJoCo must be accepted on the same robot simulated in PyBullet, or on hardware. Joint limits matter where
the learner projects model predictions onto them (checkpoint, init data, link, dataset), not for running a policy
(the onboard safety filter enforces the robot's own limits).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from robodyna.spec import RobotSpec

Purpose = Literal["policy", "checkpoint", "dataset", "init_data", "link", "replay"]

_INTERFACE = ("name", "action_mode", "action_names", "action_units", "action_low", "action_high", "control_hz")
_LIMITS = ("joint_names", "joint_low_rad", "joint_high_rad", "joint_velocity_limit_rad_s")

#: The fields each purpose compares, in the order they are checked.
RULES: dict[str, tuple[str, ...]] = {
    # an ONNX policy on a robot: it maps this observation layout to these actions at this rate
    "policy": (*_INTERFACE, "joint_names", "obs_names"),
    # a training checkpoint resumed or evaluated: the learner's model constraints also use the joint limits
    "checkpoint": (*_INTERFACE, *_LIMITS, "obs_names"),
    # appending to or merging episode stores: rows must mean the same thing
    "dataset": (*_INTERFACE, *_LIMITS, "obs_names", "obs_units"),
    # a recorded store warm-starting a learner
    "init_data": (*_INTERFACE, *_LIMITS, "obs_names"),
    # a robot saying hello to a trainer configured for a robot
    "link": (*_INTERFACE, *_LIMITS, "obs_names"),
    # recorded actions replayed open loop on a simulated robot (its own observation layout is rebuilt)
    "replay": (*_INTERFACE, "joint_names"),
}


class IdentityMismatch(ValueError):
    """An artefact made for another robot (or observation layout) than the one it is used with."""

    def __init__(self, purpose: str, where: str, field: str, theirs: Any, ours: Any) -> None:
        self.purpose, self.where, self.field, self.theirs, self.ours = purpose, where, field, theirs, ours
        super().__init__(f"{where}: made for another robot ({purpose}): {field} is {_short(theirs)} there, "
                         f"{_short(ours)} here")


def _short(v: Any) -> str:
    s = "missing" if v is None else repr(list(v) if isinstance(v, tuple) else v)
    return s if len(s) <= 200 else s[:197] + "..."


def _norm(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    return v


@dataclass(frozen=True)
class Identity:
    """What an artefact says it was made for: spec fields by name, plus ``obs_names`` (and ``obs_units``)."""

    fields: Mapping[str, Any]

    @classmethod
    def of(cls, spec: RobotSpec | Mapping[str, Any] | None, obs_names: Sequence[str] | None = None,
           obs_units: Sequence[str] | None = None, **extra: Any) -> Identity:
        """From a spec (or its dict), the observation layout, and any fields known separately."""
        d: dict[str, Any] = {}
        if spec is not None:
            d.update(spec.to_dict() if isinstance(spec, RobotSpec) else dict(spec))
        if obs_names is not None:
            d["obs_names"] = list(obs_names)
        if obs_units is not None:
            d["obs_units"] = list(obs_units)
        d.update({k: v for k, v in extra.items() if v is not None})
        return cls(d)

    @classmethod
    def from_json(cls, spec_json: str, obs_names: Sequence[str] | None = None) -> Identity:
        return cls.of(json.loads(spec_json), obs_names)

    def get(self, field: str) -> Any:
        return self.fields.get(field)


def identity_problems(purpose: str, theirs: Identity, ours: Identity,
                      ignore: Sequence[str] = ()) -> list[tuple[str, Any, Any]]:
    """Every ``(field, theirs, ours)`` that differs under ``purpose``'s rule.

    ``ours`` is the reference the caller knows: a field it does not carry is not compared (a robot without an
    observation layout checks only the spec); a field it carries that ``theirs`` lacks is a mismatch.
    """
    if purpose not in RULES:
        raise ValueError(f"unknown identity purpose {purpose!r}; known: {sorted(RULES)}")
    out = []
    for f in RULES[purpose]:
        if f in ignore:
            continue
        a, b = theirs.get(f), ours.get(f)
        if b is None:
            continue
        if _norm(a) != _norm(b):
            out.append((f, a, b))
    return out


def check_identity(purpose: str, theirs: Identity, ours: Identity, where: str, ignore: Sequence[str] = ()) -> None:
    """Raise :class:`IdentityMismatch` for the first field ``purpose``'s rule finds different."""
    problems = identity_problems(purpose, theirs, ours, ignore)
    if problems:
        raise IdentityMismatch(purpose, where, *problems[0])
