"""A task's generalised coordinates for the dynamics model (``model_inputs: coordinates``).

Declared by a task next to its reward (plain numpy); :class:`robodyna.learn.coords.CoordinateModel` fits an
ensemble in them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ModelCoordinates:
    """A task's model coordinates.

    ``encode(obs [N, O]) -> z [N, D]``: the coordinates (angles in radians, velocities, ...).
    ``decode(obs [N, O], z_next [N, D]) -> next_obs [N, O]``: the observation after ``obs`` whose coordinates are
    ``z_next`` (goal columns kept from ``obs``, derived columns from the kinematics).
    ``angle_columns``: columns of ``z`` that are angles; their one-step change is wrapped to [−π, π) so that
    crossing ±π is a small step, not a jump of 2π.
    ``input_columns``: the columns of ``z`` the dynamics depend on (the network's inputs besides the action).
    """

    dim: int
    encode: Callable[[np.ndarray], np.ndarray]
    decode: Callable[[np.ndarray, np.ndarray], np.ndarray]
    input_columns: tuple[int, ...]
    angle_columns: tuple[int, ...] = ()
