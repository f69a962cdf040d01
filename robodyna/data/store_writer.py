"""Writing an episode store: :class:`EpisodeWriter` (one flock-guarded writer, segments landed in order)."""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from robodyna.data.batch import FIELDS, Batch
from robodyna.data.store_format import (
    META_FILE,
    SEG_DIR,
    StoreError,
    StoreMeta,
    arrow_schema,
    compatibility_problems,
    list_segments,
    lock_store,
    read_meta,
    remove_tmp_files,
    row_dtype,
    write_meta,
    write_rows,
)
from robodyna.data.store_proc import ProcessSink
from robodyna.data.store_reader import EpisodeStore

log = logging.getLogger(__name__)

_wall = time.time
_mono = time.monotonic


class _Buffer:
    """Preallocated rows for one segment plus the episode/policy-version marks."""

    __slots__ = ("rows", "slot", "ep_marks", "pv_marks", "started", "closed")

    def __init__(self, cap: int, od: int, ad: int, rows: np.ndarray | None = None, slot: int = -1) -> None:
        self.rows = np.zeros(cap, row_dtype(od, ad)) if rows is None else rows
        self.slot = slot  # index in the writer process's shared slots (-1: a private buffer)
        self.reset()

    def reset(self) -> None:
        self.ep_marks: list[tuple[int, int, int]] = []  # (row_start, episode, first_step)
        self.pv_marks: list[tuple[int, int]] = []  # (row_start, policy_version)
        self.started: dict[int, dict[str, Any]] = {}
        self.closed: list[int] = []


class _SegmentQueue(queue.Queue):  # type: ignore[type-arg]
    """The hand-over queue of sealed buffers; :meth:`put_quiet` enqueues without waking the writer thread."""

    def put_quiet(self, item: object) -> None:
        """Enqueue ``item`` without notifying a waiting consumer: it finds the item at its next timed poll. Waking
        a sleeping thread costs the caller a cross-CPU wake-up (~40 µs on a VM); a control loop should not pay
        it inside a tick."""
        with self.mutex:
            self._put(item)
            self.unfinished_tasks += 1


class EpisodeWriter:
    """Appends transitions to a store. One writer per store (an flock guards it).

    ``append`` costs a few numpy element writes (no allocation, no I/O); every ``flush_every`` rows and at each
    episode end the filled buffer is handed to a background thread (``background=True``) that writes, fsyncs
    and renames the segment. Segments land in order. A transition with ``terminated`` or ``truncated`` set
    ends its episode.

    Args:
        root: store directory (created if missing).
        meta: required when creating; when resuming it must be compatible with ``meta.json``.
        resume: append to an existing non-empty store (otherwise a non-empty store is an error).
        flush_every: rows per segment at most.
        flush_on_episode_end: write a segment when an episode ends (durability per episode).
        background: write segments on a thread; ``False`` writes synchronously inside ``flush``.
        max_pending: segments queued before ``append`` blocks (bounds what a crash can lose).
        compression: Arrow IPC codec (``lz4``, ``zstd``, ``none``).
        writer_poll_s: ``None``: a hand-over wakes the background writer at once. A number: a hand-over only
            enqueues (no cross-thread wake-up on the recording thread, for control loops) and the writer looks
            for sealed buffers every ``writer_poll_s`` (so a segment lands up to that much later).
        writer_process: write segments in a child process (:mod:`robodyna.data.store_proc`) instead of a thread:
            it shares no GIL with the recording thread, and a SIGKILL of the recorder loses only the rows not yet
            handed over (the child writes the rest, then exits). Hand-overs are always quiet; the child polls every
            ``writer_poll_s`` (default 10 ms).
        lock_wait_s: how long to retry the store's writer lock before giving up (a killed recorder's writer
            process holds it until its last segment has landed).
    """

    def __init__(
        self,
        root: str | Path,
        meta: StoreMeta | None = None,
        resume: bool = False,
        flush_every: int = 1024,
        flush_on_episode_end: bool = True,
        background: bool = True,
        max_pending: int = 4,
        compression: str = "lz4",
        writer_poll_s: float | None = None,
        writer_process: bool = False,
        lock_wait_s: float = 0.0,
    ) -> None:
        if writer_poll_s is not None and not writer_poll_s > 0:
            raise ValueError(f"writer_poll_s must be > 0 or None, got {writer_poll_s}")
        if writer_process and not background:
            raise ValueError("writer_process=True writes in the background: it needs background=True")
        if int(flush_every) < 1:
            raise ValueError("flush_every must be >= 1")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock_fd = lock_store(self.root, lock_wait_s)
        try:
            self._setup(meta, resume)
        except BaseException:
            os.close(self._lock_fd)
            raise
        self.flush_every = int(flush_every)
        self.flush_on_episode_end = flush_on_episode_end
        self.compression = compression
        self._schema = arrow_schema(self.meta.obs_dim, self.meta.act_dim)
        od, ad = self.meta.obs_dim, self.meta.act_dim
        self._free: list[_Buffer] = []
        self._nbuf = 0
        self._max_buf = max(2, max_pending + 1)
        self._sink: ProcessSink | None = None
        self._slots: list[_Buffer] = []
        if writer_process:
            try:
                self._sink = ProcessSink(self.seg_dir, od, ad, self.flush_every, self._max_buf, compression,
                                         writer_poll_s or 0.01, self._lock_fd)
            except BaseException:
                os.close(self._lock_fd)
                raise
            self._slots = [_Buffer(self.flush_every, od, ad, self._sink.slots[i], i) for i in range(self._max_buf)]
            self._nbuf = self._max_buf
            self._free = self._slots[:0:-1]
            self._buf = self._slots[0]
        else:
            self._buf = self._new_buffer(od, ad)
        self._n = 0
        self._bind()
        self._ep_open = False
        self._ep_rows = 0
        self._pending_info: dict[str, Any] = {}
        self._policy_version = 0
        self._closed = False
        self._sink_closed = False
        self._error: BaseException | None = None
        self.background = background
        self.writer_poll_s = writer_poll_s
        self._q = _SegmentQueue()
        self._free_cv = threading.Condition()
        self._thread: threading.Thread | None = None
        if background and self._sink is None:
            self._thread = threading.Thread(target=self._run, name="episode-writer", daemon=True)
            self._thread.start()

    # -- setup ------------------------------------------------------------------------------------
    def _setup(self, meta: StoreMeta | None, resume: bool) -> None:
        seg_dir = self.root / SEG_DIR
        seg_dir.mkdir(exist_ok=True)
        remove_tmp_files(self.root)  # leftovers of a crashed writer (we hold the lock: none is live)
        segs = list_segments(self.root)
        has_meta = (self.root / META_FILE).is_file()
        if has_meta:
            on_disk = read_meta(self.root)
            if segs and not resume:
                raise StoreError(f"{self.root}: store already holds {len(segs)} segment(s); pass resume=True "
                                 "(--resume) to append")
            if meta is not None:
                problems = compatibility_problems(on_disk, meta)
                if problems:
                    raise StoreError(f"{self.root}: cannot append, metadata differs: " + "; ".join(problems))
            self.meta = on_disk
        else:
            if segs:
                raise StoreError(f"{self.root}: segments present but {META_FILE} missing")
            if meta is None:
                raise StoreError(f"{self.root}: new store needs metadata")
            write_meta(self.root, meta)
            self.meta = meta
        self.seg_dir = seg_dir
        store = EpisodeStore(self.root)
        self._next_seg = segs[-1][0] + 1 if segs else 0
        self._next_ep = store.next_episode_index()
        self._ep = self._next_ep
        self._step = 0
        unfinished = [e.index for e in store.episodes() if not e.closed]
        if unfinished:
            log.warning("%s: episode(s) %s unfinished (recorder stopped mid-episode); new episodes start at %d",
                        self.root, unfinished, self._next_ep)

    def _new_buffer(self, od: int, ad: int) -> _Buffer:
        self._nbuf += 1
        return _Buffer(self.flush_every, od, ad)

    def _bind(self) -> None:
        self._rows = self._buf.rows

    # -- recording API ----------------------------------------------------------------------------
    @property
    def episode_index(self) -> int:
        """Index the current (or next) episode has / will get."""
        return self._ep

    @property
    def next_episode_index(self) -> int:
        return self._next_ep

    def set_policy_version(self, version: int) -> None:
        """Tag the following rows with ``version``."""
        self._policy_version = int(version)
        pm = self._buf.pv_marks
        if pm and pm[-1][0] == self._n:
            pm[-1] = (self._n, self._policy_version)
        elif pm:
            pm.append((self._n, self._policy_version))

    def begin_episode(self, info: dict[str, Any] | None = None) -> int:
        """Start an episode (ends an open one first). ``info`` (JSON-able) is stored with its first segment."""
        if self._ep_open:
            self.end_episode()
        self._ep_open = True
        self._ep = self._next_ep
        self._step = 0
        self._ep_rows = 0
        self._pending_info = dict(info or {})
        return self._ep

    def append(
        self,
        obs: np.ndarray,
        action: np.ndarray,
        reward: float,
        next_obs: np.ndarray,
        terminated: bool,
        truncated: bool,
        intervention: int = 0,
        time_wall_s: float | None = None,
        time_mono_s: float | None = None,
        policy_action: np.ndarray | None = None,
    ) -> None:
        """Record one transition (cheap: element writes into preallocated columns).

        ``action`` is the action applied to the robot; ``policy_action`` the policy's raw output before the
        safety filter (default: the same as ``action``)."""
        i = self._n
        if i == self.flush_every:
            self._rotate()
            i = 0
        if self._ep_rows == 0:
            self._first_row(i)
        self._rows[i] = (
            obs,
            action,
            reward,
            next_obs,
            terminated,
            truncated,
            intervention,
            _wall() if time_wall_s is None else time_wall_s,
            _mono() if time_mono_s is None else time_mono_s,
            action if policy_action is None else policy_action,
        )
        self._n = i + 1
        self._ep_rows += 1
        if terminated or truncated:
            self.end_episode()

    def append_batch(
        self,
        batch: Batch,
        intervention: np.ndarray | None = None,
        time_wall_s: np.ndarray | None = None,
        time_mono_s: np.ndarray | None = None,
        split_episodes: bool = True,
        policy_action: np.ndarray | None = None,
    ) -> None:
        """Record many transitions; episodes end after each terminated/truncated row (if ``split_episodes``)."""
        n = len(batch)
        now_w, now_m = time.time(), time.monotonic()
        tw = np.full(n, now_w) if time_wall_s is None else np.asarray(time_wall_s, np.float64)
        tm = np.full(n, now_m) if time_mono_s is None else np.asarray(time_mono_s, np.float64)
        itv = np.zeros(n, np.int32) if intervention is None else np.asarray(intervention, np.int32)
        done = (batch.terminated | batch.truncated) if split_episodes else np.zeros(n, bool)
        pos = 0
        while pos < n:
            if self._n == self.flush_every:
                self._rotate()
            if self._ep_rows == 0:
                self._first_row(self._n)
            room = self.flush_every - self._n
            stop = min(n, pos + room)
            ends = np.flatnonzero(done[pos:stop])
            if ends.size:
                stop = pos + int(ends[0]) + 1
            k, j = stop - pos, self._n
            dst = self._rows[j:j + k]
            for name in FIELDS:
                dst[name] = getattr(batch, name)[pos:stop]
            dst["intervention"] = itv[pos:stop]
            dst["time_wall_s"] = tw[pos:stop]
            dst["time_mono_s"] = tm[pos:stop]
            dst["policy_action"] = batch.action[pos:stop] if policy_action is None else policy_action[pos:stop]
            self._n += k
            self._ep_rows += k
            pos = stop
            if ends.size:
                self.end_episode()

    def _first_row(self, i: int) -> None:
        if not self._ep_open:
            self._ep_open = True
            self._ep = self._next_ep
            self._step = 0
        self._next_ep = self._ep + 1
        b = self._buf
        b.ep_marks.append((i, self._ep, 0))
        if not b.pv_marks or b.pv_marks[-1][1] != self._policy_version:
            b.pv_marks.append((i, self._policy_version))
        b.started[self._ep] = self._pending_info
        self._pending_info = {}

    def end_episode(self, finished: bool = True) -> None:
        """Close the current episode; flushes a segment if ``flush_on_episode_end``.

        ``finished=False`` stops it without marking it closed (it stays *unfinished*, as after a crash; used
        when copying unfinished episodes).
        """
        if not self._ep_open:
            return
        self._ep_open = False
        if self._ep_rows == 0:  # nothing recorded: index not consumed
            return
        if finished:
            self._buf.closed.append(self._ep)
        self._ep_rows = 0
        if self.flush_on_episode_end:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered rows to the writer (segment lands asynchronously when ``background``)."""
        if self._n or self._buf.closed:
            self._rotate()

    def can_hand_over(self) -> bool:
        """True when sealing the current buffer would not block (a free buffer is available to switch to)."""
        if self._sink is not None:
            if not self._free:
                self._collect()
            return bool(self._free)
        return self._thread is None or bool(self._free) or self._nbuf < self._max_buf

    @property
    def buffer_full(self) -> bool:
        """True when the next ``append`` must seal the current buffer first."""
        return self._n == self.flush_every

    @property
    def writer_pid(self) -> int:
        """The process that writes the segments (temp files carry its pid): the writer process's, or this one's."""
        return self._sink.proc.pid if self._sink is not None else os.getpid()

    @property
    def pending_segments(self) -> int:
        """Segments handed to the background writer that have not landed yet."""
        if self._sink is not None:
            return self._sink.pending
        return self._q.unfinished_tasks

    def try_flush(self) -> bool:
        """Like :meth:`flush`, but only if it cannot block (for a control loop); returns whether it flushed.

        With nothing buffered it returns True. A False means every buffer is waiting for the disk: the caller
        keeps appending into the current buffer until :attr:`buffer_full`, then must drop (and count) rows."""
        if not (self._n or self._buf.closed):
            return True
        if not self.can_hand_over():
            return False
        self._rotate()
        return True

    def warm(self) -> None:
        """Run the next hand-over's code paths without handing anything over, for a control loop's pre-deadline
        warm-up (after a sleep, code that has not run for a while costs several times its hot time). Only the
        writer process's hand-over is warmed (4 µs warm against ~58 cold); a thread's is a queue append."""
        if self._sink is not None and not self._sink_closed and self._error is None:
            b = self._buf
            self._sink.warm(b.slot, self._n, self._next_seg, b.ep_marks, b.pv_marks)
            self._collect()

    def warm_append(self, obs: np.ndarray, action: np.ndarray, reward: float, next_obs: np.ndarray,
                    policy_action: np.ndarray, time_wall_s: float, time_mono_s: float) -> None:
        """Write a throw-away row into the next free row of the current buffer without counting it (the next
        :meth:`append` overwrites it): :meth:`append`'s code and memory, warmed before a control loop's deadline."""
        i = self._n
        if i < self.flush_every:
            self._rows[i] = (obs, action, reward, next_obs, False, False, 0, time_wall_s, time_mono_s, policy_action)

    def wait(self) -> None:
        """Block until every handed-over segment has landed."""
        if self._thread is not None:
            self._q.join()
        if self._sink is not None:
            while self._collect() and self._error is None:
                self._sink.check_alive()
                time.sleep(0.002)
        self._raise_if_failed()

    def close(self) -> None:
        """Flush, wait for the writer and release the lock. An open episode stays unfinished on disk."""
        if self._closed:
            return
        self._closed = True
        try:
            self.flush()
            if self._thread is not None:
                self._q.put(None)
                self._thread.join()
            self._close_sink()
            self._raise_if_failed()
        finally:
            self._close_sink()
            os.close(self._lock_fd)

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals --------------------------------------------------------------------------------
    def _collect(self) -> int:
        """Take back the slots the writer process has written (non-blocking); returns the segments still pending."""
        sink = self._sink
        if sink is None or self._sink_closed:
            return 0
        for slot in sink.collect():
            b = self._slots[slot]
            b.reset()
            self._free.append(b)
        if sink.error is not None and self._error is None:
            self._error = StoreError(sink.error)
        return sink.pending

    def _close_sink(self) -> None:
        if self._sink is None or self._sink_closed:
            return
        self._sink_closed = True
        self._sink.close()
        if self._sink.error is not None and self._error is None:
            self._error = StoreError(self._sink.error)

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise StoreError(f"{self.root}: segment writer failed: {self._error}") from self._error

    def _rotate(self) -> None:
        """Seal the current buffer as segment ``_next_seg`` and switch to a free buffer."""
        self._collect()
        self._raise_if_failed()
        b, n = self._buf, self._n
        carry_ep = self._ep_open and self._ep_rows > 0
        number = self._next_seg
        self._next_seg += 1
        if self._sink is not None:
            self._sink.send(b.slot, n, number, b.ep_marks, b.pv_marks, b.started, b.closed)
            b = self._take_free()
        elif self._thread is None:
            self._write(b, n, number)
            b.reset()
        else:
            if self.writer_poll_s is None:
                self._q.put((b, n, number))
            else:
                self._q.put_quiet((b, n, number))
            b = self._take_free()
        self._buf = b
        self._n = 0
        self._bind()
        if carry_ep:  # the open episode continues in the next segment
            b.ep_marks.append((0, self._ep, self._step_of_next_row()))
            b.pv_marks.append((0, self._policy_version))

    def _step_of_next_row(self) -> int:
        return self._ep_rows

    def _take_free(self) -> _Buffer:
        if self._sink is not None:  # _rotate has just collected
            while not self._free:
                self._raise_if_failed()
                self._sink.check_alive()
                time.sleep(0.001)
                self._collect()
            return self._free.pop()
        try:
            return self._free.pop()  # fast path without the condition's lock (list.pop is atomic)
        except IndexError:
            pass
        with self._free_cv:
            while not self._free:
                if self._nbuf < self._max_buf:
                    return self._new_buffer(self.meta.obs_dim, self.meta.act_dim)
                self._free_cv.wait(timeout=1.0)
                self._raise_if_failed()
            return self._free.pop()

    def _run(self) -> None:
        poll = self.writer_poll_s
        while True:
            try:
                item = self._q.get(timeout=poll)
            except queue.Empty:
                continue
            try:
                if item is None:
                    return
                b, n, number = item  # type: ignore[misc]
                if self._error is None:
                    try:
                        self._write(b, n, number)
                    except BaseException as exc:  # surfaced on the recording thread
                        log.exception("segment writer failed")
                        self._error = exc
                b.reset()
                with self._free_cv:
                    self._free.append(b)
                    self._free_cv.notify()
            finally:
                self._q.task_done()

    def _write(self, b: _Buffer, n: int, number: int) -> None:
        write_rows(self.seg_dir, self._schema, self.compression, b.rows[:n], number, b.ep_marks, b.pv_marks,
                   b.started, b.closed)
