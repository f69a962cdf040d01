"""Verified policy hot-swap: check a new ONNX policy before the control loop may use it.

:func:`verify_policy` runs off the control thread and refuses (raising :class:`PolicyRejected` with the reason)
a policy whose bytes do not hash to the announced sha256, that does not parse or load, that the identity rule
(``policy`` purpose, :mod:`robodyna.identity`) says was made for another robot or observation layout, whose
embedded version differs from the announced one, or whose test inference on recent real observations is not
finite or leaves the action limits. The accepted policy's onnxruntime session is created here, so the control
thread only swaps a reference.

:class:`PolicyDirWatcher` offers every new ``*.onnx`` file of a folder (atomically renamed into it; an optional
``NAME.onnx.sha256`` next to it holds the announced hash) to a callback, so the swap path works without a network.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from robodyna.identity import IdentityMismatch
from robodyna.onboard.policy import OnnxPolicy, PolicyMismatchError
from robodyna.spec import RobotSpec

log = logging.getLogger(__name__)


class PolicyRejected(ValueError):
    """A policy offered to the controller failed verification (the message says why)."""


@dataclass(frozen=True)
class VerifiedPolicy:
    policy: OnnxPolicy
    version: int
    sha256: str
    source: str


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_outputs(actions: np.ndarray, n_obs: int, low: np.ndarray, high: np.ndarray, where: str) -> None:
    """Raise :class:`PolicyRejected` unless ``actions`` is ``[n_obs, A]``, finite and within ``[low, high]``."""
    a = np.asarray(actions)
    if a.shape != (n_obs, low.shape[0]):
        raise PolicyRejected(f"{where}: test inference gave shape {a.shape}, expected {(n_obs, low.shape[0])}")
    bad = ~np.isfinite(a)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise PolicyRejected(f"{where}: test inference on recent observations gave non-finite actions "
                             f"({int(bad.sum())} values, first {a[r, c]} at action {int(c)})")
    tol = 1e-5 * (high - low)
    out = (a < low - tol) | (a > high + tol)
    if out.any():
        r, c = np.argwhere(out)[0]
        raise PolicyRejected(f"{where}: test inference gave actions outside the limits (action {int(c)} = "
                             f"{a[r, c]:.6g}, limits [{low[c]:.6g}, {high[c]:.6g}]; {int(out.sum())} values out)")


def verify_policy(data: bytes, sha256: str, version: int, spec: RobotSpec, obs_names: list[str],
                  recent_obs: np.ndarray, where: str = "offered policy") -> VerifiedPolicy:
    """The verified, ready-to-run policy, or :class:`PolicyRejected` naming the first failed check."""
    if isinstance(version, bool) or not isinstance(version, (int, np.integer)) or version < 0:
        raise PolicyRejected(f"{where}: version must be a non-negative integer, got {version!r}")
    digest = sha256_hex(data)
    if digest != str(sha256).lower():
        raise PolicyRejected(f"{where}: sha256 {digest} does not match the announced {sha256}")
    try:
        pol = OnnxPolicy(where, data=bytes(data))
    except PolicyMismatchError as exc:
        raise PolicyRejected(str(exc)) from exc
    try:
        pol.verify(spec, obs_names)
    except IdentityMismatch as exc:
        raise PolicyRejected(str(exc)) from exc
    if "policy_version" in pol.metadata and pol.policy_version != int(version):
        raise PolicyRejected(f"{where}: announced as version {version} but the file says {pol.policy_version}")
    obs = np.asarray(recent_obs, np.float32)
    if obs.ndim != 2 or obs.shape[0] == 0:
        raise PolicyRejected(f"{where}: no recent observations to test it on yet (offer it once the loop runs)")
    try:
        out = pol(obs)
    except Exception as exc:  # onnxruntime errors: wrong input shape, bad graph at run time
        raise PolicyRejected(f"{where}: test inference failed ({type(exc).__name__}: {exc})") from exc
    check_outputs(out, obs.shape[0], spec.action_low_array, spec.action_high_array, where)
    return VerifiedPolicy(pol, int(version), digest, where)


class PolicyDirWatcher:
    """Polls ``folder`` every ``interval_s`` and calls ``offer(data, sha256, version, source)`` for each new
    ``*.onnx`` file with a version above the running one (``current_version()``), lowest version first.

    The version comes from the file's metadata (``policy_version``). Files whose offer was refused are not
    offered again unless they change (size or mtime), except for a refusal because no observation was available
    yet, which is retried.
    """

    def __init__(self, folder: str | Path, offer: Callable[[bytes, str, int, str], tuple[bool, str]],
                 current_version: Callable[[], int], interval_s: float = 0.5) -> None:
        self.folder = Path(folder)
        self.offer = offer
        self.current_version = current_version
        self.interval_s = interval_s
        self._seen: dict[str, tuple[int, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="policy-dir", daemon=True)

    def start(self) -> PolicyDirWatcher:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def poll_once(self) -> None:
        cands: list[tuple[int, Path, bytes]] = []
        for p in sorted(self.folder.glob("*.onnx")):
            if p.name.startswith("."):
                continue
            try:
                st = p.stat()
                key = (st.st_size, st.st_mtime_ns)
                if self._seen.get(p.name) == key:
                    continue
                data = p.read_bytes()
            except OSError:
                continue
            try:
                version = OnnxPolicy(p, data=data).policy_version
            except Exception:  # noqa: BLE001 - unreadable: offered anyway, so the refusal is reported and counted
                version = -1
            if 0 <= version <= self.current_version():
                self._seen[p.name] = key
                continue
            cands.append((version, p, data))
        for version, p, data in sorted(cands, key=lambda c: c[0]):
            side = p.with_name(p.name + ".sha256")
            sha = side.read_text().split()[0] if side.is_file() else sha256_hex(data)
            ok, reason = self.offer(data, sha, max(version, 0), str(p))
            if ok or "no recent observations" not in reason:
                st = p.stat()
                self._seen[p.name] = (st.st_size, st.st_mtime_ns)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.poll_once()
            except Exception:  # noqa: BLE001 - the watcher must not die silently
                log.exception("policy dir watcher: poll failed")
