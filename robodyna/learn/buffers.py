"""Replay buffers: numpy ring buffers of :class:`~robodyna.data.batch.Batch` rows.

MBPO keeps two (Janner et al. 2019, Alg. 2): a real buffer (environment data; the only data the model is fit on)
and a larger model buffer of branched-rollout transitions with its own FIFO eviction. Rows with NaN/inf are
rejected at insertion and counted (``rejected``), with a logged warning.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from robodyna.data.batch import FIELDS, Batch

log = logging.getLogger(__name__)


class ReplayBuffer:
    """FIFO ring buffer of transitions (the oldest rows are overwritten first)."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int, name: str = "buffer") -> None:
        if capacity < 1:
            raise ValueError(f"{name}: capacity must be >= 1, got {capacity}")
        self.name = name
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.capacity = int(capacity)
        self._alloc(self.capacity)
        self.size = 0
        self.pos = 0
        self.rejected = 0
        self.total_added = 0

    def _alloc(self, capacity: int) -> None:
        o, a = self.obs_dim, self.act_dim
        self._arrays: dict[str, np.ndarray] = {
            "obs": np.zeros((capacity, o), np.float32),
            "action": np.zeros((capacity, a), np.float32),
            "reward": np.zeros(capacity, np.float32),
            "next_obs": np.zeros((capacity, o), np.float32),
            "terminated": np.zeros(capacity, np.bool_),
            "truncated": np.zeros(capacity, np.bool_),
        }

    def __len__(self) -> int:
        return self.size

    def add(self, batch: Batch) -> int:
        """Insert the finite rows of ``batch``; returns how many rows were rejected (NaN/inf)."""
        if batch.obs_dim != self.obs_dim or batch.act_dim != self.act_dim:
            raise ValueError(
                f"{self.name}: batch has obs {batch.obs_dim}/action {batch.act_dim} columns, "
                f"buffer expects {self.obs_dim}/{self.act_dim}"
            )
        mask = batch.finite_mask()
        bad = int((~mask).sum())
        if bad:
            self.rejected += bad
            log.warning("%s: rejected %d non-finite transition(s) (%d in total)", self.name, bad, self.rejected)
            batch = batch.take(mask)
        n = len(batch)
        if n == 0:
            return bad
        if n > self.capacity:  # only the newest rows survive
            batch = batch.take(slice(n - self.capacity, n))
            n = self.capacity
        idx = (self.pos + np.arange(n)) % self.capacity
        for name in FIELDS:
            self._arrays[name][idx] = getattr(batch, name)
        self.pos = int((self.pos + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)
        self.total_added += n
        return bad

    def _ordered_idx(self) -> np.ndarray:
        """Indices of the stored rows, oldest first."""
        if self.size < self.capacity:
            return np.arange(self.size)
        return (self.pos + np.arange(self.capacity)) % self.capacity

    def sample(self, n: int, rng: np.random.Generator) -> Batch:
        """``n`` rows uniformly with replacement."""
        if self.size == 0:
            raise ValueError(f"{self.name}: cannot sample from an empty buffer")
        idx = rng.integers(0, self.size, size=n)
        return self.take(idx)

    def take(self, idx: np.ndarray) -> Batch:
        return Batch(**{name: self._arrays[name][idx] for name in FIELDS})

    def all(self) -> Batch:
        """Every stored row, oldest first."""
        return self.take(self._ordered_idx())

    def clear(self) -> None:
        self.size = 0
        self.pos = 0

    def resize(self, capacity: int) -> None:
        """Change capacity keeping the newest rows (MBPO resizes the model buffer when k changes)."""
        if capacity == self.capacity:
            return
        data = self.all()
        self.capacity = int(capacity)
        self._alloc(self.capacity)
        self.size = 0
        self.pos = 0
        total, rej = self.total_added, self.rejected
        self.add(data)
        self.total_added, self.rejected = total, rej

    def state_dict(self) -> dict[str, Any]:
        """Raw ring contents and position, so a restored buffer samples exactly like the original."""
        return {
            "capacity": self.capacity,
            "obs_dim": self.obs_dim,
            "act_dim": self.act_dim,
            "rejected": self.rejected,
            "total_added": self.total_added,
            "size": self.size,
            "pos": self.pos,
            "arrays": {k: v[: self.size].copy() for k, v in self._arrays.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (state["obs_dim"], state["act_dim"]) != (self.obs_dim, self.act_dim):
            raise ValueError(
                f"{self.name}: checkpoint buffer has obs/action dims {state['obs_dim']}/{state['act_dim']}, "
                f"expected {self.obs_dim}/{self.act_dim}"
            )
        self.capacity = int(state["capacity"])
        self._alloc(self.capacity)
        self.size, self.pos = int(state["size"]), int(state["pos"])
        for k, v in state["arrays"].items():
            self._arrays[k][: self.size] = v
        self.rejected = int(state["rejected"])
        self.total_added = int(state["total_added"])


def sample_mixed(
    real: ReplayBuffer,
    model: ReplayBuffer | None,
    n: int,
    real_ratio: float,
    rng: np.random.Generator,
    n_batches: int = 1,
) -> Batch:
    """``n_batches`` batches of ``n`` rows back to back; each holds ``round(n * real_ratio)`` real rows, then model
    rows (MBPO mixes within every batch). One call for all G batches of a real step: numpy's per-call overhead
    is paid once, not G times; batch ``i`` is ``take(slice(i * n, (i + 1) * n))``."""
    if model is None or len(model) == 0 or real_ratio >= 1.0:
        return real.sample(n * n_batches, rng)
    n_real = int(round(n * real_ratio))
    n_model = n - n_real
    if n_real == 0:
        return model.sample(n * n_batches, rng)
    if n_model == 0:
        return real.sample(n * n_batches, rng)
    r, m = real.sample(n_real * n_batches, rng), model.sample(n_model * n_batches, rng)

    def interleave(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        a = a.reshape(n_batches, n_real, *a.shape[1:])
        b = b.reshape(n_batches, n_model, *b.shape[1:])
        return np.concatenate([a, b], axis=1).reshape(n_batches * n, *a.shape[2:])

    return Batch(**{name: interleave(getattr(r, name), getattr(m, name)) for name in FIELDS})
