"""``sac.compile``: the SAC update through torch.compile equals the eager one, and ``auto`` survives a broken
toolchain by falling back to eager."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from robodyna.config import ConfigError
from robodyna.data.batch import Batch
from robodyna.learn.config import SACConfig, load_algo_config
from robodyna.learn.sac import SAC, has_cxx_compiler, use_compile

needs_cxx = pytest.mark.skipif(not has_cxx_compiler(), reason="torch.compile's CPU backend needs a C++ compiler")


def _batches(obs_dim: int, act_dim: int, n: int, seed: int = 0) -> list[Batch]:
    rng = np.random.default_rng(seed)
    size = 128
    return [Batch.create(rng.normal(size=(size, obs_dim)).astype(np.float32),
                         rng.uniform(-1, 1, (size, act_dim)).astype(np.float32),
                         rng.normal(size=size).astype(np.float32), rng.normal(size=(size, obs_dim)).astype(np.float32),
                         rng.random(size) < 0.05, np.zeros(size, bool)) for _ in range(n)]


def _train(cfg: SACConfig, batches: list[Batch], obs_dim: int, act_dim: int) -> SAC:
    agent = SAC(obs_dim, act_dim, -np.ones(act_dim), np.ones(act_dim), cfg, seed=3)
    torch.manual_seed(7)  # the update's noise
    for b in batches:
        agent.update(b)
    return agent


@needs_cxx
def test_compiled_update_moves_the_networks_like_the_eager_one() -> None:
    """Both graphs (full update and critic-only update, via delayed actor updates) against eager, four updates."""
    batches = _batches(6, 2, 4)
    cfg = SACConfig(hidden=64, actor_update_every=2)
    eager = _train(cfg, batches, 6, 2)
    compiled = _train(SACConfig(hidden=64, actor_update_every=2, compile=True), batches, 6, 2)
    assert compiled.compiled and not eager.compiled
    for name in ("actor", "critic", "critic_target"):
        for (pn, pe), pc in zip(getattr(eager, name).named_parameters(), getattr(compiled, name).parameters()):
            torch.testing.assert_close(pc, pe, rtol=1e-4, atol=1e-5, msg=f"{name}.{pn}")
    torch.testing.assert_close(compiled.log_alpha, eager.log_alpha)
    start = SAC(6, 2, -np.ones(2), np.ones(2), cfg, seed=3)
    assert not torch.equal(start.actor.head.weight, compiled.actor.head.weight)  # the updates did move it


@needs_cxx
def test_compile_auto_falls_back_to_eager_when_the_toolchain_fails(caplog: pytest.LogCaptureFixture) -> None:
    import torch._inductor.config as inductor_config

    batches = _batches(3, 1, 2, seed=1)  # shapes no other test compiles
    torch._dynamo.reset()
    try:
        with inductor_config.patch({"cpp.cxx": ("/nonexistent/c++",), "fx_graph_cache": False}):
            with pytest.raises(RuntimeError, match=r"sac\.compile=true: torch\.compile of the SAC update failed"):
                _train(SACConfig(hidden=32, compile=True), batches, 3, 1)
            torch._dynamo.reset()
            with caplog.at_level(logging.WARNING, logger="robodyna.learn.sac"):
                agent = _train(SACConfig(hidden=32, compile="auto"), batches, 3, 1)
    finally:
        torch._dynamo.reset()
    assert not agent.compiled and agent.n_updates == 2
    assert "sac.compile=auto: torch.compile of the SAC update failed" in caplog.text
    eager = _train(SACConfig(hidden=32), batches, 3, 1)
    for pa, pe in zip(agent.actor.parameters(), eager.actor.parameters()):
        torch.testing.assert_close(pa, pe)  # the fallback update is the eager one


def test_compile_auto_follows_the_toolchain_and_other_values_fail_at_load() -> None:
    assert use_compile("auto") == has_cxx_compiler()
    assert use_compile(True) and not use_compile(False)
    assert load_algo_config("mbpo", None, []).sac.compile == "auto"
    with pytest.raises(ConfigError, match=r"sac\.compile: got 'sometimes'; expected bool or one of 'auto'"):
        load_algo_config("sac", None, ["sac.compile=sometimes"])
