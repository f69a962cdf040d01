"""The robot interface every driver implements (simulated or hardware).

``send_action`` is the only way an action reaches an engine or a robot: it checks shape and finiteness
(raising :class:`~robodyna.robots.action.UnsafeActionError`, never forwarding), clamps to the spec's
limits and returns the action actually applied. In simulation one call advances one control period.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import TracebackType

import numpy as np

from robodyna.robots.action import check_action, clamp
from robodyna.spec import RobotSpec, StateLayout


class RobotError(RuntimeError):
    """A robot folder or model could not be loaded, or an engine reported a problem."""


@dataclass(slots=True)
class RobotState:
    """What a robot reports: joint positions [rad], joint velocities [rad/s], end-effector position [m]."""

    qpos: np.ndarray
    qvel: np.ndarray
    ee_pos_m: np.ndarray
    time_s: float


class Robot(ABC):
    """A robot arm: spec, reset, observe, send_action, close. Usable as a context manager."""

    spec: RobotSpec

    def __init__(self, spec: RobotSpec) -> None:
        self.spec = spec
        self._low = spec.action_low_array
        self._high = spec.action_high_array
        self._act_dim = spec.act_dim
        self._where = f"{spec.name}.send_action"

    @abstractmethod
    def reset(
        self, qpos: np.ndarray | None = None, qvel: np.ndarray | None = None, seed: int | None = None
    ) -> RobotState:
        """Bring the robot to ``qpos``/``qvel`` (default: home) and return the state."""

    @abstractmethod
    def observe(self) -> RobotState:
        """Read the current state."""

    def observe_into(self, out: np.ndarray) -> None:
        """Write ``[qpos (n), qvel (n), ee_pos_m (3)]`` into ``out``: the control loop's allocation-free read."""
        s = self.observe()
        lay = StateLayout(s.qpos.shape[0])
        out[lay.qpos] = s.qpos
        out[lay.qvel] = s.qvel
        out[lay.ee] = s.ee_pos_m

    def peek_into(self, out: np.ndarray) -> bool:
        """Write the state as :meth:`observe_into` does, without side effects, if this driver can; return whether
        it did. A simulator reads its engine; a reality profile its engine's state without drawing noise;
        hardware drivers (a read is I/O with the arm) return False and write nothing. The onboard controller's
        pre-deadline warm-up calls it (its read then costs the tick its warm time, not its cold time)."""
        return False

    @abstractmethod
    def _apply(self, action: np.ndarray) -> None:
        """Apply a checked, clamped action for one control period."""

    def send_action(self, action: object) -> np.ndarray:
        """Check, clamp and apply ``action``; returns the action actually applied (physical units)."""
        a = clamp(check_action(action, self._act_dim, where=self._where), self._low, self._high)
        self._apply(a)
        return a

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the engine or connection."""

    def __enter__(self) -> Robot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
