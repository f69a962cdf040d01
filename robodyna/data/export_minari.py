"""Minari export/import (``robodyna dataset export --format minari`` / ``dataset import --format minari``)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from robodyna.data.batch import Batch
from robodyna.data.store import TMP_PREFIX, EpisodeStore, EpisodeWriter, StoreError, StoreMeta

log = logging.getLogger(__name__)


@contextlib.contextmanager
def staged_output(final: Path, what: str) -> Iterator[Path]:
    """A new temporary folder beside ``final`` that becomes ``final`` (one rename) only if the block succeeds.

    ``final`` must not exist or be an empty folder; a failure (or an interrupt) removes the temporary folder,
    so an export or import that fails leaves nothing half-written.
    """
    final = Path(final).resolve()
    if final.exists() and (not final.is_dir() or any(final.iterdir())):
        raise StoreError(f"{final}: {what} output already exists and is not empty (nothing was written)")
    created = [d for d in (final.parent, *final.parent.parents) if not d.exists()]
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f"{TMP_PREFIX}{final.name}.{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    done = False
    try:
        tmp.mkdir()
        yield tmp
        if final.exists():
            final.rmdir()  # empty (checked above)
        os.replace(tmp, final)
        done = True
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if not done:
            for d in created:  # innermost first: folders made for the output go again
                with contextlib.suppress(OSError):
                    d.rmdir()


@contextlib.contextmanager
def _datasets_root(root: str | Path | None) -> Iterator[None]:
    old = os.environ.get("MINARI_DATASETS_PATH")
    if root is not None:
        os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if root is not None:
            if old is None:
                os.environ.pop("MINARI_DATASETS_PATH", None)
            else:
                os.environ["MINARI_DATASETS_PATH"] = old


def default_dataset_id(meta: StoreMeta) -> str:
    return f"robodyna/{meta.robot_name.replace('+', '-')}-{meta.task or 'data'}-v0"


def export_minari(store_dir: str | Path, out_root: str | Path, dataset_id: str | None = None) -> str:
    """Write the store as Minari dataset ``dataset_id`` under the Minari datasets root ``out_root``.

    Load it with ``MINARI_DATASETS_PATH=out_root`` and ``minari.load_dataset(dataset_id)``. Minari stores
    T+1 observations per episode: ``obs`` rows then the last ``next_obs``; the extra columns go to ``infos``.
    A store with errors is refused (:func:`~robodyna.data.validate.require_valid`); the dataset is built in a
    temporary datasets root, checked and moved to ``out_root/dataset_id`` in one rename, so a failed export
    leaves nothing behind.
    """
    import gymnasium as gym
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    from robodyna.data.validate import require_valid

    for w in require_valid(store_dir, "export it"):
        log.warning("%s", w.format(store_dir))
    out_root = Path(out_root).resolve()
    store = EpisodeStore(store_dir)
    meta = store.meta
    did = dataset_id or default_dataset_id(meta)
    if not re.fullmatch(r"(?:[A-Za-z0-9_.-]+/)?[A-Za-z0-9_.-]+-v\d+", did):
        raise StoreError(f"--id {did!r}: a Minari dataset id is [NAMESPACE/]NAME-vVERSION, e.g. "
                         f"{default_dataset_id(meta)!r}")
    tr = store.read()
    if len(tr) == 0:
        raise StoreError(f"{store.root}: empty store, nothing to export")
    ep = tr.episode_index
    buffers = []
    for e in store.episodes():
        lo, hi = int(np.searchsorted(ep, e.index, "left")), int(np.searchsorted(ep, e.index, "right"))
        b = tr.batch.take(slice(lo, hi))
        obs = np.concatenate([b.obs, b.next_obs[-1:]]).astype(np.float32)
        # per-step infos as [T+1, 1]: minari's arrow storage cannot decode scalar (shape ()) info entries
        infos = {k: np.concatenate([v[lo:hi], v[hi - 1 : hi]])[:, None] for k, v in tr.extras.items()}
        buffers.append(EpisodeBuffer(id=e.index, seed=e.info.get("seed"), observations=obs,
                                     actions=b.action.astype(np.float32), rewards=b.reward.astype(np.float64),
                                     terminations=b.terminated, truncations=b.truncated, infos=infos))
    spec = meta.robot_spec or {}
    low = np.asarray(spec.get("action_low", [-np.inf] * meta.act_dim), np.float32)
    high = np.asarray(spec.get("action_high", [np.inf] * meta.act_dim), np.float32)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (meta.obs_dim,), np.float32)
    act_space = gym.spaces.Box(low, high, dtype=np.float32)
    desc = (f"robodyna episode store export: robot {meta.robot_name}, task {meta.task}, reality {meta.reality}, "
            f"control {meta.control_hz} Hz; obs {meta.obs_names}; action {meta.action_names} {meta.action_units}")
    final = out_root.joinpath(*did.split("/"))
    with staged_output(final, "Minari dataset") as tmp_root:
        with _datasets_root(tmp_root), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # minari nags about permalink/email/eval_env
            ds = minari.create_dataset_from_buffers(
                did, buffers, observation_space=obs_space, action_space=act_space,
                algorithm_name=str(meta.extra.get("policy", "unknown")), author="robodyna", description=desc,
                data_format="arrow")
            if ds.total_episodes != len(buffers) or ds.total_steps != len(tr):
                raise StoreError(f"{final}: Minari wrote {ds.total_episodes} episodes / {ds.total_steps} steps, "
                                 f"the store holds {len(buffers)} / {len(tr)}; nothing was written")
        staged = tmp_root.joinpath(*did.split("/"))
        # staged_output renames tmp_root to final: move the dataset folder to the top of tmp_root first
        holder = tmp_root.parent / f"{tmp_root.name}.ds"
        os.replace(staged, holder)
        shutil.rmtree(tmp_root)
        os.replace(holder, tmp_root)
    return did


def import_minari(id_or_path: str, out: str | Path, datasets_root: str | Path | None = None,
                  robot_name: str | None = None) -> dict[str, Any]:
    """Create a store from a Minari dataset (an id in the datasets root, or a dataset folder path).

    The store is written to a temporary folder and renamed to ``out`` once every episode is in, so an import
    that fails (an unreadable dataset) leaves no empty or partial store.
    """
    import minari

    p = Path(id_or_path)
    if p.is_dir() and (p / "data").is_dir():
        from minari.dataset.minari_dataset import MinariDataset

        ds = MinariDataset(p / "data")
        did = p.name
    else:
        with _datasets_root(datasets_root):
            ds = minari.load_dataset(id_or_path)
        did = id_or_path
    o_space, a_space = ds.observation_space, ds.action_space
    if len(getattr(o_space, "shape", ()) or ()) != 1 or len(getattr(a_space, "shape", ()) or ()) != 1:
        raise StoreError(f"{id_or_path}: only flat Box observation/action spaces can be imported "
                         f"(got {o_space}, {a_space})")
    od, ad = int(o_space.shape[0]), int(a_space.shape[0])
    meta = StoreMeta(
        robot_name=robot_name or did.split("/")[-1],
        obs_names=[f"obs{i}" for i in range(od)], obs_units=["-"] * od,
        action_names=[f"action{i}" for i in range(ad)], action_units=["-"] * ad,
        control_hz=float((ds.spec.env_spec and ds.spec.env_spec.kwargs.get("control_hz")) or 0.0) or 1.0,
        extra={"imported_from": {"format": "minari", "id": did}},
    )
    n_eps = n = 0
    with staged_output(Path(out), "import") as tmp, \
            EpisodeWriter(tmp, meta, flush_every=8192, flush_on_episode_end=False) as w:
        for episode in ds.iterate_episodes():
            o = np.asarray(episode.observations, np.float32)
            b = Batch.create(o[:-1], np.asarray(episode.actions, np.float32), np.asarray(episode.rewards),
                             o[1:], np.asarray(episode.terminations), np.asarray(episode.truncations))
            w.begin_episode({"source": {"minari": did, "episode": int(episode.id)}})
            infos = episode.infos if isinstance(episode.infos, dict) else {}
            kw = {k: np.asarray(infos[k]).reshape(-1)[:-1] for k in ("time_wall_s", "time_mono_s", "intervention")
                  if k in infos and len(infos[k]) == len(b) + 1}
            w.append_batch(b, split_episodes=False, **kw)
            w.end_episode(finished=bool(b.terminated[-1] or b.truncated[-1]) if len(b) else True)
            n_eps += 1
            n += len(b)
    return {"out": str(out), "episodes": n_eps, "steps": n, "source": did}
