"""The data layer: the :class:`Batch` transition type and the crash-safe episode store.

Every transition in robodyna is a :class:`Batch` row (``obs, action, reward, next_obs, terminated,
truncated``). The episode store keeps recorded transitions on disk, one directory per store::

    DIR/meta.json                  # StoreMeta: robot, rates, obs/action names and units, provenance
    DIR/segments/seg-000000.arrow  # immutable Arrow IPC files (lz4), readable by pandas / pyarrow directly
    DIR/.writer.lock               # flock of the one live writer

A row is a Batch row plus :data:`EXTRA_COLUMNS` (wall/monotonic time, episode and step index, policy version,
safety ``intervention`` bitmask). Each segment's schema metadata holds its episode row ranges, the info of
episodes starting in it and the episodes it closes, so the episode table is built from footers alone.

Crash guarantees: ``meta.json`` and every segment are written to a temp name, fsynced and renamed, so a file
is either complete or absent; segments land in order, so what is on disk is always a prefix of what was
recorded (episode and step indices without gaps). A SIGKILL loses at most the rows not yet in a landed
segment; the interrupted episode stays *unfinished* and a resumed writer starts a new one.

Use: ``EpisodeWriter(DIR, StoreMeta(...))`` creates a store (``resume=True`` appends), ``EpisodeStore(DIR)``
opens one for reading (``read()``, ``read_episode(i)``, ``episodes()``, ``tail()``), :func:`validate` lists
every problem with file/episode/step. This package imports numpy and pyarrow only (no torch): the robot side
records with it.
"""

from __future__ import annotations

from robodyna.data.batch import FIELDS, Batch, BatchError
from robodyna.data.ops import merge, split
from robodyna.data.store import (
    COLUMNS,
    EXTRA_COLUMNS,
    EpisodeInfo,
    EpisodeStore,
    EpisodeWriter,
    SegmentInfo,
    StoreError,
    StoreMeta,
    StoreTail,
    Transitions,
    compatibility_problems,
    read_meta,
)
from robodyna.data.validate import INTERVENTION_BITS, Problem, info, validate

__all__ = [
    "COLUMNS",
    "EXTRA_COLUMNS",
    "FIELDS",
    "INTERVENTION_BITS",
    "Batch",
    "BatchError",
    "EpisodeInfo",
    "EpisodeStore",
    "EpisodeWriter",
    "Problem",
    "SegmentInfo",
    "StoreError",
    "StoreMeta",
    "StoreTail",
    "Transitions",
    "compatibility_problems",
    "info",
    "merge",
    "read_meta",
    "split",
    "validate",
]
