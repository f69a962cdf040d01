"""The onboard safety filter: pure functions from a policy's raw output to the action the robot receives.

Configured per robot in ``robot.yaml`` (``safety:``, :class:`~robodyna.spec.SafetyConfig`, documented in
``robots/README.md``). :func:`filter_action` runs, in order:

1. **invalid output** (wrong shape, NaN or inf) -> the robot's :func:`hold_action`, bit ``nonfinite_rejected``;
2. **workspace box** (optional): end effector outside ``safety.workspace_*_m`` -> hold, bit ``workspace_stop``;
3. **clip** to the action limits, bit ``clamped``;
4. **soft joint limits**: within ``soft_limit_margin_rad`` of a position limit the action component that drives
   the joint further out is bounded, linearly from the full limit at the margin's edge to zero at the hard
   limit and to the full opposite limit one margin beyond it (so the arm is pushed back into the safe range,
   never frozen: moving inward stays allowed), bit ``soft_joint_limit``;
5. **rate limit**: the change from the previously applied action is at most ``max_action_change_frac_per_tick``
   of the action range per component, bit ``rate_limited``.

The hold action (zero torque / zero velocity / zero position delta: stop) is returned as is, without the rate
limit: stopping is always allowed. Every other output lies within the action limits and within the per-tick
change of the previous action (property-tested in ``tests/onboard/test_filter.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robodyna.spec import RobotConfig, RobotSpec, SafetyConfig
from robodyna.tasks.reach import ReachLayout

# Intervention bits (robodyna.data.validate.INTERVENTION_BITS names them in the store).
CLAMPED = 1
RATE_LIMITED = 2
WORKSPACE_STOP = 4
WATCHDOG = 8
ESTOP = 16
INVALID_OUTPUT = 32  # "nonfinite_rejected": NaN/inf or wrong shape
SOFT_JOINT_LIMIT = 64


def hold_action(spec: RobotSpec) -> np.ndarray:
    """The robot's safe hold action: zeros in every action mode (no torque / stop / stay)."""
    return np.zeros(spec.act_dim)


@dataclass(frozen=True)
class FilterParams:
    """Arrays the filter needs, derived once from the spec and ``robot.yaml``'s ``safety:`` section."""

    low: np.ndarray
    high: np.ndarray
    max_change_per_tick: np.ndarray  # action units per tick
    q_low_rad: np.ndarray
    q_high_rad: np.ndarray
    soft_margin_rad: float
    workspace_low_m: np.ndarray | None
    workspace_high_m: np.ndarray | None
    hold: np.ndarray

    def __post_init__(self) -> None:
        # plain-float copies: for a few joints, scalar Python is several times cheaper than numpy calls
        for name in ("low", "high", "max_change_per_tick", "q_low_rad", "q_high_rad"):
            object.__setattr__(self, f"_{name}", [float(x) for x in getattr(self, name)])

    @classmethod
    def from_config(cls, spec: RobotSpec, cfg: RobotConfig) -> FilterParams:
        return cls.from_safety(spec, cfg.safety)

    @classmethod
    def from_safety(cls, spec: RobotSpec, s: SafetyConfig) -> FilterParams:
        low, high = spec.action_low_array, spec.action_high_array
        return cls(
            low=low, high=high, max_change_per_tick=(high - low) * s.max_action_change_frac_per_tick,
            q_low_rad=np.asarray(spec.joint_low_rad, np.float64),
            q_high_rad=np.asarray(spec.joint_high_rad, np.float64),
            soft_margin_rad=s.soft_limit_margin_rad,
            workspace_low_m=None if s.workspace_low_m is None else np.asarray(s.workspace_low_m, np.float64),
            workspace_high_m=None if s.workspace_high_m is None else np.asarray(s.workspace_high_m, np.float64),
            hold=hold_action(spec),
        )


def valid_output(raw: object, act_dim: int) -> list[float] | None:
    """``raw`` as a list of floats if it has shape ``(act_dim,)``, a real dtype and only finite values, else None."""
    if type(raw) is not np.ndarray or raw.shape != (act_dim,) or raw.dtype.kind != "f":
        try:
            raw = np.asarray(raw)
        except (TypeError, ValueError):
            return None
        if raw.shape != (act_dim,) or raw.dtype.kind not in "fiu":  # complex, bool, strings, objects: refused
            return None
    vals: list[float] = [float(x) for x in raw.tolist()]
    return vals if all(map(math.isfinite, vals)) else None


def soft_bounds(q: float, q_low: float, q_high: float, margin: float, low: float, high: float) -> tuple[float, float]:
    """Action bounds ``(lo, hi)`` of one joint at position ``q`` (see the module docstring, step 4)."""
    m = margin if margin > 1e-9 else 1e-9
    pen_hi = (q - (q_high - m)) / m  # 0 at the margin's edge, 1 at the limit
    pen_lo = ((q_low + m) - q) / m
    if q >= q_high:  # at or past a limit nothing outward, exactly (rounding must not leave a 1e-16 outward bound)
        pen_hi = max(pen_hi, 1.0)
    if q <= q_low:
        pen_lo = max(pen_lo, 1.0)
    hi = high if pen_hi <= 0 else max(high * (1.0 - pen_hi), low)
    lo = low if pen_lo <= 0 else min(low * (1.0 - pen_lo), high)
    return lo, hi


def soft_limit_bounds(q_rad: np.ndarray, q_low_rad: np.ndarray, q_high_rad: np.ndarray, margin_rad: float,
                      low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`soft_bounds` of every joint, as arrays. Inside the safe range the bounds are the action limits."""
    b = [soft_bounds(float(q), float(ql), float(qh), margin_rad, float(lo), float(hi))
         for q, ql, qh, lo, hi in zip(q_rad, q_low_rad, q_high_rad, low, high)]
    return np.array([x[0] for x in b]), np.array([x[1] for x in b])


def rate_limit(action: np.ndarray, previous: np.ndarray, max_change: np.ndarray) -> np.ndarray:
    """``action`` moved at most ``max_change`` away from ``previous`` per component."""
    return previous + np.clip(action - previous, -max_change, max_change)


def in_box(p: np.ndarray, low: np.ndarray, high: np.ndarray) -> bool:
    """True when ``p`` lies inside the axis-aligned box (NaN is outside)."""
    return bool(np.all(p >= low) and np.all(p <= high))


def filter_action(raw: object, previous: np.ndarray, q_rad: np.ndarray, ee_m: np.ndarray | None,
                  p: FilterParams) -> tuple[np.ndarray, int]:
    """The action to send and the intervention bitmask, from the policy's ``raw`` output.

    ``previous`` is the action applied on the previous tick (the hold action after a reset), ``q_rad`` the
    measured joint positions, ``ee_m`` the end-effector position (used only with a workspace box).
    """
    low: list[float] = p._low  # type: ignore[attr-defined]
    high: list[float] = p._high  # type: ignore[attr-defined]
    a = valid_output(raw, len(low))
    if a is None:
        return p.hold.copy(), INVALID_OUTPUT
    if p.workspace_low_m is not None and p.workspace_high_m is not None and ee_m is not None \
            and not in_box(ee_m, p.workspace_low_m, p.workspace_high_m):
        return p.hold.copy(), WORKSPACE_STOP
    maxc: list[float] = p._max_change_per_tick  # type: ignore[attr-defined]
    qlo: list[float] = p._q_low_rad  # type: ignore[attr-defined]
    qhi: list[float] = p._q_high_rad  # type: ignore[attr-defined]
    margin = p.soft_margin_rad
    prev = previous.tolist()
    q = q_rad.tolist()
    bits = 0
    out = []
    for i, x in enumerate(a):
        lo, hi = low[i], high[i]
        c = lo if x < lo else hi if x > hi else x  # 3. clip
        if c != x:
            bits |= CLAMPED
        if margin > 0:  # 4. soft joint limits
            slo, shi = soft_bounds(q[i], qlo[i], qhi[i], margin, lo, hi)
            d = slo if c < slo else shi if c > shi else c
            if d != c:
                bits |= SOFT_JOINT_LIMIT
            c = d
        pv, mc = prev[i], maxc[i]  # 5. rate limit
        e = pv + mc if c - pv > mc else pv - mc if c - pv < -mc else c
        if e != c:
            bits |= RATE_LIMITED
        out.append(lo if e < lo else hi if e > hi else e)  # previous is within limits: guards rounding only
    return np.array(out), bits


class FilteredPolicy:
    """``policy(obs) -> raw action`` behind the safety filter, tick by tick as the onboard controller runs it
    (:func:`filter_action` with the previously applied action, the hold action after :meth:`reset`, and the joint
    positions and end effector read from the reach observation). For scoring a policy on the robot it is deployed
    to: the controller never sends an unfiltered action, so an unfiltered score describes no deployment."""

    def __init__(self, policy: object, params: FilterParams) -> None:
        self.policy, self.params = policy, params
        self.n = len(params.low)
        self._ee = ReachLayout(self.n).ee
        self.prev = params.hold.copy()
        self.ticks = 0
        self.interventions = 0  # ticks the filter changed the action on

    def reset(self) -> None:
        """A new episode: the previous action is the hold action again."""
        self.prev = self.params.hold.copy()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        n = self.n
        raw = self.policy(obs)  # type: ignore[operator]
        applied, bits = filter_action(raw, self.prev, obs[:n], obs[self._ee], self.params)
        self.prev = applied
        self.ticks += 1
        self.interventions += bits != 0
        return applied.astype(np.float32)
