"""``model fit --set``: overrides are validated by the typed config loader (same errors as config files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from robodyna.cli.main import main
from robodyna.config import ConfigError
from robodyna.learn.fit import ensemble_config


def test_model_fit_with_an_unknown_set_key_fails_naming_the_key(reacher_store: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.pt"
    rc = main(["model", "fit", "--dataset", str(reacher_store), "--out", str(out), "--set", "n_memberz=3"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "--set: n_memberz: got 3; unknown key; allowed keys:" in err and "n_members" in err, err
    assert not out.exists() and not out.with_suffix(".json").exists()


@pytest.mark.parametrize(("override", "message"), [
    ("hidden=wide", "--set: hidden: got 'wide'; expected an integer"),
    ("n_members=0", "--set: n_members: got 0; must be >= 1"),
    ("max_fit_batches=0", "--set: max_fit_batches: got 0; must be >= 1"),  # an optional bound is still checked
    ("holdout_ratio=1.5", "--set: holdout_ratio: got 1.5; must be < 1"),
    ("n_elites=9", "--set: n_elites: got 9; must be <= n_members (7)"),
    ("hidden", "--set: hidden: got 'hidden'; expected KEY=VALUE"),
])
def test_bad_set_values_give_the_config_loaders_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        ensemble_config([override])
    assert str(exc.value).startswith(message), str(exc.value)


def test_set_applies_over_defaults_and_over_an_algo_presets_ensemble_section(tmp_path: Path) -> None:
    cfg = ensemble_config(["n_members=3", "n_elites=2", "lr=0.0001"])
    assert (cfg.n_members, cfg.n_elites, cfg.lr, cfg.hidden) == (3, 2, 0.0001, 200)
    algo = tmp_path / "algo.yaml"
    algo.write_text("algo: mbpo\nensemble: {hidden: 64}\nrobots:\n  reacher2:\n    ensemble: {max_fit_seconds: 20.0}\n")
    preset = ensemble_config(["max_epochs=3"], algo=str(algo), robot="reacher2")
    assert (preset.max_epochs, preset.max_fit_seconds, preset.hidden) == (3, 20.0, 64)  # robots.reacher2 section
