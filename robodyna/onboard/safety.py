"""Safety filter as pure functions: validate, clamp, rate-limit, workspace box.

Every action on its way to an engine or a robot passes :func:`check_action` (shape and finiteness: a bad
action is an error, never forwarded) and then :func:`clamp` (limits). The onboard controller adds
:func:`rate_limit` and :func:`workspace_ok`. All functions are pure: arrays in, arrays out.
"""

from __future__ import annotations

import numpy as np

from robodyna.robots.action import UnsafeActionError, check_action, clamp

__all__ = ["UnsafeActionError", "check_action", "clamp", "rate_limit", "workspace_ok"]


def rate_limit(action: np.ndarray, previous: np.ndarray, max_delta_per_tick: np.ndarray | float) -> np.ndarray:
    """Limit the change from ``previous`` to at most ``max_delta_per_tick`` per component."""
    return previous + np.clip(action - previous, -max_delta_per_tick, max_delta_per_tick)


def workspace_ok(position_m: np.ndarray, low_m: np.ndarray, high_m: np.ndarray) -> bool:
    """True when an end-effector position lies inside the axis-aligned workspace box."""
    p = np.asarray(position_m)
    return bool(np.all(p >= low_m) and np.all(p <= high_m))
