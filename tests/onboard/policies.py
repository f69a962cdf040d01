"""ONNX policies for the controller tests, built with the onnx helper API (no torch).

Each carries robodyna's policy metadata for a spec and observation layout, so :class:`OnnxPolicy` and the
identity rule treat it like an exported one. Graphs: a bounded tanh-linear policy (the well-behaved one), one
whose output is multiplied by NaN, one at 1000x the limits, a full-range bang-bang oscillator, one with the
wrong output width, and a slow one (a chain of large matrix products).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from robodyna.robots.registry import robot_folder
from robodyna.spec import RobotSpec, load_robot_config, rate_overrides
from robodyna.tasks import make_task


def spec_and_obs(robot: str | Path = "reacher2", overrides: list[str] | None = None,
                 engine: str = "mujoco", hz: float | None = None) -> tuple[RobotSpec, list[str]]:
    """The spec and observation names a policy for ``robot`` run at ``hz`` (default: its own rate) is made for."""
    cfg, _ = load_robot_config(robot_folder(robot), overrides)
    cfg, _ = load_robot_config(robot_folder(robot), list(overrides or []) + rate_overrides(cfg.physics_hz, hz))
    spec = RobotSpec.from_config(cfg, engine=engine)
    return spec, make_task(cfg, spec).obs_names


def make_policy(path: Path | None, spec: RobotSpec, obs_names: list[str], kind: str = "tanh", version: int = 1,
                seed: int = 0, slow_layers: int = 40) -> bytes:
    """Write (when ``path``) and return the bytes of a policy of ``kind``:
    ``tanh`` (high * tanh(obs @ W + b)), ``nan``, ``huge`` (+-1000x the limits), ``oscillate`` (-high * sign(qvel0):
    full range, flipping with the arm's motion), ``wide`` (one output too many), ``slow`` (tanh after a chain of
    ``slow_layers`` 512x512 products)."""
    o = len(obs_names)
    a = spec.act_dim + (1 if kind == "wide" else 0)
    rng = np.random.default_rng(seed)
    high = np.resize(np.asarray(spec.action_high, np.float32), a)
    w = (rng.standard_normal((o, a)) * 0.5).astype(np.float32)
    b = (rng.standard_normal(a) * 0.1).astype(np.float32)
    inits = [numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b"), numpy_helper.from_array(high, "high")]
    nodes = [helper.make_node("MatMul", ["obs", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"]),
             helper.make_node("Tanh", ["z"], ["t"])]
    if kind in ("tanh", "wide"):
        nodes.append(helper.make_node("Mul", ["t", "high"], ["action"]))
    elif kind == "nan":
        inits.append(numpy_helper.from_array(np.full(a, np.nan, np.float32), "nanv"))
        nodes += [helper.make_node("Mul", ["t", "high"], ["u"]), helper.make_node("Mul", ["u", "nanv"], ["action"])]
    elif kind == "huge":
        inits.append(numpy_helper.from_array((1000.0 * high).astype(np.float32), "big"))
        nodes += [helper.make_node("Sign", ["z"], ["s"]), helper.make_node("Mul", ["s", "big"], ["action"])]
    elif kind == "oscillate":
        n = spec.n_joints
        sel = np.zeros((o, a), np.float32)
        sel[n, :] = 1.0  # every output follows joint0's velocity
        inits = [numpy_helper.from_array(sel, "S"), numpy_helper.from_array(-high, "neg_high"),
                 numpy_helper.from_array(np.full(a, 1e-3, np.float32), "eps")]
        nodes = [helper.make_node("MatMul", ["obs", "S"], ["v"]), helper.make_node("Add", ["v", "eps"], ["ve"]),
                 helper.make_node("Sign", ["ve"], ["s"]), helper.make_node("Mul", ["s", "neg_high"], ["action"])]
    elif kind == "slow":
        big = (rng.standard_normal((512, 512)) / 512).astype(np.float32)
        inits = [numpy_helper.from_array(big, "M"), numpy_helper.from_array(np.ones((o, 512), np.float32), "E"),
                 numpy_helper.from_array(np.zeros((512, a), np.float32), "P")]
        nodes = [helper.make_node("MatMul", ["obs", "E"], ["h0"])]
        for i in range(slow_layers):
            nodes.append(helper.make_node("MatMul", [f"h{i}", "M"], [f"h{i + 1}"]))
        nodes += [helper.make_node("MatMul", [f"h{slow_layers}", "P"], ["z"]), helper.make_node("Tanh", ["z"],
                                                                                               ["action"])]
    else:
        raise ValueError(kind)
    graph = helper.make_graph(nodes, f"{kind}_policy",
                              [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["B", o])],
                              [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["B", a])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    helper.set_model_props(model, {
        "robot_name": spec.name, "robot_spec": spec.to_json(), "obs_names": json.dumps(obs_names),
        "action_low": json.dumps(list(spec.action_low)), "action_high": json.dumps(list(spec.action_high)),
        "policy_version": str(version)})
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    if path is not None:
        path.write_bytes(data)
    return data
