"""Symmetry augmentation: train on transitions moved into equivalent frames of the task.

When a task's dynamics and reward are invariant under a transformation of the observation (for a planar arm
without gravity: turning the whole scene about the base), every transition seen in one frame is equally valid in
all others. Transforming a fraction of every SAC batch (the same transformation on ``obs`` and ``next_obs``,
action, reward and termination unchanged) lets the critic and actor learn in every frame from data gathered in
a few -- the data augmentation of RAD/DrQ (Laskin et al. 2020; Kostrikov et al. 2020) with an exact symmetry of
the task instead of an image perturbation. The model is not involved: its inputs stay the real data's.

A task declares its symmetry through ``task_fns.sample_symmetry(n, rng)`` and ``task_fns.apply_symmetry(obs, g)``;
:func:`supports_symmetry` tells. A task whose symmetry holds only inside a region (a joint limit breaks a turn)
also gives ``task_fns.symmetry_valid(obs) -> [N] bool``: a row is moved only when its ``obs`` and ``next_obs`` are
valid both before and after the move; the others keep their frame.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from robodyna.data.batch import Batch
from robodyna.tasks.gym import task_declares


def supports_symmetry(task_fns: Any) -> bool:
    """True when ``task_fns`` declares a symmetry (sample and apply)."""
    return task_declares(task_fns, ("sample_symmetry", "apply_symmetry"), "has_symmetry")


def augment_symmetry(batch: Batch, task_fns: Any, fraction: float, rng: np.random.Generator) -> Batch:
    """A copy of ``batch`` in which a random ``fraction`` of rows are moved into a random equivalent frame."""
    rows = np.flatnonzero(rng.random(len(batch)) < fraction)
    if rows.size == 0:
        return batch
    g = task_fns.sample_symmetry(rows.size, rng)
    o2, n2 = task_fns.apply_symmetry(batch.obs[rows], g), task_fns.apply_symmetry(batch.next_obs[rows], g)
    valid = getattr(task_fns, "symmetry_valid", None)
    if callable(valid):
        ok = valid(batch.obs[rows]) & valid(batch.next_obs[rows]) & valid(o2) & valid(n2)
        rows, o2, n2 = rows[ok], o2[ok], n2[ok]
    obs, nxt = batch.obs.copy(), batch.next_obs.copy()
    obs[rows], nxt[rows] = o2, n2
    return Batch(obs, batch.action, batch.reward, nxt, batch.terminated, batch.truncated)
