"""Typed configuration loading: YAML -> dataclasses, validated at load time.

Every config in robodyna is a (frozen) dataclass. :func:`load_config` turns a YAML mapping into one,
checking unknown keys, types and ranges, and raises :class:`ConfigError` naming the file, the key path,
the bad value and what is allowed. Ranges live in field metadata::

    control_hz: float = field(default=50.0, metadata={"gt": 0})

``--set a.b=value`` overrides are applied to the raw mapping before validation (:func:`apply_overrides`),
so an override is checked exactly like a value in the file.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import yaml

T = TypeVar("T")
_YAML11_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


class ConfigError(ValueError):
    """A config value is missing, unknown, of the wrong type or out of range."""

    def __init__(self, source: str, key: str, value: Any, allowed: str) -> None:
        self.source = source
        self.key = key
        self.value = value
        self.allowed = allowed
        where = f"{source}: " if source else ""
        keytxt = key or "<root>"
        super().__init__(f"{where}{keytxt}: got {value!r}; {allowed}")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with errors that name the file (and line, for syntax errors)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(str(p), "", None, "file does not exist")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(str(p), "", "<unparseable>", f"malformed YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(str(p), "", type(data).__name__, "the top level must be a mapping")
    return data


_KEY_PART = re.compile(r"^([^\[\]]*)((?:\[-?\d+\])*)$")


def _format_key(parts: list[str | int]) -> str:
    """``["joints", 0, "max_torque_nm"]`` -> ``joints[0].max_torque_nm``."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _parse_key(key: str, text: str) -> list[str | int]:
    """``a.b[0].c`` -> ``["a", "b", 0, "c"]`` (list entries by index in brackets)."""
    parts: list[str | int] = []
    for piece in key.strip().split("."):
        m = _KEY_PART.match(piece)
        if m is None:
            raise ConfigError("--set", key, text, "malformed key: list entries are indexed as name[0], "
                              "e.g. --set joints[0].max_torque_nm=2")
        name, idx = m.groups()
        if name:
            parts.append(name)
        elif not idx:
            continue
        elif not parts:
            raise ConfigError("--set", key, text, "an index needs a key before it, e.g. joints[0]")
        parts.extend(int(i) for i in re.findall(r"-?\d+", idx))
    return parts


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """Parse ``a.b.c=value`` or ``a.list[0].c=value`` (value parsed as YAML, so ``1e-3``, ``true``, ``[1, 2]``
    work; ``[i]`` indexes a list)."""
    if "=" not in text:
        raise ConfigError("--set", text, text, "expected KEY=VALUE, e.g. --set control_hz=100")
    key, raw = text.split("=", 1)
    parts = _parse_key(key, text)
    if not parts:
        raise ConfigError("--set", text, text, "empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError("--set", key, raw, f"value is not valid YAML: {exc}") from exc
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Return a deep copy of ``data`` with ``KEY=VALUE`` overrides applied (nested keys by dots, list entries by
    ``[index]``: ``joints[0].max_torque_nm=2``)."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides or []:
        parts, value = parse_override(text)
        node: Any = out
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            here = _format_key(parts[: i + 1])
            if isinstance(part, int):
                if not isinstance(node, list):
                    raise ConfigError("--set", _format_key(parts[:i]), node,
                                      f"is not a list, so {here} cannot index it")
                if not -len(node) <= part < len(node):
                    raise ConfigError("--set", here, text, f"index out of range: {_format_key(parts[:i])} has "
                                      f"{len(node)} entr{'y' if len(node) == 1 else 'ies'} (0..{len(node) - 1})")
                if last:
                    node[part] = value
                else:
                    node = node[part]
                continue
            if not isinstance(node, dict):
                raise ConfigError("--set", _format_key(parts[:i]), node, f"is not a mapping, so {here} is not a key")
            if last:
                node[part] = value
                continue
            nxt = node.get(part)
            if nxt is None:
                if isinstance(parts[i + 1], int):
                    raise ConfigError("--set", here, None, "is not set, so it has no entries to index")
                nxt = {}
                node[part] = nxt
            if not isinstance(nxt, (dict, list)):
                raise ConfigError("--set", here, nxt, "is not a list" if isinstance(parts[i + 1], int)
                                  else "is not a mapping")
            node = nxt
    return out


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "null"
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def _check_range(value: Any, meta: typing.Mapping[str, Any], source: str, key: str) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value) and not meta.get("allow_inf"):
            raise ConfigError(source, key, value, "must be a finite number")
        if "gt" in meta and not value > meta["gt"]:
            raise ConfigError(source, key, value, f"must be > {meta['gt']}")
        if "ge" in meta and not value >= meta["ge"]:
            raise ConfigError(source, key, value, f"must be >= {meta['ge']}")
        if "lt" in meta and not value < meta["lt"]:
            raise ConfigError(source, key, value, f"must be < {meta['lt']}")
        if "le" in meta and not value <= meta["le"]:
            raise ConfigError(source, key, value, f"must be <= {meta['le']}")


def _convert(tp: Any, value: Any, source: str, key: str, meta: typing.Mapping[str, Any]) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, source, key, meta)
            except ConfigError as exc:
                errors.append(exc.allowed)
        range_errors = [e for e in errors if not e.startswith("expected")]
        if range_errors:  # right type, out of range (e.g. a negative value for `float | None` with ge=0): say so
            raise ConfigError(source, key, value, range_errors[0])
        allowed = " or ".join(_type_name(a) for a in args)
        raise ConfigError(source, key, value, f"expected {allowed}")
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(source, key, value, f"expected {_type_name(tp)}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _build(tp, value, source, key)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(source, key, value, f"expected a list of {_type_name((get_args(tp) or (Any,))[0])}")
        args = get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(source, key, value, f"expected a list of length {len(args)}")
            items = [_convert(a, v, source, f"{key}[{i}]", meta) for i, (a, v) in enumerate(zip(args, value))]
        else:
            item_tp = args[0] if args else Any
            items = [_convert(item_tp, v, source, f"{key}[{i}]", meta) for i, v in enumerate(value)]
        if "len" in meta and len(items) != meta["len"]:
            raise ConfigError(source, key, value, f"expected a list of length {meta['len']}")
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(source, key, value, "expected a mapping")
        kt, vt = get_args(tp) or (Any, Any)
        return {
            _convert(kt, k, source, f"{key}.{k}", {}): _convert(vt, v, source, f"{key}.{k}", meta)
            for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, key, value, "expected true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            else:
                raise ConfigError(source, key, value, "expected an integer")
        _check_range(value, meta, source, key)
        return value
    if tp is float:
        if isinstance(value, str) and _YAML11_FLOAT.match(value.strip()):
            value = float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string; accept it as the number it is
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, key, value, "expected a number")
        _check_range(value, meta, source, key)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(source, key, value, "expected a string")
        if meta.get("nonempty") and not value:
            raise ConfigError(source, key, value, "must not be empty")
        if "pattern" in meta and not re.fullmatch(meta["pattern"], value.strip()):
            raise ConfigError(source, key, value, meta.get("pattern_help", f"must match {meta['pattern']}"))
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def _build(cls: type[T], data: Any, source: str, prefix: str) -> T:
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(source, prefix, data, f"expected a mapping for {cls.__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        k = f"{prefix}.{unknown[0]}" if prefix else str(unknown[0])
        raise ConfigError(source, k, data[unknown[0]], "unknown key; allowed keys: " + ", ".join(sorted(fields)))
    kwargs: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}.{name}" if prefix else name
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(source, key, None, f"required key is missing ({_type_name(hints[name])})")
            continue
        kwargs[name] = _convert(hints[name], data[name], source, key, f.metadata)
    try:
        obj = cls(**kwargs)
    except ConfigError as exc:
        if not exc.source:
            raise ConfigError(source, f"{prefix}.{exc.key}" if prefix else exc.key, exc.value, exc.allowed) from None
        raise
    return obj


def load_config(
    cls: type[T], data: dict[str, Any] | str | Path, overrides: list[str] | None = None, source: str = ""
) -> T:
    """Build a validated ``cls`` from a mapping or YAML file, after applying ``--set`` overrides."""
    if isinstance(data, (str, Path)):
        source = source or str(data)
        data = read_yaml(data)
    data = apply_overrides(data, overrides)
    return _build(cls, data, source, "")


def to_dict(obj: Any) -> Any:
    """Plain-YAML representation of a config (tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def save_config(obj: Any, path: str | Path) -> None:
    """Write the fully-resolved config as YAML (what a run really used)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(yaml.safe_dump(to_dict(obj), sort_keys=False))
