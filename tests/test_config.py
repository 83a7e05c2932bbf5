import json

import pytest

from common.cli import UsageError
from common.config import (AT_LEAST_ONE, NON_NEGATIVE, OPEN_UNIT, POSITIVE, PROBABILITY,
                           load_config_file, parse_overrides, resolve_config)

DEFAULTS = {"env": "Pendulum-v1", "seed": 0, "lr": 1e-3, "hidden": [128], "smoke": False,
            "total_steps": 1000, "net": {"width": 64, "act": "relu"}, "extra": None}


def test_yaml_and_json_files_override_defaults(tmp_path):
    (tmp_path / "a.yaml").write_text("lr: 3.0e-4\nnet:\n  width: 32\n")
    (tmp_path / "b.json").write_text(json.dumps({"hidden": [64, 64], "seed": 5}))
    config = resolve_config(DEFAULTS, load_config_file(tmp_path / "a.yaml"),
                            load_config_file(tmp_path / "b.json"))
    assert config["lr"] == 3e-4 and config["net"] == {"width": 32, "act": "relu"}
    assert config["hidden"] == [64, 64] and config["seed"] == 5
    assert DEFAULTS["net"]["width"] == 64  # defaults are not modified


def test_later_layers_win_and_set_parses_yaml_values():
    overrides = parse_overrides(["lr=1e-2", "net.act=tanh", "hidden=[8, 8]", "smoke=true"])
    config = resolve_config(DEFAULTS, {"lr": 0.5}, overrides, {"seed": 9})
    assert config["lr"] == 0.01 and config["net"]["act"] == "tanh"
    assert config["hidden"] == [8, 8] and config["smoke"] is True and config["seed"] == 9


def test_numbers_written_as_strings_are_coerced():
    # PyYAML reads 2e6 as a string; an int key takes it when it is a whole number
    config = resolve_config(DEFAULTS, {"total_steps": "2e6", "lr": "5e-4", "extra": [1]})
    assert config["total_steps"] == 2_000_000 and isinstance(config["total_steps"], int)
    assert config["lr"] == 5e-4 and config["extra"] == [1]


def test_unknown_key_lists_the_valid_ones():
    with pytest.raises(UsageError, match=r"unknown config key 'lrr'; valid keys: env, extra, hidden"):
        resolve_config(DEFAULTS, {"lrr": 1})
    with pytest.raises(UsageError, match=r"unknown config key 'net.depth'; valid keys: act, width"):
        resolve_config(DEFAULTS, {"net": {"depth": 2}})


@pytest.mark.parametrize("layer, message", [
    ({"total_steps": 1.5}, "'total_steps' expects int"),
    ({"lr": "fast"}, "'lr' expects float"),
    ({"smoke": "yes please"}, "'smoke' expects bool"),
    ({"env": 3}, "'env' expects str"),
    ({"net": 3}, "'net' expects a mapping"),
])
def test_wrong_types_are_refused(layer, message):
    with pytest.raises(UsageError, match=message):
        resolve_config(DEFAULTS, layer)


def test_missing_and_broken_files_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="config file not found"):
        load_config_file(tmp_path / "nope.yaml")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UsageError, match="cannot parse config file"):
        load_config_file(tmp_path / "bad.json")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(UsageError, match="must hold a mapping"):
        load_config_file(tmp_path / "list.yaml")


def test_a_runs_config_json_loads_back_as_a_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"lr": 0.1, "_run": {"versions": {}}}))
    assert resolve_config(DEFAULTS, load_config_file(tmp_path / "config.json"))["lr"] == 0.1


def test_bad_set_syntax():
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_overrides(["lr"])


@pytest.mark.parametrize("value", [".nan", ".inf", "-.inf", "nan", "inf"])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(UsageError, match="'lr' must be a finite number"):
        resolve_config({"lr": 1e-3}, parse_overrides([f"lr={value}"]))


def test_ranges_are_checked_after_every_layer_with_dotted_keys():
    defaults = {"steps": 100, "agent": {"lr": 1e-3, "gamma": 0.99, "hidden": [64, 64]}}
    ranges = {"steps": POSITIVE, "agent.lr": POSITIVE, "agent.gamma": PROBABILITY,
              "agent.hidden": AT_LEAST_ONE}
    assert resolve_config(defaults, {"agent": {"gamma": 1.0}}, ranges=ranges)["agent"]["gamma"] == 1.0
    for layer, message in [({"steps": 0}, "'steps' must be > 0, got 0"),
                           ({"agent": {"lr": -1}}, "'agent.lr' must be > 0, got -1.0"),
                           ({"agent": {"gamma": 1.5}}, r"'agent.gamma' must be in \[0, 1\], got 1.5"),
                           ({"agent": {"hidden": [64, 0]}}, r"'agent.hidden' must be >= 1, got \[64, 0\]")]:
        with pytest.raises(UsageError, match=message):
            resolve_config(defaults, layer, ranges=ranges)


def test_a_range_refuses_nan_even_where_the_default_is_none():
    assert not POSITIVE.allows(float("nan")) and not OPEN_UNIT.allows(1.0) and OPEN_UNIT.allows(0.5)
    with pytest.raises(UsageError, match="'x' must be >= 0"):
        resolve_config({"x": None}, {"x": float("nan")}, ranges={"x": NON_NEGATIVE})
