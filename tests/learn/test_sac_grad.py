"""The hand-written SAC backward (robodyna.learn.sac_grad) against torch autograd on the same losses."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robodyna.data.batch import Batch
from robodyna.learn.config import SACConfig
from robodyna.learn.sac import SAC, TwinCritic
from robodyna.learn.sac_grad import Nets, sac_grads


def _autograd_reference(agent: SAC, log_alpha: torch.Tensor, inputs: dict, target_entropy: float) -> dict:
    """The SAC losses written the textbook way, differentiated by autograd."""
    obs_n, act, rew, notdone, nxt_n = (inputs[k] for k in ("obs_n", "act", "rew", "notdone", "nxt_n"))
    la = torch.nn.Parameter(log_alpha.clone())
    alpha = la.detach().exp()

    def sample(x: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = agent.actor.forward_normalized(x)
        u = mean + log_std.exp() * eps
        logp = (-0.5 * eps.pow(2) - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - (2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))).sum(-1)  # −Σ log(1 − tanh²u)
        return torch.tanh(u), logp

    with torch.no_grad():
        a_next, logp_next = sample(nxt_n, inputs["eps_next"])
        q_next = agent.critic_target(torch.cat([nxt_n, a_next], -1)).min(0).values
        target = rew + 0.99 * notdone * (q_next - alpha * logp_next)
    critic_loss = 0.5 * (agent.critic(torch.cat([obs_n, act], -1)) - target).pow(2).mean(1).sum()
    a_pi, logp = sample(obs_n, inputs["eps_pi"])
    frozen = [p.detach() for p in agent.critic.parameters()]
    h = torch.cat([obs_n, a_pi], -1).unsqueeze(0).expand(2, -1, -1)
    n_layers = len(frozen) // 2
    for i in range(n_layers):
        h = torch.baddbmm(frozen[n_layers + i], h, frozen[i])
        if i < n_layers - 1:
            h = F.relu(F.layer_norm(h, h.shape[-1:]) if agent.critic.layer_norm else h)
    actor_loss = (alpha * logp - h.squeeze(-1).min(0).values).mean()
    alpha_loss = -(la * (logp.detach() + target_entropy)).mean()
    for p in [*agent.critic.parameters(), *agent.actor.parameters()]:
        p.grad = None
    (critic_loss + actor_loss + alpha_loss).backward()
    return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach(), "log_alpha": la.grad,
            "critic": [(w.grad, b.grad) for w, b in agent.critic.layers()],
            "actor": [(w.grad, b.grad) for w, b in agent.actor.layers()]}


@pytest.fixture
def agent_and_inputs() -> tuple[SAC, dict]:
    torch.manual_seed(0)
    obs_dim, act_dim, batch = 10, 2, 256
    agent = SAC(obs_dim, act_dim, -np.ones(act_dim), np.ones(act_dim), SACConfig(), seed=0)
    with torch.no_grad():  # make the target differ from the online critic, as it does after the first update
        for p in agent.critic_target.parameters():
            p.add_(0.01 * torch.randn_like(p))
    inputs = {
        "obs_n": torch.randn(batch, obs_dim), "nxt_n": torch.randn(batch, obs_dim),
        "act": torch.rand(batch, act_dim) * 2 - 1, "rew": torch.randn(batch),
        "notdone": (torch.rand(batch) > 0.1).float(),
        "eps_next": torch.randn(batch, act_dim), "eps_pi": torch.randn(batch, act_dim),
    }
    return agent, inputs


def _manual(agent: SAC, log_alpha: torch.Tensor, inputs: dict, bf16: bool) -> object:
    nets = Nets(agent.actor.layers(), agent.critic.layers(), agent.critic_target.layers(), bf16,
                agent.critic.layer_norm)
    with torch.no_grad():
        return sac_grads(nets, log_alpha, inputs["obs_n"], inputs["act"], inputs["rew"], inputs["notdone"],
                         inputs["nxt_n"], inputs["eps_next"], inputs["eps_pi"], 0.99, -2.0, True)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖."""
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.mark.parametrize("bf16, tol", [(False, 1e-5), (True, 0.05)])
def test_hand_written_sac_gradients_equal_autograd(agent_and_inputs: tuple[SAC, dict], bf16: bool, tol: float) -> None:
    agent, inputs = agent_and_inputs
    _check_against_autograd(agent, inputs, bf16, tol)


@pytest.mark.parametrize("bf16, tol", [(False, 1e-5), (True, 0.05)])
def test_layer_normed_critic_gradients_equal_autograd(
    agent_and_inputs: tuple[SAC, dict], bf16: bool, tol: float,
) -> None:
    plain, inputs = agent_and_inputs
    agent = SAC(plain.obs_dim, plain.act_dim, plain.low, plain.high, SACConfig(critic_layer_norm=True), seed=0)
    with torch.no_grad():
        for p in agent.critic_target.parameters():
            p.add_(0.01 * torch.randn_like(p))
    assert agent.critic.layer_norm
    _check_against_autograd(agent, inputs, bf16, tol)
    # the normalisation is really there: the critic's hidden features have zero mean per sample before ReLU
    x = torch.cat([inputs["obs_n"], inputs["act"]], -1)
    w, b = agent.critic.layers()[0]
    z = torch.nn.functional.layer_norm(torch.baddbmm(b, x.expand(2, -1, -1), w), (w.shape[-1],))
    with torch.no_grad():
        q_ln = agent.critic(x)
        q_plain = TwinCritic(x.shape[1], 256, 2)
        q_plain.load_state_dict(agent.critic.state_dict())
        assert not torch.allclose(q_ln, q_plain(x))
    assert z.mean(-1).abs().max() < 1e-4


def _check_against_autograd(agent: SAC, inputs: dict, bf16: bool, tol: float) -> None:
    log_alpha = torch.tensor(math.log(0.3))
    ref = _autograd_reference(agent, log_alpha, inputs, -2.0)
    got = _manual(agent, log_alpha, inputs, bf16)
    assert _rel_err(got.critic_loss, ref["critic_loss"]) < tol
    assert _rel_err(got.actor_loss, ref["actor_loss"]) < tol
    assert _rel_err(got.log_alpha, ref["log_alpha"]) < tol
    for name in ("critic", "actor"):
        for i, ((gw, gb), (rw, rb)) in enumerate(zip(getattr(got, name), ref[name])):
            assert gw.shape == rw.shape and gb.shape == rb.shape, f"{name} layer {i}"
            assert _rel_err(gw, rw) < tol, f"{name} layer {i} weight"
            assert _rel_err(gb, rb) < tol, f"{name} layer {i} bias"


def test_actor_gradient_flows_only_through_the_smaller_q(agent_and_inputs: tuple[SAC, dict]) -> None:
    """With the second Q shifted far above the first, the actor's gradient must not depend on the second."""
    agent, inputs = agent_and_inputs
    with torch.no_grad():
        agent.critic.biases[-1][1].add_(100.0)
    base = _manual(agent, torch.tensor(0.0), inputs, False)
    with torch.no_grad():
        agent.critic.weights[-1][1].mul_(3.0)  # change only the (never minimal) second member's output layer
        agent.critic.biases[-1][1].add_(50.0)
    changed = _manual(agent, torch.tensor(0.0), inputs, False)
    for (gw, _), (cw, _) in zip(base.actor, changed.actor):
        torch.testing.assert_close(gw, cw)


def test_a_critic_only_update_gives_the_same_critic_gradients_and_no_actor_ones(
    agent_and_inputs: tuple[SAC, dict],
) -> None:
    agent, inputs = agent_and_inputs
    nets = Nets(agent.actor.layers(), agent.critic.layers(), agent.critic_target.layers(), False)
    args = (nets, torch.tensor(0.0), inputs["obs_n"], inputs["act"], inputs["rew"], inputs["notdone"],
            inputs["nxt_n"], inputs["eps_next"], inputs["eps_pi"], 0.99, -2.0, True)
    with torch.no_grad():
        full, critic_only = sac_grads(*args), sac_grads(*args, actor=False)
    assert critic_only.actor is None and critic_only.log_alpha is None
    for (fw, fb), (cw, cb) in zip(full.critic, critic_only.critic):
        torch.testing.assert_close(fw, cw)
        torch.testing.assert_close(fb, cb)


def _random_batch(rng: np.random.Generator) -> Batch:
    """64 random rows of a 4-D observation, 2-D action task."""
    return Batch.create(rng.normal(size=(64, 4)).astype(np.float32), rng.uniform(-1, 1, (64, 2)).astype(np.float32),
                        rng.normal(size=64).astype(np.float32), rng.normal(size=(64, 4)).astype(np.float32),
                        np.zeros(64, bool), np.zeros(64, bool))


def _update_moves_the_actor(agent: SAC, batch: Batch) -> bool:
    """One update; the critics move on every one, α exactly when the actor does. Returns whether the actor moved."""
    actor0 = [p.detach().clone() for p in agent.actor.parameters()]
    critic0 = [p.detach().clone() for p in agent.critic.parameters()]
    alpha0 = agent.log_alpha.item()
    agent.update(batch)
    assert any(not torch.equal(c, p) for c, p in zip(critic0, agent.critic.parameters()))
    actor_moved = any(not torch.equal(a, p) for a, p in zip(actor0, agent.actor.parameters()))
    assert actor_moved == (agent.log_alpha.item() != alpha0)
    return actor_moved


def test_delayed_policy_updates_move_the_actor_and_alpha_every_nth_update_only() -> None:
    rng = np.random.default_rng(0)
    agent = SAC(4, 2, -np.ones(2), np.ones(2), SACConfig(hidden=32, actor_update_every=3), seed=0)
    batch = _random_batch(rng)
    moved = []
    for _ in range(6):
        moved.append(_update_moves_the_actor(agent, batch))
    assert moved == [True, False, False, True, False, False]


def test_a_frozen_actor_stays_put_for_the_warm_up_then_learns_again() -> None:
    rng = np.random.default_rng(1)
    agent = SAC(4, 2, -np.ones(2), np.ones(2), SACConfig(hidden=32), seed=0)
    batch = _random_batch(rng)
    agent.update(batch)  # counts from wherever the agent is (a warm start's n_updates)
    agent.freeze_actor(3)
    agent.freeze_actor(1)  # a shorter one asked for during the warm-up does not end it early
    moved = []
    for _ in range(5):
        moved.append(_update_moves_the_actor(agent, batch))
    assert moved == [False, False, False, True, True]


def test_bf16_auto_follows_the_cpu_and_other_values_fail_at_load() -> None:
    from pathlib import Path

    from robodyna.config import ConfigError
    from robodyna.learn.config import load_algo_config
    from robodyna.learn.sac import use_bf16

    cpu = Path("/proc/cpuinfo")
    flags = cpu.read_text().split() if cpu.exists() else []
    assert use_bf16("auto") == ("avx512_bf16" in flags or "amx_bf16" in flags)
    assert use_bf16(True) and not use_bf16(False)
    assert load_algo_config("sac", None, ["sac.bf16_hidden=auto"]).sac.bf16_hidden == "auto"
    with pytest.raises(ConfigError, match=r"sac\.bf16_hidden: got 'sometimes'; expected bool or one of 'auto'"):
        load_algo_config("sac", None, ["sac.bf16_hidden=sometimes"])


def test_gradients_equal_autograd_when_log_std_leaves_the_clamp_range(agent_and_inputs: tuple[SAC, dict]) -> None:
    """Raw log-std straddles both clamp bounds: outside [−20, 2] the clamp passes no gradient.

    fp32 only: in bf16 the rounded raw values of rows near a bound land on the other side of it than in the
    fp32 reference, which is rounding, not a gradient error (the mask code is shared by both paths).
    """
    from robodyna.learn.sac_grad import LOG_STD_MAX, LOG_STD_MIN

    agent, inputs = agent_and_inputs
    a = agent.act_dim
    head = agent.actor.head
    with torch.no_grad():
        head.weight[a:].mul_(30.0)  # wide spread of raw log-std across the batch ...
        median = head(agent.actor.trunk(inputs["obs_n"]))[:, a:].median(0).values
        head.bias[a] += LOG_STD_MAX - median[0]  # ... centred on the upper bound for action 0
        head.bias[a + 1] += LOG_STD_MIN - median[1]  # ... and on the lower bound for action 1
        raw = head(agent.actor.trunk(inputs["obs_n"]))[:, a:]
    above, below = (raw[:, 0] > LOG_STD_MAX).float().mean(), (raw[:, 1] < LOG_STD_MIN).float().mean()
    assert 0.2 < above < 0.8 and 0.2 < below < 0.8, (above, below)  # both sides of each bound are exercised
    _check_against_autograd(agent, inputs, False, 1e-5)
