"""Shared fixtures of the CLI suite: every case runs the real ``robodyna`` CLI in a subprocess.

One small recorded store and one tiny training run are made once per session (read-only for the tests;
a test that changes one works on a copy).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"robodyna {' '.join(self.args)} -> {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


def run_cli(*args: str | Path, cwd: Path | None = None, timeout: float = 120, env: dict[str, str] | None = None
            ) -> Result:
    """``python -m robodyna.cli.main ARGS`` with this checkout first on the path."""
    argv = [str(a) for a in args]
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.setdefault("MPLBACKEND", "Agg")
    e.update(env or {})
    p = subprocess.run([sys.executable, "-m", "robodyna.cli.main", *argv], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env=e)
    return Result(argv, p.returncode, p.stdout, p.stderr)


def snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``root`` (relative path -> size, mtime_ns, sha1): equal snapshots = nothing changed."""
    out = {}
    for p in sorted(Path(root).rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(root))] = (st.st_size, st.st_mtime_ns, hashlib.sha1(p.read_bytes()).hexdigest())
    return out


def assert_refused(r: Result, *texts: str, code: int = 1) -> None:
    """Exit ``code``, no traceback, one ``robodyna VERB: error:`` line holding every text."""
    assert r.returncode == code, str(r)
    assert "Traceback" not in r.stderr, str(r)
    lines = [ln for ln in r.stderr.splitlines() if ": error: " in ln]
    assert len(lines) == 1 and lines[0].startswith("robodyna "), str(r)
    for t in texts:
        assert t in lines[0], f"{t!r} not in the error line\n{r}"


@pytest.fixture(scope="session")
def cli() -> Callable[..., Result]:
    return run_cli


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """6 random-policy episodes of reacher2 (50 steps each, one segment per episode). Do not modify."""
    out = tmp_path_factory.mktemp("cli") / "store"
    r = run_cli("record", "--robot", "reacher2", "--policy", "random", "--episodes", "6", "--out", out,
                "--no-progress")
    assert r.returncode == 0, str(r)
    return out


@pytest.fixture
def broken_store(store: Path, tmp_path: Path) -> Path:
    """A copy of ``store`` with its second segment (episode 1) deleted."""
    out = tmp_path / "broken"
    shutil.copytree(store, out)
    (out / "segments" / "seg-000001.arrow").unlink()
    return out


@pytest.fixture(scope="session")
def untrained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Result]:
    """``train --algo sac --steps 30`` on reacher2 with its preset (1000 exploration steps: no SAC update).
    Tiny networks and one evaluation episode keep it to seconds. Do not modify (copy it)."""
    run = tmp_path_factory.mktemp("cli") / "run"
    r = run_cli("train", "--robot", "reacher2", "--algo", "sac", "--steps", "30", "--run-dir", run, "--no-progress",
                "--set", "sac.hidden=16", "--set", "sac.batch_size=8", "--set", "eval_episodes=1")
    assert r.returncode == 0, str(r)
    return run, r
