"""Dynamics models in the task's own coordinates (``model_inputs: coordinates``).

An ensemble that reads an arm's observation ``[cos q, sin q, q̇, ...]`` must learn that one step turns
``cos q`` into ``cos(q + q̇ dt)``: a product of the observation's columns that a few episodes of data pin down
badly, and one that depends on the shoulder angle even where the physics does not. A task that knows its
generalised coordinates declares them (:class:`ModelCoordinates`): the ensemble then predicts the change of the
joint angles and velocities (nearly linear over one control step: Δq ≈ q̇ dt) from only the inputs the
dynamics depend on — for a planar arm without gravity, not the shoulder angle, so the model is exactly
invariant to turning the arm about its base (the symmetry of :mod:`robodyna.learn.symmetry`, built into the
model instead of learned from data). The predicted coordinates are mapped back to an observation by the task's
kinematics (joint limits, fingertip position), so every model transition is one the robot could produce.

:class:`CoordinateModel` wraps a :class:`~robodyna.learn.ensemble.DynamicsEnsemble` and has the part of its
interface the loop uses (``fit``, ``step_with_std``, state dicts): rollouts and model-error measurement use it
unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from robodyna.data.batch import Batch
from robodyna.tasks.coords import ModelCoordinates

if TYPE_CHECKING:  # the coordinates themselves are plain numpy (task definitions import them without torch)
    from robodyna.learn.config import EnsembleConfig
    from robodyna.learn.ensemble import FitReport


class CoordinateModel:
    """A dynamics ensemble over a task's :class:`ModelCoordinates`, with the observation-level interface."""

    def __init__(self, coords: ModelCoordinates, act_dim: int, cfg: EnsembleConfig, seed: int = 0) -> None:
        from robodyna.learn.ensemble import DynamicsEnsemble

        self.coords = coords
        self.ensemble = DynamicsEnsemble(coords.dim, act_dim, cfg, seed=seed, input_columns=coords.input_columns)

    def _encode(self, obs: np.ndarray) -> np.ndarray:
        z = np.asarray(self.coords.encode(obs), dtype=np.float32)
        if z.shape != (len(obs), self.coords.dim):
            raise ValueError(f"model coordinates: encode gave shape {z.shape}, expected {(len(obs), self.coords.dim)}")
        return z

    def to_coordinates(self, data: Batch) -> Batch:
        """``data`` with ``obs``/``next_obs`` in coordinates; angle changes unwrapped to [−π, π)."""
        z, z_next = self._encode(data.obs), self._encode(data.next_obs)
        for c in self.coords.angle_columns:
            z_next[:, c] = z[:, c] + (z_next[:, c] - z[:, c] + np.pi) % (2 * np.pi) - np.pi
        return Batch.create(z, data.action, data.reward, z_next, data.terminated, data.truncated)

    def fit(self, data: Batch, rng: np.random.Generator) -> FitReport:
        """Fit the ensemble on real transitions, in coordinates (validation errors are in coordinate units)."""
        return self.ensemble.fit(self.to_coordinates(data), rng)

    def step_with_std(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        rng: np.random.Generator,
        members: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """As :meth:`DynamicsEnsemble.step_with_std`; ``‖σ‖`` is in coordinate units."""
        z_next, reward, members, std = self.ensemble.step_with_std(self._encode(obs), action, rng, members,
                                                                   deterministic)
        next_obs = np.asarray(self.coords.decode(obs, z_next), dtype=np.float32)
        return next_obs, reward, members, std

    @property
    def fitted(self) -> bool:
        return self.ensemble.fitted

    @property
    def elites(self) -> np.ndarray:
        return self.ensemble.elites

    def state_dict(self) -> dict[str, Any]:
        return {"coordinates": self.coords.dim, **self.ensemble.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("coordinates") != self.coords.dim:
            raise ValueError("model checkpoint was not trained in this task's model coordinates "
                             f"(model_inputs differs): it has {state.get('coordinates')!r}, "
                             f"expected coordinates of dimension {self.coords.dim}")
        self.ensemble.load_state_dict({k: v for k, v in state.items() if k != "coordinates"})
