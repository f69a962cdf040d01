"""Typed configs: errors name the file, the key path, the bad value and what is allowed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from robodyna.config import ConfigError, load_config, save_config


@dataclass(frozen=True)
class Inner:
    rate_hz: float = field(default=10.0, metadata={"gt": 0})
    mode: Literal["a", "b"] = "a"


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    sizes: tuple[int, ...] = (1, 2)
    flag: bool = False


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_valid_file_loads_into_typed_dataclass(tmp_path: Path) -> None:
    cfg = load_config(Outer, write(tmp_path, "name: x\ninner: {rate_hz: 5}\nsizes: [3, 4]\n"))
    assert cfg == Outer("x", Inner(5.0), (3, 4))


@pytest.mark.parametrize(
    ("text", "key", "allowed"),
    [
        ("name: x\ninner: {rate_hz: 5, bogus: 1}\n", "inner.bogus", "unknown key"),
        ("name: x\ninner: {rate_hz: fast}\n", "inner.rate_hz", "expected a number"),
        ("name: x\ninner: {rate_hz: 0}\n", "inner.rate_hz", "must be > 0"),
        ("name: x\ninner: {mode: c}\n", "inner.mode", "one of 'a', 'b'"),
        ("name: x\nsizes: [1, two]\n", "sizes[1]", "expected an integer"),
        ("name: x\nflag: 1\n", "flag", "expected true or false"),
        ("inner: {}\n", "name", "required key is missing"),
        ("name: x\ninner: {rate_hz: .nan}\n", "inner.rate_hz", "finite"),
    ],
)
def test_bad_values_name_file_key_value_and_allowed(tmp_path: Path, text: str, key: str, allowed: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(Outer, p)
    assert exc.value.source == str(p) and exc.value.key == key and allowed in exc.value.allowed
    assert str(p) in str(exc.value) and key in str(exc.value)


def test_malformed_yaml_names_the_file(tmp_path: Path) -> None:
    p = write(tmp_path, "name: [unclosed\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        load_config(Outer, p)


def test_set_overrides_are_applied_and_validated_like_file_values(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\n")
    assert load_config(Outer, p, ["inner.rate_hz=2.5", "flag=true"]) == Outer("x", Inner(2.5), flag=True)
    with pytest.raises(ConfigError, match=r"inner.rate_hz: got -1; must be > 0"):
        load_config(Outer, p, ["inner.rate_hz=-1"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(Outer, p, ["inner.rate_hz"])


def test_saved_config_reloads_to_the_same_value(tmp_path: Path) -> None:
    cfg = Outer("y", Inner(3.0, "b"), (5,), True)
    save_config(cfg, tmp_path / "run" / "config.yaml")
    assert yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())["inner"]["mode"] == "b"
    assert load_config(Outer, tmp_path / "run" / "config.yaml") == cfg


def test_exponent_without_dot_is_read_as_a_number_in_files_and_overrides(tmp_path: Path) -> None:
    p = write(tmp_path, "name: x\ninner: {rate_hz: 1e-3}\n")
    assert load_config(Outer, p).inner.rate_hz == 1e-3
    assert load_config(Outer, p, ["inner.rate_hz=2e3"]).inner.rate_hz == 2000.0
