"""The episode store's segment writer as a child process (``EpisodeWriter(writer_process=True)``).

Why a process: a writer *thread* shares the recorder's GIL. Building and writing a segment holds it for a few
hundred µs at a time, and a control thread that wakes for its deadline inside that window waits for it: at 1 kHz
with a segment every 50 ms the controller's period p99 was 1.29-1.30 ms with the thread, 1.07-1.10 ms with this
process (``tools/bench/controller.py``). A child process shares no GIL.

How: the recorder's segment buffers live in one shared memory block (a ``memfd``), ``nslots`` slots of ``cap``
rows, followed by a few shared counters. Sealing a buffer writes one packed message (slot, rows, segment number,
episode/version marks; pickled episode info only when an episode starts or ends in it) to a pipe; the child
writes the segment with the same :func:`~robodyna.data.store_format.write_rows` as the thread, in the order sent,
and then counts it in shared memory. The recorder takes slots back by reading that counter: no system call, no
message, no exception on the recording thread (after a sleep, every cold call costs a control tick several
times its hot cost: a pickle and a non-blocking read made a hand-over 115 µs, the packed write alone ~10-20 µs).
The child sleeps ``poll_s`` between looks at its pipe instead of blocking on it, so a hand-over wakes no one (a
cross-CPU wake-up costs the sender ~40 µs on a VM). The pipe's write, a system call, orders the recorder's row
writes before the message; the child's counter moves only after the segment's system calls, after its reads.

Crash contract: the child holds the store's writer lock (it inherits the lock's file description) and ignores
SIGINT/SIGTERM; it ends when its recorder closes it or dies (end of file on its pipe). A recorder killed with
SIGKILL therefore loses only the rows it had not handed over: the child writes every segment already sent, then
exits and releases the lock (a new writer waits for it: ``EpisodeWriter(lock_wait_s=...)``). Segments still land
one at a time, in order.

Only numpy and pyarrow are imported here (the onboard side runs without torch).
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import mmap
import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from robodyna.data.store_format import StoreError, arrow_schema, row_dtype, write_rows

log = logging.getLogger(__name__)

_CMD = struct.Struct("<iiqiiI")  # slot (-1: close), rows, segment number, #episode marks, #version marks, extra bytes
_CHILD_CMD = "import sys; from robodyna.data.store_proc import child_main; sys.exit(child_main(sys.argv[1]))"
READY_TIMEOUT_S = 60.0  # a cold start (importing numpy + pyarrow on a busy 2-core machine) takes ~1 s
# shared counters (int64) after the slots
_WRITTEN, _FAILED, _READY = 0, 1, 2
_NCTL = 8


_CMD_COMMON = struct.Struct("<iiqiiIqqqqq")  # one episode mark, one version mark, no info: mid-episode segments


def _pack(slot: int, n: int, number: int, ep_marks: list[tuple[int, int, int]], pv_marks: list[tuple[int, int]],
          started: dict[int, dict[str, Any]], closed: list[int]) -> bytes:
    if len(ep_marks) == 1 and len(pv_marks) == 1 and not started and not closed:  # one call: this runs in a tick
        (r0, e, s0), (r1, v) = ep_marks[0], pv_marks[0]
        return _CMD_COMMON.pack(slot, n, number, 1, 1, 0, r0, e, s0, r1, v)
    extra = pickle.dumps((started, closed), protocol=pickle.HIGHEST_PROTOCOL) if started or closed else b""
    ints = [x for m in ep_marks for x in m] + [x for m in pv_marks for x in m]
    return b"".join((_CMD.pack(slot, n, number, len(ep_marks), len(pv_marks), len(extra)),
                     struct.pack(f"<{len(ints)}q", *ints), extra))


class _Commands:
    """The child's end of the command pipe (non-blocking reads; ``eof`` once the recorder's end closed)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False
        os.set_blocking(fd, False)

    def read(self) -> list[tuple[Any, ...]]:
        while not self.eof:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
            self.buf += chunk
        out = []
        while len(self.buf) >= _CMD.size:
            slot, n, number, ne, npv, nx = _CMD.unpack_from(self.buf)
            size = _CMD.size + 8 * (3 * ne + 2 * npv) + nx
            if len(self.buf) < size:
                break
            ints = struct.unpack_from(f"<{3 * ne + 2 * npv}q", self.buf, _CMD.size)
            ep = [tuple(ints[3 * i:3 * i + 3]) for i in range(ne)]
            pv = [tuple(ints[3 * ne + 2 * i:3 * ne + 2 * i + 2]) for i in range(npv)]
            started, closed = pickle.loads(self.buf[size - nx:size]) if nx else ({}, [])
            out.append((slot, n, number, ep, pv, started, closed))
            self.buf = self.buf[size:]
        return out


class ProcessSink:
    """The recorder's end: shared slots and counters, the child process, the command pipe and the error pipe."""

    def __init__(self, seg_dir: Path, obs_dim: int, act_dim: int, cap: int, nslots: int, compression: str,
                 poll_s: float, lock_fd: int) -> None:
        dtype = row_dtype(obs_dim, act_dim)
        slot_bytes = nslots * cap * dtype.itemsize
        size = slot_bytes + 8 * _NCTL
        if hasattr(os, "memfd_create"):
            self._mem_fd = os.memfd_create("robodyna-store-slots")
        else:  # not Linux: an unlinked temporary file serves as shared memory
            fd, name = tempfile.mkstemp(prefix="robodyna-store-slots-")
            os.unlink(name)
            self._mem_fd = fd
        os.ftruncate(self._mem_fd, size)
        self._mm = mmap.mmap(self._mem_fd, size)
        self.slots = np.frombuffer(self._mm, dtype, count=nslots * cap).reshape(nslots, cap)
        self.ctl = memoryview(self._mm)[slot_bytes:slot_bytes + 8 * _NCTL].cast("q")  # plain reads, no numpy
        cmd_r, self._cmd_w = os.pipe()
        self._err_r, err_w = os.pipe()
        cfg = {"seg_dir": str(seg_dir), "obs_dim": obs_dim, "act_dim": act_dim, "cap": cap, "nslots": nslots,
               "compression": compression, "poll_s": poll_s, "mem_fd": self._mem_fd, "cmd_fd": cmd_r,
               "err_fd": err_w}
        pkg_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _CHILD_CMD, json.dumps(cfg)],
                                         pass_fds=(self._mem_fd, cmd_r, err_w, lock_fd), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, env=env)
        finally:
            os.close(cmd_r)
            os.close(err_w)
        os.set_blocking(self._err_r, False)
        self.error: str | None = None
        self.sent = 0  # segments handed over
        self._taken_back = 0  # of those, slots returned to the recorder
        self._inflight: collections.deque[int] = collections.deque()
        self._final_pending: int | None = None  # set by close (the shared memory is gone then)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.ctl[_READY]:
            rc = self.proc.poll()
            if rc is not None or time.monotonic() > deadline:
                self._kill()
                os.close(self._cmd_w)
                self._release()
                why = f"exit code {rc}" if rc is not None else f"no answer in {READY_TIMEOUT_S:g} s"
                raise StoreError(f"{seg_dir.parent}: the segment writer process did not start ({why})")
            time.sleep(0.01)

    @property
    def pending(self) -> int:
        """Segments handed over and not written yet (shared memory: cheap, any thread)."""
        if self._final_pending is not None:
            return self._final_pending
        return self.sent - self.ctl[_WRITTEN]

    def send(self, slot: int, n: int, number: int, ep_marks: list[tuple[int, int, int]],
             pv_marks: list[tuple[int, int]], started: dict[int, dict[str, Any]], closed: list[int]) -> None:
        """Hand slot ``slot`` (its first ``n`` rows) over as segment ``number``; does not wake the child."""
        msg = _pack(slot, n, number, ep_marks, pv_marks, started, closed)
        try:
            while msg:
                msg = msg[os.write(self._cmd_w, msg):]
        except OSError as exc:
            self.error = self.error or f"segment writer process gone ({exc})"
            return
        self._inflight.append(slot)
        self.sent += 1

    def collect(self) -> list[int]:
        """Slots the child has written (shared counter: no system call unless it failed). Sets :attr:`error`."""
        written = self.ctl[_WRITTEN]
        if written == self._taken_back and not self.ctl[_FAILED]:
            return []
        freed = []
        while self._taken_back < written:
            freed.append(self._inflight.popleft())
            self._taken_back += 1
        if self.ctl[_FAILED] and self.error is None:
            self.error = self._error_text() or "segment writer failed (see its log)"
        return freed

    def warm(self, slot: int, n: int, number: int, ep_marks: list[tuple[int, int, int]],
             pv_marks: list[tuple[int, int]]) -> None:
        """Run :meth:`send`'s code without effect (a zero-byte write sends nothing)."""
        _pack(slot, n, number, ep_marks, pv_marks, {}, [])
        os.write(self._cmd_w, b"")

    def check_alive(self) -> None:
        """Slow path (no free slot): notice a child that died."""
        if self.error is None and self.proc.poll() is not None:
            self.error = f"segment writer process exited unexpectedly (exit code {self.proc.returncode})"

    def _error_text(self) -> str:
        try:
            return os.read(self._err_r, 1 << 16).decode(errors="replace").strip()
        except (BlockingIOError, OSError):
            return ""

    def close(self, timeout_s: float = 60.0) -> None:
        """Ask the child to finish (it writes what it was sent first) and wait for it."""
        try:
            os.write(self._cmd_w, _CMD.pack(-1, 0, 0, 0, 0, 0))
        except OSError:
            pass
        os.close(self._cmd_w)
        try:
            rc: int | None = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self._kill()
            rc = None
        self.collect()  # the error, if the child failed
        self._final_pending = self.sent - self.ctl[_WRITTEN]
        if self.error is None and rc != 0:
            self.error = f"segment writer process exited with code {rc}" if rc is not None else \
                f"segment writer process did not finish in {timeout_s:g} s (killed)"
        self._release()

    def _release(self) -> None:
        """Close the error pipe and the shared memory (after the child is gone)."""
        self.ctl.release()
        os.close(self._err_r)
        del self.slots
        with contextlib.suppress(BufferError):  # a recorder's buffers may still view it: freed with them
            self._mm.close()
        os.close(self._mem_fd)

    def _kill(self) -> None:
        with contextlib.suppress(OSError):
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


def _child(cfg: dict[str, Any]) -> int:
    """The writer process: write each handed-over slot as a segment, in order, until closed or orphaned."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the recorder
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # closes us; if it dies instead, its pipe's end ends us
    od, ad, cap, nslots = int(cfg["obs_dim"]), int(cfg["act_dim"]), int(cfg["cap"]), int(cfg["nslots"])
    dtype = row_dtype(od, ad)
    slot_bytes = nslots * cap * dtype.itemsize
    mm = mmap.mmap(int(cfg["mem_fd"]), slot_bytes + 8 * _NCTL)
    slots = np.frombuffer(mm, dtype, count=nslots * cap).reshape(nslots, cap)
    ctl = np.frombuffer(mm, np.int64, count=_NCTL, offset=slot_bytes)
    schema = arrow_schema(od, ad)
    seg_dir, compression, poll_s = Path(cfg["seg_dir"]), str(cfg["compression"]), float(cfg["poll_s"])
    err_fd = int(cfg["err_fd"])
    cmds = _Commands(int(cfg["cmd_fd"]))
    ctl[_READY] = 1
    while True:
        for slot, n, number, ep_marks, pv_marks, started, closed in cmds.read():
            if slot < 0:
                return 0
            if not ctl[_FAILED]:  # never land a later segment after a failed one (the prefix rule)
                try:
                    write_rows(seg_dir, schema, compression, slots[slot, :n], number, ep_marks, pv_marks,
                               started, closed)
                except BaseException as exc:
                    log.exception("segment writer failed")
                    with contextlib.suppress(OSError):  # the recorder may be gone: keep counting
                        os.write(err_fd, f"{type(exc).__name__}: {exc}".encode()[:4096])
                    ctl[_FAILED] = 1
            ctl[_WRITTEN] += 1  # after the segment's system calls: the slot is free for the recorder
        if cmds.eof:
            return 0  # the recorder died (or closed its end): every segment it sent has landed
        time.sleep(poll_s)


def child_main(cfg_json: str) -> int:
    """Entry point of the writer process (started by :class:`ProcessSink`)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s robodyna store writer: %(message)s")
    return _child(json.loads(cfg_json))
