"""steve/config.py: inherits/updates/*key layering as in the reference, errors, shipped files."""
import json
import re
from pathlib import Path

import pytest

from common.cli import UsageError
from steve.config import (ALGOS, CONFIGS_ROOT, EXPLORATION_TYPES, apply_overrides, experiment_dir, experiment_name,
                          load_config, resolve_file)

EXPERIMENTS = sorted((CONFIGS_ROOT / "experiments").rglob("*.json"))


def write(root: Path, name: str, content) -> Path:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def resolve(root: Path, name: str) -> dict:
    """Merging alone, without the schema check that full experiment configs pass."""
    return resolve_file(root / name, root)


# ---- merge semantics ---------------------------------------------------------------------------

def test_inherits_merge_in_order_later_wins(tmp_path):
    write(tmp_path, "a.json", {"updates": {"x": 1, "d": {"p": 1, "q": 1}}})
    write(tmp_path, "b.json", {"updates": {"x": 2, "d": {"q": 2}}})
    write(tmp_path, "ab.json", {"inherits": ["a.json", "b.json"]})
    write(tmp_path, "ba.json", {"inherits": ["b.json", "a.json"]})
    assert resolve(tmp_path, "ab.json") == {"x": 2, "d": {"p": 1, "q": 2}}
    assert resolve(tmp_path, "ba.json") == {"x": 1, "d": {"p": 1, "q": 1}}


def test_updates_merge_nested_on_top_of_inherits(tmp_path):
    write(tmp_path, "sub/base.json", {"updates": {"p": {"v": {"h": 3, "flag": True}, "lr": 1}}})
    write(tmp_path, "top.json", {"inherits": ["sub/base.json"],
                                 "updates": {"p": {"v": {"h": 1}}, "new": [1, 2]}})
    assert resolve(tmp_path, "top.json") == {"p": {"v": {"h": 1, "flag": True}, "lr": 1},
                                             "new": [1, 2]}


def test_star_key_overrides_only_an_existing_key(tmp_path):
    write(tmp_path, "model.json", {"updates": {"m": {"size": 512, "n": 1}}})
    write(tmp_path, "plain.json", {"updates": {"p": 1}})
    write(tmp_path, "setup.json", {"updates": {"*m": {"n": 4}, "*s": 7}})
    write(tmp_path, "with.json", {"inherits": ["model.json", "setup.json"]})
    write(tmp_path, "without.json", {"inherits": ["plain.json", "setup.json"]})
    write(tmp_path, "before.json", {"inherits": ["setup.json", "model.json"]})
    assert resolve(tmp_path, "with.json") == {"m": {"size": 512, "n": 4}}
    assert resolve(tmp_path, "without.json") == {"p": 1}
    # as in the reference, the override applies when it is merged: here m did not exist yet
    assert resolve(tmp_path, "before.json") == {"m": {"size": 512, "n": 1}}


def test_nested_star_key_and_star_key_in_own_updates(tmp_path):
    write(tmp_path, "base.json", {"updates": {"p": {"v": {"h": 3}}}})
    write(tmp_path, "setup.json", {"updates": {"p": {"*v": {"h": 1}, "*w": {"h": 1}}}})
    write(tmp_path, "top.json", {"inherits": ["base.json", "setup.json"],
                                 "updates": {"*p": {"lr": 2}}})
    assert resolve(tmp_path, "top.json") == {"p": {"v": {"h": 1}, "lr": 2}}


# ---- errors ------------------------------------------------------------------------------------

def test_star_key_with_nothing_to_override_in_the_loaded_file_is_an_error(tmp_path):
    path = write(tmp_path, "exp.json", {"inherits": ["algos/ddpg.json", "envs/pendulum.json"],
                                        "updates": {"*model_config": {"pretrain_n": 5}}})
    with pytest.raises(UsageError, match=r"'\*model_config' overrides a key that no inherited"):
        load_config(path)
    nested = write(tmp_path, "exp2.json", {"inherits": ["algos/ddpg.json", "envs/pendulum.json"],
                                           "updates": {"policy_config": {"*bayesian": {}}}})
    with pytest.raises(UsageError, match=r"'policy_config\.\*bayesian'"):
        load_config(nested)


def test_inherits_cycle_is_named(tmp_path):
    write(tmp_path, "a.json", {"inherits": ["b.json"]})
    write(tmp_path, "b.json", {"inherits": ["a.json"]})
    with pytest.raises(UsageError, match=r"^inherits cycle: a\.json -> b\.json -> a\.json$"):
        load_config(tmp_path / "a.json", root=tmp_path)
    write(tmp_path, "self.json", {"inherits": ["self.json"]})
    with pytest.raises(UsageError, match=r"^inherits cycle: self\.json -> self\.json$"):
        load_config(tmp_path / "self.json", root=tmp_path)


def test_missing_file_names_the_file_and_who_inherits_it(tmp_path):
    write(tmp_path, "exp.json", {"inherits": ["algos/ddbg.json"]})
    with pytest.raises(UsageError, match=r"^config file not found: algos/ddbg\.json "
                                         r"\(inherited by exp\.json\)$"):
        load_config(tmp_path / "exp.json", root=tmp_path)
    with pytest.raises(UsageError, match="config file not found: .*nowhere.json$"):
        load_config(tmp_path / "nowhere.json", root=tmp_path)


def test_invalid_json_names_file_and_line(tmp_path):
    write(tmp_path, "bad.json", '{\n  "updates": {\n    "x": 1,\n  }\n}\n')
    write(tmp_path, "top.json", {"inherits": ["bad.json"]})
    with pytest.raises(UsageError, match=r"^invalid JSON in bad\.json at line 4 column 3: "):
        load_config(tmp_path / "top.json", root=tmp_path)


@pytest.mark.parametrize("raw, message", [
    ({"policy_config": {"hidden_dim": 64}}, "top-level keys are 'inherits' and 'updates'"),
    ({"inherits": "algos/ddpg.json"}, "'inherits' must be a list"),
    ([1, 2], "holds a JSON object, not list"),
])
def test_malformed_file(tmp_path, raw, message):
    with pytest.raises(UsageError, match=message):
        load_config(write(tmp_path, "exp.json", raw))


def experiment(tmp_path, algo_file, updates, env="pendulum"):
    return write(tmp_path, "exp.json", {"inherits": [algo_file, f"envs/{env}.json"],
                                        "updates": updates})


def test_unknown_algorithm_lists_the_allowed_ones(tmp_path):
    path = experiment(tmp_path, "algos/steve.json", {"policy_config": {"algo": "stve"}})
    with pytest.raises(UsageError, match=r"/exp\.json: unknown algorithm policy_config\.algo = "
                                         r"'stve'; choose one of: ddpg, mve_tdk, steve$"):
        load_config(path)
    assert ALGOS == ("ddpg", "mve_tdk", "steve")


@pytest.mark.parametrize("algo_file, updates, message", [
    ("algos/mve_tdk.json", {"policy_config": {"algo": "ddpg"}}, "'ddpg' is model-free"),
    ("algos/ddpg.json", {"policy_config": {"algo": "steve"}}, "'steve' needs model_config"),
    ("algos/mve_tdk.json", {"policy_config": {"algo": "steve"}}, "steve_reweight: true"),
    ("algos/steve.json", {"policy_config": {"algo": "mve_tdk"}}, "tdk_trick: true"),
    ("algos/steve.json", {"policy_config": {"value_expansion": {"rollout_len": 0}}},
     "rollout_len must be an integer >= 1"),
    ("algos/steve.json", {"policy_config": {"bayesian": {"eval_sample_count": 5}}},
     "cannot exceed ensemble_size"),
    ("algos/steve.json", {"policy_config": {"value_expansion": {"horizon": 3}}},
     "unknown config key 'policy_config.value_expansion.horizon'; valid keys here: rollout_len"),
    ("algos/ddpg.json", {"policy_config": {"explore_chance": 0.1}}, "ddpg_explore_chance"),
    ("algos/ddpg.json", {"policy_config": {"exploration": {"type": "ou"}}},
     "choose one of: " + ", ".join(EXPLORATION_TYPES)),
    ("algos/ddpg.json", {"policy_config": {"exploration": {"type": "gaussian", "std": 0.1}}},
     None),
    ("algos/ddpg.json", {"policy_config": {"frames_per_update": 0}}, "positive number or false"),
])
def test_inconsistent_or_unknown_settings(tmp_path, algo_file, updates, message):
    path = experiment(tmp_path, algo_file, updates)
    if message is None:  # a complete exploration block is fine
        load_config(path)
        return
    with pytest.raises(UsageError, match=message):
        load_config(path)


def test_missing_env_is_reported(tmp_path):
    path = write(tmp_path, "exp.json", {"inherits": ["algos/ddpg.json"]})
    with pytest.raises(UsageError, match="missing config key 'env'"):
        load_config(path)


# ---- shipped files -----------------------------------------------------------------------------

def test_shipped_experiments_cover_every_env_and_algo():
    names = {p.relative_to(CONFIGS_ROOT / "experiments").as_posix() for p in EXPERIMENTS}
    for env in ("halfcheetah", "hopper", "walker2d", "swimmer", "humanoid", "hardcore", "pendulum"):
        for algo in ALGOS:
            assert f"goodruns/{env}/{algo}0.json" in names
    assert "speedruns/humanoid/speedy_steve0.json" in names


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.relative_to(CONFIGS_ROOT).as_posix())
def test_every_shipped_experiment_loads(path):
    config = load_config(path)
    assert config["name"] == experiment_name(path) == path.stem
    # <algo><n>, speedy_<algo><n> or <algo>_<variant><n> (e.g. steve_full0: one setting changed)
    algo = config["policy_config"]["algo"]
    assert re.fullmatch(rf"(speedy_)?{algo}(_[a-z]+)?\d", path.stem), path.stem
    assert experiment_dir(config) == Path("output") / config["env"]["name"] / path.stem


def test_paper_values_humanoid_steve():
    config = load_config("experiments/goodruns/humanoid/steve0.json")
    policy, model = config["policy_config"], config["model_config"]
    assert policy["value_expansion"] == {"rollout_len": 3, "steve_reweight": True}
    assert policy["bayesian"] == {"ensemble_size": 4, "train_sample_count": 4,
                                  "eval_sample_count": 4}
    assert model["bayesian"]["transition"]["ensemble_size"] == 4
    assert model["bayesian"]["reward"]["ensemble_size"] == 4
    assert (policy["hidden_dim"], policy["hidden_layers"]) == (128, 3)
    assert (model["transition_hidden_dim"], model["transition_hidden_layers"]) == (512, 7)
    assert (model["aux_hidden_dim"], model["aux_hidden_layers"]) == (128, 3)
    for learner in (policy, model):
        assert learner["learning_rate"] == 3e-4
        assert learner["batch_size"] == 512
        assert learner["replay_size"] == 1_000_000
        assert learner["frames_before_learning"] == 10_000
        assert learner["frames_per_update"] == 0.25
        assert learner["epoch_every_n"] == 500
    assert model["pretrain_n"] == 10_000
    assert config["agent_config"]["full_random_n"] == 10_000
    assert policy["exploration"] == {"type": "per_dim_tanh_noise", "prob": 0.05, "std": 1.0}
    assert config["env"]["name"] == "Humanoid-v5"


def test_speedrun_unsyncs_learners_and_skips_pretraining(tmp_path):
    config = load_config("experiments/speedruns/humanoid/speedy_steve0.json")
    assert config["policy_config"]["frames_per_update"] is False
    assert config["model_config"]["frames_per_update"] is False
    assert config["model_config"]["pretrain_n"] is False
    # a model-free speedrun: the setup's '*model_config' finds nothing and is dropped
    path = write(tmp_path, "speedy_ddpg0.json", {"inherits": [
        "algos/ddpg.json", "envs/humanoid.json", "experimental_setups/speedrun.json"]})
    assert "model_config" not in load_config(path)


def test_pendulum_laptop_values():
    steve, mve, ddpg = (load_config(f"experiments/goodruns/pendulum/{algo}0.json")
                        for algo in ("steve", "mve_tdk", "ddpg"))
    assert steve["env"]["name"] == "Pendulum-v1" and steve["env"]["max_frames"] == 200
    assert steve["policy_config"]["value_expansion"]["rollout_len"] == 3
    assert steve["policy_config"]["bayesian"]["ensemble_size"] == 4
    assert steve["model_config"]["bayesian"]["transition"]["ensemble_size"] == 4
    assert mve["policy_config"]["value_expansion"] == {"rollout_len": 3, "tdk_trick": True}
    assert "bayesian" not in mve["policy_config"] and "bayesian" not in mve["model_config"]
    assert "model_config" not in ddpg and "value_expansion" not in ddpg["policy_config"]
    for config in (steve, mve, ddpg):
        policy = config["policy_config"]
        assert (policy["hidden_dim"], policy["batch_size"], policy["frames_before_learning"]) \
            == (64, 128, 1000)
        assert config["agent_config"]["full_random_n"] == 1000
    for config in (steve, mve):
        assert config["model_config"]["pretrain_n"] == 1000
        assert config["model_config"]["batch_size"] == 128


def test_env_dims_match_gymnasium():
    gym = pytest.importorskip("gymnasium")
    for path in sorted((CONFIGS_ROOT / "envs").glob("*.json")):
        env_config = json.loads(path.read_text())["updates"]["env"]
        try:
            env = gym.make(env_config["name"])
        except (gym.error.DependencyNotInstalled, ImportError):
            continue  # MuJoCo or Box2D missing here
        assert list(env.observation_space.shape) == env_config["obs_dims"], path.name
        assert env.action_space.shape == (env_config["action_dim"],), path.name
        env.close()


@pytest.mark.parametrize("updates, message", [
    ({"policy_config": {"learning_rate": -1e-3}}, "'policy_config.learning_rate' must be > 0"),
    ({"env": {"discount": float("nan")}}, "'env.discount' must be in [0, 1], got nan"),
    ({"model_config": {"batch_size": 0}}, "'model_config.batch_size' must be in [1, 1000000]"),
    ({"policy_config": {"exploration": {"prob": 1.5}}}, "'policy_config.exploration.prob' must be in [0, 1]"),
])
def test_values_out_of_range_are_refused_naming_the_key(tmp_path, updates, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"inherits": ["algos/steve.json", "envs/pendulum.json",
                                            "experimental_setups/laptop.json"], "updates": updates}))
    with pytest.raises(UsageError) as error:
        load_config(path)
    assert message in str(error.value)


@pytest.mark.parametrize("item, message", [
    ("policy_config.batch_size=true", "--set policy_config.batch_size: expects a number, got true"),
    ("model_config.pretrain_n=true", "--set model_config.pretrain_n: expects a number, got true"),
    ("policy_config.learning_rate=false", "--set policy_config.learning_rate: expects a number, got false"),
    ("policy_config.batch_size=1e30", "'policy_config.batch_size' must be in [1, 1000000]"),
    ("policy_config.replay_size=1e12", "'policy_config.replay_size' must be in [1, 100000000]"),
    ("policy_config.hidden_dim=1e9", "'policy_config.hidden_dim' must be in [1, 65536]"),
    ("agent_config.count=0", "'agent_config.count' must be in [1, 4096]"),
    ("agent_config.batch_size=0", "'agent_config.batch_size' must be in [1, 4096]"),
    ("evaluator_config.count=0", "'evaluator_config.count' must be in [1, 4096]"),
    ("evaluator_config.batch_size=0", "'evaluator_config.batch_size' must be in [1, 4096]"),
    ("agent_config.reload_every_n=0", "'agent_config.reload_every_n' must be >= 1"),
    # the routing keys, which --set adds to a config that leaves them out
    ("policy_config.q_routing=all", "policy_config.q_routing must be one of: random, full, got 'all'"),
    ("model_config.full_batch=1", "model_config.full_batch must be true or false, got 1"),
])
def test_set_refuses_booleans_for_numbers_sizes_past_memory_and_zero_counts(item, message):
    config = load_config("experiments/laptop/halfcheetah/steve0.json")
    with pytest.raises(UsageError) as error:
        apply_overrides(config, [item])
    assert message in str(error.value)


def test_a_boolean_number_in_a_config_file_is_refused(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"inherits": ["algos/steve.json", "envs/pendulum.json",
                                            "experimental_setups/laptop.json"],
                                "updates": {"model_config": {"batch_size": True}}}))
    with pytest.raises(UsageError) as error:
        load_config(path)
    assert "config key 'model_config.batch_size' must be a number, got true" in str(error.value)


def test_routing_keys_reach_the_learners_and_default_to_the_reference():
    from steve.train import make_world_model, value_config
    full = load_config("experiments/laptop/halfcheetah/steve_full0.json")
    assert value_config(full).q_routing == "full" and make_world_model(full, 17, 6, 0).full_batch is True
    reference = load_config("experiments/laptop/halfcheetah/steve0.json")
    assert "q_routing" not in reference["policy_config"] and "full_batch" not in reference["model_config"]
    assert value_config(reference).q_routing == "random" and make_world_model(reference, 17, 6, 0).full_batch is False
    switched = apply_overrides(reference, ["policy_config.q_routing=full", "model_config.full_batch=true"])
    assert value_config(switched).q_routing == "full" and make_world_model(switched, 17, 6, 0).full_batch is True
    ddpg = load_config("experiments/laptop/halfcheetah/ddpg0.json")
    with pytest.raises(UsageError, match="'model_config' is not a section"):
        apply_overrides(ddpg, ["model_config.full_batch=true"])
