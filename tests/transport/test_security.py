"""Security: only allowed robot keys get in (ZAP allow-list), plaintext is refused, a key speaks only for its
robot, policies must carry the configured trainer's signature (verified before the robot's hot-swap checks)."""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import zmq

from robodyna.onboard.policy import OnnxPolicy
from robodyna.transport.keys import RobotKeys, TrainerKeys, load_signing_key
from robodyna.transport.protocol import encode, policy_signed_bytes, sha256_hex, spec_hash
from robodyna.transport.robot import RobotLink
from robodyna.transport.trainer import TrainerServer
from tests.data.test_record_onnx import linear_onnx_policy
from tests.transport.conftest import (
    FAST_L,
    FAST_T,
    REACHER_OBS,
    reacher_meta,
    reacher_spec,
    rkeys,
    until,
    write_rows,
)


def test_unknown_robot_key_is_refused(tmp_path: Path, keys_dir: Path, tkeys: TrainerKeys) -> None:
    write_rows(tmp_path / "robot", 1000)
    stranger = RobotKeys.load(keys_dir / "stranger", "r1", trainer="../trainer")  # same name, key not allowed
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=FAST_T) as srv:
        with RobotLink(srv.endpoint, tmp_path / "robot", "r1", stranger, config=FAST_L) as link:
            assert until(lambda: srv.counters["refused_unknown_key"] >= 1 and srv.counters["zmq_handshake_failed_auth"])
            time.sleep(0.2)
            assert link.acked == -1 and not link.connected
        assert srv.status()["robots"] == {}
    assert not any((tmp_path / "trainer").iterdir())


def test_plaintext_client_cannot_reach_a_secured_trainer(tmp_path: Path, keys_dir: Path, tkeys: TrainerKeys) -> None:
    write_rows(tmp_path / "robot", 1000)
    meta = reacher_meta()
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=FAST_T) as srv:
        ctx = zmq.Context()
        s = ctx.socket(zmq.DEALER)
        s.linger = 0
        s.connect(srv.endpoint)
        s.send_multipart(encode("hello", robot="r1", meta=meta.to_dict(), spec_hash=spec_hash(meta), software="x",
                                recorded=0), zmq.NOBLOCK)
        assert not s.poll(500)  # no answer: the CURVE handshake never completed
        s.close(0)
        ctx.term()
        assert until(lambda: srv.counters["zmq_handshake_failed_protocol"]
                     + srv.counters["zmq_handshake_failed_no_detail"] >= 1)
        failed = srv.counters["zmq_handshake_failed_protocol"] + srv.counters["zmq_handshake_failed_no_detail"]
        with RobotLink(srv.endpoint, tmp_path / "robot", "r1", None, config=FAST_L, insecure=True) as link:
            assert until(lambda: srv.counters["zmq_handshake_failed_protocol"]
                         + srv.counters["zmq_handshake_failed_no_detail"] > failed)
            assert link.acked == -1
        assert srv.status()["robots"] == {}
    assert not any((tmp_path / "trainer").iterdir())


def test_a_robot_key_speaks_only_for_its_robot(tmp_path: Path, keys_dir: Path, tkeys: TrainerKeys) -> None:
    write_rows(tmp_path / "robot", 1000)
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=FAST_T) as srv:
        with RobotLink(srv.endpoint, tmp_path / "robot", "r1", rkeys(keys_dir, "r2"), config=FAST_L) as link:
            assert until(lambda: link.counters["trainer_rejected_identity"] >= 1)
            assert link.acked == -1
        assert srv.counters["rejected_identity"] >= 1 and srv.status()["robots"] == {}


class Swapper:
    """Stands in for the controller's ``offer_policy``: loads the ONNX bytes and checks them against the robot."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.dir = Path(tempfile.mkdtemp())

    def __call__(self, version: int, data: bytes, sha: str, md: dict[str, str]) -> tuple[bool, str]:
        self.calls.append(version)
        p = self.dir / f"v{version}.onnx"
        p.write_bytes(data)
        pol = OnnxPolicy(p, expected_spec=reacher_spec(), expected_obs_names=REACHER_OBS)
        act = pol(np.zeros(len(REACHER_OBS), np.float32))
        return bool(np.isfinite(act).all()), "swapped"


def _connected(srv: TrainerServer, robot: str, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and not srv.status()["robots"].get(robot, {}).get("connected"):
        time.sleep(0.02)


def test_signed_policy_is_swapped_forged_one_refused(tmp_path: Path, keys_dir: Path, tkeys: TrainerKeys) -> None:
    write_rows(tmp_path / "robot", 100)
    onnx_bytes = linear_onnx_policy(tmp_path / "p.onnx", reacher_spec(), REACHER_OBS, version=7).read_bytes()
    swap = Swapper()
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=FAST_T) as srv:
        with RobotLink(srv.endpoint, tmp_path / "robot", "r1", rkeys(keys_dir, "r1"), on_policy=swap,
                       config=FAST_L) as link:
            _connected(srv, "r1")
            sha = srv.push_policy(7, onnx_bytes, {"note": "good"}, robot="r1")
            assert sha == sha256_hex(onnx_bytes)
            assert srv.policy_results.get(timeout=5) == ("r1", 7, True, "swapped")
            assert swap.calls == [7] and link.policy_version == 7
            # the same bytes signed by another key (a "trainer" nobody configured): refused before on_policy
            forger = dataclasses.replace(tkeys, signing=load_signing_key(keys_dir / "forger" / "trainer.sign"))
            srv.keys = forger
            srv.push_policy(8, onnx_bytes, {"note": "forged"}, robot="r1")
            robot, v, ok, reason = srv.policy_results.get(timeout=5)
            assert (robot, v, ok) == ("r1", 8, False) and "signature" in reason
            assert swap.calls == [7] and link.policy_version == 7
            assert srv.status()["robots"]["r1"]["counters"]["policies_rejected"] == 1


def test_policy_bytes_must_match_the_signed_digest(keys_dir: Path, tkeys: TrainerKeys, tmp_path: Path) -> None:
    link = RobotLink("tcp://127.0.0.1:1", tmp_path, "r1", rkeys(keys_dir, "r1"))
    sha = sha256_hex(b"onnx")
    sig = tkeys.signing.sign(policy_signed_bytes(3, sha, {}))
    assert link._check_policy(3, b"onnx", sha, sig, {}) == (True, "verified")
    assert not link._check_policy(3, b"onnX", sha, sig, {})[0]  # bytes swapped in transit
    assert not link._check_policy(4, b"onnx", sha, sig, {})[0]  # version replaced
    assert not link._check_policy(3, b"onnx", sha, sig, {"k": "v"})[0]  # metadata replaced
    assert not RobotLink("tcp://x:1", tmp_path, "r1", None, insecure=True)._check_policy(3, b"onnx", sha, sig, {})[0]
