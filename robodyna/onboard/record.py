"""Recording episodes of a robot + task + policy into an episode store (``robodyna record``)."""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robodyna.data.store import META_FILE, EpisodeWriter, StoreError, StoreMeta, read_meta
from robodyna.onboard.timing import LoopStats, RateLog

log = logging.getLogger(__name__)

# a recorded tick: (obs, applied action, policy's raw action, intervention bits, wall time, monotonic time)
PendingRow = tuple[np.ndarray, np.ndarray, np.ndarray, int, float, float]

INTERVENTION_CLAMPED = 1  # the applied action differs from the commanded one (clamped by send_action)


def obs_units(obs_names: list[str]) -> list[str]:
    """Units parsed from robodyna observation names (``joint0.pos_rad`` -> ``rad``)."""
    table = {"_rad_s": "rad/s", "_rad": "rad", "_m_s": "m/s", "_m": "m", "_Nm": "N*m"}
    out = []
    for n in obs_names:
        unit = next((u for suf, u in table.items() if n.endswith(suf)), "-")
        out.append(unit)
    return out


class LoopRecorder:
    """The onboard controller's recording (``robodyna controller --record DIR``): one row per tick into the store
    writer's buffers, handed to the writer without ever blocking the loop.

    A full queue drops the row, counts it (``stats.record_dropped``) and logs it (rate-limited); a store that fails
    (disk error) is reported once (:attr:`error`) and every later row is counted as dropped while the robot keeps
    being controlled. The writer is a child process by default (:mod:`robodyna.data.store_proc`); a store that
    exists is continued (new episodes after the last one on disk)."""

    def __init__(self, root: Path, meta: StoreMeta, control_hz: float, flush_interval_s: float, writer_process: bool,
                 policy_version: int, stats: LoopStats) -> None:
        cap = max(1024, int(2 * control_hz))  # rows per buffer: two seconds, a hand-over every flush_interval_s
        self.writer = EpisodeWriter(root, meta, resume=(root / META_FILE).is_file(), flush_every=cap,
                                    flush_on_episode_end=False, max_pending=16,
                                    writer_poll_s=min(0.01, flush_interval_s), writer_process=writer_process,
                                    lock_wait_s=10.0 if writer_process else 0.0)
        self.writer.set_policy_version(policy_version)
        self.stats = stats
        self.error: str | None = None
        self._log_drop = RateLog(log, logging.ERROR)
        self.log_behind = RateLog(log, logging.WARNING)  # its count: hand-overs deferred (writer behind)

    def row(self, p: PendingRow, next_obs: np.ndarray, fns: Any, last: bool) -> None:
        """Record the transition ``p`` -> ``next_obs`` (reward and termination from the task's functions)."""
        w = self.writer
        obs, applied, raw, bits, wall, mono = p
        if self.error is not None:
            self.stats.record_dropped += 1
            return
        if w.buffer_full and not w.can_hand_over():
            self.stats.record_dropped += 1
            self._log_drop("recording queue full (%d segments pending): transition dropped", w.pending_segments)
            return
        reward, terminated, _ = fns.step_values(applied, next_obs)
        try:
            w.append(obs, applied, reward, next_obs, terminated, last, intervention=bits, time_wall_s=wall,
                     time_mono_s=mono, policy_action=raw)
        except StoreError as exc:
            self.failed(exc)
            self.stats.record_dropped += 1

    def hand_over(self, log_behind: bool = True) -> bool:
        """Hand the buffered rows to the writer if that cannot block; False: the writer is behind (rows stay
        buffered, logged when ``log_behind``)."""
        if self.error is not None:
            return True
        try:
            ok = self.writer.try_flush()
        except StoreError as exc:
            self.failed(exc)
            return True
        if not ok and log_behind:
            self.log_behind("store writer behind (%d segments pending); rows stay buffered",
                            self.writer.pending_segments)
        return ok

    def failed(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = str(exc)
            log.error("recording failed, the robot keeps being controlled; rows are counted as dropped: %s", exc)

    def close(self) -> None:
        """Close the writer (it lands every handed-over segment); a failure is reported in :attr:`error`."""
        try:
            self.writer.close()
        except StoreError as exc:
            self.failed(exc)


def make_policy(policy: str, env: Any, seed: int) -> tuple[Callable[[np.ndarray], np.ndarray], str, int]:
    """``random`` (uniform in the action box), ``scripted`` (smooth sinusoids), ``oracle`` (IK + joint control with
    the engine's own model, :mod:`robodyna.tasks.oracle`; reach on a simulated robot), or a path to an ONNX policy.

    Returns (policy, description, policy_version). Refuses an env whose actions are not a continuous Box.
    """
    import gymnasium as gym

    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        name = env.spec.id if getattr(env, "spec", None) is not None else type(env.unwrapped).__name__
        raise ValueError(f"{name}: its action space is {space}; robodyna drives continuous actions only "
                         "(a gymnasium.spaces.Box), e.g. Reacher-v5 or a robot folder")
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    if policy == "random":
        rng = np.random.default_rng(seed)
        return (lambda obs: rng.uniform(low, high)), "random", 0
    if policy == "scripted":
        n = low.shape[0]
        freq = 0.5 + 0.37 * np.arange(n)
        state = {"t": 0}
        dt = 1.0 / float(env.unwrapped.robot_spec.control_hz) if hasattr(env.unwrapped, "robot_spec") else 0.02
        phase = np.random.default_rng(seed).uniform(0, 2 * math.pi, n)

        def scripted(obs: np.ndarray) -> np.ndarray:
            t = state["t"] * dt
            state["t"] += 1
            return 0.5 * (low + high) + 0.45 * (high - low) * np.sin(2 * math.pi * freq * t + phase)

        return scripted, "scripted", 0
    if policy == "oracle":
        from robodyna.tasks.oracle import make_oracle

        return make_oracle(env, seed), "oracle", 0
    path = Path(policy)
    if path.suffix != ".onnx":
        raise ValueError(f"--policy must be random, scripted, oracle or a .onnx file, got {policy!r}")
    from robodyna.onboard.policy import OnnxPolicy

    u = env.unwrapped
    names = getattr(u, "obs_names", None)  # a plain Gymnasium env has no robot spec to check against
    p = OnnxPolicy(path, expected_spec=getattr(u, "robot_spec", None),
                   expected_obs_names=list(names) if names is not None else None)
    return p, f"onnx:{path}", p.policy_version


def record(
    robot: str,
    policy: str,
    episodes: int,
    out: str | Path,
    reality: str | None = None,
    resume: bool = False,
    seed: int = 0,
    overrides: list[str] | None = None,
    task: str = "reach",
    progress: bool = True,
    flush_every: int = 1024,
) -> dict[str, Any]:
    """Record ``episodes`` episodes (more, when ``resume``) into the store ``out``.

    Each episode's info stores its reset seed, initial ``qpos``/``qvel`` and ``target_m`` (what replay needs).
    The stored action is the one actually applied (after clamping); clamping sets intervention bit 1.
    Episode seeds derive from ``seed`` and the episode index, and so do the ``random`` and ``scripted``
    policies' actions (each episode's policy is seeded with its reset seed): a resumed recording continues
    the sequence and equals an uninterrupted one. ``resume`` refuses a store with errors (see
    :func:`~robodyna.data.validate.require_valid`) or one recorded under another reality profile or task.
    """
    import robodyna
    from robodyna.robots.reality import load_reality

    profile = load_reality(reality) if reality else None
    if resume and (Path(out) / META_FILE).is_file():
        _check_resumable(Path(out), profile, task)
    env = robodyna.make_env(robot, task=task, reality=profile, overrides=overrides)
    u: Any = env.unwrapped  # a robodyna RobotEnv (checked below); gymnasium types it as Env
    if not hasattr(u, "robot_spec"):
        raise ValueError(f"{robot!r} is not a robodyna robot (recording needs a robot folder)")
    names = list(u.obs_names)
    meta = StoreMeta.from_spec(
        u.robot_spec, names, obs_units(names), reality=profile.name if profile else None,
        reality_profile=dataclasses.asdict(profile) if profile else None, task=task,
        extra={"policy": policy, "overrides": list(overrides or [])},
    )
    pol, desc, version = make_policy(policy, env, seed)
    steps = 0
    returns = []
    try:
        with EpisodeWriter(out, meta, resume=resume, flush_every=flush_every) as w:
            w.set_policy_version(version)
            first = w.next_episode_index
            it = range(episodes)
            if progress:
                from tqdm import tqdm

                it = tqdm(it, desc=f"record {u.robot_spec.name}", unit="ep")
            for _ in it:
                ep_seed = int(seed) * 1_000_003 + w.next_episode_index
                if policy in ("random", "scripted", "oracle"):  # actions depend on (seed, episode index) only
                    pol, _, _ = make_policy(policy, env, ep_seed)
                obs, info = env.reset(seed=ep_seed)
                w.begin_episode({
                    "seed": ep_seed, "policy": desc, "qpos": np.asarray(info["qpos"]).tolist(),
                    "qvel": np.asarray(info["qvel"]).tolist(), "target_m": np.asarray(info["target_m"]).tolist(),
                })
                ret, done = 0.0, False
                while not done:
                    cmd = np.asarray(pol(obs), dtype=np.float64)
                    nobs, r, term, trunc, sinfo = env.step(cmd)
                    applied = sinfo.get("applied_action", cmd)
                    itv = INTERVENTION_CLAMPED if not np.allclose(applied, cmd) else 0
                    w.append(obs, applied, float(r), nobs, bool(term), bool(trunc), intervention=itv)
                    obs, ret, done = nobs, ret + float(r), bool(term or trunc)
                    steps += 1
                returns.append(ret)
    finally:
        env.close()
    return {"out": str(out), "episodes": len(returns), "first_episode": first, "steps": steps,
            "mean_return": float(np.mean(returns)) if returns else None}


def _check_resumable(out: Path, profile: Any, task: str) -> None:
    """Refuse to append to a store with errors, or with rows of another reality profile or task."""
    import json

    from robodyna.data.validate import require_valid

    require_valid(out, "append to it (--resume)")
    on_disk = read_meta(out)
    name = profile.name if profile else None
    mine = json.loads(json.dumps(dataclasses.asdict(profile))) if profile else None
    def label(r: str | None) -> str:
        return f"reality {r!r}" if r else "no reality profile (the nominal robot)"

    if on_disk.reality != name:
        raise StoreError(f"{out}: recorded with {label(on_disk.reality)}, this recording uses {label(name)}; rows "
                         "of two realities would be indistinguishable in one store: record into a new --out "
                         "(`robodyna dataset merge` keeps each episode's origin)")
    if (on_disk.reality_profile or None) != mine:
        raise StoreError(f"{out}: recorded with another version of reality profile {name!r} (its values differ "
                         "from the file's now): record into a new --out")
    if on_disk.task != task:
        raise StoreError(f"{out}: recorded for task {on_disk.task!r}, not {task!r}: record into a new --out")
