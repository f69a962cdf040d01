"""The one transition type of robodyna.

A :class:`Batch` is N transitions as column arrays with fixed field names (``obs, action, reward,
next_obs, terminated, truncated``). The replay buffers, the episode store, the wire format and the
trainer all speak this type; a single transition is a Batch of length 1.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

FIELDS: tuple[str, ...] = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


class BatchError(ValueError):
    """A batch has the wrong shape, dtype or non-finite values."""


@dataclass(frozen=True)
class Batch:
    """N transitions: obs [N, O], action [N, A], reward [N], next_obs [N, O], terminated [N], truncated [N]."""

    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray

    def __post_init__(self) -> None:
        n = self.obs.shape[0] if self.obs.ndim else -1
        for name in FIELDS:
            arr = getattr(self, name)
            if not isinstance(arr, np.ndarray):
                raise BatchError(f"Batch.{name}: expected a numpy array, got {type(arr).__name__}")
            if arr.ndim == 0 or arr.shape[0] != n:
                raise BatchError(f"Batch.{name}: leading dimension {arr.shape} does not match obs {self.obs.shape}")
        if self.obs.ndim != 2 or self.next_obs.shape != self.obs.shape:
            raise BatchError(f"Batch: obs {self.obs.shape} and next_obs {self.next_obs.shape} must both be [N, O]")
        if self.action.ndim != 2:
            raise BatchError(f"Batch.action: expected [N, A], got {self.action.shape}")
        for name in ("reward", "terminated", "truncated"):
            if getattr(self, name).ndim != 1:
                raise BatchError(f"Batch.{name}: expected [N], got {getattr(self, name).shape}")

    @classmethod
    def create(
        cls,
        obs: np.ndarray,
        action: np.ndarray,
        reward: np.ndarray | float,
        next_obs: np.ndarray,
        terminated: np.ndarray | bool,
        truncated: np.ndarray | bool,
    ) -> Batch:
        """Build a batch, converting to the canonical dtypes (float32, bool); 1-D obs means one transition."""
        o = np.asarray(obs, dtype=np.float32)
        single = o.ndim == 1
        if single:
            o = o[None]

        def col(x: np.ndarray | float | bool, dtype: type, two_d: bool) -> np.ndarray:
            a: np.ndarray = np.asarray(x, dtype=dtype)
            if single:
                a = a[None]
            if not two_d:
                a = a.reshape(-1) if a.ndim > 1 and a.shape[-1] == 1 else a
            return a

        return cls(
            obs=o,
            action=col(action, np.float32, True),
            reward=col(reward, np.float32, False),
            next_obs=col(next_obs, np.float32, True),
            terminated=col(terminated, np.bool_, False),
            truncated=col(truncated, np.bool_, False),
        )

    @classmethod
    def empty(cls, obs_dim: int, act_dim: int) -> Batch:
        z = np.zeros
        return cls(
            z((0, obs_dim), np.float32),
            z((0, act_dim), np.float32),
            z(0, np.float32),
            z((0, obs_dim), np.float32),
            z(0, np.bool_),
            z(0, np.bool_),
        )

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.obs.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.action.shape[1])

    def as_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in FIELDS}

    def take(self, idx: np.ndarray | slice) -> Batch:
        """Rows ``idx`` of every field."""
        return Batch(**{name: getattr(self, name)[idx] for name in FIELDS})

    def finite_mask(self) -> np.ndarray:
        """Boolean [N]: rows whose obs, action, reward and next_obs are all finite."""
        m = np.isfinite(self.reward)
        for name in ("obs", "action", "next_obs"):
            m &= np.isfinite(getattr(self, name)).all(axis=1)
        return m

    def check(self, obs_dim: int | None = None, act_dim: int | None = None, where: str = "batch") -> None:
        """Raise :class:`BatchError` on a dimension mismatch or any non-finite value (naming the first bad row)."""
        if obs_dim is not None and self.obs_dim != obs_dim:
            raise BatchError(f"{where}: obs has {self.obs_dim} columns, expected {obs_dim}")
        if act_dim is not None and self.act_dim != act_dim:
            raise BatchError(f"{where}: action has {self.act_dim} columns, expected {act_dim}")
        bad = np.flatnonzero(~self.finite_mask())
        if bad.size:
            raise BatchError(f"{where}: {bad.size} transition(s) contain NaN/inf (first at row {int(bad[0])})")

    @staticmethod
    def concat(batches: Iterable[Batch]) -> Batch:
        bs = list(batches)
        if not bs:
            raise BatchError("Batch.concat: nothing to concatenate")
        return Batch(**{name: np.concatenate([getattr(b, name) for b in bs]) for name in FIELDS})
