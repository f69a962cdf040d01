"""Transport benchmark: end-to-end transitions/s and policy push latency, against raw pyzmq in the same run.

* **end to end**: a robot store holding ``--rows`` transitions (reacher2 layout) is streamed by a
  :class:`RobotLink` (main process) over tcp loopback with CURVE to a :class:`TrainerServer` (another process) that
  decodes, checks, persists into its own store (fsynced segments) and acknowledges; the clock stops when the last
  row is acknowledged, i.e. durable on the trainer.
* **raw**: pyzmq PUSH/PULL with CURVE (and without) between the same two processes, sending the same bytes
  (the link's header + column frames) at 64 rows per message and at the link's batch size; nothing decoded or
  stored.
* **policy push**: a 256x256 MLP actor as ONNX (robodyna metadata), pushed ``--pushes`` times; latency from
  ``push_policy`` to the trainer receiving ``policy_result`` after the robot verified the signature and sha256,
  loaded it with :class:`OnnxPolicy` (robot identity checked) and ran it once ("swapped").

Run: ``python tools/bench/transport.py [--rows 500000] [--out results/transport.json]``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from robodyna.data.batch import Batch  # noqa: E402
from robodyna.data.store import EpisodeWriter, StoreMeta  # noqa: E402
from robodyna.onboard.record import obs_units  # noqa: E402
from robodyna.transport.keys import RobotKeys, TrainerKeys, generate_keys  # noqa: E402
from robodyna.transport.protocol import encode_tx  # noqa: E402
from robodyna.transport.robot import LinkConfig, RobotLink  # noqa: E402
from robodyna.transport.trainer import TrainerServer  # noqa: E402

OBS = ["joint0.pos_rad", "joint1.pos_rad", "joint0.vel_rad_s", "joint1.vel_rad_s", "ee.x_m", "ee.y_m", "ee.z_m",
       "target.x_m", "target.y_m", "target.z_m"]


def reacher() -> tuple[Any, StoreMeta]:
    from robodyna.robots.registry import robot_folder
    from robodyna.spec import RobotSpec, load_robot_config

    cfg, _ = load_robot_config(robot_folder("reacher2"))
    spec = RobotSpec.from_config(cfg, engine="mujoco")
    return spec, StoreMeta.from_spec(spec, OBS, obs_units(OBS), task="reach")


def make_store(root: Path, n: int) -> None:
    _, meta = reacher()
    rng = np.random.default_rng(0)
    with EpisodeWriter(root, meta, flush_every=65536) as w:
        for s in range(0, n, 65536):
            k = min(65536, n - s)
            o = rng.standard_normal((k, 10)).astype(np.float32)
            w.append_batch(Batch.create(o, rng.standard_normal((k, 2)), rng.standard_normal(k), o,
                                        np.zeros(k, bool), (np.arange(s, s + k) % 1000) == 999))


def actor_onnx(spec: Any, hidden: int = 256) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    dims = [len(OBS), hidden, hidden, len(spec.action_names)]
    nodes, inits, x = [], [], "obs"
    for i in range(3):
        w = (rng.standard_normal((dims[i], dims[i + 1])) / np.sqrt(dims[i])).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"W{i}"), numpy_helper.from_array(np.zeros(dims[i + 1], np.float32),
                                                                               f"b{i}")]
        nodes += [helper.make_node("MatMul", [x, f"W{i}"], [f"m{i}"]), helper.make_node("Add", [f"m{i}", f"b{i}"],
                                                                                        [f"a{i}"])]
        x = f"a{i}"
        if i < 2:
            nodes.append(helper.make_node("Relu", [x], [f"r{i}"]))
            x = f"r{i}"
    nodes.append(helper.make_node("Tanh", [x], ["action"]))
    graph = helper.make_graph(nodes, "actor", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["B", 10])],
                              [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["B", dims[-1]])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {"robot_name": spec.name, "robot_spec": spec.to_json(), "obs_names": json.dumps(OBS),
                                   "action_low": json.dumps(list(spec.action_low)),
                                   "action_high": json.dumps(list(spec.action_high)), "policy_version": "1"})
    return bytes(model.SerializeToString())


# -- the other process ---------------------------------------------------------------------------------------
def trainer_proc(keys: str, store: str, q: Any, stop: Any) -> None:
    srv = TrainerServer("tcp://127.0.0.1:0", store, TrainerKeys.load(keys)).start()
    q.put(srv.endpoint)
    while not stop.is_set():
        while not srv.batches.empty():
            srv.batches.get_nowait()
        time.sleep(0.01)
    srv.stop()


def trainer_policy_proc(keys: str, store: str, q: Any, res: Any, pushes: int, onnx_bytes: bytes) -> None:
    srv = TrainerServer("tcp://127.0.0.1:0", store, TrainerKeys.load(keys)).start()
    q.put(srv.endpoint)
    end = time.monotonic() + 30
    while time.monotonic() < end and not srv.status()["robots"].get("r1", {}).get("connected"):
        time.sleep(0.01)
    lat = []
    for v in range(1, pushes + 2):  # the first (onnxruntime's cold start on the robot) reported apart
        t0 = time.perf_counter()
        srv.push_policy(v, onnx_bytes, {"bench": "1"}, robot="r1")
        robot, ver, ok, reason = srv.policy_results.get(timeout=10)
        lat.append(time.perf_counter() - t0)
        assert ok and ver == v, reason
    res.put(lat)
    srv.stop()


def pull_proc(keys: str, curve: bool, q: Any, n_msgs: int) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.PULL)
    if curve:
        tk = TrainerKeys.load(keys)
        s.curve_server = True
        s.curve_publickey, s.curve_secretkey = tk.public, tk.secret
    port = s.bind_to_random_port("tcp://127.0.0.1")
    q.put(port)
    for _ in range(n_msgs):
        s.recv_multipart(copy=False)
    q.put("done")
    s.close(0)
    ctx.term()


# -- measurements --------------------------------------------------------------------------------------------
def e2e(tmp: Path, keys: Path, rows: int) -> dict[str, Any]:
    mpc = mp.get_context("spawn")
    q, stop = mpc.Queue(), mpc.Event()
    p = mpc.Process(target=trainer_proc, args=(str(keys), str(tmp / "trainer"), q, stop))
    p.start()
    endpoint = q.get(timeout=60)
    t_start = time.perf_counter()
    link = RobotLink(endpoint, tmp / "robot", "r1", RobotKeys.load(keys, "r1"),
                     config=LinkConfig(batch_rows=8192, window_rows=1 << 17)).start()
    link.wait_acked(0, 60)  # connected: CURVE handshake, ZAP, hello answered
    t0 = time.perf_counter()
    ok = link.wait_acked(rows, 300)
    dt = time.perf_counter() - t0
    link.stop()
    stop.set()
    p.join(30)
    assert ok, link.status()
    return {"rows": rows, "seconds": dt, "transitions_per_s": rows / dt, "connect_s": t0 - t_start}


def raw(tmp: Path, keys: Path, rows: int, per_msg: int, curve: bool) -> dict[str, Any]:
    from robodyna.transport.stores import StoreCursor

    cur = StoreCursor(tmp / "robot")
    cur.refresh()
    cols, _, _ = cur.read(0, 65536)
    msgs = [encode_tx("r1", s, {k: v[s:s + per_msg] for k, v in cols.items()})
            for s in range(0, len(cols["reward"]) - per_msg + 1, per_msg)]
    n_msgs = rows // per_msg
    mpc = mp.get_context("spawn")
    q = mpc.Queue()
    p = mpc.Process(target=pull_proc, args=(str(keys), curve, q, n_msgs))
    p.start()
    port = q.get(timeout=60)
    ctx = zmq.Context()
    s = ctx.socket(zmq.PUSH)
    s.sndhwm = 1000
    if curve:
        rk = RobotKeys.load(keys, "r1")
        s.curve_publickey, s.curve_secretkey, s.curve_serverkey = rk.public, rk.secret, rk.server_public
    s.connect(f"tcp://127.0.0.1:{port}")
    t0 = time.perf_counter()
    for i in range(n_msgs):
        s.send_multipart(msgs[i % len(msgs)], copy=per_msg < 1024)
    assert q.get(timeout=300) == "done"
    dt = time.perf_counter() - t0
    p.join(30)
    s.close(0)
    ctx.term()
    return {"rows_per_msg": per_msg, "curve": curve, "transitions_per_s": n_msgs * per_msg / dt}


def policy_push(tmp: Path, keys: Path, pushes: int) -> dict[str, Any]:
    from robodyna.onboard.policy import OnnxPolicy

    spec, _ = reacher()
    data = actor_onnx(spec)
    d = tmp / "policies"
    d.mkdir()

    def swap(version: int, b: bytes, sha: str, md: dict[str, str]) -> tuple[bool, str]:
        path = d / f"v{version}.onnx"
        path.write_bytes(b)
        pol = OnnxPolicy(path, expected_spec=spec, expected_obs_names=OBS)
        pol(np.zeros(len(OBS), np.float32))
        return True, "swapped"

    mpc = mp.get_context("spawn")
    q, res = mpc.Queue(), mpc.Queue()
    p = mpc.Process(target=trainer_policy_proc, args=(str(keys), str(tmp / "trainer_pol"), q, res, pushes, data))
    p.start()
    endpoint = q.get(timeout=60)
    link = RobotLink(endpoint, tmp / "robot", "r1", RobotKeys.load(keys, "r1"), on_policy=swap,
                     config=LinkConfig(batch_rows=8192)).start()
    lat = res.get(timeout=120)
    link.stop()
    p.join(30)
    first, ms = lat[0] * 1000, sorted(x * 1000 for x in lat[1:])
    return {"onnx_bytes": len(data), "pushes": pushes, "first_push_ms": first, "p50_ms": statistics.median(ms),
            "p99_ms": ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))], "max_ms": ms[-1]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--pushes", type=int, default=50)
    ap.add_argument("--out", default=None, help="write the results as JSON")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        keys = tmp / "keys"
        for name in ("trainer", "r1"):
            generate_keys(keys, name)
        make_store(tmp / "robot", a.rows)
        res: dict[str, Any] = {}
        res["raw_curve_64"] = raw(tmp, keys, a.rows, 64, True)
        res["raw_plain_64"] = raw(tmp, keys, a.rows, 64, False)
        res["raw_curve_8192"] = raw(tmp, keys, a.rows, 8192, True)
        res["e2e_curve_durable"] = e2e(tmp, keys, a.rows)
        res["policy_push_256x256"] = policy_push(tmp, keys, a.pushes)
    e, r64 = res["e2e_curve_durable"]["transitions_per_s"], res["raw_curve_64"]["transitions_per_s"]
    res["e2e_vs_raw_curve_64"] = e / r64
    res["e2e_vs_raw_curve_8192"] = e / res["raw_curve_8192"]["transitions_per_s"]
    print(f"raw PUSH/PULL, CURVE, 64 rows/msg:     {r64:>12,.0f} transitions/s")
    print(f"raw PUSH/PULL, plain, 64 rows/msg:     {res['raw_plain_64']['transitions_per_s']:>12,.0f} transitions/s")
    print(f"raw PUSH/PULL, CURVE, 8192 rows/msg:   {res['raw_curve_8192']['transitions_per_s']:>12,.0f} transitions/s")
    print(f"end to end, CURVE, persisted + acked:  {e:>12,.0f} transitions/s "
          f"({100 * res['e2e_vs_raw_curve_64']:.0f}% of raw CURVE 64/msg, "
          f"{100 * res['e2e_vs_raw_curve_8192']:.0f}% of raw CURVE 8192/msg)")
    pp = res["policy_push_256x256"]
    print(f"policy push ({pp['onnx_bytes']} B ONNX, trainer -> robot swapped -> result): "
          f"p50 {pp['p50_ms']:.1f} ms, p99 {pp['p99_ms']:.1f} ms (first, cold: {pp['first_push_ms']:.0f} ms)")
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        Path(a.out).write_text(json.dumps(res, indent=2))
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
