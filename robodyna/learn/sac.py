"""Soft actor-critic, built for speed on small CPUs (Haarnoja et al. 2018).

* Twin Q-functions (clipped double-Q, Fujimoto et al. 2018) fused into ONE batched network (weights ``[2, in, out]``).
* Polyak-averaged target critic (``torch._foreach_lerp_``), automatic entropy tuning towards ``target_entropy``
  (default ``-|A|``; Haarnoja et al. 2018b §5).
* Tanh-squashed Gaussian actor; the env sees actions scaled to its Box bounds (physical units), the networks
  see ``[-1, 1]``. Observation normalisation lives inside the actor so the exported graph takes raw obs.
* The losses and their gradients come from :mod:`robodyna.learn.sac_grad` (backward written by hand, checked
  against autograd in the tests); one fused Adam step updates critic, actor and α together.
* Optional ``bf16_hidden``: hidden×hidden matmuls with bfloat16 operands (fp32 accumulation, results, master
  weights) for CPUs with AVX512-BF16/AMX; off by default (fp32 everywhere).
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from robodyna.data.batch import Batch
from robodyna.learn.action_filter import ActionFilter
from robodyna.learn.config import SACConfig
from robodyna.learn.sac_grad import LOG_STD_MAX, LOG_STD_MIN, Grads, Nets, sac_grads

log = logging.getLogger(__name__)


class DivergenceError(FloatingPointError):
    """Training produced NaN/inf losses or exploding Q values."""


class Actor(nn.Module):
    """obs (raw) -> (mean, log_std) of the pre-tanh Gaussian; obs normalisation inside."""

    obs_mean: torch.Tensor  # registered buffers (declared for type checkers)
    obs_std: torch.Tensor

    def __init__(self, obs_dim: int, act_dim: int, hidden: int, layers: int) -> None:
        super().__init__()
        dims = [obs_dim] + [hidden] * layers
        mods: list[nn.Module] = []
        for din, dout in zip(dims[:-1], dims[1:]):
            mods += [nn.Linear(din, dout), nn.ReLU()]
        self.trunk = nn.Sequential(*mods)
        self.head = nn.Linear(hidden, 2 * act_dim)
        self.act_dim = act_dim
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def normalize(self, obs: torch.Tensor) -> torch.Tensor:
        return (obs - self.obs_mean) / self.obs_std

    def forward_normalized(self, obs_n: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.head(self.trunk(obs_n)).split(self.act_dim, dim=-1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(weight, bias) of each hidden layer, then of the head."""
        lin = [m for m in self.trunk if isinstance(m, nn.Linear)] + [self.head]
        return [(m.weight, m.bias) for m in lin]

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.forward_normalized(self.normalize(obs))


class DeterministicPolicy(nn.Module):
    """Exportable: raw obs ``[B, O]`` -> deterministic action in physical units ``[B, A]``."""

    scale: torch.Tensor  # registered buffers (declared for type checkers)
    offset: torch.Tensor

    def __init__(self, actor: Actor, low: np.ndarray, high: np.ndarray, action_filter: nn.Module | None = None) -> None:
        super().__init__()
        self.actor = actor
        self.register_buffer("scale", torch.as_tensor((high - low) / 2.0, dtype=torch.float32))
        self.register_buffer("offset", torch.as_tensor((high + low) / 2.0, dtype=torch.float32))
        self.action_filter = action_filter  # the robot's safety filter as the graph's last step (policy_filter)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        mean, _ = self.actor(obs)
        a = torch.tanh(mean) * self.scale + self.offset
        return a if self.action_filter is None else self.action_filter(obs, a)


class TwinCritic(nn.Module):
    """Two Q-networks as one batched MLP, optionally layer-normed before every hidden ReLU; ``forward(x) -> [2, B]``."""

    def __init__(self, in_dim: int, hidden: int, layers: int, n: int = 2, layer_norm: bool = False) -> None:
        super().__init__()
        self.layer_norm = layer_norm
        dims = [in_dim] + [hidden] * layers + [1]
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for din, dout in zip(dims[:-1], dims[1:]):
            bound = 1.0 / math.sqrt(din)  # nn.Linear's default init, per member
            self.weights.append(nn.Parameter(torch.empty(n, din, dout).uniform_(-bound, bound)))
            self.biases.append(nn.Parameter(torch.empty(n, 1, dout).uniform_(-bound, bound)))
        self.n = n

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.unsqueeze(0).expand(self.n, -1, -1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = torch.baddbmm(b, h, w)
            if i < last:
                h = F.relu(F.layer_norm(h, h.shape[-1:]) if self.layer_norm else h)
        return h.squeeze(-1)

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return list(zip(self.weights, self.biases))


@dataclass
class UpdateStats:
    critic_loss: float
    actor_loss: float
    alpha: float
    alpha_loss: float
    q_mean: float
    q_max_abs: float
    entropy: float


@functools.cache
def cpu_has_bf16() -> bool:
    """True when the CPU has native bfloat16 dot products (Linux ``/proc/cpuinfo`` flags ``avx512_bf16`` or
    ``amx_bf16``). Without them a bfloat16 matmul is emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(setting: bool | str) -> bool:
    """Resolve ``sac.bf16_hidden`` (true, false or "auto")."""
    return cpu_has_bf16() if setting == "auto" else bool(setting)


def has_cxx_compiler() -> bool:
    """A C++ compiler on PATH (``$CXX``, ``c++`` or ``g++``): what torch.compile's CPU backend builds kernels with."""
    return any(shutil.which(c) for c in (os.environ.get("CXX", ""), "c++", "g++") if c)


def use_compile(setting: bool | str) -> bool:
    """Resolve ``sac.compile`` (true, false or "auto")."""
    return has_cxx_compiler() if setting == "auto" else bool(setting)


@functools.cache
def compiled_sac_grads() -> Callable[..., Grads]:
    """:func:`sac_grads` through torch.compile (one compiled function per process, static shapes): inductor fuses
    the elementwise tails of every layer into the matmuls' neighbours and drops the per-op dispatch."""
    return torch.compile(sac_grads, dynamic=False)  # type: ignore[return-value]


class SAC:
    """SAC agent; ``update(batch)`` does one gradient step, ``act(obs, rng)`` returns physical actions."""

    def __init__(
        self, obs_dim: int, act_dim: int, action_low: np.ndarray, action_high: np.ndarray, cfg: SACConfig,
        seed: int = 0,
    ) -> None:
        self.obs_dim, self.act_dim, self.cfg = obs_dim, act_dim, cfg
        self.low = np.asarray(action_low, dtype=np.float32)
        self.high = np.asarray(action_high, dtype=np.float32)
        if self.low.shape != (act_dim,) or not np.all(np.isfinite(self.low) & np.isfinite(self.high)):
            raise ValueError(f"SAC needs finite action bounds of shape ({act_dim},), got {self.low}..{self.high}")
        self._scale = torch.as_tensor((self.high - self.low) / 2.0)
        self._offset = torch.as_tensor((self.high + self.low) / 2.0)
        torch.manual_seed(seed)
        self.actor = Actor(obs_dim, act_dim, cfg.hidden, cfg.layers)
        self.critic = TwinCritic(obs_dim + act_dim, cfg.hidden, cfg.layers, layer_norm=cfg.critic_layer_norm)
        self.critic_target = TwinCritic(obs_dim + act_dim, cfg.hidden, cfg.layers, layer_norm=cfg.critic_layer_norm)
        self.critic_target.load_state_dict(self.critic.state_dict())
        self.critic_target.requires_grad_(False)
        self.log_alpha = nn.Parameter(torch.tensor(math.log(cfg.init_alpha)), requires_grad=cfg.auto_alpha)
        self.target_entropy = float(-act_dim if cfg.target_entropy is None else cfg.target_entropy)
        # One parameter group (same lr for all) unless the critics have their own step size: the optimiser's
        # per-group bookkeeping is per-step overhead.
        policy = [*self.actor.parameters(), *([self.log_alpha] if cfg.auto_alpha else [])]
        groups: list[dict[str, Any]] = (
            [{"params": [*self.critic.parameters(), *policy], "lr": cfg.lr}] if cfg.critic_lr is None else
            [{"params": list(self.critic.parameters()), "lr": cfg.critic_lr}, {"params": policy, "lr": cfg.lr}])
        self.optim = torch.optim.Adam(groups, lr=cfg.lr, fused=True)
        self._online: list[torch.Tensor] = list(self.critic.parameters())
        self._target: list[torch.Tensor] = list(self.critic_target.parameters())
        self._nets = Nets(self.actor.layers(), self.critic.layers(), self.critic_target.layers(),
                          use_bf16(cfg.bf16_hidden), cfg.critic_layer_norm)
        self.n_updates = 0
        self._actor_stats: dict[str, torch.Tensor] = {}
        self._grads: Callable[..., Grads] = compiled_sac_grads() if use_compile(cfg.compile) else sac_grads
        # the compiled path proves itself on its first call of each graph (full update, critic-only update)
        graphs = {True} if cfg.actor_update_every == 1 else {True, False}  # the `actor` flags updates will use
        self._unproven: set[bool] = set() if self._grads is sac_grads else graphs
        self.action_filter: ActionFilter | None = None
        self.actor_frozen_until = 0  # updates before this one train the critics only (see freeze_actor)

    def freeze_actor(self, n_updates: int) -> None:
        """Train the critics only for the next ``n_updates`` updates (actor and α stay as they are): fine-tuning a
        policy on another system's data, its critic first learns the new values of the policy it has, so the actor
        does not follow a critic in transition (critic warm-up before policy updates in offline-to-online RL:
        Nair et al. 2020, AWAC §5; Lee et al. 2021, "Offline-to-Online RL via Balanced Replay"). A warm-up still
        running is never shortened."""
        self.actor_frozen_until = max(self.actor_frozen_until, self.n_updates + max(0, int(n_updates)))
        if n_updates > 0 and self._grads is not sac_grads:
            self._unproven.add(False)  # the critic-only graph proves itself on its first call

    def reset_actor_moments(self) -> None:
        """Forget Adam's moments (and step count) of the actor's weights: they start from zero at its next update,
        as for a new parameter. For an actor set back to earlier weights, whose moments belong to the steps that
        led away from them (the critics and α keep theirs)."""
        for p in self.actor.parameters():
            self.optim.state.pop(p, None)

    def set_lr(self, lr: float) -> None:
        """Set the step size of the actor and α from now on (a step-size schedule); the critics' is scaled with it
        (``critic_lr / lr`` times it; the same when ``critic_lr`` is None)."""
        if not (math.isfinite(lr) and lr > 0):
            raise ValueError(f"SAC step size must be finite and > 0, got {lr!r}")
        self._set_group_lrs(lr)

    def _set_group_lrs(self, lr: float) -> None:
        groups = self.optim.param_groups
        if self.cfg.critic_lr is not None:
            groups[0]["lr"] = lr * self.cfg.critic_lr / self.cfg.lr
        groups[-1]["lr"] = lr

    def set_action_filter(self, f: ActionFilter | None) -> None:
        """Put the robot's safety filter into the policy (:mod:`robodyna.learn.action_filter`): acting, the
        critic's bootstrap and the actor's objective use filtered actions, and the exported graph ends with it."""
        self.action_filter = f

    # ------------------------------------------------------------------ helpers
    def set_obs_normalizer(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Fix the observation standardisation (done once, from the initial exploration data)."""
        std = np.where(np.asarray(std) < 1e-6, 1.0, std)
        with torch.no_grad():
            self.actor.obs_mean.copy_(torch.as_tensor(mean, dtype=torch.float32))
            self.actor.obs_std.copy_(torch.as_tensor(std, dtype=torch.float32))

    def to_unit(self, action: torch.Tensor) -> torch.Tensor:
        """Physical action -> [-1, 1]."""
        return ((action - self._offset) / self._scale).clamp(-1.0, 1.0)

    def deterministic_policy(self) -> DeterministicPolicy:
        return DeterministicPolicy(self.actor, self.low, self.high, self.action_filter)

    @torch.inference_mode()
    def act(self, obs: np.ndarray, rng: np.random.Generator | None = None, deterministic: bool = False) -> np.ndarray:
        """Physical actions for raw obs ``[N, O]`` (or ``[O]``); stochastic noise drawn from ``rng``."""
        single = obs.ndim == 1
        o = torch.as_tensor(np.atleast_2d(obs), dtype=torch.float32)
        mean, log_std = self.actor(o)
        if deterministic or rng is None:
            u = mean
        else:
            eps = torch.from_numpy(rng.standard_normal(mean.shape, dtype=np.float32))
            u = mean + log_std.exp() * eps
        a = torch.tanh(u) * self._scale + self._offset
        if self.action_filter is not None:
            a = self.action_filter(o, a)
        out = a.numpy()
        return out[0] if single else out

    # ------------------------------------------------------------------ update
    def update(self, batch: Batch) -> dict[str, torch.Tensor]:
        """One SAC gradient step on ``batch`` (physical actions). Returns detached loss tensors."""
        cfg = self.cfg
        with torch.no_grad():
            obs = torch.from_numpy(batch.obs)
            nxt = torch.from_numpy(batch.next_obs)
            act = self.to_unit(torch.from_numpy(batch.action))
            rew = torch.from_numpy(batch.reward)
            notdone = 1.0 - torch.from_numpy(batch.terminated).float()
            n, a = obs.shape[0], self.act_dim
            eps = torch.randn(2, n, a)
            f = self.action_filter
            bounds = (None, None) if f is None else (f.unit_bounds(obs, self._offset, self._scale),
                                                     f.unit_bounds(nxt, self._offset, self._scale))
            args = (self._nets, self.log_alpha, self.actor.normalize(obs), act, rew, notdone,
                    self.actor.normalize(nxt), eps[0], eps[1], cfg.gamma, self.target_entropy, cfg.auto_alpha,
                    *bounds)
            g = self._compute_grads(args, actor=self.n_updates >= self.actor_frozen_until
                                    and self.n_updates % cfg.actor_update_every == 0)
            for (w, b), (gw, gb) in zip(self._nets.critic, g.critic):
                w.grad, b.grad = gw, gb
            if g.actor is not None:  # else a critic-only step: Adam skips parameters without a gradient
                for (w, b), (gw, gb) in zip(self._nets.actor, g.actor):
                    w.grad, b.grad = gw, gb
                assert g.actor_loss is not None and g.alpha_loss is not None and g.logp is not None
                self._actor_stats = {"actor_loss": g.actor_loss, "alpha_loss": g.alpha_loss,
                                     "entropy": -g.logp.mean()}
            else:
                for w, b in self._nets.actor:
                    w.grad = b.grad = None
            self.log_alpha.grad = None if g.log_alpha is None else g.log_alpha.reshape(())
            alpha = self.log_alpha.exp()
        self.optim.step()
        with torch.no_grad():
            torch._foreach_lerp_(self._target, self._online, cfg.tau)
        self.n_updates += 1
        return {
            "critic_loss": g.critic_loss,
            **self._actor_stats,  # of the latest actor update
            "alpha": alpha,
            "q_mean": g.q.mean(),
            "q_max_abs": g.q.abs().max(),
        }

    def _compute_grads(self, args: tuple[Any, ...], actor: bool) -> Grads:
        """:func:`sac_grads`, compiled where configured. With ``compile: auto`` a compilation that fails (no
        working toolchain, an unsupported op) falls back to eager once, with a warning; ``true`` raises."""
        if actor not in self._unproven:
            return self._grads(*args, actor=actor)
        try:
            g = self._grads(*args, actor=actor)
        except Exception as exc:  # noqa: BLE001 - inductor raises many types; only on the first calls
            if self.cfg.compile is True:
                raise RuntimeError(f"sac.compile=true: torch.compile of the SAC update failed: {exc}") from exc
            log.warning("sac.compile=auto: torch.compile of the SAC update failed (%s: %s); using eager",
                        type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
            eager: Callable[..., Grads] = sac_grads
            self._grads, self._unproven = eager, set()
            return eager(*args, actor=actor)
        self._unproven.discard(actor)
        return g

    @property
    def compiled(self) -> bool:
        """Whether updates run through torch.compile (false after an ``auto`` fallback)."""
        return self._grads is not sac_grads

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor.state_dict(),
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "log_alpha": self.log_alpha.detach().clone(),
            "optim": self.optim.state_dict(),
            "n_updates": self.n_updates,
            "dims": (self.obs_dim, self.act_dim),
            "critic_layer_norm": self.critic.layer_norm,
            "low": self.low.copy(),
            "high": self.high.copy(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["dims"]) != (self.obs_dim, self.act_dim):
            raise ValueError(
                f"SAC checkpoint has obs/action dims {tuple(state['dims'])}, expected {(self.obs_dim, self.act_dim)}"
            )
        # LayerNorm has no weights here, so the critic's state loads either way and silently computes another
        # function: refuse the mismatch (checkpoints from before this key say nothing and are not checked)
        ln = state.get("critic_layer_norm")
        if ln is not None and bool(ln) != self.critic.layer_norm:
            raise ValueError(f"SAC checkpoint has critic_layer_norm={bool(ln)}, this config "
                             f"sac.critic_layer_norm={self.critic.layer_norm}")
        self.actor.load_state_dict(state["actor"])
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        self._load_moments(state["optim"])
        # the step sizes are this config's (a fine-tuning run's sac.lr would otherwise be the checkpoint's, silently)
        self._set_group_lrs(self.cfg.lr)
        self.n_updates = int(state["n_updates"])

    def _load_moments(self, optim_state: dict[str, Any]) -> None:
        """Adam's moments from a checkpoint, parameter by parameter: critics, actor, then α where both tune it. A
        checkpoint saved with another grouping (``critic_lr``) or another ``auto_alpha`` still carries over; a fixed
        α keeps no moments, a newly tuned one starts from none."""
        saved = [i for g in optim_state["param_groups"] for i in g["params"]]
        # saved order: critics then actor (then α), in one group or two
        mine = [*self.critic.parameters(), *self.actor.parameters()]
        n_nets = len(mine)
        if len(saved) not in (n_nets, n_nets + 1):
            raise ValueError(f"SAC checkpoint's optimiser holds {len(saved)} parameters, these networks have "
                             f"{n_nets} (+1 with a tuned α)")
        pairs = list(zip(saved[:n_nets], mine, strict=True))
        if self.cfg.auto_alpha and len(saved) == n_nets + 1:
            pairs.append((saved[n_nets], self.log_alpha))
        for i, p in pairs:  # checked before the optimiser's state is replaced (a refusal leaves it as it was)
            for k, v in (optim_state["state"].get(i) or {}).items():
                if k != "step" and torch.is_tensor(v) and v.shape != p.shape:
                    raise ValueError(f"SAC checkpoint's optimiser state {k!r} of parameter {i} has shape "
                                     f"{tuple(v.shape)}, the parameter {tuple(p.shape)}")
        self.optim.state.clear()
        for i, p in pairs:
            st = optim_state["state"].get(i)
            if st is not None:
                # as Optimizer.load_state_dict casts: moments to the parameter's dtype (a checkpoint may hold fp16),
                # the fused step count stays float32
                self.optim.state[p] = {
                    k: (v.detach().to(device=p.device, dtype=torch.float32 if k == "step" else p.dtype, copy=True)
                        if torch.is_tensor(v) else v) for k, v in st.items()}


def check_finite(stats: dict[str, torch.Tensor], max_abs_q: float, where: str) -> None:
    """Raise :class:`DivergenceError` on NaN/inf losses or |Q| above ``max_abs_q``."""
    for k, v in stats.items():
        f = float(v)
        if not math.isfinite(f):
            raise DivergenceError(f"SAC diverged at {where}: {k} is {f}")
    q = float(stats["q_max_abs"])
    if q > max_abs_q:
        raise DivergenceError(f"SAC diverged at {where}: |Q| reached {q:.3g} > max_abs_q={max_abs_q:g}")
