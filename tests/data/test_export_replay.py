"""Minari round trip (real package), LeRobot v3.0 layout, open-loop replay, and the real recorder under SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from robodyna.data.export_lerobot import export_lerobot
from robodyna.data.export_minari import export_minari, import_minari
from robodyna.data.replay import replay
from robodyna.data.store import EpisodeStore
from robodyna.data.validate import validate
from robodyna.identity import IdentityMismatch
from robodyna.tasks import robot_task

REPO = Path(__file__).resolve().parents[2]


def terminating_store(root: Path) -> Path:
    """Episodes that end terminated (0, 2), truncated (1) and unfinished (3), with distinct values everywhere.

    Each episode is a trajectory (``next_obs[t] == obs[t + 1]``): Minari stores T + 1 observations per episode.
    """
    from conftest import toy_meta

    from robodyna.data.store import EpisodeWriter

    m = toy_meta("termbot", obs_dim=3, act_dim=2)
    rng = np.random.default_rng(5)
    with EpisodeWriter(root, m, flush_every=4) as w:
        for e, (n, end) in enumerate([(6, "term"), (5, "trunc"), (3, "term"), (4, "open")]):
            w.begin_episode({"seed": 10 + e})
            w.set_policy_version(e)
            traj = rng.normal(size=(n + 1, 3)).astype(np.float32)  # a trajectory: next_obs[t] == obs[t + 1]
            for t in range(n):
                last = t == n - 1
                w.append(traj[t], rng.uniform(-1, 1, 2).astype(np.float32), float(rng.normal()), traj[t + 1],
                         last and end == "term",
                         last and end == "trunc", intervention=int(rng.integers(0, 4)),
                         time_wall_s=1e9 + e * 10 + t * 0.02, time_mono_s=100.0 + e * 10 + t * 0.02)
    return root


@pytest.mark.parametrize("fixture", ["reacher", "terminating"])
def test_minari_round_trip_through_the_real_package_keeps_every_field(
        fixture: str, reacher_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import minari

    store = reacher_store if fixture == "reacher" else terminating_store(tmp_path / "term")
    src = EpisodeStore(store).read()
    if fixture == "terminating":
        assert src.batch.terminated.sum() == 2 and src.batch.truncated.sum() == 1  # the fixture does terminate
    did = export_minari(store, tmp_path / "minari")
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    ds = minari.load_dataset(did)
    eps = EpisodeStore(store).episodes()
    assert ds.total_episodes == len(eps) and ds.total_steps == len(src)
    # what Minari holds, episode by episode, against the store
    for e, mep in zip(eps, ds.iterate_episodes()):
        rows = np.flatnonzero(src.episode_index == e.index)
        b = src.batch.take(rows)
        assert mep.id == e.index
        np.testing.assert_array_equal(mep.observations, np.concatenate([b.obs, b.next_obs[-1:]]))
        np.testing.assert_array_equal(mep.actions, b.action)
        np.testing.assert_array_equal(mep.rewards, b.reward)
        np.testing.assert_array_equal(mep.terminations, b.terminated)
        np.testing.assert_array_equal(mep.truncations, b.truncated)
        for k, v in src.extras.items():
            info = np.asarray(mep.infos[k])
            np.testing.assert_array_equal(info.reshape(len(info), -1)[:-1], v[rows].reshape(len(b), -1), err_msg=k)
    # and the store imported back from Minari
    import_minari(did, tmp_path / "back")
    back_store = EpisodeStore(tmp_path / "back")
    back = back_store.read()
    for name in ("obs", "action", "reward", "next_obs", "terminated", "truncated"):
        np.testing.assert_array_equal(getattr(back.batch, name), getattr(src.batch, name), err_msg=name)
    for name in ("time_wall_s", "time_mono_s", "intervention", "episode_index", "step_index"):
        np.testing.assert_array_equal(back.extras[name], src.extras[name], err_msg=name)
    assert [(x.index, x.length, x.closed) for x in back_store.episodes()] == [
        (x.index, x.length, x.closed) for x in eps]


def test_lerobot_export_matches_the_v3_layout(reacher_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "lr"
    export_lerobot(reacher_store, out)
    info = json.loads((out / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 50
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["total_episodes"] == 3 and info["total_frames"] == 150 and info["total_tasks"] == 1
    for k in ("chunks_size", "data_files_size_in_mb", "video_files_size_in_mb", "splits", "robot_type"):
        assert k in info
    feats = info["features"]
    for k, dt in (("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                  ("index", "int64"), ("task_index", "int64")):
        assert feats[k] == {"dtype": dt, "shape": [1], "names": None}
    od = len(robot_task("reacher2").obs_names)
    assert feats["observation.state"]["shape"] == [od] and feats["action"]["shape"] == [2]
    data = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert set(feats) == set(data.column_names)
    df = data.to_pandas()
    assert df["index"].tolist() == list(range(150))
    assert df["frame_index"][:50].tolist() == list(range(50)) and df["episode_index"][50] == 1
    np.testing.assert_allclose(df["timestamp"][:3], [0.0, 0.02, 0.04], atol=1e-6)
    eps = pd.read_parquet(out / "meta/episodes/chunk-000/file-000.parquet")
    for col in ("episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                "dataset_to_index"):
        assert col in eps.columns
    assert eps["dataset_from_index"].tolist() == [0, 50, 100] and eps["dataset_to_index"].tolist() == [50, 100, 150]
    tasks = pd.read_parquet(out / "meta/tasks.parquet")
    assert tasks.loc["reach", "task_index"] == 0
    stats = json.loads((out / "meta/stats.json").read_text())
    assert set(stats["observation.state"]) >= {"min", "max", "mean", "std", "count"}
    assert len(stats["observation.state"]["mean"]) == od


def _expected_stats(a: np.ndarray) -> dict[str, list[float]]:
    """min/max/mean/std/count/q01/q99 per component, computed here from the store's data (not the exporter's)."""
    x = np.asarray(a, np.float64).reshape(len(a), -1)
    return {"min": list(x.min(0)), "max": list(x.max(0)), "mean": list(x.sum(0) / len(x)),
            "std": list(np.sqrt(((x - x.sum(0) / len(x)) ** 2).sum(0) / len(x))), "count": [len(x)],
            "q01": list(np.percentile(x, 1, axis=0)), "q99": list(np.percentile(x, 99, axis=0))}


@pytest.mark.parametrize("fixture", ["reacher", "terminating"])
def test_lerobot_export_values_and_statistics_equal_the_store(fixture: str, reacher_store: Path,
                                                               tmp_path: Path) -> None:
    store_dir = reacher_store if fixture == "reacher" else terminating_store(tmp_path / "term")
    store = EpisodeStore(store_dir)
    src, meta, eps = store.read(), store.meta, store.episodes()
    out = tmp_path / "lr"
    export_lerobot(store_dir, out)
    b, x, n = src.batch, src.extras, len(src)
    expected = {
        "observation.state": b.obs, "action": b.action, "next.reward": b.reward,
        "next.done": b.terminated | b.truncated, "next.terminated": b.terminated, "next.truncated": b.truncated,
        "next.observation.state": b.next_obs, "robodyna.intervention": x["intervention"],
        "robodyna.policy_version": x["policy_version"], "robodyna.time_mono_s": x["time_mono_s"],
        "timestamp": (x["step_index"] / meta.control_hz).astype(np.float32), "frame_index": x["step_index"],
        "episode_index": x["episode_index"], "index": np.arange(n), "task_index": np.zeros(n, np.int64),
    }
    info = json.loads((out / "meta/info.json").read_text())
    assert set(info["features"]) == set(expected)
    data = pq.read_table(out / "data/chunk-000/file-000.parquet")
    assert set(data.column_names) == set(expected)
    for name, want in expected.items():
        col = data.column(name).to_pylist()
        got = np.asarray(col, dtype=np.asarray(want).dtype)
        np.testing.assert_array_equal(got.reshape(np.shape(want)), want, err_msg=name)
        feat = info["features"][name]
        assert feat["shape"] == ([np.shape(want)[1]] if np.ndim(want) == 2 else [1]), name
    assert info["features"]["observation.state"]["names"] == meta.obs_names
    assert info["features"]["action"]["names"] == meta.action_names
    assert info["total_frames"] == n and info["total_episodes"] == len(eps)
    assert info["robot_type"] == meta.robot_name and info["fps"] == meta.control_hz

    # dataset statistics: every statistic written equals one computed from the store's data
    stats = json.loads((out / "meta/stats.json").read_text())
    assert set(stats) <= set(expected)
    # next.* statistics may be absent (issue 16 adds them); robodyna.* extras carry none; every other has them
    required = {k for k in expected if not k.startswith(("next.", "robodyna."))} | {"next.reward", "next.done"}
    assert required <= set(stats), sorted(required - set(stats))
    for name, st in stats.items():
        want_st = _expected_stats(expected[name])
        assert set(st) >= {"min", "max", "mean", "std", "count", "q01", "q99"}, name
        for k, v in want_st.items():
            np.testing.assert_allclose(st[k], v, rtol=1e-6, atol=1e-9, err_msg=f"{name}.{k}")

    # the episodes table: ranges and per-episode statistics against each episode's rows
    table = pd.read_parquet(out / "meta/episodes/chunk-000/file-000.parquet")
    assert table["episode_index"].tolist() == [e.index for e in eps]
    for row, e in zip(table.itertuples(index=False), eps):
        r = table.columns.get_loc
        rows = np.flatnonzero(x["episode_index"] == e.index)
        assert row[r("length")] == e.length == len(rows)
        assert (row[r("dataset_from_index")], row[r("dataset_to_index")]) == (rows[0], rows[-1] + 1)
        ep_stats = [c for c in table.columns if c.startswith("stats/")]
        assert {c.split("/")[1] for c in ep_stats} >= {"observation.state", "action", "next.reward"}
        for c in ep_stats:
            _, name, k = c.split("/")
            want = _expected_stats(np.asarray(expected[name])[rows])[k]
            np.testing.assert_allclose(np.asarray(row[r(c)], np.float64), want, rtol=1e-6, atol=1e-9, err_msg=c)


def test_replay_on_the_nominal_sim_has_no_divergence_and_on_a_reality_profile_clearly_some(
        reacher_store: Path, tmp_path: Path) -> None:
    nominal = replay(reacher_store, "reacher2", episode=1)
    assert nominal.joint_err_rad.max() < 1e-5 and nominal.ee_err_m.max() < 1e-5
    heavy = replay(reacher_store, "reacher2", episode=1, reality="heavy")
    assert heavy.joint_err_rad.max() > 1e-2 and heavy.ee_err_m.max() > 1e-3


def test_replay_refuses_a_store_from_another_robot(reacher_store: Path) -> None:
    with pytest.raises(IdentityMismatch, match=r"another robot \(replay\): name is 'reacher2' there, 'panda' here"):
        replay(reacher_store, "panda")


def test_cli_recorder_killed_mid_recording_resumes_without_gaps_and_keeps_every_saved_row(tmp_path: Path) -> None:
    from robodyna.onboard.record import record

    out = tmp_path / "rec"
    cmd = [sys.executable, "-m", "robodyna.cli.main", "record", "--robot", "reacher2", "--policy", "random",
           "--episodes", "400", "--out", str(out), "--seed", "3", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    saved: dict[str, bytes] = {}  # every segment the store showed as landed before a kill, byte for byte
    snapshots = []  # the rows a reader saw just before each kill
    for delay in (2.5, 2.8):
        p = subprocess.Popen(cmd + (["--resume"] if out.exists() else []), env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        t0 = time.time()
        while not (out / "segments").is_dir() or not any((out / "segments").iterdir()):
            assert time.time() - t0 < 60 and p.poll() is None, "recorder did not start"
            time.sleep(0.05)
        time.sleep(delay - 2.0)
        snapshots.append(EpisodeStore(out).read().columns())
        for seg in sorted((out / "segments").glob("seg-*.arrow")):
            saved[seg.name] = seg.read_bytes()
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        assert not [x for x in validate(out) if x.severity == "error"]
    r = subprocess.run(cmd[:9] + ["2", *cmd[10:], "--resume"], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    s = EpisodeStore(out)
    eps = s.episodes()
    assert [e.index for e in eps] == list(range(len(eps))) and eps[-1].closed and eps[-2].closed
    assert not [x for x in validate(out) if x.severity == "error"]
    # every row saved before a kill is still there, unchanged: the segment files byte for byte, the rows column
    # by column (what is on disk after each crash extends what was there before it)
    assert saved and len(snapshots[0]["obs"]) > 0
    for name, data in saved.items():
        assert (out / "segments" / name).read_bytes() == data, name
    final = s.read().columns()
    for snap in snapshots:
        for name, col in snap.items():
            np.testing.assert_array_equal(final[name][: len(col)], col, err_msg=name)
    # and the first run's episodes are the ones the same command records in-process (seeded env and policy)
    first = snapshots[0]
    n_eps = int(first["episode_index"].max())  # its last episode may be unfinished
    ref = EpisodeStore(record("reacher2", "random", n_eps, tmp_path / "ref", seed=3, progress=False)["out"]).read()
    rows = len(ref)
    assert rows == int(np.sum(first["episode_index"] < n_eps))
    for name, col in ref.columns().items():
        if not name.startswith("time_"):
            np.testing.assert_array_equal(first[name][:rows], col, err_msg=name)
