"""Safety filter as pure functions: validate, clamp, rate-limit, workspace box.

Every action on its way to an engine or a robot passes :func:`check_action` (shape and finiteness: a bad
action is an error, never forwarded) and then :func:`clamp` (limits). The onboard controller adds
:func:`rate_limit` and :func:`workspace_ok`. All functions are pure: arrays in, arrays out.
"""

from __future__ import annotations

import math

import numpy as np


class UnsafeActionError(ValueError):
    """An action that must never reach the robot: wrong shape, NaN or inf."""


def check_action(action: object, act_dim: int, where: str = "action") -> np.ndarray:
    """Return ``action`` as a float64 vector of length ``act_dim``; raise on wrong shape or non-finite values."""
    if type(action) is np.ndarray and action.shape == (act_dim,) and action.dtype.kind == "f":
        a = action.astype(np.float64)  # fast path for the control loop: already a float vector
        if all(map(math.isfinite, a.tolist())):  # element-wise in C; cheaper than numpy for a few joints
            return a
    try:
        a = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UnsafeActionError(f"{where}: not numeric ({exc})") from exc
    if a.shape != (act_dim,):
        raise UnsafeActionError(f"{where}: expected shape ({act_dim},), got {a.shape}")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise UnsafeActionError(f"{where}: non-finite value {a[bad[0]]} at index {int(bad[0])}")
    return a


def clamp(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Clip each component into [low, high]."""
    return np.minimum(np.maximum(action, low), high)


def rate_limit(action: np.ndarray, previous: np.ndarray, max_delta_per_tick: np.ndarray | float) -> np.ndarray:
    """Limit the change from ``previous`` to at most ``max_delta_per_tick`` per component."""
    return previous + np.clip(action - previous, -max_delta_per_tick, max_delta_per_tick)


def workspace_ok(position_m: np.ndarray, low_m: np.ndarray, high_m: np.ndarray) -> bool:
    """True when an end-effector position lies inside the axis-aligned workspace box."""
    p = np.asarray(position_m)
    return bool(np.all(p >= low_m) and np.all(p <= high_m))
