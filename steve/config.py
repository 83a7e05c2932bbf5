"""STEVE's layered JSON configs, with the reference's semantics (research/steve/util.py ConfigDict).

A config file is a JSON object with up to two keys (plus "_comment"-style notes, never checked):

    "inherits": ["algos/steve.json", "envs/hopper.json"]  merged in order, a later file wins;
                                                          paths are relative to steve/configs/
    "updates":  {"policy_config": {"hidden_dim": 64}}     merged on top, nested dicts key by key

In "updates", a key written "*key" only overrides a key that already exists. As in the
reference, when a file is inherited its "*key" is dropped if the inheriting config has no such
key at that point: that is how core/bayesian.json and experimental_setups/*.json set model
options that only model-based configs pick up. A "*key" still without a target in the file you
load is a typo, so it is an error (the reference would silently create the key).

`load_config` resolves a file, adds "name" (the file's name without .json, as the reference's
config.py does) and checks the result against SCHEMA, so a typo never silently does nothing.
Every mistake raises `common.cli.UsageError` with one line naming the file.
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import yaml

from common.cli import UsageError
from common.config import AT_LEAST_ONE, NON_NEGATIVE, POSITIVE, PROBABILITY, Range, check_ranges

CONFIGS_ROOT = Path(__file__).resolve().parent / "configs"
ALGOS = ("ddpg", "mve_tdk", "steve")  # policy_config.algo
EXPLORATION_TYPES = ("per_dim_tanh_noise", "gaussian", "none")  # policy_config.exploration.type
ALGO_FLAG = {"mve_tdk": "tdk_trick", "steve": "steve_reweight"}  # value_expansion flag per algo
# policy_config.q_routing: "random" (the reference) trains one random Q member per example;
# "full" trains every member of the train subset on every example (each member sees the batch)
Q_ROUTINGS = ("random", "full")
# optional keys that --set may add to a config that leaves them out, and their default
SETTABLE_DEFAULTS = {"policy_config.q_routing": "random", "model_config.full_batch": False}


def _keys(names: str = "", **nested: dict) -> dict:
    return {**dict.fromkeys(names.split()), **nested}


_ENSEMBLE = _keys("ensemble_size train_sample_count eval_sample_count")
_LEARNER = ("batch_size replay_size frames_before_learning frames_per_update learning_rate "
            "log_every_n epoch_every_n backup_every_n")
SCHEMA = _keys(
    "name output_root save_model_path log_path",
    env=_keys("name obs_dims action_dim reward_scale discount max_frames"),
    agent_config=_keys("count batch_size reload_every_n full_random_n"),
    evaluator_config=_keys("count batch_size"),
    policy_config=_keys(f"algo hidden_dim hidden_layers pretanh_reg q_routing {_LEARNER}",
                        exploration=_keys("type prob std"),
                        bayesian=_ENSEMBLE,
                        value_expansion=_keys("rollout_len tdk_trick steve_reweight")),
    model_config=_keys("transition_hidden_dim transition_hidden_layers aux_hidden_dim "
                       f"aux_hidden_layers l2_reg pretrain_n full_batch {_LEARNER}",
                       bayesian=_keys(transition=_ENSEMBLE, reward=_ENSEMBLE)),
)
OPTIONAL = {"model_config", "model_config.bayesian", "policy_config.bayesian",
            "policy_config.q_routing", "model_config.full_batch",
            "policy_config.value_expansion", "policy_config.value_expansion.tdk_trick",
            "policy_config.value_expansion.steve_reweight",
            "policy_config.exploration.prob", "policy_config.exploration.std"}
HINTS = {
    "policy_config.explore_chance": "use policy_config.exploration (the reference's code read "
                                    "'ddpg_explore_chance', so its 'explore_chance' never acted)",
    "policy_config.ddpg_explore_chance": "use policy_config.exploration",
}


def load_config(path: str | Path, root: str | Path | None = None) -> dict:
    """Resolve `path` (a file, or a path under `root`) into one checked config dict.

    `root` is where "inherits" paths start (default: steve/configs)."""
    root = Path(root) if root is not None else CONFIGS_ROOT
    path = Path(path)
    if not path.is_file() and not path.is_absolute() and (root / path).is_file():
        path = root / path
    config = resolve_file(path, root)
    config["name"] = experiment_name(path)
    validate_config(config, _show(path, root))
    return config


def resolve_file(path: str | Path, root: str | Path | None = None) -> dict:
    """The merged keys of one file and everything it inherits, without the schema check."""
    root = Path(root) if root is not None else CONFIGS_ROOT
    path = Path(path)
    config = _resolve(path, root, chain=())
    pending = _pending_overrides(config)
    if pending:
        raise UsageError(f"{_show(path, root)}: '{pending[0]}' overrides a key that no inherited "
                         "config defines ('*key' only overrides an existing key)")
    return config


def experiment_name(path: str | Path) -> str:
    """The experiment's name: its config file's name without .json (reference config.py)."""
    return Path(path).name.removesuffix(".json")


def experiment_dir(config: dict) -> Path:
    """`<output_root>/<env.name>/<name>`: the reference's folder for one experiment's log and
    checkpoints subfolders (`log_path`, `save_model_path`)."""
    return Path(config["output_root"]) / config["env"]["name"] / config["name"]


# the values each numeric key allows (common.config.check_ranges; JSON may even hold NaN)
_SIZES = ("hidden_dim", "hidden_layers", "batch_size", "replay_size", "log_every_n", "epoch_every_n",
          "backup_every_n", "transition_hidden_dim", "transition_hidden_layers", "aux_hidden_dim",
          "aux_hidden_layers")
_ENSEMBLES = ("ensemble_size", "train_sample_count", "eval_sample_count")
# Upper bounds where a larger value would only exhaust memory or time (a 1e30 batch, a 1e12
# replay memory): far above any experiment here (the goodruns configs' largest: replay 1M,
# batch 512, hidden 1024, 4 hidden layers, 16 envs).
_CAPS = {"hidden_dim": 65_536, "transition_hidden_dim": 65_536, "aux_hidden_dim": 65_536,
         "hidden_layers": 64, "transition_hidden_layers": 64, "aux_hidden_layers": 64,
         "batch_size": 1_000_000, "replay_size": 100_000_000}
RANGES = {
    **{f"{section}.{key}": Range(1, _CAPS.get(key)) for section in ("policy_config", "model_config")
       for key in _SIZES},
    # acting and evaluation envs: count x batch_size of them, and at least one
    **{f"{section}.{key}": Range(1, 4096) for section in ("agent_config", "evaluator_config")
       for key in ("count", "batch_size")},
    "agent_config.reload_every_n": AT_LEAST_ONE,
    **{f"{section}.{key}": NON_NEGATIVE for section in ("policy_config", "model_config")
       for key in ("frames_before_learning", "pretrain_n", "pretanh_reg", "l2_reg")},
    "policy_config.learning_rate": POSITIVE, "model_config.learning_rate": POSITIVE,
    "policy_config.exploration.prob": PROBABILITY, "policy_config.exploration.std": NON_NEGATIVE,
    **{f"policy_config.bayesian.{key}": AT_LEAST_ONE for key in _ENSEMBLES},
    **{f"model_config.bayesian.{part}.{key}": AT_LEAST_ONE for part in ("transition", "reward")
       for key in _ENSEMBLES},
    "agent_config.full_random_n": NON_NEGATIVE, "env.action_dim": AT_LEAST_ONE,
    "env.reward_scale": POSITIVE, "env.discount": PROBABILITY, "env.max_frames": AT_LEAST_ONE,
}


def validate_config(config: dict, where: str = "config") -> None:
    """Check keys against SCHEMA, values against RANGES, and that policy_config.algo agrees
    with the other settings."""
    def fail(message: str):
        raise UsageError(f"{where}: {message}")

    _check_keys(config, SCHEMA, "", fail)
    _check_numbers(config, fail)
    try:
        check_ranges(config, RANGES)
    except UsageError as error:
        fail(str(error))
    policy, model = config["policy_config"], config.get("model_config")
    expansion = policy.get("value_expansion")
    algo = policy["algo"]
    if algo not in ALGOS:
        fail(f"unknown algorithm policy_config.algo = {algo!r}; choose one of: {', '.join(ALGOS)}")
    if algo == "ddpg":
        if model is not None or expansion is not None:
            fail("algo 'ddpg' is model-free: it takes no model_config or "
                 "policy_config.value_expansion (inherit algos/ddpg.json)")
    else:
        if model is None or expansion is None:
            fail(f"algo '{algo}' needs model_config and policy_config.value_expansion "
                 f"(inherit algos/{algo}.json)")
        if expansion.get(ALGO_FLAG[algo]) is not True:
            fail(f"algo '{algo}' needs policy_config.value_expansion.{ALGO_FLAG[algo]}: true")
        if algo == "mve_tdk" and expansion.get("steve_reweight"):
            fail("algo 'mve_tdk' with value_expansion.steve_reweight is STEVE: set algo 'steve'")
        horizon = expansion["rollout_len"]
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            fail(f"policy_config.value_expansion.rollout_len must be an integer >= 1, "
                 f"got {horizon!r}")
    if algo == "steve" and ("bayesian" not in policy or "bayesian" not in model):
        fail("algo 'steve' needs ensembles in policy_config.bayesian and model_config.bayesian "
             "(inherit core/bayesian.json)")
    ensembles = {"policy_config.bayesian": policy.get("bayesian")}
    if model is not None and model.get("bayesian"):
        ensembles.update({f"model_config.bayesian.{part}": model["bayesian"][part]
                          for part in ("transition", "reward")})
    for name, ensemble in ensembles.items():
        if ensemble is not None and max(ensemble["train_sample_count"],
                                        ensemble["eval_sample_count"]) > ensemble["ensemble_size"]:
            fail(f"{name}: train/eval_sample_count cannot exceed ensemble_size")
    _check_exploration(policy["exploration"], fail)
    # ours, not the reference's: which ensemble members train on each example (README)
    if policy.get("q_routing", "random") not in Q_ROUTINGS:
        fail(f"policy_config.q_routing must be one of: {', '.join(Q_ROUTINGS)}, got {policy['q_routing']!r}")
    if model is not None and not isinstance(model.get("full_batch", False), bool):
        fail(f"model_config.full_batch must be true or false, got {json.dumps(model['full_batch'])}")
    for section in ("policy_config", "model_config"):
        if section in config:
            rate = config[section]["frames_per_update"]
            if rate is not False and (isinstance(rate, bool) or not isinstance(rate, (int, float))
                                      or rate <= 0):
                fail(f"{section}.frames_per_update must be a positive number or false, "
                     f"got {rate!r}")


FALSE_MEANS_NONE = {"model_config.pretrain_n"}   # the reference's speedrun configs: no pretraining


def _check_numbers(config: dict, fail) -> None:
    """Every key with a range holds a number (lists: of numbers); true / false are not numbers
    here, though Python counts them as ints (a batch size of `true` would train on 1 example)."""
    for path in RANGES:
        node = config
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is None or (node is False and path in FALSE_MEANS_NONE):
            continue
        values = node if isinstance(node, list) else [node]
        if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            fail(f"config key '{path}' must be a number, got {json.dumps(node)}")


def _check_exploration(exploration: dict, fail) -> None:
    kind = exploration["type"]
    if kind not in EXPLORATION_TYPES:
        fail(f"unknown policy_config.exploration.type {kind!r}; "
             f"choose one of: {', '.join(EXPLORATION_TYPES)}")
    needed = {"per_dim_tanh_noise": ("prob", "std"), "gaussian": ("std",), "none": ()}[kind]
    for key in needed:
        if key not in exploration:
            fail(f"exploration type '{kind}' needs policy_config.exploration.{key}")


def _check_keys(node: dict, schema: dict, prefix: str, fail) -> None:
    for key, value in node.items():
        if key.startswith("_"):  # notes such as "_comment"
            continue
        path = prefix + key
        if key not in schema:
            hint = HINTS.get(path) or f"valid keys here: {', '.join(sorted(schema))}"
            fail(f"unknown config key '{path}'; {hint}")
        if schema[key] is not None:
            if not isinstance(value, dict):
                fail(f"config key '{path}' must be a mapping, got {value!r}")
            _check_keys(value, schema[key], path + ".", fail)
    for key in schema:
        if key not in node and prefix + key not in OPTIONAL:
            fail(f"missing config key '{prefix + key}'")


def _resolve(path: Path, root: Path, chain: tuple[Path, ...]) -> dict:
    """The merged content of one file: its inherits in order, then its own updates."""
    key = path.resolve()
    if key in chain:
        cycle = [*chain[chain.index(key):], key]
        raise UsageError("inherits cycle: " + " -> ".join(_show(p, root) for p in cycle))
    if not path.is_file():
        by = f" (inherited by {_show(chain[-1], root)})" if chain else ""
        raise UsageError(f"config file not found: {_show(path, root)}{by}")
    raw = _read(path, root)
    config: dict = {}
    for parent in raw.get("inherits") or []:
        parent_path = Path(parent) if Path(parent).is_absolute() else root / parent
        config = _merge(config, _resolve(parent_path, root, chain + (key,)), inherited=True)
    return _merge(config, raw.get("updates") or {}, inherited=False)


def _read(path: Path, root: Path) -> dict:
    where = _show(path, root)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise UsageError(f"{where} is not UTF-8 text (byte {error.start}: "
                         f"{error.object[error.start:error.start + 1]!r})") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"invalid JSON in {where} at line {error.lineno} column {error.colno}: "
                         f"{error.msg}") from None
    if not isinstance(raw, dict):
        raise UsageError(f"{where}: a config file holds a JSON object, not {type(raw).__name__}")
    extra = [k for k in raw if k not in ("inherits", "updates") and not k.startswith("_")]
    if extra:
        raise UsageError(f"{where}: top-level keys are 'inherits' and 'updates', found "
                         f"{extra[0]!r} (config keys go under 'updates')")
    inherits = raw.get("inherits") or []
    if not isinstance(inherits, list) or not all(isinstance(p, str) for p in inherits):
        raise UsageError(f"{where}: 'inherits' must be a list of config file paths")
    if not isinstance(raw.get("updates") or {}, dict):
        raise UsageError(f"{where}: 'updates' must be a JSON object")
    return raw


def _merge(base: dict, layer: dict, inherited: bool) -> dict:
    """`layer` over `base`, nested dicts merged key by key; "*key" only overrides existing keys.

    With `inherited` (merging an inherited file), a "*key" without a target is dropped, as in
    the reference; in a file's own updates it is kept as "*key" until that file is inherited."""
    merged = dict(base)
    for key, value in layer.items():
        target = key
        if key.startswith("*"):
            target = key[1:]
            if target not in merged:
                if inherited:
                    continue
                target = key
        old = merged.get(target)
        if isinstance(value, dict):
            merged[target] = _merge(old if isinstance(old, dict) else {}, value, inherited)
        else:
            merged[target] = copy.deepcopy(value)
    return merged


def _pending_overrides(node: dict, prefix: str = "") -> list[str]:
    found = []
    for key, value in node.items():
        if key.startswith("*"):
            found.append(prefix + key)
        elif isinstance(value, dict):
            found += _pending_overrides(value, f"{prefix}{key}.")
    return found


def _show(path: Path, root: Path) -> str:
    """A path as a user wrote it: relative to the configs root when it lies under it."""
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def apply_overrides(config: dict, items: list[str], where: str = "--set") -> dict:
    """`--set policy_config.batch_size=256` on a resolved config: the key must already exist
    (a typo is refused with the valid keys), the value is parsed as YAML and given the old
    value's type where that is lossless ('1e5' is a number), then the whole config is checked
    again. Returns a new dict."""
    config = copy.deepcopy(config)
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"{where} expects KEY=VALUE, got {item!r}")
        *parents, leaf = key.strip().split(".")
        node, path = config, ""
        for part in parents:
            path += part
            if not isinstance(node.get(part), dict):
                raise UsageError(f"{where} {key}: '{path}' is not a section of this config")
            node, path = node[part], path + "."
        if leaf not in node and key.strip() not in SETTABLE_DEFAULTS:
            raise UsageError(f"{where} {key}: unknown config key; keys here: "
                             f"{', '.join(sorted(k for k in node if not k.startswith('_')))}")
        old = node[leaf] if leaf in node else SETTABLE_DEFAULTS[key.strip()]
        node[leaf] = _typed(key, old, yaml.safe_load(raw) if raw.strip() else "")
    validate_config(config, where)
    return config


def _typed(key: str, old, new):
    """`new` with the type of `old` where that is lossless (YAML reads '1e5' as a string)."""
    if isinstance(old, bool) or old is None or isinstance(old, (dict, list)):
        return new
    if isinstance(old, (int, float)) and isinstance(new, bool) and not (new is False and key in FALSE_MEANS_NONE):
        raise UsageError(f"--set {key}: expects a number, got {str(new).lower()}")
    if isinstance(old, (int, float)) and isinstance(new, str):
        try:
            new = float(new)
        except ValueError:
            raise UsageError(f"--set {key}: expects a number, got {new!r}") from None
    if isinstance(old, int) and isinstance(new, float):
        if not new.is_integer():
            raise UsageError(f"--set {key}: expects a whole number, got {new!r}")
        return int(new)
    return new
