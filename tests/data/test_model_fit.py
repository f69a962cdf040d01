"""``model fit``: fits the trainer's ensemble from a store and reports k-step error on held-out episodes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def test_model_fit_reports_k_step_error_on_heldout_episodes(reacher_store: Path, tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from robodyna.learn.fit import fit_model

    res = fit_model(reacher_store, tmp_path / "m.pt", k=3, seed=0, png=tmp_path / "fit.png",
                    overrides=["n_members=2", "n_elites=1", "hidden=32", "layers=2", "max_epochs=5"])
    assert res["heldout_episodes"] == 1 and res["train_episodes"] == 2
    assert len(res["k_step_obs_mse"]) == 3 and np.all(np.isfinite(res["k_step_obs_mse"]))
    assert (tmp_path / "m.pt").is_file() and (tmp_path / "fit.png").stat().st_size > 0
    assert json.loads((tmp_path / "m.json").read_text())["n_train"] == 100
