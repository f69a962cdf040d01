"""``train`` / ``export``: no silent overwrite, no silent fresh start or algo switch, update counts (issue 16
items 1, 7, 9, 13)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from robodyna.cli.main import main
from tests.cli.conftest import Result, assert_refused, run_cli, snapshot

TINY = ["--set", "sac.hidden=16", "--set", "sac.batch_size=8", "--set", "eval_episodes=1", "--no-progress"]


def test_a_run_with_no_sac_update_says_so_and_is_quiet(untrained_run: tuple[Path, Result]) -> None:
    run, r = untrained_run
    assert "trained sac on reacher2 for 30 steps with 0 SAC update(s)" in r.stdout, str(r)
    assert "warning: no SAC update ran" in r.stderr and "start_steps=1000" in r.stderr, str(r)
    # quiet by default: no torchvision notes, FutureWarning or onnxscript INFO lines (item 13)
    for noise in ("torchvision", "FutureWarning", "onnxscript", "onnx_ir", " INFO "):
        assert noise not in r.stderr, f"{noise!r} printed without -v\n{r}"
    assert (run / "policy.onnx").is_file()


def test_train_into_an_existing_run_is_refused_and_changes_nothing(untrained_run: tuple[Path, Result]) -> None:
    run, _ = untrained_run
    before = snapshot(run)
    r = run_cli("train", "--robot", "reacher2", "--algo", "sac", "--steps", "20", "--run-dir", run, *TINY)
    assert_refused(r, f"{run} already holds a run", "--resume", "fresh --run-dir", "--overwrite")
    assert snapshot(run) == before


def test_overwrite_replaces_the_run_and_counts_the_updates(untrained_run: tuple[Path, Result], tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(untrained_run[0], run)
    r = run_cli("train", "--robot", "reacher2", "--algo", "sac", "--steps", "25", "--run-dir", run, "--overwrite",
                "--set", "start_steps=10", *TINY)
    assert r.returncode == 0, str(r)
    # updates at every step from start_steps on: steps 10..25
    assert "for 25 steps with 16 SAC update(s)" in r.stdout, str(r)
    assert "no SAC update" not in r.stderr
    steps = [int(line.split(",")[0]) for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert max(steps) == 25, "metrics.csv still holds the replaced run's rows"
    assert main(["export", str(run / "last.pt"), "--out", str(tmp_path / "p.onnx")]) == 0
    assert "16 SAC update(s)" in capsys.readouterr().out


def test_resume_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    r = run_cli("train", "--robot", "reacher2", "--steps", "20", "--run-dir", tmp_path / "new", "--resume", *TINY)
    assert_refused(r, "--resume:", "last.pt does not exist", "drop --resume")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(("extra", "texts"), [
    (["--algo", "mbpo", "--steps", "60"], ["is a sac run; it cannot continue as mbpo"]),
    (["--steps", "30"], ["already at step 30", "pass more than 30"]),
    (["--steps", "60", "--reality", "heavy"], ["was trained with --reality (none), not heavy"]),
    (["--steps", "60", "--init-data", "."], ["--init-data warm-starts a new run only"]),
])
def test_resume_that_would_mislabel_the_run_is_refused(untrained_run: tuple[Path, Result], extra: list[str],
                                                       texts: list[str]) -> None:
    run, _ = untrained_run
    before = snapshot(run)
    r = run_cli("train", "--robot", "reacher2", "--run-dir", run, "--resume", *extra, *TINY)
    assert_refused(r, *texts)
    assert snapshot(run) == before


def test_resume_and_overwrite_together_are_a_usage_error(untrained_run: tuple[Path, Result]) -> None:
    run, _ = untrained_run
    r = run_cli("train", "--robot", "reacher2", "--steps", "60", "--run-dir", run, "--resume", "--overwrite")
    assert_refused(r, "not allowed with argument", code=2)


def test_an_edited_robot_folder_copy_gets_its_robots_preset_section(tmp_path: Path) -> None:
    """README: to train on a changed robot, copy its folder, edit robot.yaml and pass the path to --robot."""
    from robodyna.cli.learn import preset_key
    from robodyna.learn.config import load_algo_config
    from tests.cli.conftest import REPO

    copy = tmp_path / "my_panda"
    shutil.copytree(REPO / "robots" / "panda", copy)
    assert preset_key(str(copy)) == "panda" and preset_key("panda") == "panda"
    assert load_algo_config("mbpo", preset_key(str(copy))).start_steps == 500  # mbpo.yaml robots.panda


@pytest.mark.parametrize(("robot_set", "field"), [("control_hz=25", "control_hz"),
                                                   ("joints[0].max_torque_nm=0.02", "action_low")])
def test_init_data_recorded_at_another_rate_or_torque_limit_is_refused_naming_the_field(
        tmp_path: Path, robot_set: str, field: str) -> None:
    other = tmp_path / "other"
    r = run_cli("record", "--robot", "reacher2", "--set", robot_set, "--policy", "random", "--episodes", "1",
                "--out", other, "--no-progress")
    assert r.returncode == 0, str(r)
    run = tmp_path / "run"
    r = run_cli("train", "--robot", "reacher2", "--algo", "sac", "--steps", "10", "--run-dir", run, "--no-progress",
                "--init-data", other)
    assert_refused(r, f"--init-data {other}: made for another robot (init_data): {field} is ")
    assert not (run / "last.pt").exists()
