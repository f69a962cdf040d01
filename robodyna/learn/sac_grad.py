"""The SAC losses and their gradients, with the backward pass written by hand (no autograd graph).

Same mathematics as SAC (Haarnoja et al. 2018; 2018b §5, automatic α):

* critic:  ``L_Q = ½ Σ_m mean_b (Q_m(s, a) − y)²``,  ``y = r + γ (1 − d) (min_m Q̄_m(s', a') − α log π(a'|s'))``
* actor:   ``L_π = mean_b (α log π(ã|s) − min_m Q_m(s, ã))`` with ``ã`` reparameterised through a tanh-Gaussian,
  Q's weights held fixed (the simultaneous-gradient form of the original algorithm);
* α:       ``L_α = −mean_b log α (log π(ã|s) + H̄)``.

Why by hand: on a small CPU the update of a 256-wide SAC is bound by ten 256×256×256 matmuls; autograd adds a
graph, a mask tensor per ReLU and generic kernels for the 1-wide Q output layer (a GEMV that costs as much as a
quarter of a big matmul). Here each layer's backward is the two matmuls it needs, the ReLU masks are fused
(``threshold_backward``), and the Q output layer is a multiply-reduce. ``tests/learn/test_sac_grad.py`` checks
every gradient against autograd.

Optional ``bf16``: the hidden×hidden matmuls (forward and backward) take bfloat16 operands with float32
accumulation and results; everything else stays float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0
_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)
_LOG2 = math.log(2.0)
_relu_grad = torch.ops.aten.threshold_backward
_LN_EPS = 1e-5


@dataclass
class Nets:
    """Plain tensors of the actor, critic and target critic (views of the modules' parameters).

    ``actor``: ``[(W [out, in], b [out]), ...]`` hidden layers then the head (mean | log_std);
    ``critic``/``target``: ``[(W [n, in, out], b [n, 1, out]), ...]``, the last layer 1 wide.
    """

    actor: list[tuple[Tensor, Tensor]]
    critic: list[tuple[Tensor, Tensor]]
    target: list[tuple[Tensor, Tensor]]
    bf16: bool = False
    critic_layer_norm: bool = False  # LayerNorm (no affine) between every hidden Linear and its ReLU in the critics


@dataclass
class Grads:
    """Gradients in the layout of :class:`Nets` plus the losses and statistics of this batch."""

    actor: list[tuple[Tensor, Tensor]] | None  # None: a critic-only update
    critic: list[tuple[Tensor, Tensor]]
    log_alpha: Tensor | None
    critic_loss: Tensor
    actor_loss: Tensor | None
    alpha_loss: Tensor | None
    q: Tensor  # [n, B] Q(s, a) of the batch
    logp: Tensor | None  # [B] log π(ã|s)


def _mm(x: Tensor, w: Tensor, bf16: bool) -> Tensor:
    """``x @ w`` (2-D or batched 3-D); bfloat16 operands with float32 result when ``bf16``."""
    if bf16:
        return torch.matmul(x.bfloat16(), w.bfloat16()).float()
    return torch.matmul(x, w)


def _big(w: Tensor) -> bool:
    """A hidden×hidden weight (both sides wide): the matmuls ``bf16`` applies to."""
    return w.shape[-2] > 64 and w.shape[-1] > 64


# ---------------------------------------------------------------------------------------------- actor
def actor_forward(layers: list[tuple[Tensor, Tensor]], x: Tensor, bf16: bool) -> tuple[list[Tensor], Tensor]:
    """Hidden ReLU layers then the linear head; returns (inputs of every layer, head output)."""
    hs = [x]
    h = x
    for w, b in layers[:-1]:
        h = (_mm(h, w.t(), True) + b if bf16 and _big(w) else torch.addmm(b, h, w.t())).relu_()
        hs.append(h)
    w, b = layers[-1]
    return hs, torch.addmm(b, h, w.t())


def actor_backward(
    layers: list[tuple[Tensor, Tensor]], hs: list[Tensor], dout: Tensor, bf16: bool
) -> list[tuple[Tensor, Tensor]]:
    grads: list[tuple[Tensor, Tensor]] = []
    d = dout
    for i in range(len(layers) - 1, -1, -1):
        w, _ = layers[i]
        lowp = bf16 and _big(w)
        grads.append((_mm(d.t(), hs[i], lowp), d.sum(0)))
        if i > 0:
            d = _relu_grad(_mm(d, w, lowp), hs[i], 0)
    grads.reverse()
    return grads


def sample_forward(
    layers: list[tuple[Tensor, Tensor]], obs_n: Tensor, eps: Tensor, bf16: bool
) -> tuple[list[Tensor], Tensor, Tensor, Tensor, Tensor]:
    """Reparameterised tanh-Gaussian sample (SAC App. C): (layer inputs, raw log-std, std, action, log π)."""
    act_dim = eps.shape[1]
    hs, out = actor_forward(layers, obs_n, bf16)
    mean, raw = out[:, :act_dim], out[:, act_dim:]
    log_std = raw.clamp(LOG_STD_MIN, LOG_STD_MAX)
    std = log_std.exp()
    u = mean + std * eps
    a = torch.tanh(u)
    # log N(u; mean, std) − Σ log(1 − tanh²u), the latter in the stable form 2 (log 2 − u − softplus(−2u))
    logp = (-0.5 * eps * eps - log_std - _HALF_LOG_2PI).sum(-1)
    logp = logp - (2.0 * (_LOG2 - u - torch.nn.functional.softplus(-2.0 * u))).sum(-1)
    return hs, raw, std, a, logp


# ---------------------------------------------------------------------------------------------- critic
def critic_forward(
    layers: list[tuple[Tensor, Tensor]], x: Tensor, bf16: bool, layer_norm: bool = False,
) -> tuple[list[Tensor], Tensor, list[tuple[Tensor, Tensor]]]:
    """All members on the same input ``x [B, D]``; returns (inputs of every layer, Q ``[n, B]``, every hidden
    LayerNorm's output before ReLU and reciprocal standard deviation ``[n, B, 1]``, empty without ``layer_norm``)."""
    n = layers[0][0].shape[0]
    h = x.unsqueeze(0).expand(n, -1, -1)
    hs: list[Tensor] = [h]
    norms: list[tuple[Tensor, Tensor]] = []
    for w, b in layers[:-1]:
        h = _mm(h, w, True) + b if bf16 and _big(w) else torch.baddbmm(b, h, w)
        if layer_norm:  # (z − μ) / σ over the features, σ = √(var + ε), no affine part (DroQ; RLPD)
            var, mu = torch.var_mean(h, -1, keepdim=True, correction=0)
            rstd = (var + _LN_EPS).rsqrt()
            h = (h - mu) * rstd
            norms.append((h, rstd))
            h = h.relu()
        else:
            h = h.relu_()
        hs.append(h)
    w, b = layers[-1]  # 1-wide output: multiply-reduce beats a batched GEMV several times
    return hs, (h * w.transpose(1, 2)).sum(-1) + b.squeeze(-1), norms


def _act_backward(dh: Tensor, h: Tensor, norm: tuple[Tensor, Tensor] | None) -> Tensor:
    """Gradient through ReLU from the layer's output ``h``, then through LayerNorm when ``norm`` = (its output
    ``n``, 1/σ) is given: ``(dn − mean dn − n mean(dn n)) / σ``."""
    dn = _relu_grad(dh, h, 0)
    if norm is None:
        return dn
    n, rstd = norm
    return rstd * (dn - dn.mean(-1, keepdim=True) - n * (dn * n).mean(-1, keepdim=True))


def critic_backward(
    layers: list[tuple[Tensor, Tensor]], hs: list[Tensor], dq: Tensor, weights: bool, x_cols: slice | None,
    bf16: bool, norms: list[tuple[Tensor, Tensor]] | None = None,
) -> tuple[list[tuple[Tensor, Tensor]], Tensor | None]:
    """Backprop ``dq [n, B]``: weight gradients (if ``weights``) and d/dx[:, x_cols] summed over members.
    ``norms``: from :func:`critic_forward` of a layer-normed critic."""
    last = len(layers) - 1
    ln: list[tuple[Tensor, Tensor] | None] = list(norms) if norms else [None] * last
    grads: list[tuple[Tensor, Tensor]] = []
    d3 = dq.unsqueeze(-1)  # [n, B, 1]
    w_out = layers[last][0]
    if weights:
        grads.append(((hs[last] * d3).sum(1).unsqueeze(-1), d3.sum(1, keepdim=True)))
    d = _act_backward(d3 * w_out.transpose(1, 2), hs[last], ln[last - 1])  # [n, B, H]
    for i in range(last - 1, -1, -1):
        w = layers[i][0]
        lowp = bf16 and _big(w)
        if weights:
            grads.append((_mm(hs[i].transpose(1, 2), d, lowp), d.sum(1, keepdim=True)))
        if i > 0:
            d = _act_backward(_mm(d, w.transpose(1, 2), lowp), hs[i], ln[i - 1])
    dx = None if x_cols is None else torch.bmm(d, layers[0][0][:, x_cols, :].transpose(1, 2)).sum(0)
    grads.reverse()
    return grads, dx


# ---------------------------------------------------------------------------------------------- SAC
def apply_bounds(a: Tensor, b: tuple[Tensor, ...]) -> Tensor:
    """The safety filter's soft-limit projection, then its rate limit, with its comparisons (the caller clips to
    the action limits before and after; :mod:`robodyna.learn.action_filter`)."""
    slo, shi, rlo, rhi = b
    a = torch.where(a < slo, slo, torch.where(a > shi, shi, a))
    return torch.where(a > rhi, rhi, torch.where(a < rlo, rlo, a))


def sac_grads(
    nets: Nets, log_alpha: Tensor, obs_n: Tensor, act: Tensor, rew: Tensor, notdone: Tensor, nxt_n: Tensor,
    eps_next: Tensor, eps_pi: Tensor, gamma: float, target_entropy: float, auto_alpha: bool,
    bounds_obs: tuple[Tensor, ...] | None = None, bounds_next: tuple[Tensor, ...] | None = None, actor: bool = True,
) -> Grads:
    """Losses and gradients of one SAC update. ``act`` in [-1, 1]; ``obs_n``/``nxt_n`` normalised.
    ``actor=False``: the critic's alone (delayed policy updates), about 45 % less arithmetic.
    ``bounds_obs``/``bounds_next``: the safety filter's per-row bounds in [-1, 1] units
    (:mod:`robodyna.learn.action_filter`): the policy's actions are filtered before the critic sees them, and the
    actor's gradient passes the filter unchanged (straight-through)."""
    bf16 = nets.bf16
    batch, obs_dim = obs_n.shape
    act_dim = act.shape[1]
    alpha = log_alpha.exp()
    # Soft Bellman target from the target critic (clipped double-Q).
    _, _, _, a_next, logp_next = sample_forward(nets.actor, nxt_n, eps_next, bf16)
    if bounds_next is not None:
        a_next = apply_bounds(a_next, bounds_next).clamp(-1.0, 1.0)
    ln = nets.critic_layer_norm
    _, q_next, _ = critic_forward(nets.target, torch.cat([nxt_n, a_next], 1), bf16, ln)
    target = rew + gamma * notdone * (q_next.min(0).values - alpha * logp_next)
    # Critic regression.
    hs, q, rs = critic_forward(nets.critic, torch.cat([obs_n, act], 1), bf16, ln)
    diff = q - target
    critic_loss = 0.5 * diff.pow(2).mean(1).sum()
    critic_g, _ = critic_backward(nets.critic, hs, diff / batch, True, None, bf16, rs)
    if not actor:
        return Grads(None, critic_g, None, critic_loss, None, None, q, None)
    # Actor through the (fixed) critic: only the minimum member carries gradient for each sample.
    ahs, raw, std, a_pi, logp = sample_forward(nets.actor, obs_n, eps_pi, bf16)
    a_in = a_pi if bounds_obs is None else apply_bounds(a_pi, bounds_obs).clamp(-1.0, 1.0)
    khs, q_pi, krs = critic_forward(nets.critic, torch.cat([obs_n, a_in], 1), bf16, ln)
    q_min, who = q_pi.min(0)
    actor_loss = (alpha * logp - q_min).mean()
    dq = torch.zeros_like(q_pi).scatter_(0, who.unsqueeze(0), -1.0 / batch)
    _, da = critic_backward(nets.critic, khs, dq, False, slice(obs_dim, obs_dim + act_dim), bf16, krs)
    assert da is not None
    c = alpha / batch  # d L_π / d log π per sample
    du = da * (1.0 - a_pi * a_pi) + (2.0 * c) * a_pi  # through tanh and the −Σ log(1 − tanh²u) term
    inside = (raw >= LOG_STD_MIN) & (raw <= LOG_STD_MAX)  # clamp passes gradient inside its range
    dlog_std = (du * std * eps_pi - c) * inside
    actor_g = actor_backward(nets.actor, ahs, torch.cat([du, dlog_std], 1), bf16)
    ent_err = logp + target_entropy
    alpha_loss = -(log_alpha * ent_err).mean()
    g_alpha = -ent_err.mean() if auto_alpha else None
    return Grads(actor_g, critic_g, g_alpha, critic_loss, actor_loss, alpha_loss, q, logp)
