"""ONNX export of the deterministic SAC policy: raw obs ``[B, O]`` float32 -> physical action ``[B, A]``.

Obs normalisation and action scaling are inside the graph; the file is self-contained (no external data) and
carries metadata_props that the onboard runner checks against the robot (:mod:`robodyna.onboard.policy`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from robodyna.learn.sac import SAC
from robodyna.spec import RobotSpec

log = logging.getLogger(__name__)

POLICY_FORMAT_VERSION = "1"


def policy_metadata(
    spec: RobotSpec, obs_names: list[str], policy_version: int, run_id: str
) -> dict[str, str]:
    """The metadata_props written into every exported policy."""
    return {
        "robodyna_format": POLICY_FORMAT_VERSION,
        "robot_name": spec.name,
        "robot_spec": spec.to_json(),
        "obs_names": json.dumps(list(obs_names)),
        "action_names": json.dumps(list(spec.action_names)),
        "action_low": json.dumps(list(spec.action_low)),
        "action_high": json.dumps(list(spec.action_high)),
        "control_hz": repr(float(spec.control_hz)),
        "policy_version": str(int(policy_version)),
        "training_run_id": run_id,
    }


def export_policy(
    agent: SAC,
    spec: RobotSpec,
    obs_names: list[str],
    path: str | Path,
    policy_version: int = 0,
    run_id: str = "",
) -> Path:
    """Write ``path`` (one .onnx file) and check it with ``onnx.checker``. ``policy_version`` is a non-negative
    integer (the controller records it with every transition the policy produced)."""
    if isinstance(policy_version, bool) or int(policy_version) != policy_version or policy_version < 0:
        raise ValueError(f"policy_version must be a non-negative integer, got {policy_version!r}")
    if len(obs_names) != agent.obs_dim:
        raise ValueError(f"obs_names has {len(obs_names)} entries, the policy takes {agent.obs_dim} observations")
    if spec.act_dim != agent.act_dim:
        raise ValueError(f"robot {spec.name!r} has {spec.act_dim} actions, the policy outputs {agent.act_dim}")
    if not np.allclose(spec.action_low_array, agent.low) or not np.allclose(spec.action_high_array, agent.high):
        raise ValueError(f"robot {spec.name!r} action bounds differ from the bounds the policy was trained with")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    module = agent.deterministic_policy().eval()
    dummy = torch.zeros(2, agent.obs_dim, dtype=torch.float32)
    with torch.no_grad():
        try:  # torch >= 2.9 default: the dynamo exporter (needs onnxscript); weights embedded in the file
            torch.onnx.export(
                module, (dummy,), str(p), input_names=["obs"], output_names=["action"],
                dynamic_shapes=({0: torch.export.Dim("batch", min=1)},), external_data=False, dynamo=True,
                verbose=False,
            )
        except Exception as exc:  # noqa: BLE001 - fall back to the TorchScript exporter
            log.warning("dynamo ONNX export failed (%s); using the TorchScript exporter", exc)
            torch.onnx.export(
                module, (dummy,), str(p), input_names=["obs"], output_names=["action"],
                dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}}, opset_version=17, dynamo=False,
            )
    model = onnx.load(str(p))
    meta = policy_metadata(spec, obs_names, policy_version, run_id)
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(p))
    log.info("exported policy for %s to %s", spec.name, p)
    return p


def read_metadata(path: str | Path) -> dict[str, Any]:
    """metadata_props of an ONNX file as a dict of strings."""
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}
