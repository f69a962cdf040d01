"""The link end to end on loopback with CURVE: streaming while recording, restarts, fleet, window, identity,
a network interruption through a TCP proxy."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import msgpack
import zmq

from robodyna.data.store import EpisodeStore, StoreMeta
from robodyna.identity import Identity
from robodyna.transport.protocol import decode, encode, spec_hash
from robodyna.transport.robot import LinkConfig, RobotLink
from robodyna.transport.trainer import TrainerServer
from tests.transport.conftest import (
    FAST_L,
    FAST_T,
    Recorder,
    assert_exactly_once,
    reacher_meta,
    reacher_spec,
    rkeys,
    until,
    write_rows,
)


def test_rows_recorded_while_streaming_arrive_exactly_once(tmp_path: Path, keys_dir: Path, tkeys) -> None:
    rec = Recorder(tmp_path / "robot", 20_000, chunk=700)
    rec.start()
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=FAST_T) as srv:
        with RobotLink(srv.endpoint, tmp_path / "robot", "r1", rkeys(keys_dir, "r1"), config=FAST_L) as link:
            rec.join(30)
            assert link.wait_acked(20_000, 20), link.status()
            st = srv.status()["robots"]["r1"]
            got = []
            while not srv.batches.empty():
                got.append(srv.batches.get_nowait())
    assert st["persisted_seq"] == 20_000 and st["counters"].get("duplicate_rows", 0) == 0
    assert sum(len(t) for _, t in got) == 20_000  # the learner saw every persisted row once
    assert assert_exactly_once(tmp_path / "robot", tmp_path / "trainer" / "r1") == 20_000


def test_trainer_restart_resumes_from_its_store_and_drops_duplicates(tmp_path: Path, keys_dir: Path, tkeys) -> None:
    write_rows(tmp_path / "robot", 5000)
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=FAST_T) as srv:
        with RobotLink(srv.endpoint, tmp_path / "robot", "r1", rkeys(keys_dir, "r1"), config=FAST_L) as link:
            assert link.wait_acked(5000, 10)
    write_rows(tmp_path / "robot", 3000, start=5000)
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=FAST_T) as srv:
        # a fresh link (robot restarted too) knows nothing: the trainer's ack from its store tells it where to start
        with RobotLink(srv.endpoint, tmp_path / "robot", "r1", rkeys(keys_dir, "r1"), config=FAST_L) as link:
            assert link.wait_acked(8000, 10)
            assert link.counters["sent_rows"] == 3000
    assert assert_exactly_once(tmp_path / "robot", tmp_path / "trainer" / "r1") == 8000


def test_a_recreated_robot_store_is_refused_not_mixed(tmp_path: Path, keys_dir: Path, tkeys) -> None:
    """Sequence numbers belong to one store: a robot whose store was wiped and re-created must not continue."""
    import shutil

    write_rows(tmp_path / "robot", 1000)
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=FAST_T) as srv:
        with RobotLink(srv.endpoint, tmp_path / "robot", "r1", rkeys(keys_dir, "r1"), config=FAST_L) as link:
            assert link.wait_acked(1000, 10)
        shutil.rmtree(tmp_path / "robot")
        time.sleep(0.01)
        write_rows(tmp_path / "robot", 2000)
        with RobotLink(srv.endpoint, tmp_path / "robot", "r1", rkeys(keys_dir, "r1"), config=FAST_L) as link:
            assert until(lambda: link.counters["trainer_rejected_identity"] >= 1)
            assert link.acked == -1
        assert srv.status()["robots"]["r1"]["rows"] == 1000


def test_fleet_of_three_robots_with_per_robot_status(tmp_path: Path, keys_dir: Path, tkeys) -> None:
    n = {"r1": 6000, "r2": 9000, "r3": 3000}
    recs = {r: Recorder(tmp_path / r, k, chunk=500) for r, k in n.items()}
    for r in recs.values():
        r.start()
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=FAST_T) as srv:
        links = {r: RobotLink(srv.endpoint, tmp_path / r, r, rkeys(keys_dir, r), config=FAST_L).start() for r in n}
        try:
            for r, k in n.items():
                recs[r].join(30)
                assert links[r].wait_acked(k, 20), links[r].status()
            assert until(lambda: all(srv.status()["robots"][r]["recorded"] == k for r, k in n.items()))
            st = srv.status()["robots"]  # a heartbeat carried the final recorded count
        finally:
            for lk in links.values():
                lk.stop()
    for r, k in n.items():
        assert st[r]["connected"] and st[r]["persisted_seq"] == k and st[r]["recorded"] == k
        assert st[r]["lag_rows"] == 0 and st[r]["counters"]["received_rows"] == k
        assert assert_exactly_once(tmp_path / r, tmp_path / "trainer" / r) == k


def test_refresh_request_reaches_the_robot_and_robot_status_the_trainer(tmp_path: Path, keys_dir: Path,
                                                                       tkeys) -> None:
    write_rows(tmp_path / "robot", 100)
    asked: list[tuple[int, str]] = []
    cfg = LinkConfig(heartbeat_s=0.1, deadline_s=1.0, poll_s=0.01, status_s=0.1)
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=FAST_T) as srv:
        with RobotLink(srv.endpoint, tmp_path / "robot", "r1", rkeys(keys_dir, "r1"),
                       on_refresh=lambda n, unit: asked.append((n, unit)), config=cfg) as link:
            assert link.wait_acked(100, 5)
            srv.request_refresh("r1", 3, "episodes")
            end = time.monotonic() + 5
            while time.monotonic() < end and not (asked and srv.status()["robots"]["r1"]["robot_status"]):
                time.sleep(0.02)
            st = srv.status()["robots"]["r1"]
    assert asked == [(3, "episodes")]
    assert st["robot_status"]["acked"] == 100 and st["robot_status"]["sent_rows"] == 100
    assert st["counters"]["refresh_sent"] == 1


def test_window_bounds_unacknowledged_rows(tmp_path: Path, keys_dir: Path, tkeys) -> None:
    """A trainer that welcomes but never acks again receives exactly one window of rows, no more."""
    write_rows(tmp_path / "robot", 10_000)
    ctx = zmq.Context()
    s = ctx.socket(zmq.ROUTER)
    s.curve_server = True
    s.curve_publickey, s.curve_secretkey = tkeys.public, tkeys.secret
    port = s.bind_to_random_port("tcp://127.0.0.1")
    cfg = LinkConfig(batch_rows=500, window_rows=2000, heartbeat_s=0.1, deadline_s=5.0, poll_s=0.01)
    got = 0
    with RobotLink(f"tcp://127.0.0.1:{port}", tmp_path / "robot", "r1", rkeys(keys_dir, "r1"), config=cfg) as link:
        end = time.monotonic() + 1.5
        while time.monotonic() < end:
            if not s.poll(50):
                continue
            peer, *frames = s.recv_multipart()
            msg = decode(frames)
            if msg.type == "hello":
                s.send_multipart([peer, *encode("ack", seq=0)])
            elif msg.type == "tx":
                got += msg.header["seq"][1] - msg.header["seq"][0]
        assert got == 2000 and link.send_pos == 2000
    s.close(0)
    ctx.term()


def test_hello_for_another_robot_is_refused_and_nothing_written(tmp_path: Path, keys_dir: Path, tkeys) -> None:
    spec = reacher_spec()
    other = StoreMeta.from_dict({**reacher_meta().to_dict(), "control_hz": spec.control_hz * 2,
                                 "robot_spec": {**spec.to_dict(), "control_hz": spec.control_hz * 2}})
    write_rows(tmp_path / "robot", 1000, meta=other)
    expected = Identity.of(spec)
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, expected=expected, config=FAST_T) as srv:
        with RobotLink(srv.endpoint, tmp_path / "robot", "r1", rkeys(keys_dir, "r1"), config=FAST_L) as link:
            assert until(lambda: link.counters["trainer_rejected_identity"] >= 1)
            assert link.acked == -1
        assert srv.status()["robots"] == {} and srv.counters["rejected_identity"] >= 1
    assert not (tmp_path / "trainer" / "r1").exists()


def test_hello_spec_hash_must_match_the_metadata(tmp_path: Path, tkeys) -> None:
    srv = TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys)
    meta = reacher_meta()
    key = next(k for k, v in tkeys.allowed.items() if v == "r1")
    srv.handle_frames(None, b"p", key, encode("hello", robot="r1", meta=meta.to_dict(), spec_hash="0" * 64,
                                              software="x", recorded=0))
    assert srv.counters["rejected_identity"] == 1 and not srv.status()["robots"]
    srv.handle_frames(None, b"p", key, encode("hello", robot="r1", meta=meta.to_dict(), spec_hash=spec_hash(meta),
                                              software="x", recorded=0))
    assert srv.status()["robots"]["r1"]["counters"]["hellos"] == 1
    srv.stop()


class Proxy:
    """A TCP forwarder that can be stopped (every connection cut) and restarted on the same port."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self.forwarded = 0

    def start(self) -> None:
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._ls = socket.socket()
        self._ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._ls.bind(("127.0.0.1", self.port))
        self._ls.listen(8)
        self._ls.settimeout(0.05)
        self._t = threading.Thread(target=self._accept, daemon=True)
        self._t.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                c, _ = self._ls.accept()
            except (TimeoutError, OSError):
                continue
            u = socket.create_connection(("127.0.0.1", self.target))
            self._conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while not self._stop.is_set():
                data = a.recv(1 << 16)
                if not data:
                    break
                self.forwarded += len(data)
                b.sendall(data)
        except OSError:
            pass
        finally:
            for s in (a, b):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def stop(self) -> None:
        self._stop.set()
        self._ls.close()
        self._t.join(2)
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()


def test_network_interruption_through_a_proxy_loses_nothing(tmp_path: Path, keys_dir: Path, tkeys) -> None:
    rec = Recorder(tmp_path / "robot", 30_000, chunk=500, period_s=0.005)
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=FAST_T) as srv:
        proxy = Proxy(int(srv.endpoint.rsplit(":", 1)[1]))
        proxy.start()
        cfg = LinkConfig(batch_rows=1000, window_rows=4000, heartbeat_s=0.1, deadline_s=0.6, backoff_min_s=0.05,
                         backoff_max_s=0.3, poll_s=0.01)
        with RobotLink(f"tcp://127.0.0.1:{proxy.port}", tmp_path / "robot", "r1", rkeys(keys_dir, "r1"),
                       config=cfg) as link:
            rec.start()
            for _ in range(3):  # cut the network three times mid-stream
                time.sleep(0.25)
                proxy.stop()
                time.sleep(0.8)  # longer than the deadline: both sides notice
                proxy.start()
            rec.join(30)
            assert link.wait_acked(30_000, 20), link.status()
            assert link.counters["reconnects"] + link.counters["trainer_rejected_no_session"] >= 1
        proxy.stop()
    assert assert_exactly_once(tmp_path / "robot", tmp_path / "trainer" / "r1") == 30_000


def test_status_message_bytes_are_msgpack_not_pickle() -> None:
    frames = encode("heartbeat", recorded=3)
    assert msgpack.unpackb(frames[0]) == {"p": 1, "t": "heartbeat", "recorded": 3}
    assert EpisodeStore  # imported for the module's other tests


def test_link_in_its_own_process_calls_back_into_this_one(tmp_path: Path, keys_dir: Path, tkeys) -> None:
    """RobotLinkProcess: streaming happens in a child process; on_policy/on_refresh run here, in the controller."""
    import os

    from robodyna.transport.robot import RobotLinkProcess
    from tests.transport.test_security import Swapper

    write_rows(tmp_path / "robot", 4000)
    swap = Swapper()
    pids: list[int] = []
    asked: list[tuple[int, str]] = []

    def on_policy(v: int, b: bytes, sha: str, md: dict[str, str]) -> tuple[bool, str]:
        pids.append(os.getpid())
        return swap(v, b, sha, md)

    from tests.data.test_record_onnx import linear_onnx_policy
    from tests.transport.conftest import REACHER_OBS

    onnx_bytes = linear_onnx_policy(tmp_path / "p.onnx", reacher_spec(), REACHER_OBS, version=2).read_bytes()
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=FAST_T) as srv:
        with RobotLinkProcess(srv.endpoint, tmp_path / "robot", "r1", keys_dir, on_policy=on_policy,
                              on_refresh=lambda n, u: asked.append((n, u)), config=FAST_L, status_s=0.05) as link:
            assert link.wait_acked(4000, 30), link.status()
            srv.push_policy(2, onnx_bytes, robot="r1")
            assert srv.policy_results.get(timeout=10) == ("r1", 2, True, "swapped")
            srv.request_refresh("r1", 5, "steps")
            end = time.monotonic() + 5
            while time.monotonic() < end and not asked:
                time.sleep(0.02)
    assert pids == [os.getpid()] and asked == [(5, "steps")]
    assert assert_exactly_once(tmp_path / "robot", tmp_path / "trainer" / "r1") == 4000
