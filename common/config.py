"""Config files (JSON or YAML) layered over a paper's defaults, with command-line overrides.

Order: defaults < config file < `--set KEY=VALUE` < dedicated flags. A key the defaults do not
know is refused with the list of valid keys, so a typo never silently does nothing.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from common.cli import UsageError

RUN_META_KEY = "_run"  # what common.runs adds to config.json about the run itself


def load_config_file(path: str | Path) -> dict:
    """Read a JSON (.json) or YAML (.yaml/.yml) mapping; problems become a UsageError."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        first_line = str(error).splitlines()[0]
        raise UsageError(f"cannot parse config file {path}: {first_line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of keys, not {type(data).__name__}")
    data.pop(RUN_META_KEY, None)  # a run's config.json can be loaded back as a config
    return data


def parse_overrides(items: Iterable[str]) -> dict:
    """Turn `["lr=3e-4", "net.hidden=[64, 64]"]` into a nested dict; values are parsed as YAML."""
    result: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        node = result
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(raw) if raw.strip() else ""
    return result


def resolve_config(defaults: Mapping[str, Any], *layers: Mapping[str, Any] | None) -> dict:
    """Merge `layers` (later wins) over `defaults`, checking every key and coercing its type."""
    config = _plain(defaults)
    for layer in layers:
        if layer:
            config = _merge(config, layer, defaults, prefix="")
    return config


def _merge(config: dict, layer: Mapping, defaults: Mapping, prefix: str) -> dict:
    merged = dict(config)
    for key, value in layer.items():
        path = f"{prefix}{key}"
        if key not in defaults:
            valid = ", ".join(sorted(map(str, defaults))) or "(none)"
            raise UsageError(f"unknown config key '{path}'; valid keys: {valid}")
        default = defaults[key]
        if isinstance(default, dict) and default:
            if not isinstance(value, Mapping):
                raise UsageError(f"config key '{path}' expects a mapping, got {value!r}")
            merged[key] = _merge(merged[key], value, default, prefix=f"{path}.")
        else:
            merged[key] = _coerce(path, default, value)
    return merged


def _coerce(path: str, default: Any, value: Any) -> Any:
    """Give `value` the type of `default` where that is lossless; otherwise refuse clearly."""
    if default is None or value is None:
        return value
    expected = type(default).__name__
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        number = _as_number(value)
        if number is not None and float(number).is_integer():
            return int(number)
    elif isinstance(default, float):
        number = _as_number(value)
        if number is not None:
            return float(number)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return list(value)
    elif isinstance(default, dict):  # an empty default mapping takes any mapping
        if isinstance(value, Mapping):
            return dict(value)
    else:
        return value
    raise UsageError(f"config key '{path}' expects {expected}, got {value!r}")


def _as_number(value: Any) -> float | int | None:
    """A number from an int, float or numeric string ('1e-3': PyYAML reads that as a string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _plain(value: Any) -> Any:
    """Deep copy of defaults into plain dicts and lists (tuples become lists, as in JSON)."""
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
