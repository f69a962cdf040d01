"""Example hardware driver plugin: an arm reached over a small TCP protocol (``driver: ...socket_arm:SocketArm``).

Copy this module to connect a real arm: implement the server side of the protocol on the arm's computer (or
translate it to the vendor's API), point ``robot.yaml`` at it, and the controller, recorder and safety filter work
unchanged. :mod:`robodyna.robots.arm_emulator` serves a simulated arm behind the same protocol for tests and demos.

``robot.yaml``::

    name: reacher2                      # the name policies were made for
    driver: robodyna.robots.socket_arm:SocketArm
    driver_options: {host: 127.0.0.1, port: 5555, timeout_ms: 50, connect_timeout_ms: 2000}
    joints: [...]                       # as for a simulated robot: limits, home pose, action bounds
    action_mode: torque
    safety: {home_speed_rad_s: 0.5}     # reset moves home at this joint speed

Protocol (all little-endian). A frame is ``uint32 length`` + payload; a request payload is
``uint8 op, uint32 seq, float64 values[]``; a reply is ``uint8 status (0 ok, 1 error), uint32 seq`` then
``float64 values[]`` (ok) or a UTF-8 message (error). Replies carry the request's ``seq``; the driver drops
replies to requests it gave up on (after a timeout), so a late reply never answers the wrong request.

==========  ===========================  ======================================================
op          request values               reply values
==========  ===========================  ======================================================
1 HELLO     -                            UTF-8 JSON ``{"name", "joints"}`` (as an ok payload)
2 OBSERVE   -                            ``qpos[n], qvel[n], ee_pos_m[3], time_s``
3 ACT       ``action[n]``                - (applied for one control period)
4 HOME      ``speed_rad_s, target[n]``   - (moves there at bounded joint speed, then replies)
==========  ===========================  ======================================================

Every call is bounded by ``timeout_ms`` (HOME by the time the move needs, plus a second): a stalled, failing or
disconnected arm raises :class:`~robodyna.robots.base.RobotError`, which the controller's watchdog meets with the
hold action. A lost connection is re-established on the next call.
"""

from __future__ import annotations

import json
import logging
import socket
import struct
import time
from pathlib import Path

import numpy as np

from robodyna.robots.base import Robot, RobotError, RobotState
from robodyna.spec import RobotConfig, RobotSpec, StateLayout

log = logging.getLogger(__name__)

HELLO, OBSERVE, ACT, HOME = 1, 2, 3, 4
OK, ERROR = 0, 1
_REQ = struct.Struct("<BI")
_LEN = struct.Struct("<I")


def pack_frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


def recv_exact(sock: socket.socket, n: int) -> bytes:
    """Read exactly ``n`` bytes (raises ConnectionError when the peer closed)."""
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("connection closed by the peer")
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket) -> bytes:
    (n,) = _LEN.unpack(recv_exact(sock, 4))
    if n > 1 << 20:
        raise ConnectionError(f"frame of {n} bytes: not this protocol")
    return recv_exact(sock, n)


class SocketArm(Robot):
    """A :class:`~robodyna.robots.base.Robot` whose arm answers the protocol above (see the module docstring)."""

    def __init__(self, cfg: RobotConfig, folder: Path) -> None:
        super().__init__(RobotSpec.from_config(cfg, "hardware"))
        self.cfg = cfg
        o = cfg.driver_options
        where = f"{folder / 'robot.yaml'}: driver_options"
        if "port" not in o:
            raise RobotError(f"{where}.port is required (the arm's TCP port)")
        self.host = str(o.get("host", "127.0.0.1"))
        self.port = int(o["port"])
        self.timeout_s = float(o.get("timeout_ms", 50)) / 1000.0
        self.connect_timeout_s = float(o.get("connect_timeout_ms", 2000)) / 1000.0
        self.home = np.array([j.home_rad for j in cfg.joints])
        self.n = len(cfg.joints)
        self._sock: socket.socket | None = None
        self._seq = 0
        self._lay = StateLayout(self.n)  # an OBSERVE reply: the state vector, then the arm's clock (s)
        self._fmt = {k: struct.Struct(f"<{k}d") for k in (0, self.n, self.n + 1, self._lay.size + 1)}
        self._connect()

    # -- transport ----------------------------------------------------------------------------------------------
    def _connect(self) -> None:
        try:
            s = socket.create_connection((self.host, self.port), timeout=self.connect_timeout_s)
        except OSError as exc:
            raise RobotError(f"{self.spec.name}: cannot connect to the arm at {self.host}:{self.port}: {exc}") from exc
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = s
        reply = self._call(HELLO, (), raw=True)
        assert isinstance(reply, bytes)
        hello = json.loads(reply.decode())
        if hello.get("name") != self.spec.name or int(hello.get("joints", -1)) != self.n:
            self.close()
            raise RobotError(f"{self.spec.name}: the arm at {self.host}:{self.port} is {hello!r}, expected "
                             f"name {self.spec.name!r} with {self.n} joints")
        log.info("connected to arm %s at %s:%d", hello.get("name"), self.host, self.port)

    def _call(self, op: int, values: tuple[float, ...] | np.ndarray, timeout_s: float | None = None,
              raw: bool = False) -> np.ndarray | bytes:
        if self._sock is None:
            self._connect()
        sock = self._sock
        assert sock is not None
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        vals = [float(v) for v in values]
        payload = _REQ.pack(op, seq) + struct.pack(f"<{len(vals)}d", *vals)
        deadline = time.monotonic() + (self.timeout_s if timeout_s is None else timeout_s)
        try:
            sock.settimeout(max(deadline - time.monotonic(), 1e-4))
            sock.sendall(pack_frame(payload))
            while True:
                sock.settimeout(max(deadline - time.monotonic(), 1e-4))
                frame = recv_frame(sock)
                status, rseq = _REQ.unpack_from(frame)
                if rseq == seq:
                    break
                # a late reply to a request we gave up on: drop it
        except TimeoutError as exc:
            raise RobotError(f"{self.spec.name}: arm did not answer op {op} within "
                             f"{(timeout_s or self.timeout_s) * 1e3:.0f} ms") from exc
        except (ConnectionError, OSError) as exc:
            self.close()
            raise RobotError(f"{self.spec.name}: connection to the arm lost ({exc}); reconnecting on the next call") \
                from exc
        body = frame[_REQ.size:]
        if status != OK:
            raise RobotError(f"{self.spec.name}: arm refused op {op}: {body.decode(errors='replace')}")
        if raw:
            return body
        return np.frombuffer(body, dtype="<f8")

    # -- Robot ----------------------------------------------------------------------------------------------
    def observe(self) -> RobotState:
        v = self._call(OBSERVE, ())
        assert isinstance(v, np.ndarray)
        lay = self._lay
        if v.shape != (lay.size + 1,):
            raise RobotError(f"{self.spec.name}: OBSERVE reply has {v.shape[0]} values, expected {lay.size + 1}")
        return RobotState(v[lay.qpos].copy(), v[lay.qvel].copy(), v[lay.ee].copy(), float(v[lay.size]))

    def _apply(self, action: np.ndarray) -> None:
        self._call(ACT, action)

    def reset(self, qpos: np.ndarray | None = None, qvel: np.ndarray | None = None,
              seed: int | None = None) -> RobotState:
        """Move to ``qpos`` (default: home) at ``safety.home_speed_rad_s``; a real arm cannot teleport."""
        target = self.home if qpos is None else np.asarray(qpos, np.float64)
        speed = self.cfg.safety.home_speed_rad_s
        try:
            q = self.observe().qpos
            dist = float(np.max(np.abs(q - target)))
        except RobotError:
            dist = float(np.max(self.spec.joint_high_rad) - np.min(self.spec.joint_low_rad))
        self._call(HOME, (speed, *target.tolist()), timeout_s=dist / speed + 1.0)
        return self.observe()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None
