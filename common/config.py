"""Config files (JSON or YAML) layered over a paper's defaults, with command-line overrides.

Order: defaults < config file < `--set KEY=VALUE` < dedicated flags. A key the defaults do not
know is refused with the list of valid keys, so a typo never silently does nothing.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
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
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise UsageError(f"config file {path} is not UTF-8 text (byte {error.start}: "
                         f"{error.object[error.start:error.start + 1]!r})") from None
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


def resolve_config(defaults: Mapping[str, Any], *layers: Mapping[str, Any] | None,
                   ranges: Mapping[str, "Range"] | None = None) -> dict:
    """Merge `layers` (later wins) over `defaults`, checking every key and coercing its type;
    then every key named in `ranges` (dotted, e.g. "td3.lr_actor") must lie in its range."""
    config = _plain(defaults)
    for layer in layers:
        if layer:
            config = _merge(config, layer, defaults, prefix="")
    check_ranges(config, ranges or {})
    return config


@dataclass(frozen=True)
class Range:
    """The values a numeric config key allows: low < value (or <=), value < high (or <=)."""
    low: float | None = None
    high: float | None = None
    low_closed: bool = True
    high_closed: bool = True

    def allows(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (value == self.low and not self.low_closed)):
            return False
        return self.high is None or (value < self.high or (value == self.high and self.high_closed))

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>=' if self.low_closed else '>'} {self.low:g}"
        if self.low is None:
            return f"{'<=' if self.high_closed else '<'} {_bound(self.high)}"
        return (f"in {'[' if self.low_closed else '('}{_bound(self.low)}, {_bound(self.high)}"
                f"{']' if self.high_closed else ')'}")


def _bound(value: float) -> str:
    """A range's bound as written: 2147483648 for a large whole number, else the short form."""
    return str(int(value)) if float(value).is_integer() and abs(value) >= 1e6 else f"{value:g}"


POSITIVE = Range(0, low_closed=False)          # learning rates, budgets, sizes
NON_NEGATIVE = Range(0)                        # noise scales, counts that may be 0
AT_LEAST_ONE = Range(1)                        # workers, episodes, population sizes
PROBABILITY = Range(0, 1)                      # probabilities, fractions, discount factors
OPEN_UNIT = Range(0, 1, low_closed=False, high_closed=False)
# Seeds: every RNG here takes [0, 2^31) (numpy's legacy seed < 2^32, torch's < 2^63), with room
# for the seeds a paper derives from it (seed + 100, seed * 1000 + i, ...).
SEED_LIMIT = 2**31
SEED = Range(0, SEED_LIMIT, high_closed=False)


def check_ranges(config: Mapping[str, Any], ranges: Mapping[str, Range]) -> None:
    """Each dotted key of `ranges` that is set (not None) must lie in its range; a list value
    (e.g. hidden sizes) must lie there element-wise."""
    for path, allowed in ranges.items():
        node: Any = config
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        values = node if isinstance(node, (list, tuple)) else [node]
        for value in values:
            if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            if not allowed.allows(value):
                raise UsageError(f"config key '{path}' must be {allowed}, got {node!r}")


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
            merged[key] = coerce_value(path, default, value)
    return merged


def coerce_value(path: str, default: Any, value: Any) -> Any:
    """Give `value` the type of `default` where that is lossless (`1e5` for an int key is
    100000); otherwise refuse clearly, naming the key `path`."""
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
            if not math.isfinite(number):   # a NaN or inf setting is a typo, never a choice
                raise UsageError(f"config key '{path}' must be a finite number, got {value!r}")
            return float(number)
    elif isinstance(default, str):
        if isinstance(value, str):
            return value
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return _coerce_list(path, default, value)
    elif isinstance(default, dict):  # an empty default mapping takes any mapping
        if isinstance(value, Mapping):
            return dict(value)
    else:
        return value
    raise UsageError(f"config key '{path}' expects {expected}, got {value!r}")


def _coerce_list(path: str, default: list | tuple, value: list | tuple) -> list:
    """Each entry typed like the default's: its first entry's type (a default of one type, such
    as layer sizes [400, 300]), or the entry at the same place where the default mixes types. An
    empty default takes any list. `td3.hidden=[64, abc]` is refused naming `td3.hidden[1]`."""
    if not default:
        return list(value)
    mixed = len({type(entry) for entry in default}) > 1
    return [coerce_value(f"{path}[{i}]", default[i] if mixed and i < len(default) else default[0], item)
            for i, item in enumerate(value)]


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
