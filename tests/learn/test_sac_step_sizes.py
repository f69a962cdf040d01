"""SAC's step sizes: the critics' own (``sac.critic_lr``) and Adam's moments carried across configs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robodyna.data.batch import Batch
from robodyna.learn.config import SACConfig, load_algo_config
from robodyna.learn.sac import SAC


def _batch(seed: int = 0, n: int = 64) -> Batch:
    rng = np.random.default_rng(seed)
    f = np.float32
    return Batch(rng.normal(size=(n, 4)).astype(f), rng.uniform(-1, 1, (n, 2)).astype(f),
                 rng.normal(size=n).astype(f), rng.normal(size=(n, 4)).astype(f), np.zeros(n, bool), np.zeros(n, bool))


def _one_update(cfg: SACConfig) -> tuple[list[torch.Tensor], list[torch.Tensor], float]:
    """The critic and actor steps and α's after one update from seed 0 (the agent seeds torch's generator, so two
    agents built right before their update see the same noise)."""
    agent = SAC(4, 2, -np.ones(2), np.ones(2), cfg, seed=0)
    c0 = [p.detach().clone() for p in agent.critic.parameters()]
    a0 = [p.detach().clone() for p in agent.actor.parameters()]
    agent.update(_batch())
    return ([p.detach() - c for p, c in zip(agent.critic.parameters(), c0)],
            [p.detach() - a for p, a in zip(agent.actor.parameters(), a0)], agent.log_alpha.item())


def test_critic_lr_scales_the_critics_step_and_leaves_the_actors_and_alphas() -> None:
    dc, da, alpha = _one_update(SACConfig(hidden=32, lr=1e-4, compile=False))
    dc10, da10, alpha10 = _one_update(SACConfig(hidden=32, lr=1e-4, critic_lr=1e-3, compile=False))
    # Adam's first step is lr * g / (|g| + eps): ten times the step size, ten times the step
    for a, b in zip(dc, dc10):
        torch.testing.assert_close(b, 10.0 * a, rtol=1e-3, atol=1e-8)
    for a, b in zip(da, da10):
        torch.testing.assert_close(b, a, rtol=0, atol=0)
    assert alpha10 == alpha


def test_a_step_size_schedule_keeps_the_critics_ratio() -> None:
    agent = SAC(4, 2, -np.ones(2), np.ones(2), SACConfig(hidden=32, lr=1e-4, critic_lr=1e-3, compile=False))
    agent.set_lr(1e-5)
    assert [g["lr"] for g in agent.optim.param_groups] == pytest.approx([1e-4, 1e-5])


@pytest.mark.parametrize(("saved", "loaded"), [
    ({}, {"critic_lr": 1e-3, "auto_alpha": False}),
    ({"critic_lr": 1e-3, "auto_alpha": False}, {}),
])
def test_adams_moments_carry_over_to_another_grouping_and_alpha_setting(saved: dict, loaded: dict) -> None:
    src = SAC(4, 2, -np.ones(2), np.ones(2), SACConfig(hidden=32, compile=False, **saved), seed=0)
    for _ in range(3):
        src.update(_batch())
    dst = SAC(4, 2, -np.ones(2), np.ones(2), SACConfig(hidden=32, lr=3e-5, compile=False, **loaded), seed=1)
    dst.load_state_dict(src.state_dict())
    for p, q in zip([*src.critic.parameters(), *src.actor.parameters()],
                    [*dst.critic.parameters(), *dst.actor.parameters()]):
        torch.testing.assert_close(dst.optim.state[q]["exp_avg"], src.optim.state[p]["exp_avg"], rtol=0, atol=0)
        assert float(dst.optim.state[q]["step"]) == 3.0
    assert dst.log_alpha not in dst.optim.state  # fixed α here, or newly tuned: no moments from the other config
    assert dst.log_alpha.item() == src.log_alpha.item()
    expected = [3e-5] if dst.cfg.critic_lr is None else [1e-3, 3e-5]
    assert [g["lr"] for g in dst.optim.param_groups] == pytest.approx(expected)
    dst.update(_batch(1))  # and it goes on training
    assert float(dst.optim.state[next(dst.actor.parameters())]["step"]) == 4.0


def test_a_non_positive_critic_lr_is_refused_at_load_naming_the_key() -> None:
    with pytest.raises(ValueError, match="critic_lr"):
        load_algo_config("mbpo", None, ["sac.critic_lr=0"])


def test_a_checkpoint_whose_optimiser_does_not_fit_the_networks_is_refused_naming_what() -> None:
    src = SAC(4, 2, -np.ones(2), np.ones(2), SACConfig(hidden=32, compile=False), seed=0)
    src.update(_batch())
    dst = SAC(4, 2, -np.ones(2), np.ones(2), SACConfig(hidden=32, compile=False), seed=1)
    short = src.state_dict()
    short["optim"]["param_groups"][0]["params"] = short["optim"]["param_groups"][0]["params"][:-3]
    with pytest.raises(ValueError, match="optimiser holds .* parameters"):
        dst.load_state_dict(short)
    bent = src.state_dict()
    bent["optim"]["state"][0]["exp_avg"] = torch.zeros(7, 7)
    with pytest.raises(ValueError, match="'exp_avg' of parameter 0 has shape \\(7, 7\\)"):
        dst.load_state_dict(bent)
