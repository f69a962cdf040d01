"""Torch-free ONNX policy runner for the robot side.

:class:`OnnxPolicy` loads a policy exported by :mod:`robodyna.learn.export`, verifies its metadata against the
robot's :class:`RobotSpec` (refusing a policy made for another robot, naming the mismatch) and maps raw
observations to physical actions. Only numpy, onnx and onnxruntime are imported here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from robodyna.identity import Identity, check_identity
from robodyna.spec import RobotSpec


class PolicyMismatchError(ValueError):
    """The file is not a readable robodyna ONNX policy.

    A policy made for another robot raises :class:`~robodyna.identity.IdentityMismatch` instead."""


def _metadata(path: Path, data: bytes | None = None) -> dict[str, str]:
    try:
        model = onnx.load(str(path), load_external_data=False) if data is None else onnx.load_from_string(data)
    except Exception as exc:  # protobuf DecodeError and friends: a truncated or foreign file
        raise PolicyMismatchError(f"{path}: not a readable ONNX file ({type(exc).__name__}: {exc})") from exc
    return {p.key: p.value for p in model.metadata_props}


class OnnxPolicy:
    """``policy(obs) -> action``: obs ``[O]`` or ``[B, O]`` float32 -> action ``[A]`` / ``[B, A]`` in physical units."""

    def __init__(
        self,
        path: str | Path,
        expected_spec: RobotSpec | None = None,
        expected_obs_names: list[str] | None = None,
        threads: int = 1,
        data: bytes | None = None,
    ) -> None:
        """Load ``path``, or the ONNX bytes ``data`` (then ``path`` only names them in messages)."""
        self.path = Path(path)
        if data is None and not self.path.is_file():
            raise FileNotFoundError(f"ONNX policy not found: {self.path}")
        self.metadata: dict[str, str] = _metadata(self.path, data)
        required = ("robot_name", "robot_spec", "obs_names", "action_low", "action_high")
        missing = [k for k in required if k not in self.metadata]
        if missing:
            raise PolicyMismatchError(f"{self.path}: not a robodyna policy (metadata lacks {', '.join(missing)})")
        raw_version = self.metadata.get("policy_version", "0")
        if not raw_version.isdigit():
            raise PolicyMismatchError(f"{self.path}: policy_version {raw_version!r} is not a non-negative integer "
                                      "(exported by an older robodyna? export it again)")
        self._version = int(raw_version)
        self.spec = RobotSpec.from_dict(json.loads(self.metadata["robot_spec"]))
        self.obs_names: list[str] = json.loads(self.metadata["obs_names"])
        self.action_low = np.asarray(json.loads(self.metadata["action_low"]), dtype=np.float32)
        self.action_high = np.asarray(json.loads(self.metadata["action_high"]), dtype=np.float32)
        if expected_spec is not None:
            self.verify(expected_spec, expected_obs_names)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(self.path) if data is None else data, opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's Fail/InvalidGraph: the graph does not load
            raise PolicyMismatchError(f"{self.path}: onnxruntime cannot load the graph ({exc})") from exc
        self._input = self.session.get_inputs()[0].name
        self.obs_dim = len(self.obs_names)
        self.act_dim = len(self.action_low)
        self._bind_single()

    def _bind_single(self) -> None:
        """Pre-bind one observation row and one action row for :meth:`run_one` (onnxruntime's IOBinding: no
        per-call dict, input conversion or output allocation). Only when the graph declares a single float
        output of shape ``[batch, act_dim]``; any other graph runs through ``session.run`` (so a wrong-shape
        output still reaches the caller as it is)."""
        self._x1 = np.zeros((1, self.obs_dim), np.float32)
        self._y1 = np.zeros((1, self.act_dim), np.float32)
        self._binding: ort.IOBinding | None = None
        outs, ins = self.session.get_outputs(), self.session.get_inputs()
        if len(outs) != 1 or len(ins) != 1 or outs[0].type != "tensor(float)" or ins[0].type != "tensor(float)":
            return
        shape = outs[0].shape
        if len(shape) != 2 or shape[1] != self.act_dim or isinstance(shape[0], int) and shape[0] != 1:
            return
        b = self.session.io_binding()
        b.bind_ortvalue_input(self._input, ort.OrtValue.ortvalue_from_numpy(self._x1))
        b.bind_ortvalue_output(outs[0].name, ort.OrtValue.ortvalue_from_numpy(self._y1))
        self._binding = b

    def run_one(self, obs: np.ndarray) -> np.ndarray:
        """The raw graph output for one observation ``[O]`` (the control loop's call; not thread-safe).

        With the pre-bound buffers (see :meth:`_bind_single`) the result is a view of an internal row, valid
        until the next call: copy it to keep it. Otherwise the graph's first output as ``session.run`` returns it
        (``[A]`` for a batch of one, else the whole array, whatever its shape)."""
        if self._binding is None:
            out = self.session.run(None, {self._input: np.asarray(obs, np.float32).reshape(1, -1)})[0]
            return out[0] if out.ndim >= 1 and out.shape[0] == 1 else out
        self._x1[0] = obs
        self.session.run_with_iobinding(self._binding)
        return self._y1[0]

    @property
    def robot_name(self) -> str:
        return self.metadata["robot_name"]

    @property
    def policy_version(self) -> int:
        """The integer version the trainer gave this policy (0: none given)."""
        return self._version

    @property
    def run_id(self) -> str:
        return self.metadata.get("training_run_id", "")

    @property
    def identity(self) -> Identity:
        """What the policy was made for (:mod:`robodyna.identity`)."""
        return Identity.of(self.spec, self.obs_names)

    def verify(self, spec: RobotSpec, obs_names: list[str] | None = None) -> None:
        """Raise :class:`~robodyna.identity.IdentityMismatch` if the policy was made for another robot or layout
        (the ``policy`` rule of :mod:`robodyna.identity`; the observation layout only when ``obs_names`` given)."""
        check_identity("policy", self.identity, Identity.of(spec, obs_names), str(self.path))

    def __call__(self, obs: Any) -> np.ndarray:
        o = np.asarray(obs, dtype=np.float32)
        single = o.ndim == 1
        if single:
            o = o[None]
        if o.ndim != 2 or o.shape[1] != self.obs_dim:
            raise ValueError(f"policy expects obs of shape [B, {self.obs_dim}], got {np.shape(obs)}")
        action = self.session.run(None, {self._input: np.ascontiguousarray(o)})[0]
        return action[0] if single else action
