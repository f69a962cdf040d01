"""Exactly-once under SIGKILL: a trainer (``robodyna trainer``, a real process) and an emulated controller (a
recorder + :class:`RobotLink` process) are killed with SIGKILL at seeded random moments, at least ten times each,
during a stream of 100k transitions; each is restarted at once. At the end the trainer's store holds every row the
robot recorded exactly once, in order."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from tests.transport.conftest import assert_exactly_once

ROOT = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).parent / "_robot_child.py"
TOTAL = 100_000
KILLS_EACH = 10
# the robot records for at least TOTAL / RATE_ROWS_S = 16.7 s (plus its restarts), longer than the seeded kill
# schedule (its last robot kill after 10.3 s of waits): at 12000 rows/s a fast machine finished recording before
# the tenth kill
RATE_ROWS_S = 6000


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def test_sigkill_trainer_and_controller_ten_times_each_exactly_once(tmp_path: Path, keys_dir: Path) -> None:
    rng = np.random.default_rng(14)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    logs = open(tmp_path / "children.log", "wb")
    trainer_cmd = [sys.executable, "-m", "robodyna.cli.main", "trainer", "--bind", f"tcp://127.0.0.1:{port}",
                   "--store", str(tmp_path / "trainer"), "--keys", str(keys_dir), "--status-every", "0",
                   "--heartbeat", "0.1", "--deadline", "1.0"]
    robot_cmd = [sys.executable, str(CHILD), str(tmp_path / "robot"), f"tcp://127.0.0.1:{port}", str(keys_dir),
                 "r1", str(TOTAL), str(RATE_ROWS_S)]

    def spawn(cmd: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=logs, stderr=logs)

    procs = {"trainer": spawn(trainer_cmd), "robot": spawn(robot_cmd)}
    order = ["trainer"] * KILLS_EACH + ["robot"] * KILLS_EACH
    rng.shuffle(order)
    kills = {"trainer": 0, "robot": 0}
    try:
        for who in order:
            time.sleep(float(rng.uniform(0.15, 1.0)))  # anywhere: start-up, hello, streaming, a segment write
            p = procs[who]
            if p.poll() is not None:  # the robot finished early: nothing left to interrupt
                assert p.returncode == 0, f"{who} exited with {p.returncode}"
                continue
            p.send_signal(signal.SIGKILL)
            p.wait()
            kills[who] += 1
            procs[who] = spawn(trainer_cmd if who == "trainer" else robot_cmd)
        rc = procs["robot"].wait(timeout=120)  # it exits by itself once everything it recorded is acknowledged
        assert rc == 0, (tmp_path / "children.log").read_text()[-3000:]
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
        logs.close()
    assert kills == {"trainer": KILLS_EACH, "robot": KILLS_EACH}, kills
    assert assert_exactly_once(tmp_path / "robot", tmp_path / "trainer" / "r1") == TOTAL
