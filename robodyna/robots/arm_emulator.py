"""An emulated arm behind the :mod:`robodyna.robots.socket_arm` protocol: a simulated robot served over TCP.

``python -m robodyna.robots.arm_emulator --robot reacher2 --port 0`` prints ``listening PORT`` and serves one
client at a time (a new client may connect after the previous one left). ACT steps the simulation one control
period; HOME moves the joints to the target at the requested speed, one control period per step (kinematically,
as a position-controlled arm would), sleeping each period with ``--pace``.

Fault injection for tests (counted in ACT requests, from 1): ``--stall-at-act N --stall-s S`` (answer the Nth ACT
S seconds late), ``--fail-at-act N --fail-count K`` (refuse K ACTs from the Nth), ``--disconnect-at-act N``
(drop the connection at the Nth ACT). ``--log FILE`` writes one JSON line per ACT and HOME step (what the arm did).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

import numpy as np

from robodyna.robots.base import Robot
from robodyna.robots.registry import load_robot
from robodyna.robots.socket_arm import _REQ, ACT, ERROR, HELLO, HOME, OBSERVE, OK, pack_frame, recv_frame


class Emulator:
    def __init__(self, robot: Robot, args: argparse.Namespace) -> None:
        self.robot = robot
        self.args = args
        self.n = robot.spec.n_joints
        self.dt = 1.0 / robot.spec.control_hz
        self.acts = 0
        self.log = open(args.log, "a", buffering=1) if args.log else None  # noqa: SIM115 - lives with the process

    def _write(self, rec: dict) -> None:
        if self.log is not None:
            self.log.write(json.dumps(rec) + "\n")

    def handle(self, op: int, vals: np.ndarray) -> tuple[int, bytes]:
        a = self.args
        if op == HELLO:
            return OK, json.dumps({"name": self.robot.spec.name, "joints": self.n}).encode()
        if op == OBSERVE:
            s = self.robot.observe()
            return OK, np.concatenate([s.qpos, s.qvel, s.ee_pos_m, [s.time_s]]).astype("<f8").tobytes()
        if op == ACT:
            self.acts += 1
            if a.disconnect_at_act and self.acts == a.disconnect_at_act:
                raise ConnectionAbortedError("injected disconnect")
            if a.fail_at_act and a.fail_at_act <= self.acts < a.fail_at_act + a.fail_count:
                self._write({"op": "act", "n": self.acts, "refused": True})
                return ERROR, b"injected motor fault"
            if a.stall_at_act and self.acts == a.stall_at_act:
                time.sleep(a.stall_s)
            self.robot.send_action(vals[: self.n])
            self._write({"op": "act", "n": self.acts, "action": vals[: self.n].tolist(), "t": time.monotonic()})
            return OK, b""
        if op == HOME:
            speed, target = float(vals[0]), vals[1 : 1 + self.n]
            q = self.robot.observe().qpos
            step = speed * self.dt
            while True:
                d = np.clip(target - q, -step, step)
                q = q + d
                self.robot.reset(qpos=q, qvel=np.zeros(self.n))
                self._write({"op": "home_step", "q": q.tolist(), "max_step_rad": float(np.max(np.abs(d)))})
                if a.pace:
                    time.sleep(self.dt)
                if np.all(np.abs(target - q) <= 1e-12):
                    return OK, b""
        return ERROR, f"unknown op {op}".encode()

    def serve(self, conn: socket.socket) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while True:
                try:
                    frame = recv_frame(conn)
                except ConnectionError:
                    return
                op, seq = _REQ.unpack_from(frame)
                vals = np.frombuffer(frame[_REQ.size:], dtype="<f8")
                try:
                    status, body = self.handle(op, vals)
                except ConnectionAbortedError:
                    return
                except Exception as exc:  # noqa: BLE001 - reported to the client, the emulator keeps serving
                    status, body = ERROR, f"{type(exc).__name__}: {exc}".encode()
                try:
                    conn.sendall(pack_frame(_REQ.pack(status, seq) + body))
                except OSError:
                    return


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m robodyna.robots.arm_emulator", description=__doc__.split("\n")[0])
    p.add_argument("--robot", default="reacher2", help="simulated robot served (name or folder)")
    p.add_argument("--engine", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0: any free port (printed)")
    p.add_argument("--pace", action="store_true", help="HOME moves take real time")
    p.add_argument("--stall-at-act", type=int, default=0)
    p.add_argument("--stall-s", type=float, default=0.5)
    p.add_argument("--fail-at-act", type=int, default=0)
    p.add_argument("--fail-count", type=int, default=1)
    p.add_argument("--disconnect-at-act", type=int, default=0)
    p.add_argument("--log", default=None)
    args = p.parse_args(argv)
    robot = load_robot(args.robot, engine=args.engine)
    robot.reset()
    emu = Emulator(robot, args)
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.host, args.port))
    srv.listen(1)
    print(f"listening {srv.getsockname()[1]}", flush=True)
    while True:
        conn, _ = srv.accept()
        emu.serve(conn)


if __name__ == "__main__":
    sys.exit(main())
