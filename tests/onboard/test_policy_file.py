"""The torch-free policy runner refuses files that are not robodyna ONNX policies, naming the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from robodyna.onboard.policy import OnnxPolicy, PolicyMismatchError


def test_truncated_onnx_file_is_refused_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "policy.onnx"
    bad.write_bytes(b"\x08\x07\x12\x05torch\xff\xff\xff")
    with pytest.raises(PolicyMismatchError, match=r"policy\.onnx: not a readable ONNX file"):
        OnnxPolicy(bad)


def test_onnx_without_robodyna_metadata_is_refused(tmp_path: Path) -> None:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])])
    path = tmp_path / "plain.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(PolicyMismatchError, match="not a robodyna policy .*robot_name"):
        OnnxPolicy(path)


def test_onboard_modules_import_without_torch() -> None:
    code = ("import sys; sys.modules['torch'] = None\n"
            "import robodyna, robodyna.onboard.policy, robodyna.onboard.safety, robodyna.robots, robodyna.data\n"
            "import robodyna.onboard.record, robodyna.tasks.env\n"
            "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n")
    subprocess.run([sys.executable, "-c", code], check=True)



def test_a_policy_version_that_is_not_an_integer_is_refused_at_load(tmp_path: Path) -> None:
    from tests.data.test_record_onnx import linear_onnx_policy, spec_of

    spec = spec_of("reacher2")
    src = linear_onnx_policy(tmp_path / "p.onnx", spec, [f"o{i}" for i in range(10)], version=4)
    assert OnnxPolicy(src).policy_version == 4
    model = onnx.load(str(src))
    for e in model.metadata_props:
        if e.key == "policy_version":
            e.value = "step300"
    onnx.save(model, str(src))
    with pytest.raises(PolicyMismatchError, match=r"p\.onnx: policy_version 'step300' is not a non-negative integer"):
        OnnxPolicy(src)


def test_single_observation_path_gives_the_batched_result_for_every_new_observation(tmp_path: Path) -> None:
    import numpy as np

    from tests.onboard.policies import make_policy, spec_and_obs

    spec, obs_names = spec_and_obs()
    path = tmp_path / "tanh.onnx"
    make_policy(path, spec, obs_names, "tanh")
    p = OnnxPolicy(path)
    rng = np.random.default_rng(3)
    seen = []
    for _ in range(20):
        o = rng.normal(0, 1, p.obs_dim).astype(np.float32)
        a = p.run_one(o).copy()
        np.testing.assert_array_equal(a, p(o))
        seen.append(a)
    assert len({tuple(a) for a in seen}) == 20  # each call saw its own observation (no stale bound input)


def test_single_observation_path_returns_a_wrong_shape_output_as_it_is(tmp_path: Path) -> None:
    import numpy as np

    from tests.onboard.policies import make_policy, spec_and_obs

    spec, obs_names = spec_and_obs()
    path = tmp_path / "wide.onnx"
    make_policy(path, spec, obs_names, "wide")
    out = OnnxPolicy(path).run_one(np.zeros(len(obs_names), np.float32))
    assert out.shape == (spec.act_dim + 1,)  # the filter sees the extra output and refuses it
