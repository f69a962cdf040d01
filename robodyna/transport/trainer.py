"""The trainer's end of the link: :class:`TrainerServer`.

One network thread owns a CURVE-secured ROUTER socket. Per round it drains what arrived (bounded), decodes every
message with the strict decoder of :mod:`robodyna.transport.protocol`, checks identity and sequence, persists
each robot's accepted rows as one fsynced segment of that robot's store under ``store_root/ROBOT`` (group
commit), and only then acknowledges (cumulative ``ack``). Newly persisted rows are offered to a learner thread
through :attr:`TrainerServer.batches`; policies (signed with the trainer's Ed25519 key) and refresh requests
are queued by any thread and sent by the network thread.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zmq
from zmq.auth.thread import ThreadAuthenticator

from robodyna.data.batch import FIELDS, Batch
from robodyna.data.store_format import EXTRA_COLUMNS, StoreError, StoreMeta, compatibility_problems, store_identity
from robodyna.data.store_reader import Transitions
from robodyna.identity import Identity, IdentityMismatch, check_identity
from robodyna.transport.keys import TrainerKeys
from robodyna.transport.protocol import (
    ROBOT_TYPES,
    Message,
    ProtocolError,
    TxBatch,
    decode,
    decode_tx,
    encode,
    encode_policy,
    policy_signed_bytes,
    sha256_hex,
    spec_hash,
)
from robodyna.transport.stores import RobotSink

log = logging.getLogger(__name__)
ZAP_DOMAIN = "robodyna"
_ROBOT_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True)
class TrainerConfig:
    """Knobs of the trainer's end (defaults suit a LAN; tests shorten the timers)."""

    heartbeat_s: float = 0.5  # a heartbeat to every robot this often
    deadline_s: float = 3.0  # a robot silent this long is marked disconnected
    max_message_bytes: int = 64 << 20  # ZMQ_MAXMSGSIZE: libzmq drops the connection of a bigger frame
    max_rows: int = 1 << 16  # rows per tx message at most
    commit_rows: int = 1 << 17  # group commit: rows buffered per robot before a segment is written
    drain_messages: int = 256  # messages handled per round before committing and acking
    learner_queue: int = 1024  # persisted batches waiting for the learner (oldest dropped beyond; the store keeps all)
    hwm: int = 1000


@dataclass
class RobotState:
    """Per-robot bookkeeping (what :meth:`TrainerServer.status` reports)."""

    robot: str
    sink: RobotSink
    peer: bytes | None = None
    key: bytes | None = None
    pending: list[TxBatch] = field(default_factory=list)
    pending_rows: int = 0
    need_ack: bool = False
    recorded: int = 0  # rows the robot says it has recorded (heartbeat)
    last_seen: float = 0.0
    last_hb_sent: float = 0.0
    counters: collections.Counter[str] = field(default_factory=collections.Counter)
    policy: dict[str, Any] = field(default_factory=dict)
    robot_status: dict[str, Any] = field(default_factory=dict)  # the robot's last ``status`` message

    @property
    def expected(self) -> int:
        return self.sink.next_seq + self.pending_rows


class _AllowList:
    """ZAP credentials provider: the CURVE public keys allowed to connect (z85)."""

    def __init__(self, allowed: dict[bytes, str], counters: collections.Counter[str]) -> None:
        self.allowed = dict(allowed)
        self.counters = counters

    def callback(self, domain: str, key: bytes) -> bool:
        ok = key in self.allowed
        if not ok:
            self.counters["refused_unknown_key"] += 1
            log.warning("refused a connection with unknown CURVE key %s", key.decode(errors="replace"))
        return ok


class TrainerServer:
    """Receive, check, persist and acknowledge the rows of many robots; send them signed policies.

    Args:
        bind: ZeroMQ endpoint, e.g. ``tcp://*:5555`` or ``tcp://127.0.0.1:0`` (port chosen; see :attr:`endpoint`).
        store_root: one episode store per robot under ``store_root/ROBOT_ID``.
        keys: the trainer's CURVE pair, policy-signing key and robot allow-list. ``None`` only with
            ``insecure=True`` (no encryption, no authentication, unsigned policies refused by robots).
        expected: when given, every robot's hello is checked against it with the ``link`` identity rule.
        on_batch: called on the network thread with ``(robot, Transitions)`` after each persisted segment.
    """

    def __init__(self, bind: str, store_root: str | Path, keys: TrainerKeys | None, expected: Identity | None = None,
                 config: TrainerConfig | None = None, insecure: bool = False,
                 on_batch: Callable[[str, Transitions], None] | None = None) -> None:
        if keys is None and not insecure:
            raise ValueError("the trainer needs keys (robodyna keys generate); insecure=True only for debugging")
        self.bind_addr = bind
        self.store_root = Path(store_root)
        self.store_root.mkdir(parents=True, exist_ok=True)
        self.keys = keys
        self.expected = expected
        self.cfg = config or TrainerConfig()
        self.on_batch = on_batch
        self.batches: queue.Queue[tuple[str, Transitions]] = queue.Queue(self.cfg.learner_queue)
        self.policy_results: queue.Queue[tuple[str, int, bool, str]] = queue.Queue()
        self.counters: collections.Counter[str] = collections.Counter()  # global (unknown peers, refused keys)
        self._robots: dict[str, RobotState] = {}
        self._peers: dict[bytes, str] = {}
        self._lock = threading.Lock()
        self._cmds: collections.deque[tuple[str, Any]] = collections.deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.endpoint = ""
        self._ctx: zmq.Context[zmq.Socket[bytes]] | None = None
        self._auth: ThreadAuthenticator | None = None
        self._reject_log_t: dict[str, float] = {}

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> TrainerServer:
        self._thread = threading.Thread(target=self._run, name="trainer-link", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("trainer link did not start")
        if self._error is not None:
            raise RuntimeError(f"trainer link failed to start: {self._error}") from self._error
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(10.0)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def __enter__(self) -> TrainerServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- API for other threads -----------------------------------------------------------------------------
    def push_policy(self, version: int, onnx_bytes: bytes, metadata: dict[str, str] | None = None,
                    robot: str | None = None) -> str:
        """Sign and send a policy to ``robot`` (all connected robots when ``None``); returns its sha256.
        Each robot answers with ``policy_result`` (see :attr:`policy_results` and :meth:`status`)."""
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise ValueError(f"policy version must be a non-negative int, got {version!r}")
        sha = sha256_hex(onnx_bytes)
        md = {str(k): str(v) for k, v in (metadata or {}).items()}
        sig = b"" if self.keys is None else self.keys.signing.sign(policy_signed_bytes(version, sha, md))
        self._command("policy", (robot, encode_policy(version, onnx_bytes, sha, sig, md), version))
        return sha

    def request_refresh(self, robot: str | None, n: int, unit: str = "episodes") -> None:
        """Ask ``robot`` (all when ``None``) for ``n`` fresh steps or episodes under its current policy."""
        if unit not in ("steps", "episodes") or n <= 0:
            raise ValueError("refresh: n > 0 and unit in (steps, episodes)")
        self._command("refresh", (robot, encode("refresh", n=int(n), unit=unit)))

    def status(self) -> dict[str, Any]:
        """Per-robot counters: persisted rows/seq, lag (recorded on the robot - persisted), rejects by reason."""
        now = time.monotonic()
        with self._lock:
            robots = {}
            for rid, st in self._robots.items():
                robots[rid] = {
                    "connected": st.peer is not None,
                    "persisted_seq": st.sink.next_seq,
                    "rows": st.sink.rows,
                    "recorded": max(st.recorded, st.sink.next_seq),
                    "lag_rows": max(0, st.recorded - st.sink.next_seq),
                    "last_seen_s": round(now - st.last_seen, 3) if st.last_seen else None,
                    "policy": dict(st.policy),
                    "robot_status": dict(st.robot_status),
                    "counters": dict(st.counters),
                }
            return {"endpoint": self.endpoint, "robots": robots, "counters": dict(self.counters)}

    def _command(self, kind: str, payload: Any) -> None:
        self._cmds.append((kind, payload))
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    # -- network thread ------------------------------------------------------------------------------------
    def _setup(self) -> zmq.Socket[bytes]:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._ctx = ctx
        if self.keys is not None:
            self._auth = ThreadAuthenticator(ctx, log=logging.getLogger("robodyna.transport.zap"))
            self._auth.start()
            self._allow = _AllowList(self.keys.allowed, self.counters)
            self._auth.configure_curve_callback(domain=ZAP_DOMAIN, credentials_provider=self._allow)
        sock = ctx.socket(zmq.ROUTER)
        sock.linger = 0
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, self.cfg.max_message_bytes)
        sock.sndhwm = self.cfg.hwm
        sock.rcvhwm = self.cfg.hwm
        sock.setsockopt(zmq.HEARTBEAT_IVL, int(self.cfg.heartbeat_s * 1000))
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, int(self.cfg.deadline_s * 1000))
        if self.keys is not None:
            sock.curve_server = True
            sock.curve_publickey = self.keys.public
            sock.curve_secretkey = self.keys.secret
            sock.zap_domain = ZAP_DOMAIN.encode()
        sock.bind(self.bind_addr)
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        # connection-level events, counted: failed handshakes (plaintext client, unknown key) and dropped
        # connections (a message above ZMQ_MAXMSGSIZE makes libzmq close that peer's connection)
        self._mon = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
                                            | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH
                                            | zmq.EVENT_HANDSHAKE_SUCCEEDED)
        return sock

    def _run(self) -> None:
        try:
            sock = self._setup()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            return
        self._sock = sock
        self._ready.set()
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        poller.register(self._mon, zmq.POLLIN)
        tick = max(0.01, self.cfg.heartbeat_s / 4)
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(int(tick * 1000)))
                if self._stop.is_set():
                    break
                if events.get(self._wake_r):
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 4096)
                if events.get(self._mon):
                    self._monitor()
                if events.get(sock):
                    self._drain(sock)
                self._commands(sock)
                self._timers(sock)
        except Exception:
            log.exception("trainer link thread failed")
            raise
        finally:
            with contextlib.suppress(zmq.ZMQError):
                sock.disable_monitor()
            self._mon.close(0)
            sock.close(0)
            if self._auth is not None:
                self._auth.stop()
            with self._lock:
                for st in self._robots.values():
                    st.sink.close()
            if self._ctx is not None:
                self._ctx.term()

    def _monitor(self) -> None:
        from zmq.utils.monitor import recv_monitor_message

        while True:
            try:
                ev = recv_monitor_message(self._mon, zmq.NOBLOCK)
            except zmq.Again:
                return
            name = str(zmq.Event(ev["event"]).name).lower()
            with self._lock:
                self.counters[f"zmq_{name}"] += 1
            if name.startswith("handshake_failed"):
                log.warning("connection refused (%s, errno %s)", name, ev.get("value"))

    def _drain(self, sock: zmq.Socket[bytes]) -> None:
        with self._lock:
            for _ in range(self.cfg.drain_messages):
                try:
                    frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                self._handle(sock, frames)
            self._commit(sock)

    def _handle(self, sock: zmq.Socket[bytes], frames: list[zmq.Frame]) -> None:
        peer = frames[0].bytes
        key: bytes | None = None
        if self.keys is not None and len(frames) > 1:
            with contextlib.suppress(zmq.ZMQError):
                key = str(frames[1].get("User-Id")).encode()
        self.handle_frames(sock, peer, key, [f.buffer for f in frames[1:]])

    def handle_frames(self, sock: zmq.Socket[bytes] | None, peer: bytes, key: bytes | None,
                      frames: list[Any]) -> None:
        """One message from ``peer`` (authenticated as CURVE key ``key``): decode, check, buffer or answer.

        Separated from the socket so the fuzz tests can drive it directly (``sock=None`` drops the replies)."""
        rid = self._peers.get(peer)
        st = self._robots.get(rid) if rid is not None else None
        try:
            msg = decode(frames, allowed=ROBOT_TYPES, max_bytes=self.cfg.max_message_bytes)
            if msg.type == "hello":
                self._hello(sock, peer, key, msg)
                return
            if st is None:
                raise ProtocolError("no_session", f"{msg.type} before hello")
            st.last_seen = time.monotonic()
            if msg.type == "tx":
                self._tx(sock, st, msg)
            elif msg.type == "heartbeat":
                rec = msg.header.get("recorded")
                if isinstance(rec, int) and not isinstance(rec, bool) and rec >= 0:
                    st.recorded = rec
            elif msg.type == "policy_result":
                self._policy_result(st, msg)
            elif msg.type == "status":
                st.robot_status = {str(k)[:40]: v for k, v in list(msg.header.items())[:32]
                                   if k not in ("p", "t") and isinstance(v, (int, float, str))}
        except ProtocolError as exc:
            counters = st.counters if st is not None else self.counters
            counters[f"rejected_{exc.reason}"] += 1
            who = rid or f"peer {peer.hex()}"
            now = time.monotonic()
            if now - self._reject_log_t.get(exc.reason, 0.0) > 1.0:  # a flood must not flood the log
                self._reject_log_t[exc.reason] = now
                log.warning("%s: rejected message (%s)", who, exc)
            extra = {"resume": st.expected} if st is not None else {}
            self._send(sock, peer, encode("reject", reason=exc.reason, message=str(exc)[:300], **extra))

    def _hello(self, sock: zmq.Socket[bytes] | None, peer: bytes, key: bytes | None, msg: Message) -> None:
        h = msg.header
        rid = h["robot"]
        if not isinstance(rid, str) or not _ROBOT_ID.match(rid):
            raise ProtocolError("malformed", f"hello: robot id {str(rid)[:80]!r} is not a plain name")
        if self.keys is not None:
            owner = self.keys.allowed.get(key or b"")
            if owner is None:
                raise ProtocolError("unauthenticated", "hello without an allowed CURVE key")
            if owner != rid:
                raise ProtocolError("identity", f"key of robot {owner!r} says hello as {rid!r}")
        if not isinstance(h["meta"], dict):
            raise ProtocolError("malformed", "hello: meta must be a map")
        try:
            meta = StoreMeta.from_dict(h["meta"], source=f"hello of {rid}")
        except (StoreError, TypeError, ValueError) as exc:
            raise ProtocolError("malformed", str(exc)) from None
        theirs = store_identity(meta)
        if h["spec_hash"] != spec_hash(meta):
            raise ProtocolError("identity", "hello: spec_hash does not match the metadata sent")
        try:
            if self.expected is not None:
                check_identity("link", theirs, self.expected, f"hello of robot {rid}")
            st = self._robots.get(rid)
            if st is None:
                st = self._open_robot(rid, meta)
            else:
                check_identity("link", theirs, store_identity(st.sink.meta), f"hello of robot {rid}")
        except IdentityMismatch as exc:
            raise ProtocolError("identity", str(exc)) from None
        problems = compatibility_problems(st.sink.meta, meta)
        if problems:
            raise ProtocolError("identity", f"hello of robot {rid}: store metadata differs: {problems[0]}")
        if meta.created_wall_s != st.sink.meta.created_wall_s:  # sequence numbers of another store: never mix
            raise ProtocolError("identity", f"hello of robot {rid}: its store was created at {meta.created_wall_s}, "
                                            f"the one streamed here so far at {st.sink.meta.created_wall_s} (a new "
                                            "store needs a new robot id, or move the trainer's store away)")
        if st.peer is not None and st.peer != peer:
            self._peers.pop(st.peer, None)
            st.counters["sessions_replaced"] += 1
        st.peer, st.key = peer, key
        self._peers[peer] = rid
        st.last_seen = time.monotonic()
        rec = h["recorded"]
        if isinstance(rec, int) and not isinstance(rec, bool) and rec >= 0:
            st.recorded = rec
        st.counters["hellos"] += 1
        st.need_ack = True
        log.info("robot %s connected (persisted up to seq %d, robot recorded %s)", rid, st.expected, rec)

    def _open_robot(self, rid: str, meta: StoreMeta) -> RobotState:
        root = self.store_root / rid
        try:
            sink = RobotSink(root, meta, rid)
        except StoreError as exc:
            raise ProtocolError("store", str(exc)) from None
        check_identity("link", store_identity(meta), store_identity(sink.meta), f"hello of robot {rid}")
        st = RobotState(rid, sink)
        self._robots[rid] = st
        return st

    def _tx(self, sock: zmq.Socket[bytes] | None, st: RobotState, msg: Message) -> None:
        b = decode_tx(msg, st.sink.meta.obs_dim, st.sink.meta.act_dim, self.cfg.max_rows)
        if b.robot != st.robot:
            raise ProtocolError("identity", f"tx for robot {b.robot!r} on the session of {st.robot!r}")
        exp = st.expected
        if b.seq1 <= exp:
            st.counters["duplicate_rows"] += b.n
            st.counters["duplicate_msgs"] += 1
            st.need_ack = True
            return
        if b.seq0 > exp:
            raise ProtocolError("out_of_order", f"tx [{b.seq0}, {b.seq1}) after {exp}: rows missing in between")
        if b.seq0 < exp:
            st.counters["duplicate_rows"] += exp - b.seq0
            b = b.slice_from(exp)
        st.pending.append(b)
        st.pending_rows += b.n
        st.counters["received_rows"] += b.n
        if st.pending_rows >= self.cfg.commit_rows:
            self._commit_robot(st)

    def _policy_result(self, st: RobotState, msg: Message) -> None:
        h = msg.header
        v, ok, reason = h["version"], h["accepted"], h["reason"]
        if not isinstance(v, int) or not isinstance(ok, bool) or not isinstance(reason, str):
            raise ProtocolError("malformed", "policy_result: version int, accepted bool, reason str")
        st.policy.update({"version": v, "accepted": ok, "reason": reason[:300]})
        st.counters["policies_accepted" if ok else "policies_rejected"] += 1
        self.policy_results.put((st.robot, v, ok, reason))
        log.info("robot %s %s policy %d%s", st.robot, "accepted" if ok else "rejected", v,
                 "" if ok else f": {reason}")

    def _commit_robot(self, st: RobotState) -> None:
        if not st.pending:
            return
        batches, st.pending, st.pending_rows = st.pending, [], 0
        try:
            st.sink.append(batches)
        except (OSError, StoreError, ValueError) as exc:  # not acked: the robot resends after its deadline
            st.counters["store_errors"] += 1
            log.error("robot %s: persisting rows failed: %s", st.robot, exc)
            return
        st.counters["persisted_segments"] += 1
        st.need_ack = True
        self._offer(st.robot, batches)

    def _offer(self, robot: str, batches: list[TxBatch]) -> None:
        cols = batches[0].cols if len(batches) == 1 else {
            c: np.concatenate([b.cols[c] for b in batches]) for c in batches[0].cols}
        tr = Transitions(Batch(**{k: cols[k] for k in FIELDS}), {k: cols[k] for k in EXTRA_COLUMNS})
        if self.on_batch is not None:
            try:
                self.on_batch(robot, tr)
            except Exception:
                log.exception("on_batch callback failed")
        while True:
            try:
                self.batches.put_nowait((robot, tr))
                return
            except queue.Full:
                with contextlib.suppress(queue.Empty):
                    self.batches.get_nowait()
                    self.counters["learner_queue_dropped"] += 1

    def _commit(self, sock: zmq.Socket[bytes] | None) -> None:
        for st in self._robots.values():
            self._commit_robot(st)
            if st.need_ack and st.peer is not None:
                st.need_ack = False
                self._send(sock, st.peer, encode("ack", seq=st.sink.next_seq))

    def _send(self, sock: zmq.Socket[bytes] | None, peer: bytes, frames: list[Any]) -> bool:
        if sock is None:
            return False
        try:
            sock.send_multipart([peer, *frames], zmq.NOBLOCK, copy=len(frames[-1]) < 65536)
            return True
        except zmq.Again:
            self.counters["send_dropped_hwm"] += 1
        except zmq.ZMQError as exc:  # EHOSTUNREACH: the peer is gone (ROUTER_MANDATORY)
            self.counters["send_unroutable"] += 1
            log.debug("send to %s failed: %s", peer.hex(), exc)
        return False

    def _targets(self, robot: str | None) -> list[RobotState]:
        if robot is None:
            return [st for st in self._robots.values() if st.peer is not None]
        st = self._robots.get(robot)
        return [st] if st is not None and st.peer is not None else []

    def _commands(self, sock: zmq.Socket[bytes]) -> None:
        while self._cmds:
            kind, payload = self._cmds.popleft()
            with self._lock:
                targets = self._targets(payload[0])
                if not targets:
                    self.counters[f"{kind}_no_robot"] += 1
                    log.warning("%s for %s: no such robot connected", kind, payload[0] or "all robots")
                for st in targets:
                    if self._send(sock, st.peer or b"", payload[1]):
                        st.counters[f"{kind}_sent"] += 1
                        if kind == "policy":
                            st.policy.update({"sent_version": payload[2], "sent_at": time.time()})

    def _timers(self, sock: zmq.Socket[bytes]) -> None:
        now = time.monotonic()
        with self._lock:
            for st in self._robots.values():
                if st.peer is None:
                    continue
                if now - st.last_seen > self.cfg.deadline_s:
                    log.warning("robot %s silent for %.1f s: disconnected", st.robot, now - st.last_seen)
                    self._peers.pop(st.peer, None)
                    st.peer = None
                    st.counters["deadline_missed"] += 1
                    continue
                if now - st.last_hb_sent >= self.cfg.heartbeat_s:
                    st.last_hb_sent = now
                    self._send(sock, st.peer, encode("heartbeat"))

