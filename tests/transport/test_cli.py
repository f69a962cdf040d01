"""``robodyna keys generate`` and ``robodyna trainer`` / ``robodyna stream`` as real processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robodyna.cli.main import main
from robodyna.data.store import EpisodeStore
from tests.transport.conftest import assert_exactly_once, write_rows
from tests.transport.test_kill import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_keys_generate_writes_both_pairs_and_never_overwrites(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["keys", "generate", "--out", str(tmp_path), "--name", "robot7"]) == 0
    paths = json.loads(capsys.readouterr().out)
    for p in paths.values():
        assert Path(p).is_file()
    assert oct(Path(paths["secret"]).stat().st_mode)[-3:] == "600"
    assert oct(Path(paths["sign"]).stat().st_mode)[-3:] == "600"
    assert b"BEGIN PUBLIC KEY" in Path(paths["sign_pub"]).read_bytes()
    assert main(["keys", "generate", "--out", str(tmp_path), "--name", "robot7"]) == 1
    assert "exists" in capsys.readouterr().err


def test_trainer_and_stream_commands_persist_and_report(tmp_path: Path, keys_dir: Path) -> None:
    write_rows(tmp_path / "robot", 3000)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    cli = [sys.executable, "-m", "robodyna.cli.main"]
    trainer = subprocess.Popen([*cli, "trainer", "--bind", f"tcp://127.0.0.1:{port}", "--store",
                                str(tmp_path / "trainer"), "--keys", str(keys_dir), "--status-every", "0.2", "--json",
                                "--duration", "20"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)
    stream = subprocess.Popen([*cli, "stream", "--store", str(tmp_path / "robot"), "--trainer",
                               f"tcp://127.0.0.1:{port}", "--keys", str(keys_dir), "--name", "r1", "--status-every",
                               "0.2", "--duration", "20"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        assert trainer.stdout is not None
        assert json.loads(trainer.stdout.readline())["listening"] == f"tcp://127.0.0.1:{port}"
        status = None
        end = time.monotonic() + 20
        while time.monotonic() < end:
            line = trainer.stdout.readline()
            st = json.loads(line)["robots"].get("r1")
            if st and st["persisted_seq"] == 3000 and st["recorded"] == 3000:
                status = st
                break
        assert status is not None and status["connected"] and status["lag_rows"] == 0
    finally:
        for p in (stream, trainer):
            p.send_signal(signal.SIGTERM)  # a clean stop on SIGTERM
        assert stream.wait(10) == 0 and trainer.wait(10) == 0
    assert assert_exactly_once(tmp_path / "robot", tmp_path / "trainer" / "r1") == 3000
    assert EpisodeStore(tmp_path / "trainer" / "r1").meta.robot_name == "reacher2"


def test_link_demo_generates_keys_and_streams_securely(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["link-demo", "--out", str(tmp_path), "--robots", "2", "--episodes", "1"]) == 0
    assert (tmp_path / "keys" / "trainer.key_secret").is_file() and (tmp_path / "keys" / "robot1.sign").is_file()
    for r in ("robot0", "robot1"):
        assert assert_exactly_once(tmp_path / r, tmp_path / "trainer" / r) > 0
    assert "robot1" in capsys.readouterr().out
