"""The episode store: one crash-safe, columnar transition store used everywhere.

Layout of a store directory::

    DIR/meta.json                      # StoreMeta, written atomically (temp + fsync + os.replace)
    DIR/segments/seg-000000.arrow      # immutable Arrow IPC files, each written to a temp name, fsynced, renamed
    DIR/.writer.lock                   # flock held by the one live writer (released by the kernel on SIGKILL)

Every row is one transition: the :class:`~robodyna.data.batch.Batch` fields (``obs, action, reward,
next_obs, terminated, truncated``) plus :data:`EXTRA_COLUMNS` (wall/monotonic time, episode and step index,
policy version, safety ``intervention`` bitmask, ``policy_action``: the policy's raw output, whereas ``action``
is the action applied after the onboard safety filter; segments written before it existed read it as
``action``). ``obs``/``action``/``next_obs``/``policy_action`` are fixed-size-list float32 columns. Segments
are Arrow IPC files (lz4 by default; ``pandas.read_feather`` / ``pyarrow.ipc.open_file`` /
``pyarrow.dataset.dataset(DIR/"segments", format="arrow")`` read them directly). Arrow IPC instead of parquet:
parquet encodes fixed-size lists as nested columns and wrote ~8x slower in ``tools/bench/datasets.py``.

Crash semantics (the contract):

* A segment is either fully present under its final name or absent; temp files are ignored by readers and
  removed by the next writer. A SIGKILL loses at most the rows not yet in a landed segment; with
  ``EpisodeWriter(writer_process=True)`` (the onboard controller) only the rows not yet handed to the writer
  process, which lands the rest, then exits and frees the lock (:mod:`robodyna.data.store_proc`).
* Segments land strictly in order (one writer thread), so what is on disk is always a prefix of what was
  recorded: episode indices on disk are contiguous from 0 and step indices within an episode start at 0
  without gaps.
* An episode whose closing segment never landed is kept (its completed segments are valid transitions) and
  reported as *unfinished* (``EpisodeInfo.closed == False``). Appending after a crash (resume) starts a new
  episode at ``max(episode on disk) + 1``; the unfinished episode is never continued.
* An episode index is consumed only when its first row is appended, so empty episodes leave no gaps.

Power loss (or a kernel crash) is not a process crash: what the page cache held and had not written is gone.

* Guaranteed, on a file system that honours ``fsync`` (ext4, xfs, btrfs on a disk that does not lie about
  its write cache): a segment whose write returned (``EpisodeWriter.wait()`` / ``close()`` returned, or the
  recorder acknowledged it) survives, whole, under its final name: its bytes are fsynced before the rename and
  the directory is fsynced after it. ``meta.json`` likewise. The prefix rule above holds.
* Not guaranteed: rows still buffered in memory or queued for the writer thread (at most ``flush_every`` ×
  ``max_pending`` + the open buffer); a segment being written at the moment of the power cut (its temp file,
  removed by the next writer); anything on a disk or file system that acknowledges ``fsync`` without
  persisting (some USB/SD media, volatile write caches, ``nobarrier`` mounts, network file systems with
  async export), where a landed segment can come back truncated or missing: ``validate`` then reports it by
  file name (``robodyna dataset validate``).
* The SIGKILL tests (``tests/data/test_store_crash.py``) check the process-crash contract only; dropping an
  ``fsync`` cannot be seen by them (the kernel still writes the page cache out), so the fsyncs in
  :func:`~robodyna.data.store_format.write_segment` are kept by review, not by a test.

Each segment's schema metadata carries JSON metadata (key ``robodyna``): the episode row ranges it holds,
the per-episode info of episodes that start in it (e.g. the initial state used by replay) and the episodes
it closes. The episode table is built from footers only, without reading data.

The implementation is split into :mod:`~robodyna.data.store_format` (constants, :class:`StoreMeta`, schema,
segment names and footers, atomic file helpers), :mod:`~robodyna.data.store_reader` (:class:`EpisodeStore`,
:class:`StoreTail`, :class:`Transitions`) and :mod:`~robodyna.data.store_writer` (:class:`EpisodeWriter`);
this module re-exports their public names.
"""

from __future__ import annotations

from robodyna.data.store_format import (
    COLUMNS,
    EXTRA_COLUMNS,
    EXTRA_DTYPES,
    FOOTER_KEY,
    FORMAT,
    FORMAT_VERSION,
    LOCK_FILE,
    META_FILE,
    SEG_DIR,
    SEG_SUFFIX,
    TMP_PREFIX,
    SegmentInfo,
    StoreError,
    StoreMeta,
    arrow_schema,
    atomic_write_bytes,
    columns_to_table,
    compatibility_problems,
    list_segments,
    open_segment,
    read_meta,
    read_segment_info,
    row_dtype,
    seg_name,
    segment_info_from_reader,
    software_version,
    table_to_columns,
    write_meta,
    write_rows,
    write_segment,
)
from robodyna.data.store_reader import EpisodeInfo, EpisodeStore, StoreTail, Transitions
from robodyna.data.store_writer import EpisodeWriter

__all__ = [
    "COLUMNS",
    "EXTRA_COLUMNS",
    "EXTRA_DTYPES",
    "FOOTER_KEY",
    "FORMAT",
    "FORMAT_VERSION",
    "LOCK_FILE",
    "META_FILE",
    "SEG_DIR",
    "SEG_SUFFIX",
    "TMP_PREFIX",
    "EpisodeInfo",
    "EpisodeStore",
    "EpisodeWriter",
    "SegmentInfo",
    "StoreError",
    "StoreMeta",
    "StoreTail",
    "Transitions",
    "arrow_schema",
    "atomic_write_bytes",
    "columns_to_table",
    "compatibility_problems",
    "list_segments",
    "open_segment",
    "read_meta",
    "read_segment_info",
    "row_dtype",
    "seg_name",
    "segment_info_from_reader",
    "software_version",
    "table_to_columns",
    "write_meta",
    "write_rows",
    "write_segment",
]
