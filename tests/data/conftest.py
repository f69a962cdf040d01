from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robodyna.data.store import EpisodeWriter, StoreMeta


def toy_meta(robot: str = "toy", obs_dim: int = 4, act_dim: int = 2, hz: float = 50.0) -> StoreMeta:
    return StoreMeta(robot, [f"o{i}" for i in range(obs_dim)], ["m"] * obs_dim, [f"a{i}" for i in range(act_dim)],
                     ["N*m"] * act_dim, hz)


def write_toy(root: Path, episodes: int = 4, length: int = 10, robot: str = "toy", flush_every: int = 7,
              meta: StoreMeta | None = None) -> Path:
    m = meta or toy_meta(robot)
    with EpisodeWriter(root, m, flush_every=flush_every) as w:
        for e in range(episodes):
            w.begin_episode({"seed": e})
            for t in range(length):
                o = np.full(m.obs_dim, e * 100 + t, np.float32)
                w.append(o, np.full(m.act_dim, t, np.float32), float(t), o + 1, False, t == length - 1,
                         intervention=1 if t == 3 else 0)
    return root


@pytest.fixture
def toy_store(tmp_path: Path) -> Path:
    return write_toy(tmp_path / "toy")


@pytest.fixture(scope="session")
def reacher_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from robodyna.onboard.record import record

    root = tmp_path_factory.mktemp("rec") / "reacher2"
    record("reacher2", "random", 3, root, seed=7, progress=False)
    return root
