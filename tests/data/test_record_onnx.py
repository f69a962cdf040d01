"""``robodyna record --policy POLICY.onnx``: the recorder runs an ONNX policy (built here with the onnx helper
API, no torch) through :class:`robodyna.onboard.policy.OnnxPolicy` and stores the actions it applied."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from robodyna.cli.main import main
from robodyna.data.store import EpisodeStore
from robodyna.onboard.record import INTERVENTION_CLAMPED
from robodyna.robots.registry import robot_folder
from robodyna.spec import RobotSpec, load_robot_config
from robodyna.tasks import robot_task

REACHER_OBS = robot_task("reacher2").obs_names  # the robot's own layout (its robot.yaml's action history included)


def spec_of(robot: str) -> RobotSpec:
    cfg, _ = load_robot_config(robot_folder(robot))
    return RobotSpec.from_config(cfg, engine="mujoco")


def linear_onnx_policy(path: Path, spec: RobotSpec, obs_names: list[str], version: int = 3) -> Path:
    """action [B, A] = obs [B, O] @ W + b, with robodyna's policy metadata. Gains large enough to need clipping."""
    o, a = len(obs_names), len(spec.action_names)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((o, a)) * 0.6 * spec.action_high[0]).astype(np.float32)
    b = np.full(a, 0.04 * spec.action_high[0], np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["obs", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["action"])],
        "linear_policy",
        [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["B", o])],
        [helper.make_tensor_value_info("action", TensorProto.FLOAT, ["B", a])],
        initializer=[numpy_helper.from_array(w, "W"), numpy_helper.from_array(b, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    meta = {"robot_name": spec.name, "robot_spec": spec.to_json(), "obs_names": json.dumps(obs_names),
            "action_low": json.dumps(list(spec.action_low)), "action_high": json.dumps(list(spec.action_high)),
            "policy_version": str(version)}
    helper.set_model_props(model, meta)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def test_record_with_an_onnx_policy_stores_its_clipped_actions(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    spec = spec_of("reacher2")
    pol = linear_onnx_policy(tmp_path / "pol.onnx", spec, REACHER_OBS)
    out = tmp_path / "store"
    rc = main(["record", "--robot", "reacher2", "--policy", str(pol), "--episodes", "2", "--out", str(out),
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    store = EpisodeStore(out)
    eps = store.episodes()
    assert [e.index for e in eps] == [0, 1] and all(e.closed for e in eps)
    assert all(e.info["policy"] == f"onnx:{pol}" for e in eps)
    tr = store.read()
    raw = ort.InferenceSession(str(pol), providers=["CPUExecutionProvider"]).run(None, {"obs": tr.batch.obs})[0]
    low, high = np.asarray(spec.action_low, np.float32), np.asarray(spec.action_high, np.float32)
    expected = np.clip(raw, low, high)
    np.testing.assert_allclose(tr.batch.action, expected, rtol=0, atol=1e-6)
    clipped = ((raw < low) | (raw > high)).any(axis=1)
    assert 0 < clipped.sum() < len(tr), "the test policy should need clipping on some steps only"
    np.testing.assert_array_equal(tr.extras["intervention"] & INTERVENTION_CLAMPED != 0, clipped)
    assert set(tr.extras["policy_version"].tolist()) == {3}


def test_record_refuses_an_onnx_policy_exported_for_another_robot(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    pol = linear_onnx_policy(tmp_path / "panda.onnx", spec_of("panda"), REACHER_OBS)
    out = tmp_path / "store"
    rc = main(["record", "--robot", "reacher2", "--policy", str(pol), "--episodes", "1", "--out", str(out),
               "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "panda.onnx: made for another robot (policy): name is 'panda' there, 'reacher2' here" in err, err
    assert not out.exists()
