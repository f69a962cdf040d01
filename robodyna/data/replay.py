"""Open-loop replay of a recorded episode on a (possibly different) simulated robot: per-step divergence."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robodyna.data.store import EpisodeStore, StoreError
from robodyna.data.store_format import store_identity
from robodyna.identity import Identity, check_identity
from robodyna.tasks.reach import ReachLayout


@dataclass
class ReplayResult:
    """Per-step divergence between the replay and the recording (after each action)."""

    episode: int
    joint_err_rad: np.ndarray  # [T] L2 norm of qpos difference
    ee_err_m: np.ndarray  # [T] L2 norm of end-effector difference
    initial_joint_err_rad: float

    def summary(self) -> dict[str, Any]:
        def s(a: np.ndarray) -> dict[str, float]:
            return {"mean": float(a.mean()), "max": float(a.max()), "final": float(a[-1])}

        return {"episode": self.episode, "steps": int(self.joint_err_rad.size),
                "initial_joint_err_rad": self.initial_joint_err_rad,
                "joint_err_rad": s(self.joint_err_rad), "ee_err_m": s(self.ee_err_m)}


def check_robot_matches(store: EpisodeStore, spec: Any) -> None:
    """Refuse a store recorded on another robot (the ``replay`` identity rule), naming the mismatch."""
    m = store.meta
    check_identity("replay", store_identity(m), Identity.of(spec), str(store.root))
    n = spec.n_joints
    if m.obs_dim < ReachLayout(n).ee.stop:
        raise StoreError(f"{store.root}: obs has {m.obs_dim} columns; replay needs [qpos({n}), qvel({n}), ee(3)...]")


def replay(
    store_dir: str | Path,
    robot: str,
    episode: int = 0,
    reality: str | None = None,
    overrides: list[str] | None = None,
) -> ReplayResult:
    """Reset ``robot`` to the episode's recorded initial state, apply its recorded actions open loop and
    compare the resulting joint positions / end-effector positions with the recorded ``next_obs``."""
    from robodyna.robots.registry import load_robot

    store = EpisodeStore(store_dir)
    eps = {e.index: e for e in store.episodes()}
    if episode not in eps:
        raise StoreError(f"{store.root}: no episode {episode} (episodes 0..{len(eps) - 1})")
    info = eps[episode].info
    for k in ("qpos", "qvel"):
        if k not in info:
            raise StoreError(f"{store.root}: episode {episode} has no recorded initial {k} (not recorded by "
                             "`robodyna record`?)")
    tr = store.read_episode(episode)
    rb = load_robot(robot, reality=reality, overrides=overrides)
    try:
        check_robot_matches(store, rb.spec)
        n, ee = rb.spec.n_joints, ReachLayout(rb.spec.n_joints).ee
        s = rb.reset(qpos=np.asarray(info["qpos"]), qvel=np.asarray(info["qvel"]), seed=info.get("seed"))
        init_err = float(np.linalg.norm(s.qpos - tr.batch.obs[0, :n]))
        T = len(tr)
        jerr, eerr = np.empty(T), np.empty(T)
        for t in range(T):
            rb.send_action(tr.batch.action[t].astype(np.float64))
            st = rb.observe()
            rec = tr.batch.next_obs[t]
            jerr[t] = np.linalg.norm(st.qpos - rec[:n])
            eerr[t] = np.linalg.norm(st.ee_pos_m - rec[ee])
    finally:
        rb.close()
    return ReplayResult(episode, jerr, eerr, init_err)


def plot_replay(res: ReplayResult, png: str | Path, title: str = "") -> None:
    """Joint and end-effector error over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    ax[0].plot(res.joint_err_rad)
    ax[0].set_ylabel("joint error [rad]")
    ax[1].plot(res.ee_err_m * 1000)
    ax[1].set_ylabel("end-effector error [mm]")
    ax[1].set_xlabel("step")
    fig.suptitle(title or f"open-loop replay, episode {res.episode}")
    fig.tight_layout()
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=100)
    plt.close(fig)
