"""Shared pieces of the transport tests: keys, a reacher2 store meta, a robot emulator, exactly-once checks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from robodyna.data.batch import Batch
from robodyna.data.store import EpisodeStore, EpisodeWriter, StoreMeta
from robodyna.onboard.record import obs_units
from robodyna.robots.registry import robot_folder
from robodyna.spec import RobotSpec, load_robot_config
from robodyna.transport.keys import RobotKeys, TrainerKeys, generate_keys
from robodyna.transport.robot import LinkConfig
from robodyna.transport.stores import LINK_KEY, _footer
from robodyna.transport.trainer import TrainerConfig

REACHER_OBS = ["joint0.pos_rad", "joint1.pos_rad", "joint0.vel_rad_s", "joint1.vel_rad_s", "ee.x_m", "ee.y_m",
               "ee.z_m", "target.x_m", "target.y_m", "target.z_m"]
FAST_T = TrainerConfig(heartbeat_s=0.1, deadline_s=1.0)
FAST_L = LinkConfig(heartbeat_s=0.1, deadline_s=1.0, backoff_min_s=0.05, backoff_max_s=0.4, poll_s=0.01)


def reacher_spec() -> RobotSpec:
    cfg, _ = load_robot_config(robot_folder("reacher2"))
    return RobotSpec.from_config(cfg, engine="mujoco")


def reacher_meta(robot_name_suffix: str = "") -> StoreMeta:
    return StoreMeta.from_spec(reacher_spec(), REACHER_OBS, obs_units(REACHER_OBS), task="reach")


def rows(n: int, start: int, ep_len: int = 100) -> Batch:
    """Synthetic rows whose values encode their global index (so a mix-up or loss is visible)."""
    i = np.arange(start, start + n)
    obs = (i[:, None] * 10 + np.arange(10)).astype(np.float32)
    return Batch.create(obs, np.stack([i % 7, i % 5], 1).astype(np.float32), (i % 11).astype(np.float32), obs + 1,
                        np.zeros(n, bool), (i % ep_len) == ep_len - 1)


def write_rows(store: Path, n: int, start: int = 0, meta: StoreMeta | None = None, flush_every: int = 1024) -> None:
    with EpisodeWriter(store, meta or reacher_meta(), resume=start > 0, flush_every=flush_every) as w:
        w.append_batch(rows(n, start))


class Recorder(threading.Thread):
    """Emulates a controller's recorder: appends ``total`` rows in chunks while the link streams."""

    def __init__(self, store: Path, total: int, chunk: int = 500, period_s: float = 0.002) -> None:
        super().__init__(daemon=True)
        self.store, self.total, self.chunk, self.period_s = store, total, chunk, period_s

    def run(self) -> None:
        with EpisodeWriter(self.store, reacher_meta(), flush_every=self.chunk) as w:
            for s in range(0, self.total, self.chunk):
                w.append_batch(rows(min(self.chunk, self.total - s), s))
                w.flush()
                threading.Event().wait(self.period_s)


def assert_exactly_once(robot_store: Path, trainer_store: Path) -> int:
    """The trainer's store holds every row of the robot's store exactly once, in order, with all columns."""
    a = EpisodeStore(robot_store).read()
    tstore = EpisodeStore(trainer_store)
    b = tstore.read()
    assert len(b) == len(a), f"trainer holds {len(b)} rows, robot recorded {len(a)}"
    ca, cb = a.columns(), b.columns()
    for k in ca:
        assert np.array_equal(ca[k], cb[k]), f"column {k} differs"
    seq = 0
    for si in tstore.segments():  # footers: contiguous sequence ranges from 0, covering each segment's rows
        s0, s1 = _footer(si.path)[LINK_KEY]["seq"]
        assert (s0, s1) == (seq, seq + si.rows)
        seq = s1
    ea = [(e.index, e.length, e.closed) for e in EpisodeStore(robot_store).episodes()]
    eb = [(e.index, e.length, e.closed) for e in tstore.episodes()]
    assert ea == eb
    return len(a)


@pytest.fixture(scope="session")
def keys_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    for name in ("trainer", "r1", "r2", "r3"):
        generate_keys(d, name)
    generate_keys(d / "stranger", "r1")  # a key pair nobody allowed, claiming to be r1
    generate_keys(d / "forger", "trainer")  # another "trainer" whose policies robots must refuse
    return d


@pytest.fixture
def tkeys(keys_dir: Path) -> TrainerKeys:
    return TrainerKeys.load(keys_dir)


def rkeys(keys_dir: Path, name: str) -> RobotKeys:
    return RobotKeys.load(keys_dir, name)


def until(cond: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``cond`` until it holds (a loaded CI machine gets time; a passing run does not wait)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def dump(obj: object) -> str:
    return json.dumps(obj, default=str)
