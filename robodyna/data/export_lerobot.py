"""LeRobotDataset v3.0 export (``robodyna dataset export --format lerobot``), tabular features only.

Layout written (the v3.0 path templates, one chunk/file since robot state data is small)::

    OUT/meta/info.json                           codebase_version v3.0, fps, features, path templates, totals
    OUT/meta/stats.json                          per feature (every one: all are numeric): min, max, mean, std,
                                                 count, q01, q99
    OUT/meta/robodyna.json                       what LeRobot has no key for: reality, units, robot spec, source
    OUT/meta/tasks.parquet                       index = task string, column task_index
    OUT/meta/episodes/chunk-000/file-000.parquet episode_index, tasks, length, data/chunk_index, data/file_index,
                                                 dataset_from_index, dataset_to_index, meta/episodes/*, stats/*
    OUT/data/chunk-000/file-000.parquet          observation.state, action, next.reward, next.done, timestamp,
                                                 frame_index, episode_index, index, task_index (+ robodyna extras)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from robodyna.data.store import EpisodeStore, StoreError

log = logging.getLogger(__name__)

CODEBASE_VERSION = "v3.0"
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
TASKS_PATH = "meta/tasks.parquet"
DEFAULT_FEATURES = ("timestamp", "frame_index", "episode_index", "index", "task_index")


def _stats(a: np.ndarray) -> dict[str, list[float] | list[int]]:
    a = a.reshape(len(a), -1).astype(np.float64)
    return {"min": a.min(0).tolist(), "max": a.max(0).tolist(), "mean": a.mean(0).tolist(),
            "std": a.std(0).tolist(), "count": [int(len(a))],
            "q01": np.quantile(a, 0.01, axis=0).tolist(), "q99": np.quantile(a, 0.99, axis=0).tolist()}


def _fixed(a: np.ndarray, dtype: pa.DataType) -> pa.Array:
    a = np.ascontiguousarray(a)
    return pa.FixedSizeListArray.from_arrays(pa.array(a.reshape(-1), type=dtype), a.shape[1])


def export_lerobot(store_dir: str | Path, out: str | Path, task: str | None = None) -> dict[str, Any]:
    """Export a store as a LeRobotDataset v3.0 folder (no videos). Returns info.json's content.

    A store with errors is refused (:func:`~robodyna.data.validate.require_valid`). The folder is written
    under a temporary name and renamed to ``out`` at the end, so a failed export leaves nothing behind.
    """
    from robodyna.data.export_minari import staged_output
    from robodyna.data.validate import require_valid

    for w in require_valid(store_dir, "export it"):
        log.warning("%s", w.format(store_dir))
    store = EpisodeStore(store_dir)
    out = Path(out)
    with staged_output(out, "LeRobot dataset") as tmp:
        return _write(store, tmp, task)


def _write(store: EpisodeStore, out: Path, task: str | None) -> dict[str, Any]:
    meta = store.meta
    tr = store.read()
    if len(tr) == 0:
        raise StoreError(f"{store.root}: empty store, nothing to export")
    task_text = task or meta.task or "robodyna"
    n = len(tr)
    ep = tr.episode_index
    eps = store.episodes()
    fps = float(meta.control_hz)
    frame = tr.step_index.astype(np.int64)
    timestamp = (frame / fps).astype(np.float32)
    done = tr.batch.terminated | tr.batch.truncated
    cols: dict[str, pa.Array] = {
        "observation.state": _fixed(tr.batch.obs, pa.float32()),
        "action": _fixed(tr.batch.action, pa.float32()),
        "next.reward": pa.array(tr.batch.reward.astype(np.float32)),
        "next.done": pa.array(done),
        "next.terminated": pa.array(tr.batch.terminated),
        "next.truncated": pa.array(tr.batch.truncated),
        "next.observation.state": _fixed(tr.batch.next_obs, pa.float32()),
        "robodyna.intervention": pa.array(tr.extras["intervention"].astype(np.int64)),
        "robodyna.policy_version": pa.array(tr.extras["policy_version"].astype(np.int64)),
        "robodyna.time_mono_s": pa.array(tr.extras["time_mono_s"]),
        "timestamp": pa.array(timestamp),
        "frame_index": pa.array(frame),
        "episode_index": pa.array(ep.astype(np.int64)),
        "index": pa.array(np.arange(n, dtype=np.int64)),
        "task_index": pa.array(np.zeros(n, np.int64)),
    }
    data_file = out / DATA_PATH.format(chunk_index=0, file_index=0)
    data_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(cols), data_file)

    def feat(dtype: str, shape: list[int], names: list[str] | None) -> dict[str, Any]:
        return {"dtype": dtype, "shape": shape, "names": names}

    features = {
        "observation.state": feat("float32", [meta.obs_dim], list(meta.obs_names)),
        "action": feat("float32", [meta.act_dim], list(meta.action_names)),
        "next.reward": feat("float32", [1], None),
        "next.done": feat("bool", [1], None),
        "next.terminated": feat("bool", [1], None),
        "next.truncated": feat("bool", [1], None),
        "next.observation.state": feat("float32", [meta.obs_dim], list(meta.obs_names)),
        "robodyna.intervention": feat("int64", [1], None),
        "robodyna.policy_version": feat("int64", [1], None),
        "robodyna.time_mono_s": feat("float64", [1], None),
        "timestamp": feat("float32", [1], None),
        "frame_index": feat("int64", [1], None),
        "episode_index": feat("int64", [1], None),
        "index": feat("int64", [1], None),
        "task_index": feat("int64", [1], None),
    }
    arrays = {
        "observation.state": tr.batch.obs, "action": tr.batch.action, "next.reward": tr.batch.reward,
        "next.done": done, "next.terminated": tr.batch.terminated, "next.truncated": tr.batch.truncated,
        "next.observation.state": tr.batch.next_obs, "robodyna.intervention": tr.extras["intervention"],
        "robodyna.policy_version": tr.extras["policy_version"], "robodyna.time_mono_s": tr.extras["time_mono_s"],
        "timestamp": timestamp, "frame_index": frame, "episode_index": ep, "index": np.arange(n),
        "task_index": np.zeros(n),
    }
    # LeRobot computes stats for every non-string feature; all of these are numeric
    assert set(arrays) == set(features), sorted(set(arrays) ^ set(features))
    stats = {k: _stats(np.asarray(v)) for k, v in arrays.items()}
    # episodes table
    rows: dict[str, list[Any]] = {k: [] for k in (
        "episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
        "dataset_to_index", "meta/episodes/chunk_index", "meta/episodes/file_index")}
    ep_stats: dict[str, list[Any]] = {}
    for e in eps:
        lo, hi = int(np.searchsorted(ep, e.index, "left")), int(np.searchsorted(ep, e.index, "right"))
        for k, v in (("episode_index", e.index), ("tasks", [task_text]), ("length", hi - lo),
                     ("data/chunk_index", 0), ("data/file_index", 0), ("dataset_from_index", lo),
                     ("dataset_to_index", hi), ("meta/episodes/chunk_index", 0), ("meta/episodes/file_index", 0)):
            rows[k].append(v)
        for feat_name in arrays:
            st = _stats(np.asarray(arrays[feat_name])[lo:hi])
            for sk, sv in st.items():
                ep_stats.setdefault(f"stats/{feat_name}/{sk}", []).append(sv)
    ep_file = out / EPISODES_PATH.format(chunk_index=0, file_index=0)
    ep_file.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({**rows, **ep_stats}), ep_file)
    import pandas as pd

    tasks = pd.DataFrame({"task_index": [0]}, index=pd.Index([task_text], name="task"))
    tasks.to_parquet(out / TASKS_PATH)
    info = {
        "codebase_version": CODEBASE_VERSION,
        "robot_type": meta.robot_name,
        "total_episodes": len(eps),
        "total_frames": n,
        "total_tasks": 1,
        "chunks_size": 1000,
        "data_files_size_in_mb": 100,
        "video_files_size_in_mb": 200,
        "fps": int(round(fps)) if abs(fps - round(fps)) < 1e-9 else fps,
        "splits": {"train": f"0:{len(eps)}"},
        "data_path": DATA_PATH,
        "video_path": None,
        "features": features,
    }
    extra = {"reality": meta.reality, "control_hz": meta.control_hz, "obs_units": meta.obs_units,
             "action_units": meta.action_units, "robot_spec": meta.robot_spec,
             "software_version": meta.software_version, "source": str(store.root.resolve())}
    (out / "meta" / "robodyna.json").write_text(json.dumps(extra, indent=4) + "\n")
    (out / "meta" / "info.json").write_text(json.dumps(info, indent=4) + "\n")
    (out / "meta" / "stats.json").write_text(json.dumps(stats, indent=4) + "\n")
    return info
