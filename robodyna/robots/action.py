"""The action check every driver runs before an engine or a robot sees an action (pure functions).

:func:`check_action` refuses a wrong shape or a non-finite value (an error, never forwarded) and :func:`clamp`
clips to limits. The onboard safety filter (:mod:`robodyna.onboard.safety`) builds on them.
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
