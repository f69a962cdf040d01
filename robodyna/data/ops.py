"""Store-to-store operations: copy episodes, merge several stores, split into train/validation."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robodyna.data.store import EpisodeStore, EpisodeWriter, StoreError, StoreMeta, compatibility_problems

log = logging.getLogger(__name__)


def copy_episodes(
    src: EpisodeStore, indices: list[int], writer: EpisodeWriter, info_extra: Callable[[int], dict[str, Any]]
) -> list[int]:
    """Append episodes ``indices`` of ``src`` to ``writer`` as new episodes (every column kept, unfinished
    episodes stay unfinished); returns their new indices."""
    eps = {e.index: e for e in src.episodes()}
    tr = src.read(check_finite=False)
    ep_col = tr.episode_index
    out = []
    for index in indices:
        e = eps[index]
        lo0, hi0 = int(np.searchsorted(ep_col, index, "left")), int(np.searchsorted(ep_col, index, "right"))
        out.append(writer.begin_episode({**e.info, **info_extra(index)}))
        pv = tr.extras["policy_version"][lo0:hi0]
        cuts = np.flatnonzero(np.diff(pv)) + 1
        bounds = [0, *cuts.tolist(), hi0 - lo0]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            sl = slice(lo0 + lo, lo0 + hi)
            writer.set_policy_version(int(pv[lo]))
            writer.append_batch(
                tr.batch.take(sl),
                intervention=tr.extras["intervention"][sl],
                time_wall_s=tr.extras["time_wall_s"][sl],
                time_mono_s=tr.extras["time_mono_s"][sl],
                split_episodes=False,
                policy_action=tr.extras["policy_action"][sl],
            )
        writer.end_episode(finished=e.closed)
    return out


def merge(sources: list[str | Path], out: str | Path, allow_different_robots: bool = True) -> dict[str, Any]:
    """Merge stores into a new store at ``out``, re-indexing episodes 0..N-1 in source order.

    Stores may come from several robots (different ``robot_name``) when their observation/action names and
    units, control rate and robot spec (apart from name/engine) agree; anything else raises
    :class:`StoreError` naming both stores and every differing key. Each episode's info records its origin
    (``source``: store path, original episode index, robot, reality).
    """
    if not sources:
        raise StoreError("merge: no input stores")
    stores = [EpisodeStore(s) for s in sources]
    base = stores[0]
    for s in stores[1:]:
        problems = compatibility_problems(base.meta, s.meta, strict_robot=not allow_different_robots)
        if problems:
            raise StoreError(f"merge: {s.root} is incompatible with {base.root}: " + "; ".join(problems))
    robots = sorted({s.meta.robot_name for s in stores})
    realities = sorted({str(s.meta.reality) for s in stores})
    m = base.meta.to_dict()
    m["robot_name"] = robots[0] if len(robots) == 1 else "+".join(robots)
    m["reality"] = base.meta.reality if len(realities) == 1 else "mixed"
    if len(robots) > 1:
        m["robot_spec"] = {**(base.meta.robot_spec or {}), "name": m["robot_name"]} if base.meta.robot_spec else None
    m["extra"] = {**base.meta.extra, "merged_from": [
        {"store": str(s.root), "robot": s.meta.robot_name, "reality": s.meta.reality,
         "episodes": len(s.episodes())} for s in stores]}
    meta = StoreMeta.from_dict({k: v for k, v in m.items() if k not in ("created_wall_s", "software_version")})
    n_eps = 0
    with EpisodeWriter(out, meta, flush_every=8192, flush_on_episode_end=False) as w:
        for s in stores:
            idx = [e.index for e in s.episodes()]
            copy_episodes(s, idx, w, lambda i, s=s: {"source": {  # type: ignore[misc]
                "store": str(s.root), "episode": i, "robot": s.meta.robot_name, "reality": s.meta.reality}})
            n_eps += len(idx)
    log.info("merged %d stores, %d episodes into %s", len(stores), n_eps, out)
    return {"out": str(out), "stores": len(stores), "episodes": n_eps, "robots": robots}


def split_episodes(indices: list[int], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded shuffle of whole episodes into (train, validation); both non-empty. Needs >= 2 episodes."""
    rng = random.Random(seed)
    shuffled = indices[:]
    rng.shuffle(shuffled)
    n_val = min(len(indices) - 1, max(1, round(len(indices) * val_fraction)))
    return sorted(shuffled[n_val:]), sorted(shuffled[:n_val])


def split(
    source: str | Path, out_train: str | Path, out_val: str | Path, val_fraction: float = 0.2, seed: int = 0
) -> dict[str, Any]:
    """Split a store into train/validation stores by whole episodes (seeded shuffle; both get >= 1 if possible)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    src = EpisodeStore(source)
    idx = [e.index for e in src.episodes()]
    if len(idx) < 2:
        raise StoreError(f"{src.root}: need at least 2 episodes to split, found {len(idx)}")
    train, val = split_episodes(idx, val_fraction, seed)
    for out, part, name in ((out_train, train, "train"), (out_val, val, "validation")):
        m = src.meta.to_dict()
        m["extra"] = {**src.meta.extra, "split": {"of": str(src.root), "part": name, "seed": seed,
                                                  "val_fraction": val_fraction, "source_episodes": part}}
        meta = StoreMeta.from_dict({k: v for k, v in m.items() if k not in ("created_wall_s", "software_version")})
        with EpisodeWriter(out, meta, flush_every=8192, flush_on_episode_end=False) as w:
            copy_episodes(src, part, w, lambda i: {"source": {"store": str(src.root), "episode": i}})
    return {"train": train, "validation": val}
