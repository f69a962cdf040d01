"""Store behaviour: round trip, streaming reads, bad input reporting, merge and split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
import pytest
from conftest import toy_meta, write_toy

from robodyna.data.batch import Batch
from robodyna.data.ops import merge, split
from robodyna.data.store import EpisodeStore, EpisodeWriter, StoreError
from robodyna.data.validate import info, validate


def test_round_trip_returns_batches_with_all_extra_columns(toy_store: Path) -> None:
    s = EpisodeStore(toy_store)
    tr = s.read()
    assert isinstance(tr.batch, Batch) and len(tr) == 40
    assert tr.episode_index.tolist() == sorted(tr.episode_index.tolist())
    assert tr.step_index[:10].tolist() == list(range(10))
    assert set(tr.extras) == {"time_wall_s", "time_mono_s", "episode_index", "step_index", "policy_version",
                              "intervention", "policy_action"}
    np.testing.assert_array_equal(tr.extras["policy_action"], tr.batch.action)  # default: raw = applied
    assert [e.closed for e in s.episodes()] == [True] * 4 and s.episodes()[2].info == {"seed": 2}
    np.testing.assert_array_equal(s.read_episode(2).batch.obs[:, 0], 200 + np.arange(10))
    df = pd.concat(pd.read_feather(p) for p in sorted((toy_store / "segments").iterdir()))
    assert list(df.columns)[:6] == ["obs", "action", "reward", "next_obs", "terminated", "truncated"]
    assert len(df) == 40 and validate(toy_store) == []


def test_tail_reader_sees_rows_while_writer_appends(tmp_path: Path) -> None:
    m = toy_meta()
    w = EpisodeWriter(tmp_path / "s", m, flush_every=5)
    tail = EpisodeStore(tmp_path / "s").tail()
    seen = 0
    for _t in range(23):
        w.append(np.zeros(4), np.zeros(2), 0.0, np.zeros(4), False, False)
        w.wait()
        got = tail.poll()
        seen += 0 if got is None else len(got)
    assert seen == 20  # 4 full segments landed; the 3-row tail is still buffered
    w.close()
    assert seen + len(tail.poll()) == 23
    assert not EpisodeStore(tmp_path / "s").episodes()[0].closed  # closed without ending: unfinished


def test_truncated_segment_is_reported_with_its_file(toy_store: Path) -> None:
    seg = sorted((toy_store / "segments").iterdir())[2]
    seg.write_bytes(seg.read_bytes()[:200])
    problems = validate(toy_store)
    assert any(p.severity == "error" and p.file == str(seg) for p in problems), problems
    with pytest.raises(StoreError, match=seg.name):
        EpisodeStore(toy_store).read()


def test_nan_rows_are_listed_with_episode_and_step(tmp_path: Path) -> None:
    m = toy_meta()
    with EpisodeWriter(tmp_path / "s", m) as w:
        for t in range(6):
            o = np.full(4, np.nan if t in (2, 4) else 0.0)
            w.append(o, np.zeros(2), 0.0, np.zeros(4), False, t == 5)
    errs = [p for p in validate(tmp_path / "s") if p.severity == "error"]
    assert [(p.episode, p.step) for p in errs] == [(0, 2), (0, 4)]
    assert "seg-000000.arrow" in str(errs[0]) and "episode 0 step 2" in str(errs[0])
    with pytest.raises(StoreError, match=r"seg-000000\.arrow.*episode 0 step 2"):
        EpisodeStore(tmp_path / "s").read()


def test_validate_lists_every_problem_of_a_tampered_store(toy_store: Path) -> None:
    # drop a middle segment -> step gap; and break meta in a copy -> meta error
    segs = sorted((toy_store / "segments").iterdir())
    segs[2].unlink()
    msgs = [str(p) for p in validate(toy_store)]
    assert any("step gap" in m for m in msgs) and any("jump" in m for m in msgs)
    (toy_store / "meta.json").write_text("{not json")
    assert "meta.json" in str(validate(toy_store)[0])


def test_existing_store_requires_resume(toy_store: Path) -> None:
    with pytest.raises(StoreError, match="resume"):
        EpisodeWriter(toy_store, toy_meta())
    with pytest.raises(StoreError, match="obs_names"):
        EpisodeWriter(toy_store, toy_meta(obs_dim=5), resume=True)


def test_merge_of_two_robots_reindexes_without_loss(tmp_path: Path) -> None:
    a = write_toy(tmp_path / "a", episodes=3, robot="arm_a")
    b = write_toy(tmp_path / "b", episodes=2, robot="arm_b")
    res = merge([a, b], tmp_path / "m")
    assert res["episodes"] == 5
    s = EpisodeStore(tmp_path / "m")
    eps = s.episodes()
    assert [e.index for e in eps] == list(range(5)) and all(e.closed for e in eps)
    assert eps[3].info["source"] == {"store": str(b), "episode": 0, "robot": "arm_b", "reality": None}
    merged, ra, rb = s.read(), EpisodeStore(a).read(), EpisodeStore(b).read()
    np.testing.assert_array_equal(merged.batch.obs, np.concatenate([ra.batch.obs, rb.batch.obs]))
    np.testing.assert_array_equal(merged.extras["time_mono_s"],
                                  np.concatenate([ra.extras["time_mono_s"], rb.extras["time_mono_s"]]))
    np.testing.assert_array_equal(merged.extras["intervention"],
                                  np.concatenate([ra.extras["intervention"], rb.extras["intervention"]]))
    assert s.meta.robot_name == "arm_a+arm_b" and validate(tmp_path / "m") == []


def test_merge_with_mismatched_metadata_names_the_difference(tmp_path: Path) -> None:
    a = write_toy(tmp_path / "a")
    b = write_toy(tmp_path / "b", meta=toy_meta(hz=100.0))
    with pytest.raises(StoreError, match=r"control_hz: 50\.0 != 100\.0"):
        merge([a, b], tmp_path / "m")


def test_split_by_episode_keeps_every_episode_once(toy_store: Path, tmp_path: Path) -> None:
    res = split(toy_store, tmp_path / "tr", tmp_path / "va", val_fraction=0.25, seed=3)
    assert sorted(res["train"] + res["validation"]) == [0, 1, 2, 3] and len(res["validation"]) == 1
    va = EpisodeStore(tmp_path / "va")
    assert va.episodes()[0].info["source"]["episode"] == res["validation"][0]
    np.testing.assert_array_equal(va.read().batch.obs, EpisodeStore(toy_store).read(res["validation"]).batch.obs)


def test_info_counts_interventions_and_returns(toy_store: Path) -> None:
    d = info(toy_store)
    assert d["episodes"] == 4 and d["steps"] == 40 and d["interventions"]["clamped"] == 4
    assert d["return"]["mean"] == pytest.approx(45.0) and d["policy_versions"] == {"0": 40}


def test_segments_are_plain_arrow_ipc(toy_store: Path) -> None:
    seg = sorted((toy_store / "segments").iterdir())[0]
    t = ipc.open_file(pa.memory_map(str(seg))).read_all()
    assert t.schema.field("obs").type == pa.list_(pa.float32(), 4)


def test_segments_written_before_policy_action_existed_read_it_as_the_applied_action(toy_store: Path) -> None:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    for seg in sorted((toy_store / "segments").iterdir()):  # rewrite each segment without the new column
        with ipc.open_file(pa.memory_map(str(seg))) as r:
            table = r.read_all()
        old = table.drop_columns(["policy_action"]).replace_schema_metadata(table.schema.metadata)
        with open(seg, "wb") as f, ipc.new_file(f, old.schema) as w:
            w.write_table(old)
    tr = EpisodeStore(toy_store).read()
    assert len(tr) == 40
    np.testing.assert_array_equal(tr.extras["policy_action"], tr.batch.action)
    assert not [p for p in validate(toy_store) if p.severity == "error"]
    with EpisodeWriter(toy_store, resume=True) as w:  # and the store continues with the new column
        w.begin_episode()
        w.append(np.zeros(4, np.float32), np.ones(2, np.float32), 0.0, np.zeros(4, np.float32), False, True,
                 policy_action=np.full(2, 7.0, np.float32))
    tr = EpisodeStore(toy_store).read()
    assert tr.extras["policy_action"][-1].tolist() == [7.0, 7.0] and tr.batch.action[-1].tolist() == [1.0, 1.0]


def test_a_nan_policy_action_is_an_error_unless_the_row_says_the_output_was_rejected(tmp_path: Path) -> None:
    w = EpisodeWriter(tmp_path / "s", toy_meta(), flush_every=4)
    o = np.zeros(toy_meta().obs_dim, np.float32)
    a = np.zeros(toy_meta().act_dim, np.float32)
    nan = np.full(toy_meta().act_dim, np.nan)
    w.append(o, a, 0.0, o, False, False, intervention=32 | 8, policy_action=nan)  # rejected and held: fine
    w.append(o, a, 0.0, o, False, False, intervention=0, policy_action=nan)  # NaN output said to be applied
    w.append(o, a, 0.0, o, False, True)
    w.close()
    problems = [p for p in validate(tmp_path / "s") if p.severity == "error"]
    assert [(p.message, p.step) for p in problems] == [
        ("non-finite policy_action without the nonfinite_rejected bit", 1)]


def test_warm_append_writes_nothing_that_is_stored(tmp_path: Path) -> None:
    w = EpisodeWriter(tmp_path / "s", toy_meta(), flush_every=4)
    junk = np.full(4, 99.0, np.float32)
    for t in range(10):  # every row preceded by a throw-away one, across full buffers and hand-overs
        w.warm_append(junk, np.ones(2), 99.0, junk, np.ones(2), 0.0, 0.0)
        w.append(np.full(4, t, np.float32), np.zeros(2), float(t), np.full(4, t + 1, np.float32), False, t == 9)
    w.warm_append(junk, np.ones(2), 99.0, junk, np.ones(2), 0.0, 0.0)
    w.close()
    b = EpisodeStore(tmp_path / "s").read().batch
    np.testing.assert_array_equal(b.reward, np.arange(10))
    np.testing.assert_array_equal(b.obs[:, 0], np.arange(10))
    assert validate(tmp_path / "s") == []
