"""Verbs that read or write episode stores and datasets (issue 16 items 2, 3, 4, 5, 14, 15)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from robodyna.data.export_minari import staged_output
from robodyna.data.store import EpisodeStore, StoreError
from tests.cli.conftest import assert_refused, run_cli, snapshot

# every verb that reads a store, with what it says it refused
READERS = {
    "info": (["dataset", "info", "{s}"], "summarise it"),
    "export-minari": (["dataset", "export", "{s}", "--format", "minari", "--out", "{o}"], "export it"),
    "export-lerobot": (["dataset", "export", "{s}", "--format", "lerobot", "--out", "{o}"], "export it"),
    "fit": (["model", "fit", "--dataset", "{s}", "--out", "{o}/m.pt"], "fit a model on it"),
    "init-data": (["train", "--robot", "reacher2", "--algo", "sac", "--steps", "10", "--run-dir", "{o}",
                   "--init-data", "{s}"], "warm-start training from it"),
    "record-resume": (["record", "--robot", "reacher2", "--policy", "random", "--episodes", "1", "--out", "{s}",
                       "--resume", "--no-progress"], "append to it (--resume)"),
    "replay": (["replay", "{s}", "--robot", "reacher2"], "replay it"),
    "merge": (["dataset", "merge", "{s}", "--out", "{o}"], "merge it"),
    "split": (["dataset", "split", "{s}", "--train", "{o}/t", "--val", "{o}/v"], "split it"),
}


@pytest.mark.parametrize("verb", sorted(READERS))
def test_every_store_reader_refuses_a_store_with_a_deleted_segment(verb: str, broken_store: Path,
                                                                   tmp_path: Path) -> None:
    args, action = READERS[verb]
    out = tmp_path / "out"
    before = snapshot(broken_store)
    r = run_cli(*[a.format(s=broken_store, o=out) for a in args])
    assert_refused(r, f"{broken_store}: the episode store has 2 error(s), refusing to {action}",
                   "segment numbers jump from 0 to 2", "episode 1: episode index gap")
    assert snapshot(broken_store) == before
    assert not out.exists() or not any(out.iterdir()), f"{verb} wrote {sorted(out.rglob('*'))}"


def test_minari_export_to_a_relative_path_loads_and_iterates(store: Path, tmp_path: Path) -> None:
    r = run_cli("dataset", "export", store, "--format", "minari", "--out", "rel/datasets", cwd=tmp_path)
    assert r.returncode == 0, str(r)
    root = tmp_path / "rel" / "datasets"
    assert str(root) in r.stdout
    import minari

    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        ds = minari.load_dataset("robodyna/reacher2-reach-v0")
        eps = list(ds.iterate_episodes())
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH")
        else:
            os.environ["MINARI_DATASETS_PATH"] = old
    assert [e.id for e in eps] == list(range(6)) and all(len(e.actions) == 50 for e in eps)
    assert not [p for p in root.rglob("*") if p.name.startswith(".tmp-")]
    # importing it back gives the same actions
    back = tmp_path / "back"
    r = run_cli("dataset", "import", root / "robodyna" / "reacher2-reach-v0", "--out", back)
    assert r.returncode == 0, str(r)
    np.testing.assert_array_equal(EpisodeStore(back).read().batch.action, EpisodeStore(store).read().batch.action)
    # a second export to the same place is refused, and leaves the first intact
    before = snapshot(root)
    r = run_cli("dataset", "export", store, "--format", "minari", "--out", root)
    assert_refused(r, "already exists and is not empty")
    assert snapshot(root) == before


def test_a_failed_staged_output_leaves_nothing(tmp_path: Path) -> None:
    final = tmp_path / "new" / "deeper" / "dataset"
    with pytest.raises(RuntimeError, match="failed midway"), staged_output(final, "test") as tmp:
        (tmp / "data").mkdir(parents=True)
        (tmp / "data" / "0.arrow").write_bytes(b"x")
        raise RuntimeError("failed midway")
    assert not (tmp_path / "new").exists(), sorted(tmp_path.rglob("*"))
    with staged_output(final, "test") as tmp:
        (tmp / "a").write_text("done")
    assert (final / "a").read_text() == "done" and sorted(p.name for p in final.parent.iterdir()) == ["dataset"]
    with pytest.raises(StoreError, match="already exists and is not empty"), staged_output(final, "test"):
        pass


def test_import_of_an_unreadable_dataset_leaves_no_store(store: Path, tmp_path: Path) -> None:
    root = tmp_path / "mds"
    assert run_cli("dataset", "export", store, "--format", "minari", "--out", root).returncode == 0
    ds_dir = root / "robodyna" / "reacher2-reach-v0"
    shutil.rmtree(ds_dir / "data" / "3")  # a dataset damaged after export
    out = tmp_path / "imported"
    r = run_cli("dataset", "import", ds_dir, "--out", out)
    assert_refused(r)
    assert not out.exists(), sorted(out.rglob("*"))


def test_lerobot_export_has_stats_for_every_feature_and_standard_info(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "lr"
    r = run_cli("dataset", "export", store, "--format", "lerobot", "--out", out)
    assert r.returncode == 0, str(r)
    info = json.loads((out / "meta" / "info.json").read_text())
    stats = json.loads((out / "meta" / "stats.json").read_text())
    numeric = {k for k, f in info["features"].items() if f["dtype"] != "string"}
    assert set(stats) == numeric, sorted(numeric ^ set(stats))
    for k in ("next.observation.state", "next.terminated", "next.truncated"):
        assert stats[k]["count"] == [300]
    assert stats["next.truncated"]["mean"] == [pytest.approx(6 / 300)]
    assert "robodyna" not in info
    extra = json.loads((out / "meta" / "robodyna.json").read_text())
    assert extra["reality"] is None and extra["control_hz"] == 50.0 and extra["source"] == str(store.resolve())
    assert info["total_episodes"] == 6 and info["splits"] == {"train": "0:6"}


def _actions(path: Path) -> list[np.ndarray]:
    s = EpisodeStore(path)
    return [s.read_episode(e.index).batch.action for e in s.episodes()]


def test_record_resume_continues_the_random_action_sequence(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    base = ["record", "--robot", "reacher2", "--policy", "random", "--seed", "3", "--no-progress"]
    assert run_cli(*base, "--episodes", "2", "--out", a).returncode == 0
    r = run_cli(*base, "--episodes", "2", "--out", a, "--resume")
    assert r.returncode == 0, str(r)
    assert json.loads(r.stdout)["first_episode"] == 2
    assert run_cli(*base, "--episodes", "4", "--out", b).returncode == 0
    resumed, straight = _actions(a), _actions(b)
    assert not np.allclose(resumed[2], resumed[0]), "the resumed episodes repeat episode 0's actions"
    for e in range(4):
        np.testing.assert_array_equal(resumed[e], straight[e], err_msg=f"episode {e}")


def test_record_resume_with_another_reality_is_refused(store: Path) -> None:
    before = snapshot(store)
    r = run_cli("record", "--robot", "reacher2", "--policy", "random", "--episodes", "1", "--out", store,
                "--resume", "--reality", "heavy", "--no-progress")
    assert_refused(r, "recorded with no reality profile (the nominal robot), this recording uses reality 'heavy'",
                   "record into a new --out")
    assert snapshot(store) == before


def test_validate_names_the_store_once_and_files_relative_to_it(broken_store: Path) -> None:
    r = run_cli("dataset", "validate", broken_store)
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert lines == ["ERROR: segments/seg-000002.arrow: segment numbers jump from 0 to 2 (segment deleted?)",
                     "ERROR: episode 1: episode index gap: episode missing",
                     f"{broken_store}: 2 error(s), 0 warning(s)"], r.stdout


def test_merge_and_split_into_an_existing_store_are_refused_without_mentioning_resume(store: Path,
                                                                                      tmp_path: Path) -> None:
    before = snapshot(store)
    r = run_cli("dataset", "merge", store, store, "--out", store)
    assert_refused(r, f"--out {store}: already exists and is not empty")
    assert "--resume" not in r.stderr
    r = run_cli("dataset", "split", store, "--train", store, "--val", tmp_path / "v")
    assert_refused(r, f"--train {store}: already exists")
    assert snapshot(store) == before and not (tmp_path / "v").exists()


def test_store_warnings_are_said_and_the_data_used(store: Path, tmp_path: Path) -> None:
    s = tmp_path / "s"
    shutil.copytree(store, s)
    (s / "segments" / ".tmp-seg-000009.arrow.1").write_bytes(b"partial")  # leftover of a killed writer
    r = run_cli("dataset", "info", s, "--json")
    assert r.returncode == 0, str(r)
    assert json.loads(r.stdout)["episodes"] == 6
    assert "1 warning(s)" in r.stderr and "leftover temp file" in r.stderr, str(r)
