"""Bad inputs get one clear error line and change nothing (issue 16 items 6, 10, 11, 12, 14)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from robodyna.cli.main import main
from robodyna.config import ConfigError, apply_overrides
from robodyna.data.store import EpisodeStore
from tests.cli.conftest import Result, assert_refused, run_cli, snapshot


class _RunsCode:
    """Unpickling this runs a shell command (what a malicious checkpoint would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _bad_checkpoints(tmp: Path, real: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, what the error says about it)."""
    import torch

    marker = tmp / "PWNED"
    out = {}
    (tmp / "random.pt").write_bytes(os.urandom(2048))
    out["random bytes"] = (tmp / "random.pt", "not a PyTorch archive")
    data = real.read_bytes()
    (tmp / "truncated.pt").write_bytes(data[: len(data) // 2])
    out["truncated"] = (tmp / "truncated.pt", "truncated or corrupt archive")
    shutil.copy(real.parent / "policy.onnx", tmp / "policy.pt")
    out["onnx renamed"] = (tmp / "policy.pt", "it looks like an ONNX model")
    (tmp / "nosuffix").write_text("12 not a checkpoint\n")
    out["no suffix"] = (tmp / "nosuffix", "not a PyTorch archive")
    torch.save({"meta": {"robot_spec": "{}", "obs_names": []}, "x": _RunsCode(marker)}, tmp / "code.pt")
    out["pickle that runs code"] = (tmp / "code.pt", "refused without running them")
    (tmp / "bare.pt").write_bytes(pickle.dumps({"meta": _RunsCode(marker)}))
    out["bare pickle that runs code"] = (tmp / "bare.pt", "a bare pickle")
    return out


def test_no_checkpoint_load_runs_code_and_bad_files_get_one_line(untrained_run: tuple[Path, Result],
                                                                 tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = untrained_run
    bad = _bad_checkpoints(tmp_path, run / "last.pt")
    # every kind of bad file through both verbs, in this process (the CLI's own entry point; torch loads once)
    for name, (path, says) in bad.items():
        for args in (["eval", "--policy", str(path), "--robot", "reacher2", "--episodes", "1"],
                     ["export", str(path), "--out", str(tmp_path / "x.onnx")]):
            rc = main(args)
            err = capsys.readouterr().err
            assert_refused(Result(args, rc, "", err), f"{path}: not a robodyna training checkpoint", says)
            assert not (tmp_path / "PWNED").exists(), f"loading the {name} file ran its code"
    assert not (tmp_path / "x.onnx").exists()
    # and as a new user runs it: a subprocess, and train --resume reading RUN_DIR/last.pt
    code_pt = bad["pickle that runs code"][0]
    assert_refused(run_cli("eval", "--policy", code_pt, "--robot", "reacher2"), f"{code_pt}: not a robodyna")
    evil = tmp_path / "run"
    shutil.copytree(run, evil)
    shutil.copy(code_pt, evil / "last.pt")
    before = snapshot(evil)
    r = run_cli("train", "--robot", "reacher2", "--steps", "100", "--run-dir", evil, "--resume")
    assert_refused(r, f"{evil / 'last.pt'}: not a robodyna training checkpoint")
    assert not (tmp_path / "PWNED").exists() and snapshot(evil) == before


def test_a_good_checkpoint_still_loads(untrained_run: tuple[Path, Result]) -> None:
    from robodyna.learn.checkpoint import read_checkpoint

    st = read_checkpoint(untrained_run[0] / "last.pt")
    lst = st["learner"]
    from robodyna.tasks import robot_task

    od = len(robot_task("reacher2").obs_names)
    assert lst["counters"]["real"] == 30 and lst["real_buffer"]["arrays"]["obs"].shape == (30, od)


@pytest.mark.parametrize("value", ["0", "-3"])
@pytest.mark.parametrize(("args", "option"), [
    (["eval", "--policy", "p.onnx", "--robot", "reacher2", "--episodes"], "--episodes"),
    (["record", "--robot", "reacher2", "--policy", "random", "--out", "st", "--episodes"], "--episodes"),
    (["sim", "--robot", "reacher2", "--steps"], "--steps"),
    (["train", "--robot", "reacher2", "--run-dir", "run", "--steps"], "--steps"),
    (["model", "fit", "--dataset", "st", "--out", "m.pt", "--k"], "--k"),
])
def test_non_positive_counts_are_refused_at_the_parser(args: list[str], option: str, value: str,
                                                       tmp_path: Path) -> None:
    r = run_cli(*args, value, cwd=tmp_path)
    assert_refused(r, f"argument {option}: must be a positive integer (>= 1), got {int(value)}", code=2)
    assert list(tmp_path.iterdir()) == []


def test_a_discrete_action_space_is_refused(tmp_path: Path) -> None:
    for args in (["sim", "--robot", "CartPole-v1", "--steps", "5"],
                 ["train", "--env", "CartPole-v1", "--steps", "5", "--run-dir", tmp_path / "run"]):
        assert_refused(run_cli(*args), "CartPole-v1: its action space is Discrete(2)",
                       "continuous actions only")
    assert not (tmp_path / "run").exists()


def test_set_indexes_list_entries(tmp_path: Path) -> None:
    r = run_cli("sim", "--robot", "reacher2", "--steps", "5", "--set", "joints[0].max_torque_nm=-1")
    assert_refused(r, "joints[0].max_torque_nm: got -1; must be > 0")
    r = run_cli("sim", "--robot", "reacher2", "--steps", "5", "--set", "joints[2].max_torque_nm=1")
    assert_refused(r, "joints[2]", "index out of range: joints has 2 entries (0..1)")
    out = tmp_path / "st"
    r = run_cli("record", "--robot", "reacher2", "--policy", "random", "--episodes", "1", "--out", out,
                "--no-progress", "--set", "joints[1].max_torque_nm=0.05")
    assert r.returncode == 0, str(r)
    spec = EpisodeStore(out).meta.robot_spec
    assert spec is not None and spec["action_high"] == [0.2, 0.05]


def test_override_index_errors_name_the_key() -> None:
    data = {"joints": [{"name": "a"}, {"name": "b"}], "control_hz": 50}
    assert apply_overrides(data, ["joints[1].name=c", "joints[-2].name=z"])["joints"] == [{"name": "z"},
                                                                                          {"name": "c"}]
    for text, msg in (("control_hz[0]=1", "control_hz: got 50; is not a list"),
                      ("joints.name=1", "is not a mapping, so joints.name is not a key"),
                      ("gains[0]=1", "gains: got None; is not set"),
                      ("joints[0]x=1", "malformed key")):
        with pytest.raises(ConfigError, match=msg.replace("[", r"\[").replace(".", r"\.")):
            apply_overrides(data, [text])


def test_record_prints_strict_json_and_sim_counts_gym_episodes(tmp_path: Path) -> None:
    r = run_cli("record", "--robot", "reacher2", "--policy", "random", "--episodes", "1", "--out", tmp_path / "s",
                "--no-progress")
    assert r.returncode == 0, str(r)

    def no_nan(c: str) -> None:
        raise AssertionError(f"{c} in JSON output")

    json.loads(r.stdout, parse_constant=no_nan)
    r = run_cli("sim", "--robot", "Reacher-v5", "--steps", "120")
    assert r.returncode == 0, str(r)
    assert "2 episode(s) finished" in r.stdout, str(r)


def test_handler_and_parser_errors_share_one_format(tmp_path: Path) -> None:
    a = run_cli("dataset", "info", tmp_path / "missing")  # refused by the handler
    b = run_cli("dataset", "info")  # refused by argparse
    assert_refused(a, "episode store directory does not exist")
    assert_refused(b, "the following arguments are required: dir", code=2)
    assert a.stderr.startswith("robodyna dataset info: error:")
    assert b.stderr.splitlines()[-1].startswith("robodyna dataset info: error:")
