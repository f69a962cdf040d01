"""The robot's end of the link: :class:`RobotLink`.

Runs on its own thread (never the control loop's): it follows the robot's durable episode store (the recorder
writes it; see :class:`~robodyna.transport.stores.StoreCursor`), streams the rows to the trainer in batches
numbered by their global row index, keeps at most ``window_rows`` unacknowledged rows in flight (backpressure:
a slow trainer makes the link wait, never the recorder), resends everything after the trainer's cumulative
``ack`` on every (re)connection, heartbeats in both directions with deadlines, and reconnects with exponential
backoff. Policies arrive signed by the trainer's Ed25519 key; a policy whose signature or sha256 does not verify
is rejected before ``on_policy`` (the controller's hot-swap checks) ever sees it.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from robodyna.data.store_format import StoreError
from robodyna.transport.keys import RobotKeys, verify_signature
from robodyna.transport.protocol import (
    TRAINER_TYPES,
    Message,
    ProtocolError,
    decode,
    decode_policy,
    encode,
    encode_tx,
    policy_signed_bytes,
    sha256_hex,
    spec_hash,
)
from robodyna.transport.stores import StoreCursor

log = logging.getLogger(__name__)

OnPolicy = Callable[[int, bytes, str, dict[str, str]], tuple[bool, str]]
OnRefresh = Callable[[int, str], None]


@dataclass(frozen=True)
class LinkConfig:
    """Knobs of the robot's end."""

    batch_rows: int = 8192  # rows per tx message at most
    window_rows: int = 1 << 16  # unacknowledged rows in flight at most (backpressure)
    heartbeat_s: float = 0.5
    deadline_s: float = 3.0  # no message from the trainer this long: reconnect
    backoff_min_s: float = 0.1
    backoff_max_s: float = 5.0
    poll_s: float = 0.02  # how often the store is checked for new segments when idle
    status_s: float = 2.0  # a status message (link counters) to the trainer this often
    max_policy_bytes: int = 64 << 20
    hwm: int = 1000


class RobotLink:
    """Stream a robot's episode store to a trainer and receive policies from it.

    Args:
        endpoint: the trainer, e.g. ``tcp://trainer-host:5555``.
        store: the robot's episode store directory (being recorded into, or already recorded).
        robot_id: the name the trainer knows this robot by (its key certificate's name).
        keys: this robot's CURVE pair, the trainer's CURVE public key and policy-verification key; ``None`` only
            with ``insecure=True`` (then every policy is rejected: nothing can verify it).
        on_policy: ``(version, onnx_bytes, sha256, metadata) -> (accepted, reason)``, called on the link thread
            after the signature and sha256 verified; the controller's thread-safe hot-swap offer.
        on_refresh: ``(n, unit)`` with unit ``steps`` or ``episodes``: the trainer asks for fresh data.
    """

    def __init__(self, endpoint: str, store: str | Path, robot_id: str, keys: RobotKeys | None,
                 on_policy: OnPolicy | None = None, on_refresh: OnRefresh | None = None,
                 config: LinkConfig | None = None, insecure: bool = False) -> None:
        if keys is None and not insecure:
            raise ValueError("the link needs keys (robodyna keys generate); insecure=True only for debugging")
        self.endpoint = endpoint
        self.store = Path(store)
        self.robot_id = robot_id
        self.keys = keys
        self.on_policy = on_policy
        self.on_refresh = on_refresh
        self.cfg = config or LinkConfig()
        self.counters: collections.Counter[str] = collections.Counter()
        self.acked = -1  # trainer's cumulative ack (-1: not yet known)
        self.send_pos = 0
        self.recorded = 0
        self.connected = False
        self.policy_version: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cursor: StoreCursor | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> RobotLink:
        self._thread = threading.Thread(target=self._run, name="robot-link", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def __enter__(self) -> RobotLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def status(self) -> dict[str, Any]:
        return {"robot": self.robot_id, "connected": self.connected, "recorded": self.recorded,
                "acked": self.acked, "lag_rows": self.recorded - max(self.acked, 0),
                "policy_version": self.policy_version, "counters": dict(self.counters)}

    def wait_acked(self, rows: int, timeout: float) -> bool:
        """Block until the trainer acknowledged ``rows`` rows (tests, shutdown)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.acked >= rows:
                return True
            time.sleep(0.01)
        return self.acked >= rows

    # -- link thread ---------------------------------------------------------------------------------------
    def _socket(self, ctx: zmq.Context[zmq.Socket[bytes]]) -> zmq.Socket[bytes]:
        s = ctx.socket(zmq.DEALER)
        s.linger = 0
        s.sndhwm = self.cfg.hwm
        s.rcvhwm = self.cfg.hwm
        s.setsockopt(zmq.RECONNECT_IVL, int(self.cfg.backoff_min_s * 1000))
        s.setsockopt(zmq.RECONNECT_IVL_MAX, int(self.cfg.backoff_max_s * 1000))
        s.setsockopt(zmq.HEARTBEAT_IVL, int(self.cfg.heartbeat_s * 1000))
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.cfg.deadline_s * 1000))
        s.setsockopt(zmq.MAXMSGSIZE, self.cfg.max_policy_bytes + (1 << 20))
        if self.keys is not None:
            s.curve_publickey = self.keys.public
            s.curve_secretkey = self.keys.secret
            s.curve_serverkey = self.keys.server_public
        s.connect(self.endpoint)
        return s

    def _run(self) -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        backoff = self.cfg.backoff_min_s
        try:
            while not self._stop.is_set():
                if self._cursor is None and not self._open_store():
                    self._stop.wait(self.cfg.poll_s * 5)
                    continue
                sock = self._socket(ctx)
                try:
                    healthy = self._session(sock)
                finally:
                    sock.close(0)
                    self.connected = False
                if self._stop.is_set():
                    break
                backoff = self.cfg.backoff_min_s if healthy else min(self.cfg.backoff_max_s, backoff * 2)
                self.counters["reconnects"] += 1
                log.info("reconnecting to %s in %.2f s", self.endpoint, backoff)
                self._stop.wait(backoff)
        except Exception:
            log.exception("robot link failed")
            raise
        finally:
            ctx.term()

    def _open_store(self) -> bool:
        try:
            self._cursor = StoreCursor(self.store)
            return True
        except StoreError as exc:
            log.debug("store not ready: %s", exc)
            return False

    def _hello(self, sock: zmq.Socket[bytes]) -> None:
        cur = self._cursor
        assert cur is not None
        self._send(sock, encode("hello", robot=self.robot_id, meta=cur.meta.to_dict(), spec_hash=spec_hash(cur.meta),
                                software=cur.meta.software_version, recorded=self.recorded))
        self._hello_t = time.monotonic()

    def _session(self, sock: zmq.Socket[bytes]) -> bool:
        """One connection: hello, stream, answer; returns whether it ever streamed (resets the backoff)."""
        cur = self._cursor
        assert cur is not None
        self.recorded = cur.refresh()
        self._streaming = False
        streamed = False
        self._hello(sock)
        last_rx = last_tx = last_status = time.monotonic()
        poll_ms = int(self.cfg.poll_s * 1000)
        while not self._stop.is_set():
            if sock.poll(poll_ms, zmq.POLLIN):
                for _ in range(256):
                    try:
                        frames = sock.recv_multipart(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    last_rx = time.monotonic()
                    self._receive(sock, frames)
            now = time.monotonic()
            if self._streaming:
                streamed = True
                self.connected = True
                self.recorded = cur.refresh()
                if self._pump(sock):
                    last_tx = now
            elif now - self._hello_t > self.cfg.deadline_s:
                log.warning("no answer to hello from %s within %.1f s", self.endpoint, self.cfg.deadline_s)
                self.counters["hello_timeouts"] += 1
                return streamed
            if self._streaming and now - last_status >= self.cfg.status_s:
                last_status = now
                self._send(sock, encode("status", recorded=self.recorded, acked=self.acked,
                                        policy_version=-1 if self.policy_version is None else self.policy_version,
                                        sent_rows=self.counters["sent_rows"], reconnects=self.counters["reconnects"]))
            if now - last_tx >= self.cfg.heartbeat_s:
                self._send(sock, encode("heartbeat", recorded=self.recorded, acked=self.acked))
                last_tx = now
            if now - last_rx > self.cfg.deadline_s:
                log.warning("trainer %s silent for %.1f s", self.endpoint, now - last_rx)
                self.counters["deadline_missed"] += 1
                return streamed
        return streamed

    def _pump(self, sock: zmq.Socket[bytes]) -> bool:
        """Send rows after ``send_pos`` while the window allows; returns whether anything was sent."""
        cur = self._cursor
        assert cur is not None
        sent = False
        while self.send_pos < self.recorded and self.send_pos - self.acked < self.cfg.window_rows:
            room = self.cfg.window_rows - (self.send_pos - self.acked)
            cols, started, closed = cur.read(self.send_pos, min(self.cfg.batch_rows, room))
            if not cols:
                break
            frames = encode_tx(self.robot_id, self.send_pos, cols, started, closed)
            if not self._send(sock, frames):
                break
            n = len(cols["reward"])
            self.send_pos += n
            self.counters["sent_rows"] += n
            self.counters["sent_msgs"] += 1
            sent = True
            time.sleep(0)  # let the process's other threads (the control loop) have the GIL between batches
        return sent

    def _send(self, sock: zmq.Socket[bytes], frames: list[Any]) -> bool:
        try:
            sock.send_multipart(frames, zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:  # HWM reached or not connected: try again on the next round
            self.counters["send_would_block"] += 1
            return False

    def _receive(self, sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
        try:
            msg = decode(frames, allowed=TRAINER_TYPES, max_bytes=self.cfg.max_policy_bytes + (1 << 20))
        except ProtocolError as exc:
            self.counters[f"rejected_{exc.reason}"] += 1
            log.warning("rejected a message from the trainer: %s", exc)
            return
        h = msg.header
        if msg.type == "ack":
            seq = h["seq"]
            if not isinstance(seq, int) or seq < 0:
                self.counters["rejected_malformed"] += 1
                return
            if seq > self.recorded:
                log.error("trainer acknowledges %d rows but this store holds %d (another robot's store, or rows "
                          "lost here?)", seq, self.recorded)
                self.counters["ack_beyond_store"] += 1
            self.acked = seq
            if not self._streaming:
                self._streaming = True
                self.send_pos = seq  # resend everything after the trainer's last persisted row
                log.info("streaming to %s from row %d (%d recorded)", self.endpoint, seq, self.recorded)
            elif seq > self.send_pos:
                self.send_pos = seq
        elif msg.type == "reject":
            reason = str(h["reason"])
            self.counters[f"trainer_rejected_{reason}"] += 1
            log.warning("trainer rejected: %s", str(h["message"])[:300])
            if reason == "no_session" and (self._streaming or time.monotonic() - self._hello_t > 0.5):
                self._streaming = False
                self._hello(sock)
            elif reason == "out_of_order" and isinstance(h.get("resume"), int):
                self.send_pos = max(self.acked, int(h["resume"]))
        elif msg.type == "policy":
            self._policy(sock, msg)
        elif msg.type == "refresh":
            n, unit = h["n"], h["unit"]
            if isinstance(n, int) and n > 0 and unit in ("steps", "episodes") and self.on_refresh is not None:
                self.counters["refresh_requests"] += 1
                try:
                    self.on_refresh(n, unit)
                except Exception:
                    log.exception("on_refresh failed")

    def _policy(self, sock: zmq.Socket[bytes], msg: Message) -> None:
        try:
            version, data, sha, sig, md = decode_policy(msg, self.cfg.max_policy_bytes)
        except ProtocolError as exc:
            self.counters[f"rejected_{exc.reason}"] += 1
            log.warning("rejected a policy message: %s", exc)
            return
        ok, reason = self._check_policy(version, data, sha, sig, md)
        if ok and self.on_policy is not None:
            try:
                ok, reason = self.on_policy(version, data, sha, md)
            except Exception as exc:
                log.exception("on_policy failed")
                ok, reason = False, f"on_policy raised {type(exc).__name__}: {exc}"
        elif ok:
            ok, reason = False, "no policy handler on this robot"
        self.counters["policies_accepted" if ok else "policies_rejected"] += 1
        if ok:
            self.policy_version = version
        else:
            log.warning("policy %d rejected: %s", version, reason)
        self._send(sock, encode("policy_result", version=version, accepted=bool(ok), reason=str(reason)[:300]))

    def _check_policy(self, version: int, data: bytes, sha: str, sig: bytes, md: dict[str, str]) -> tuple[bool, str]:
        if self.keys is None:
            return False, "bad signature: this robot has no trainer key to verify policies with"
        if not verify_signature(self.keys.policy_verify, sig, policy_signed_bytes(version, sha, md)):
            return False, "bad signature: not signed by the configured trainer"
        if sha256_hex(data) != sha:
            return False, "sha256 of the ONNX bytes does not match the signed digest"
        return True, "verified"


def _link_process_main(conn: Any, endpoint: str, store: str, robot_id: str, keys_dir: str | None, key_name: str,
                       trainer_name: str, config: LinkConfig, status_s: float) -> None:
    """Body of :class:`RobotLinkProcess`'s child: a :class:`RobotLink` whose callbacks ask the parent."""
    lock = threading.Lock()  # one reader of the pipe at a time (the parent answers each policy on it)
    stopping = threading.Event()

    def on_policy(version: int, data: bytes, sha: str, md: dict[str, str]) -> tuple[bool, str]:
        with lock:
            conn.send(("policy", version, data, sha, md))
            if not conn.poll(30.0):
                return False, "the controller did not answer within 30 s"
            ans = conn.recv()
        if ans == "stop":
            stopping.set()
            return False, "the controller is stopping"
        return bool(ans[0]), str(ans[1])

    def on_refresh(n: int, unit: str) -> None:
        with lock:
            conn.send(("refresh", n, unit))

    keys = None if keys_dir is None else RobotKeys.load(keys_dir, key_name, trainer_name)
    link = RobotLink(endpoint, store, robot_id, keys, on_policy, on_refresh, config, insecure=keys is None).start()
    try:
        while not stopping.wait(status_s):
            with lock:
                try:
                    if conn.poll(0) and conn.recv() == "stop":
                        break
                    conn.send(("status", link.status()))
                except (EOFError, OSError):  # the parent is gone
                    break
    finally:
        link.stop()


class RobotLinkProcess:
    """A :class:`RobotLink` in a process of its own, for a control loop that must not share the GIL with it.

    The link process reads the store and talks to the trainer; ``on_policy`` and ``on_refresh`` still run in this
    process (on a small helper thread that only waits on a pipe), so the controller's thread-safe ``offer_policy``
    is called where the controller lives. Keys are loaded in the child from ``keys_dir`` (``None``: insecure).
    """

    def __init__(self, endpoint: str, store: str | Path, robot_id: str, keys_dir: str | Path | None,
                 on_policy: OnPolicy | None = None, on_refresh: OnRefresh | None = None,
                 config: LinkConfig | None = None, key_name: str | None = None, trainer_name: str = "trainer",
                 status_s: float = 0.2) -> None:
        import multiprocessing as mp

        self.on_policy, self.on_refresh = on_policy, on_refresh
        self._last_status: dict[str, Any] = {}
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_link_process_main, name=f"robot-link-{robot_id}", daemon=True,
                                 args=(child, endpoint, str(store), robot_id, None if keys_dir is None else
                                       str(keys_dir), key_name or robot_id, trainer_name, config or LinkConfig(),
                                       status_s))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="robot-link-callbacks", daemon=True)

    def start(self) -> RobotLinkProcess:
        self._proc.start()
        self._thread.start()
        return self

    def status(self) -> dict[str, Any]:
        """The child's last reported :meth:`RobotLink.status` (empty until the first report)."""
        return dict(self._last_status)

    def wait_acked(self, rows: int, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self._last_status.get("acked", -1) >= rows:
                return True
            time.sleep(0.02)
        return self._last_status.get("acked", -1) >= rows

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._conn.poll(0.1):
                    if not self._proc.is_alive():
                        log.error("the link process exited (code %s)", self._proc.exitcode)
                        return
                    continue
                msg = self._conn.recv()
            except (EOFError, OSError):
                return
            if msg[0] == "status":
                self._last_status = msg[1]
            elif msg[0] == "policy":
                _, version, data, sha, md = msg
                try:
                    ans = self.on_policy(version, data, sha, md) if self.on_policy else (False, "no policy handler")
                except Exception as exc:
                    log.exception("on_policy failed")
                    ans = (False, f"on_policy raised {type(exc).__name__}: {exc}")
                self._conn.send(ans)
            elif msg[0] == "refresh" and self.on_refresh is not None:
                try:
                    self.on_refresh(msg[1], msg[2])
                except Exception:
                    log.exception("on_refresh failed")

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with contextlib.suppress(OSError, BrokenPipeError):
            self._conn.send("stop")
        self._proc.join(timeout)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join()
        self._thread.join(timeout)

    def __enter__(self) -> RobotLinkProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
