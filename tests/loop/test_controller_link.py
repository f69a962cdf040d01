"""``robodyna controller --trainer ...``: a controller process linked to a trainer over real CURVE sockets streams
its record store, swaps in a signed pushed policy and runs the episodes a refresh request asks for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from robodyna.data.store import EpisodeStore
from robodyna.transport.keys import TrainerKeys, generate_keys
from robodyna.transport.trainer import TrainerServer
from tests.onboard.policies import make_policy, spec_and_obs
from tests.transport.conftest import until

ROOT = Path(__file__).resolve().parents[2]


def test_controller_streams_swaps_pushed_policy_and_answers_refresh(tmp_path: Path) -> None:
    kd = tmp_path / "keys"
    for n in ("trainer", "arm1"):
        generate_keys(kd, n)
    spec, names = spec_and_obs("reacher2")
    make_policy(tmp_path / "v1.onnx", spec, names, version=1)
    v2 = make_policy(None, spec, names, version=2, seed=3)
    srv = TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", TrainerKeys.load(kd)).start()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "robodyna.cli.main", "controller", "--robot", "reacher2",
                             "--policy", str(tmp_path / "v1.onnx"), "--record", str(tmp_path / "rec"), "--no-pace",
                             "--episodes", "2", "--idle", "--trainer", srv.endpoint, "--keys", str(kd),
                             "--robot-id", "arm1"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        def persisted() -> int:
            return int(srv.status()["robots"].get("arm1", {}).get("persisted_seq", 0))

        assert until(lambda: persisted() == 100, 60), srv.status()
        srv.push_policy(2, v2)
        robot, version, ok, reason = srv.policy_results.get(timeout=30)
        assert (robot, version, ok) == ("arm1", 2, True), reason
        srv.request_refresh("arm1", 60, "steps")  # rounded up to 2 episodes, under the new policy
        assert until(lambda: persisted() == 200, 60), srv.status()
        tr = EpisodeStore(tmp_path / "trainer" / "arm1").read()
        assert np.array_equal(np.unique(tr.extras["policy_version"][:100]), [1])
        assert np.array_equal(np.unique(tr.extras["policy_version"][100:]), [2])
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        srv.stop()
    assert proc.returncode == 0, err[-2000:]
    assert '"policy_version": 2' in out
