"""The onboard safety filter inside the policy: train, roll out and export actions the robot receives unchanged.

The controller passes every policy output through :func:`robodyna.onboard.filter.filter_action` (clip, soft joint
limits, rate limit). A policy trained without it is trained on actions the robot never receives: on laggy reacher2
the rate limit changes about a third of a sim-trained policy's torques. With ``policy_filter: true`` the learner
applies the same steps as a function of the observation (joint positions, and the previously applied action from
the observation's action history), so that

- model rollouts apply what the robot would apply (the real rows already hold applied actions);
- the critic's bootstrap and the actor's objective evaluate filtered actions; the actor's gradient passes the
  filter unchanged (straight-through; the projection is piecewise the identity);
- the exported ONNX graph ends with the filter, and the controller's own filter then changes nothing.

Without an action history in the observation the rate limit is not known to the policy and only the clip and the
soft joint limits are applied. The workspace box (a hold, not a projection) is left to the controller.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from robodyna.learn.sac_grad import apply_bounds
from robodyna.onboard.filter import FilterParams
from robodyna.spec import RobotSpec
from robodyna.tasks.reach import ReachLayout

# Every bound is drawn this share of the action range inside the controller's (2e-7 N*m on reacher2), so that
# float32 rounding (of the output, of the observed previous action) never makes the controller's filter trim an
# action the policy already filtered.
_INSIDE = 1e-6


class ActionFilter(nn.Module):
    """``forward(obs, action) -> action`` in physical units, batched: the filter's clip, soft joint limits and
    rate limit (:func:`robodyna.onboard.filter.filter_action`, steps 3-5) with the joint positions ``obs[:, :n]``
    and the previous action ``obs[:, prev_at : prev_at + A]``."""

    low: torch.Tensor
    high: torch.Tensor
    eps: torch.Tensor
    max_change: torch.Tensor
    q_low: torch.Tensor
    q_high: torch.Tensor

    def __init__(self, params: FilterParams, n_joints: int, prev_at: int | None) -> None:
        super().__init__()
        f32 = torch.float32
        eps = _INSIDE * (np.asarray(params.high) - np.asarray(params.low))
        self.register_buffer("low", torch.as_tensor(params.low + eps, dtype=f32))
        self.register_buffer("high", torch.as_tensor(params.high - eps, dtype=f32))
        self.register_buffer("eps", torch.as_tensor(eps, dtype=f32))
        self.register_buffer("max_change", torch.as_tensor(params.max_change_per_tick - 2 * eps, dtype=f32))
        self.register_buffer("q_low", torch.as_tensor(params.q_low_rad[: len(params.low)], dtype=f32))
        self.register_buffer("q_high", torch.as_tensor(params.q_high_rad[: len(params.low)], dtype=f32))
        self.margin = float(params.soft_margin_rad)
        self.n = int(n_joints)
        self.act_dim = len(params.low)
        self.prev_at = prev_at

    def bounds(self, obs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Per row: the soft-limit bounds ``(lo, hi)`` and the rate bounds ``(lo, hi)`` (±inf without a history)."""
        a = self.act_dim
        lo, hi = self.low.expand(obs.shape[0], a), self.high.expand(obs.shape[0], a)
        if self.margin > 0 and self.n == a:  # one action per joint: the soft limits apply per component
            q = obs[:, :a]
            m = max(self.margin, 1e-9)
            pen_hi = (q - (self.q_high - m)) / m
            pen_lo = ((self.q_low + m) - q) / m
            pen_hi = torch.where(q >= self.q_high, pen_hi.clamp(min=1.0), pen_hi)
            pen_lo = torch.where(q <= self.q_low, pen_lo.clamp(min=1.0), pen_lo)
            # the controller's bounds from its own limits, then drawn inside by eps (the clip's limits already are)
            h, lo_ = self.high + self.eps, self.low - self.eps
            hi = torch.where(pen_hi <= 0, h, torch.maximum(h * (1.0 - pen_hi), lo_)) - self.eps
            lo = torch.where(pen_lo <= 0, lo_, torch.minimum(lo_ * (1.0 - pen_lo), h)) + self.eps
        if self.prev_at is None:
            inf = torch.full_like(lo, float("inf"))
            return lo, hi, -inf, inf
        prev = obs[:, self.prev_at : self.prev_at + a]
        return lo, hi, prev - self.max_change, prev + self.max_change

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return apply_bounds(action.clamp(self.low, self.high), self.bounds(obs)).clamp(self.low, self.high)

    def unit_bounds(self, obs: torch.Tensor, offset: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """:meth:`bounds` in the agent's [-1, 1] action units (``a_unit = (a - offset) / scale``)."""
        return tuple((b - offset) / scale for b in self.bounds(obs))


def policy_filter_for(task_fns: Any, spec: RobotSpec) -> ActionFilter:
    """The filter of the robot the task belongs to (its ``safety`` settings and observation layout)."""
    safety = getattr(task_fns, "safety", None)
    if safety is None:
        raise ValueError(f"policy_filter=true: {spec.name}'s task carries no safety settings (robot tasks only; "
                         "set policy_filter=false)")
    lay = ReachLayout(spec.n_joints)
    history = int(getattr(task_fns, "action_history", 0))
    prev_at = lay.history_start if history >= 1 else None
    return ActionFilter(FilterParams.from_safety(spec, safety), lay.n_joints, prev_at)


def filter_numpy(f: ActionFilter, obs: np.ndarray, action: np.ndarray) -> np.ndarray:
    """:class:`ActionFilter` on numpy rows (float32)."""
    with torch.no_grad():
        return f(torch.as_tensor(np.atleast_2d(obs), dtype=torch.float32),
                 torch.as_tensor(np.atleast_2d(action), dtype=torch.float32)).numpy()
