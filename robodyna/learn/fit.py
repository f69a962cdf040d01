"""Offline dynamics-model fitting from an episode store (``robodyna model fit``).

Uses the trainer's :class:`robodyna.learn.ensemble.DynamicsEnsemble` (torch; trainer-side dependency) and
:func:`robodyna.learn.rollouts.k_step_model_error` on held-out episodes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from robodyna.data.batch import Batch
from robodyna.data.ops import split_episodes
from robodyna.data.store import EpisodeStore, StoreError
from robodyna.data.store_format import store_identity
from robodyna.identity import Identity, check_identity

if TYPE_CHECKING:
    from robodyna.learn.config import EnsembleConfig


def fit_model(
    store_dir: str | Path,
    out: str | Path,
    robot: str | None = None,
    k: int = 10,
    val_fraction: float = 0.2,
    seed: int = 0,
    overrides: list[str] | None = None,
    png: str | Path | None = None,
    algo: str | Path | None = None,
) -> dict[str, Any]:
    """Fit the ensemble on the training episodes; report 1..k-step obs MSE on held-out episodes.

    The :class:`~robodyna.learn.config.EnsembleConfig` starts from its defaults, or from the ``ensemble``
    section of the algo preset/YAML ``algo`` (with the store's robot section merged); ``overrides``
    (``--set KEY=VALUE``, keys of ``EnsembleConfig``) are validated like any other config: an unknown key,
    wrong type or out-of-range value raises :class:`~robodyna.config.ConfigError` naming it, before any
    data is read.
    """
    store = EpisodeStore(store_dir)
    cfg = ensemble_config(overrides, algo=algo, robot=store.meta.robot_name)

    import torch

    from robodyna.learn.ensemble import DynamicsEnsemble
    from robodyna.learn.rollouts import k_step_model_error

    if robot is not None:
        check_identity("init_data", store_identity(store.meta), robot_identity(robot), str(store.root))
    eps = [e.index for e in store.episodes()]
    if len(eps) < 2:
        raise StoreError(f"{store.root}: need >= 2 episodes (train + held-out), found {len(eps)}")
    train_idx, val_idx = split_episodes(eps, val_fraction, seed)
    tr = store.read()
    ep = tr.episode_index

    def episode(i: int) -> Batch:
        return tr.batch.take(slice(int(np.searchsorted(ep, i, "left")), int(np.searchsorted(ep, i, "right"))))

    train = Batch.concat([episode(i) for i in train_idx])
    val_eps = [episode(i) for i in val_idx]
    torch.manual_seed(seed)
    model = DynamicsEnsemble(store.meta.obs_dim, store.meta.act_dim, cfg, seed=seed)
    rng = np.random.default_rng(seed)
    report = model.fit(train, rng)
    err = k_step_model_error(model, val_eps, k, rng)
    baseline = float(np.mean((Batch.concat(val_eps).next_obs - Batch.concat(val_eps).obs) ** 2))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "obs_dim": store.meta.obs_dim, "act_dim": store.meta.act_dim,
                "ensemble_config": dataclasses.asdict(cfg), "store_meta": store.meta.to_dict(),
                "train_episodes": train_idx, "heldout_episodes": val_idx}, out)
    res = {"model": str(out), "train_episodes": len(train_idx), "heldout_episodes": len(val_idx),
           "n_train": len(train), "epochs": report.epochs, "stopped_by": report.stopped_by,
           "k_step_obs_mse": [float(x) for x in err], "one_step_obs_mse": float(err[0]),
           "copy_last_obs_mse": baseline}
    (out.with_suffix(".json")).write_text(json.dumps(res, indent=2) + "\n")
    if png is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(6, 4))
        ax.semilogy(np.arange(1, k + 1), err, marker="o", label="ensemble (held-out episodes)")
        ax.axhline(baseline, color="gray", ls="--", label="predict no change (1 step)")
        ax.set_xlabel("open-loop model steps k")
        ax.set_ylabel("obs MSE")
        ax.legend()
        fig.tight_layout()
        fig.savefig(png, dpi=100)
        plt.close(fig)
    return res


def ensemble_config(
    overrides: list[str] | None = None, algo: str | Path | None = None, robot: str | None = None
) -> EnsembleConfig:
    """The ensemble config for ``model fit``: defaults (or ``algo``'s ``ensemble`` section) + ``--set``."""
    from robodyna.config import load_config, to_dict
    from robodyna.learn.config import EnsembleConfig, load_algo_config

    base = EnsembleConfig() if algo is None else load_algo_config(algo, robot=robot).ensemble
    return load_config(EnsembleConfig, to_dict(base), overrides, source="--set")


def format_fit_table(res: dict[str, Any]) -> str:
    lines = ["k  obs_mse", *[f"{i + 1:<2} {v:.3e}" for i, v in enumerate(res["k_step_obs_mse"])],
             f"(no-change baseline, 1 step: {res['copy_last_obs_mse']:.3e}; {res['train_episodes']} train / "
             f"{res['heldout_episodes']} held-out episodes, {res['epochs']} epochs, stopped by {res['stopped_by']})"]
    return "\n".join(lines)


def robot_identity(robot: str) -> Identity:
    """A robot folder's identity from its ``robot.yaml`` alone (no engine loaded); a Gymnasium id by name."""
    from robodyna.robots import RobotError, load_robot_config, robot_folder
    from robodyna.spec import RobotSpec

    try:
        folder = robot_folder(robot)
    except RobotError:
        return Identity.of(None, name=robot)
    cfg, _ = load_robot_config(folder)
    return Identity.of(RobotSpec.from_config(cfg, cfg.engine))
