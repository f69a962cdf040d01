"""The episode store's segment writer as a child process (``EpisodeWriter(writer_process=True)``).

Why a process: a writer *thread* shares the recorder's GIL. Building and writing a segment holds it for a few
hundred µs at a time, and a control thread that wakes for its deadline inside that window waits for it: at 1 kHz
with a segment every 50 ms that was the controller's tick-overhead tail. A child process shares no GIL.

How: the recorder's segment buffers live in one shared memory block (a ``memfd``), ``nslots`` slots of ``cap``
rows. Sealing a buffer sends a small message (slot, rows, segment number, episode/version marks) down a pipe;
the child writes the segment with the same :func:`~robodyna.data.store_format.write_rows` as the thread and
answers ``done`` with the slot, which the recorder then reuses. Both directions are *quiet*: the child sleeps
``poll_s`` between looks at its pipe instead of blocking on it, so a hand-over wakes no one (a cross-CPU wake-up
costs the sender ~40 µs on a VM), and the recorder reads answers without blocking.

Crash contract: the child holds the store's writer lock (it inherits the lock's file description) and ignores
SIGINT/SIGTERM; it ends when its recorder closes it or dies (end of file on its pipe). A recorder killed with
SIGKILL therefore loses only the rows it had not handed over: the child writes every segment already sent, then
exits and releases the lock (a new writer waits for it: ``EpisodeWriter(lock_wait_s=...)``). Segments still land
one at a time, in order.

Only numpy and pyarrow are imported here (the onboard side runs without torch).
"""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import pickle
import select
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

_LEN = struct.Struct("<I")
_CHILD_CMD = "import sys; from robodyna.data.store_proc import child_main; sys.exit(child_main(sys.argv[1]))"
READY_TIMEOUT_S = 60.0  # a cold start (importing numpy + pyarrow on a busy 2-core machine) takes ~1 s


def _send(fd: int, obj: object) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    msg = _LEN.pack(len(data)) + data
    while msg:
        msg = msg[os.write(fd, msg):]


class _Frames:
    """Length-prefixed pickled messages read from a non-blocking fd; ``eof`` once the other end closed."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""
        self.eof = False
        os.set_blocking(fd, False)

    def read(self) -> list[Any]:
        while not self.eof:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                self.eof = True
            self.buf += chunk
        out = []
        while len(self.buf) >= _LEN.size:
            (n,) = _LEN.unpack_from(self.buf)
            if len(self.buf) < _LEN.size + n:
                break
            out.append(pickle.loads(self.buf[_LEN.size:_LEN.size + n]))
            self.buf = self.buf[_LEN.size + n:]
        return out


class ProcessSink:
    """The recorder's end: shared slots, the child process, and its two pipes."""

    def __init__(self, seg_dir: Path, obs_dim: int, act_dim: int, cap: int, nslots: int, compression: str,
                 poll_s: float, lock_fd: int) -> None:
        dtype = row_dtype(obs_dim, act_dim)
        size = max(1, nslots * cap * dtype.itemsize)
        if hasattr(os, "memfd_create"):
            self._mem_fd = os.memfd_create("robodyna-store-slots")
        else:  # not Linux: an unlinked temporary file serves as shared memory
            fd, name = tempfile.mkstemp(prefix="robodyna-store-slots-")
            os.unlink(name)
            self._mem_fd = fd
        os.ftruncate(self._mem_fd, size)
        self._mm = mmap.mmap(self._mem_fd, size)
        self.slots = np.frombuffer(self._mm, dtype, count=nslots * cap).reshape(nslots, cap)
        cmd_r, self._cmd_w = os.pipe()
        self._ack_r, ack_w = os.pipe()
        cfg = {"seg_dir": str(seg_dir), "obs_dim": obs_dim, "act_dim": act_dim, "cap": cap, "nslots": nslots,
               "compression": compression, "poll_s": poll_s, "mem_fd": self._mem_fd, "cmd_fd": cmd_r,
               "ack_fd": ack_w}
        pkg_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen([sys.executable, "-c", _CHILD_CMD, json.dumps(cfg)],
                                         pass_fds=(self._mem_fd, cmd_r, ack_w, lock_fd), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, env=env)
        finally:
            os.close(cmd_r)
            os.close(ack_w)
        self._acks = _Frames(self._ack_r)
        self.error: str | None = None
        self._done: list[int] = []
        self._ready = False
        self._closing = False
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._poll_ready():
            if self.error is not None or time.monotonic() > deadline:
                self._kill()
                why = self.error or f"no answer in {READY_TIMEOUT_S:g} s"
                raise StoreError(f"{seg_dir.parent}: the segment writer process did not start: {why}")
            self.wait(0.05)

    def _poll_ready(self) -> bool:
        self.collect()
        return self._ready

    def send(self, slot: int, n: int, number: int, ep_marks: list[tuple[int, int, int]],
             pv_marks: list[tuple[int, int]], started: dict[int, dict[str, Any]], closed: list[int]) -> None:
        """Hand slot ``slot`` (its first ``n`` rows) over as segment ``number``; does not wake the child."""
        try:
            _send(self._cmd_w, ("write", slot, n, number, ep_marks, pv_marks, started, closed))
        except OSError as exc:
            self.error = self.error or f"segment writer process gone ({exc})"

    def collect(self) -> list[int]:
        """Slots the child has finished with (non-blocking). Sets :attr:`error` on a failed write or a dead child."""
        for msg in self._acks.read():
            if msg[0] == "done":
                self._done.append(int(msg[1]))
            elif msg[0] == "error":
                self.error = self.error or str(msg[1])
            elif msg[0] == "ready":
                self._ready = True
        if self._acks.eof and self.error is None and not self._closing:
            self.error = f"segment writer process exited unexpectedly (exit code {self.proc.poll()})"
        done, self._done = self._done, []
        return done

    def wait(self, timeout_s: float) -> None:
        """Block up to ``timeout_s`` for an answer from the child."""
        if not self._acks.eof:
            select.select([self._ack_r], [], [], timeout_s)

    def close(self, timeout_s: float = 60.0) -> list[int]:
        """Ask the child to finish (it writes what it was sent first) and wait for it; returns freed slots."""
        self._closing = True
        freed: list[int] = []
        try:
            _send(self._cmd_w, ("close",))
        except OSError:
            pass
        os.close(self._cmd_w)
        deadline = time.monotonic() + timeout_s
        while not self._acks.eof and time.monotonic() < deadline:
            self.wait(0.1)
            freed += self.collect()
        freed += self.collect()
        try:
            rc = self.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._kill()
            rc = None
        if rc not in (0, None) and self.error is None:
            self.error = f"segment writer process exited with code {rc}"
        elif rc is None and self.error is None:
            self.error = f"segment writer process did not finish in {timeout_s:g} s (killed)"
        os.close(self._ack_r)
        del self.slots
        with contextlib.suppress(BufferError):
            self._mm.close()
        os.close(self._mem_fd)
        return freed

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
    mm = mmap.mmap(int(cfg["mem_fd"]), max(1, nslots * cap * dtype.itemsize))
    slots = np.frombuffer(mm, dtype, count=nslots * cap).reshape(nslots, cap)
    schema = arrow_schema(od, ad)
    seg_dir, compression, poll_s = Path(cfg["seg_dir"]), str(cfg["compression"]), float(cfg["poll_s"])
    ack_fd = int(cfg["ack_fd"])
    cmds = _Frames(int(cfg["cmd_fd"]))
    failed = False

    def answer(*msg: object) -> None:
        with contextlib.suppress(OSError):  # the recorder died: keep writing what it sent
            _send(ack_fd, msg)

    answer("ready")
    while True:
        for msg in cmds.read():
            if msg[0] == "close":
                return 0
            _, slot, n, number, ep_marks, pv_marks, started, closed = msg
            if not failed:  # never land a later segment after a failed one (the prefix rule)
                try:
                    write_rows(seg_dir, schema, compression, slots[slot, :n], number, ep_marks, pv_marks,
                               started, closed)
                except BaseException as exc:
                    failed = True
                    log.exception("segment writer failed")
                    answer("error", f"{type(exc).__name__}: {exc}")
            answer("done", slot)
        if cmds.eof:
            return 0  # the recorder died (or closed its end): every segment it sent has landed
        time.sleep(poll_s)


def child_main(cfg_json: str) -> int:
    """Entry point of the writer process (started by :class:`ProcessSink`)."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s robodyna store writer: %(message)s")
    return _child(json.loads(cfg_json))
