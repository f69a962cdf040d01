"""Bad input: every kind of malformed, wrong or replayed message is rejected with a counter, nothing is written,
the session and the other robots carry on; a hypothesis-driven fuzz feeds 100k malformed messages."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from robodyna.data.store import list_segments
from robodyna.transport.keys import TrainerKeys
from robodyna.transport.protocol import PROTOCOL_VERSION, WIRE_DTYPES, decode, encode, encode_tx, spec_hash
from robodyna.transport.robot import RobotLink
from robodyna.transport.trainer import TrainerConfig, TrainerServer
from tests.transport.conftest import FAST_L, FAST_T, Recorder, assert_exactly_once, reacher_meta, rkeys, rows

PEER = b"\x00peer"


def cols(n: int, start: int) -> dict[str, np.ndarray]:
    b = rows(n, start)
    c: dict[str, np.ndarray] = dict(b.as_dict())
    c.update(time_wall_s=np.full(n, 1.0e9), time_mono_s=np.arange(n, dtype=np.float64),
             episode_index=np.full(n, start // 100, np.int64), step_index=np.arange(n, dtype=np.int64) + start % 100,
             policy_version=np.zeros(n, np.int64), intervention=np.zeros(n, np.int32), policy_action=b.action.copy())
    return c


def tx(n: int = 100, start: int = 0) -> list[bytes]:
    return [bytes(f) for f in encode_tx("r1", start, cols(n, start))]


def session(tmp_path: Path, tkeys: TrainerKeys, **cfg: Any) -> tuple[TrainerServer, bytes]:
    srv = TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=TrainerConfig(**cfg))
    key = next(k for k, v in tkeys.allowed.items() if v == "r1")
    meta = reacher_meta()
    srv.handle_frames(None, PEER, key, encode("hello", robot="r1", meta=meta.to_dict(), spec_hash=spec_hash(meta),
                                              software="t", recorded=0))
    assert srv.status()["robots"]["r1"]["counters"]["hellos"] == 1
    return srv, key


def header(frames: list[bytes]) -> dict[str, Any]:
    return msgpack.unpackb(frames[0])


def with_header(frames: list[bytes], **changes: Any) -> list[bytes]:
    h = header(frames)
    h.update(changes)
    return [msgpack.packb(h), *frames[1:]]


def field_index(name: str) -> int:
    return 1 + list(WIRE_DTYPES).index(name)


def nan_obs() -> list[bytes]:
    f = tx()
    a = np.frombuffer(f[field_index("obs")], np.float32).copy()
    a[17] = np.nan
    f[field_index("obs")] = a.tobytes()
    return f


def bool_two() -> list[bytes]:
    f = tx()
    a = bytearray(f[field_index("terminated")])
    a[3] = 2
    f[field_index("terminated")] = bytes(a)
    return f


def negative_episode() -> list[bytes]:
    f = tx()
    a = np.frombuffer(f[field_index("episode_index")], np.int64).copy()
    a[0] = -1
    f[field_index("episode_index")] = a.tobytes()
    return f


def wrong_dtype() -> list[bytes]:
    h = header(tx())
    h["dtypes"][0] = "<f8"
    return [msgpack.packb(h), *tx()[1:]]


def wrong_shape() -> list[bytes]:
    h = header(tx())
    h["shapes"][0] = [100, 11]
    return [msgpack.packb(h), *tx()[1:]]


BAD: dict[str, tuple[Any, str]] = {
    "truncated frame": (lambda: tx()[:-1] + [tx()[-1][:-3]], "size"),
    "missing frame": (lambda: tx()[:-1], "malformed"),
    "header not msgpack": (lambda: [b"\xc1\xc1garbage", *tx()[1:]], "malformed"),
    "header truncated": (lambda: [tx()[0][:-5], *tx()[1:]], "malformed"),
    "header not a map": (lambda: [msgpack.packb([1, 2]), *tx()[1:]], "malformed"),
    "msgpack extension": (lambda: [msgpack.packb({"p": 1, "t": msgpack.ExtType(5, b"x")}), *tx()[1:]], "malformed"),
    "wrong protocol version": (lambda: with_header(tx(), p=PROTOCOL_VERSION + 1), "version"),
    "unknown type": (lambda: with_header(tx(), t="exec"), "type"),
    "trainer-only type": (lambda: with_header(tx(), t="policy"), "type"),
    "wrong dtype": (wrong_dtype, "dtype"),
    "wrong shape": (wrong_shape, "shape"),
    "fields renamed": (lambda: with_header(tx(), fields=["obs"] * 13), "schema"),
    "NaN payload": (nan_obs, "nonfinite"),
    "bool byte 2": (bool_two, "bad_value"),
    "negative episode index": (negative_episode, "bad_value"),
    "seq range vs rows": (lambda: with_header(tx(), seq=[0, 99]), "shape"),
    "another robot's rows": (lambda: with_header(tx(), robot="r2"), "identity"),
    "out of order": (lambda: tx(100, 500), "out_of_order"),
    "oversized": (lambda: tx(2000), "oversized"),
    "empty message": (lambda: [], "malformed"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_message_is_counted_and_nothing_written(case: str, tmp_path: Path, tkeys: TrainerKeys) -> None:
    srv, key = session(tmp_path, tkeys, max_message_bytes=100_000)
    make, reason = BAD[case]
    srv.handle_frames(None, PEER, key, make())
    srv._commit(None)
    c = srv.status()["robots"]["r1"]["counters"]
    assert c.get(f"rejected_{reason}") == 1, c
    assert list_segments(tmp_path / "trainer" / "r1") == []
    srv.handle_frames(None, PEER, key, tx(100, 0))  # the session is unaffected: the next good batch is persisted
    srv._commit(None)
    assert srv.status()["robots"]["r1"]["persisted_seq"] == 100
    srv.stop()


def test_tx_before_hello_is_refused(tmp_path: Path, tkeys: TrainerKeys) -> None:
    srv = TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys)
    srv.handle_frames(None, PEER, None, tx())
    assert srv.counters["rejected_no_session"] == 1 and not (tmp_path / "trainer" / "r1").exists()
    srv.stop()


def test_replayed_and_overlapping_batches_are_written_once(tmp_path: Path, tkeys: TrainerKeys) -> None:
    srv, key = session(tmp_path, tkeys)
    for start, n in ((0, 100), (0, 100), (50, 100), (100, 50), (150, 50), (120, 30)):
        srv.handle_frames(None, PEER, key, tx(n, start))
        srv._commit(None)
    st = srv.status()["robots"]["r1"]
    assert st["persisted_seq"] == 200 and st["rows"] == 200
    assert st["counters"]["duplicate_rows"] == 100 + 50 + 50 + 30
    srv.stop()
    from robodyna.data.store import EpisodeStore

    got = EpisodeStore(tmp_path / "trainer" / "r1").read()
    assert np.array_equal(got.batch.obs, rows(200, 0).obs)


# -- fuzz ----------------------------------------------------------------------------------------------------
MUTATIONS = ("resize_frame", "header_bytes", "drop_frame", "add_frame", "swap_frames", "header_value", "nan",
             "bool", "neg_index", "random_frames", "dtype", "shape")
_BASE_N = 64
_BASE = [bytes(f) for f in encode_tx("r1", 10_000, cols(_BASE_N, 10_000))]  # a gap: even a decodable mutant
_BASE_H = msgpack.unpackb(_BASE[0])  # could never be written


def mutate(rng: np.random.Generator, kind: str, junk: Any) -> list[bytes]:
    f = list(_BASE)
    i = int(rng.integers(1, len(f)))
    if kind == "resize_frame":
        d = int(rng.integers(1, 9)) * (1 if rng.random() < 0.5 else -1)
        f[i] = f[i][:d] if d < 0 else f[i] + bytes(d)
    elif kind == "header_bytes":
        h = bytearray(f[0])
        for _ in range(int(rng.integers(1, 4))):
            h[int(rng.integers(0, len(h)))] = int(rng.integers(0, 256))
        cut = int(rng.integers(1, len(h) + 1))
        f[0] = bytes(h[:cut])
    elif kind == "drop_frame":
        del f[i]
    elif kind == "add_frame":
        f.insert(i, bytes(int(rng.integers(0, 64))))
    elif kind == "swap_frames":
        j = int(rng.integers(1, len(f)))
        f[i], f[j] = f[j], f[i]
        if f == _BASE:
            f[0] = f[0][:-1]
    elif kind == "header_value":
        h = dict(_BASE_H)
        key = list(h)[int(rng.integers(0, len(h)))] if rng.random() < 0.8 else "extra"
        h[key] = junk
        f[0] = msgpack.packb(h, use_bin_type=True)
        if h.get(key) == _BASE_H.get(key):
            f[0] = f[0][:-1]
    elif kind == "nan":
        name = ("obs", "action", "reward", "next_obs", "time_wall_s", "time_mono_s")[int(rng.integers(0, 6))]
        k = field_index(name)
        a = np.frombuffer(f[k], WIRE_DTYPES[name]).copy()
        a[int(rng.integers(0, a.size))] = (np.nan, np.inf, -np.inf)[int(rng.integers(0, 3))]
        f[k] = a.tobytes()
    elif kind == "bool":
        k = field_index(("terminated", "truncated")[int(rng.integers(0, 2))])
        a = bytearray(f[k])
        a[int(rng.integers(0, len(a)))] = int(rng.integers(2, 256))
        f[k] = bytes(a)
    elif kind == "neg_index":
        name = ("episode_index", "step_index", "policy_version")[int(rng.integers(0, 3))]
        k = field_index(name)
        a = np.frombuffer(f[k], np.int64).copy()
        a[int(rng.integers(0, a.size))] = -int(rng.integers(1, 1 << 62))
        f[k] = a.tobytes()
    elif kind == "random_frames":
        f = [rng.bytes(int(rng.integers(0, 40))) for _ in range(int(rng.integers(0, 15)))]
    elif kind == "dtype":
        h = dict(_BASE_H)
        h["dtypes"] = list(h["dtypes"])
        h["dtypes"][int(rng.integers(0, 13))] = ("<f2", ">f4", "<i4", "|O", "<U4", "V8", junk)[int(rng.integers(0, 7))]
        f[0] = msgpack.packb(h, use_bin_type=True)
    elif kind == "shape":
        h = dict(_BASE_H)
        h["shapes"] = [list(s) for s in h["shapes"]]
        j = int(rng.integers(0, 13))
        h["shapes"][j] = [int(x) for x in rng.integers(-3, 1 << 20, size=int(rng.integers(0, 4)))]
        if h["shapes"][j] == _BASE_H["shapes"][j]:
            h["shapes"][j].append(1)
        f[0] = msgpack.packb(h, use_bin_type=True)
    return f


junk_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8) | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=8,
)


def test_fuzz_100k_malformed_messages_no_crash_no_write(tmp_path: Path, tkeys: TrainerKeys) -> None:
    srv, key = session(tmp_path, tkeys, max_message_bytes=1 << 20)
    per_example = 1000
    total = {"n": 0}

    @settings(max_examples=100, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(seed=st.integers(0, 2**32 - 1), kinds=st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=4),
           junk=junk_values)
    def fuzz(seed: int, kinds: list[str], junk: Any) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(per_example):
            frames = mutate(rng, kinds[int(rng.integers(0, len(kinds)))], junk)
            srv.handle_frames(None, PEER, key, frames)  # must not raise
        total["n"] += per_example

    t0 = time.monotonic()
    fuzz()
    srv._commit(None)
    c = srv.status()["robots"]["r1"]["counters"]
    rejected = sum(v for k, v in c.items() if k.startswith("rejected_")) + srv.counters.get("rejected_no_session", 0)
    assert total["n"] >= 100_000
    assert rejected == total["n"], c  # every single message rejected and counted
    assert c.get("received_rows", 0) == 0 and list_segments(tmp_path / "trainer" / "r1") == []
    assert time.monotonic() - t0 < 60
    srv.stop()


def test_fuzz_robot_side_decoder(tmp_path: Path, keys_dir: Path) -> None:
    """Malformed trainer messages (acks, policies, refreshes) never crash the robot's link nor reach on_policy."""
    calls: list[int] = []
    link = RobotLink("tcp://127.0.0.1:1", tmp_path, "r1", rkeys(keys_dir, "r1"),
                     on_policy=lambda v, b, s, m: (calls.append(v) or True, "ok"))
    link._hello_t = 0.0
    link._streaming = True
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.linger = 0
    rng = np.random.default_rng(1)
    templates = [encode("ack", seq=5), encode("refresh", n=3, unit="episodes"), encode("heartbeat"),
                 [msgpack.packb({"p": 1, "t": "policy", "version": 1, "sha256": "0" * 64, "sig": b"x" * 64,
                                 "metadata": {}, "size": 4}), b"onnx"]]
    for _ in range(20_000):
        f = [bytes(x) for x in templates[int(rng.integers(0, len(templates)))]]
        h = bytearray(f[0])
        h[int(rng.integers(0, len(h)))] = int(rng.integers(0, 256))
        f[0] = bytes(h[: int(rng.integers(1, len(h) + 1))])
        link._receive(sock, f)
    assert calls == []
    sock.close(0)
    ctx.term()


def test_socket_level_garbage_leaves_other_robots_streaming(tmp_path: Path, keys_dir: Path,
                                                             tkeys: TrainerKeys) -> None:
    """An authenticated robot sending garbage over CURVE is answered with rejects; r2 streams on unaffected."""
    rec = Recorder(tmp_path / "r2", 10_000, chunk=500)
    rec.start()
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=FAST_T) as srv:
        with RobotLink(srv.endpoint, tmp_path / "r2", "r2", rkeys(keys_dir, "r2"), config=FAST_L) as link:
            ctx = zmq.Context()
            s = ctx.socket(zmq.DEALER)
            s.linger = 0
            k = rkeys(keys_dir, "r1")
            s.curve_publickey, s.curve_secretkey, s.curve_serverkey = k.public, k.secret, k.server_public
            s.connect(srv.endpoint)
            meta = reacher_meta()
            s.send_multipart(encode("hello", robot="r1", meta=meta.to_dict(), spec_hash=spec_hash(meta),
                                    software="t", recorded=0))
            assert s.poll(3000) and decode(s.recv_multipart()).header["seq"] == 0
            rng = np.random.default_rng(0)
            for _ in range(2000):
                s.send_multipart(mutate(rng, MUTATIONS[int(rng.integers(0, len(MUTATIONS)))], "junk") or [b""])
            s.send_multipart(tx(100, 0))  # and the connection still works for a good batch
            rec.join(30)
            assert link.wait_acked(10_000, 20)
            end = time.monotonic() + 5
            while time.monotonic() < end and srv.status()["robots"]["r1"]["persisted_seq"] < 100:
                time.sleep(0.02)
            st = srv.status()["robots"]
            s.close(0)
            ctx.term()
    assert st["r1"]["persisted_seq"] == 100
    assert sum(v for c, v in st["r1"]["counters"].items() if c.startswith("rejected_")) == 2000
    assert sum(v for c, v in st["r2"]["counters"].items() if c.startswith("rejected_")) == 0
    assert assert_exactly_once(tmp_path / "r2", tmp_path / "trainer" / "r2") == 10_000


def test_message_above_zmq_max_size_drops_only_that_connection(tmp_path: Path, keys_dir: Path,
                                                                tkeys: TrainerKeys) -> None:
    """ZMQ_MAXMSGSIZE: libzmq closes the connection of a peer sending more (counted as a disconnect); nothing is
    written, the sender's next connection works, and another robot streams on."""
    from robodyna.transport.trainer import TrainerConfig as TC

    rec = Recorder(tmp_path / "r2", 5000, chunk=500)
    rec.start()
    cfg = TC(heartbeat_s=0.1, deadline_s=1.0, max_message_bytes=1 << 20)
    with TrainerServer("tcp://127.0.0.1:0", tmp_path / "trainer", tkeys, config=cfg) as srv:
        with RobotLink(srv.endpoint, tmp_path / "r2", "r2", rkeys(keys_dir, "r2"), config=FAST_L) as link:
            ctx = zmq.Context()
            k = rkeys(keys_dir, "r1")
            meta = reacher_meta()
            hello = encode("hello", robot="r1", meta=meta.to_dict(), spec_hash=spec_hash(meta), software="t",
                           recorded=0)

            def client() -> zmq.Socket:
                s = ctx.socket(zmq.DEALER)
                s.linger = 0
                s.curve_publickey, s.curve_secretkey, s.curve_serverkey = k.public, k.secret, k.server_public
                s.connect(srv.endpoint)
                s.send_multipart(hello)
                assert s.poll(3000)
                s.recv_multipart()
                return s

            s = client()
            s.send_multipart([*tx()[:-1], bytes(2 << 20)])  # a 2 MiB frame: above the cap
            end = time.monotonic() + 3
            while time.monotonic() < end and not srv.counters["zmq_disconnected"]:
                time.sleep(0.02)
            assert srv.counters["zmq_disconnected"] >= 1
            s.close(0)
            s = client()  # the robot reconnects and carries on
            s.send_multipart(tx(100, 0))
            rec.join(30)
            assert link.wait_acked(5000, 20)
            end = time.monotonic() + 3
            while time.monotonic() < end and srv.status()["robots"]["r1"]["persisted_seq"] < 100:
                time.sleep(0.02)
            st = srv.status()["robots"]
            s.close(0)
            ctx.term()
    assert st["r1"]["persisted_seq"] == 100 and st["r1"]["rows"] == 100
    assert assert_exactly_once(tmp_path / "r2", tmp_path / "trainer" / "r2") == 5000
