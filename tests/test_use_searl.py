"""searl's portable policy file ("searl-policy/2"): torch.load(weights_only=True) reads it, the
README's plain-torch lines rebuild TD3 actors and DQN networks (grown ones included) with the
original outputs, evaluate.py still plays it; and the README's "Use it in your code" example
(SEARL-TD3 on an env defined in the example) run from a copy of searl/ + common/."""
import pickle
import time
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import readme_example, run_readme_example

from common.runs import save_checkpoint
from searl.dqn import DQNIndividual
from searl.evaluate import FORMAT, export_policy, load_policy
from searl.evolvable import EvolvableMLP

TOL = 1e-6
CONFIG = {"env": "Pendulum-v1", "algorithm": "searl_td3", "seed": 0}


@pytest.fixture(scope="module")
def readme():
    """The README example's definitions (its __main__ part, the training run, is not run)."""
    namespace = {"__name__": "searl_readme"}
    exec(compile(readme_example("searl"), "searl/README.md", "exec"), namespace)
    return namespace


@torch.no_grad()
def perturb(net, scale=0.1, seed=0):
    """Move every parameter (zero-initialised ones and ReZero alphas included), so that a rebuild
    that dropped a skip, a padding side or an eps would show."""
    generator = torch.Generator().manual_seed(seed)
    for param in net.parameters():
        param.add_(scale * torch.randn(param.shape, generator=generator, dtype=param.dtype))


def td3_actor(grow: str) -> EvolvableMLP:
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    actor = EvolvableMLP(3, 2, [16], "relu", "tanh", True)
    if grow in ("nodes", "layers"):
        actor.add_nodes(0, 16, rng)               # LayerNorm eps rescaled by 16/32
        actor.set_activation("elu")
    if grow == "layers":
        actor.add_layer(rng)                      # residual layer: skip 32
        actor.add_nodes(1, 8, rng)                # wider than its skip
        actor.add_nodes(0, 4, rng)
        actor.set_activation("tanh")
    perturb(actor)
    return actor.eval()


def export_td3(tmp_path, actor):
    individual = SimpleNamespace(actor=actor, index=4, describe=lambda: {"hidden": "x"})
    space = gym.spaces.Box(np.array([-2.0, -1.0], np.float32), np.array([2.0, 1.0], np.float32))
    path = tmp_path / "td3.pt"
    export_policy(path, individual, CONFIG, SimpleNamespace(action_space=space))
    return path


@pytest.mark.parametrize("grow", ["none", "nodes", "layers"])
def test_td3_export_loads_weights_only_and_the_readme_lines_rebuild_it(grow, tmp_path, readme):
    actor = td3_actor(grow)
    path = export_td3(tmp_path, actor)
    p = torch.load(path, weights_only=True)
    assert p["format"] == FORMAT == "searl-policy/2" and p["kind"] == "td3"
    assert p["action_low"] == [-2.0, -1.0] and p["action_high"] == [2.0, 1.0]
    if grow == "nodes":
        assert p["layers"][0]["modules"][1] == ["LayerNorm", 32, pytest.approx(1e-5 / 2)]
    x = torch.randn(64, 3)
    with torch.no_grad():
        expected = actor(x)
        rebuilt = readme["td3_actor"](p)(x)
        assert (rebuilt - expected).abs().max() <= TOL
        assert torch.equal(load_policy(path).net(x), expected)   # evaluate.py's loader: exact
        if grow == "layers":
            assert p["architecture"]["skips"] == [0, 32] and p["layers"][1]["alpha"] != 0.0
            sequential_wrong = readme["td3_sequential"](p)(x)    # ignores the skip: must differ
            assert (sequential_wrong - expected).abs().max() > 1e-3
        else:
            sequential = readme["td3_sequential"](p)
            assert isinstance(sequential, torch.nn.Sequential)
            assert (sequential(x) - expected).abs().max() <= TOL


def dqn_individual(obs_shape, grow: bool) -> DQNIndividual:
    config = {"channels": [8, 8], "kernels": [4, 3], "strides": [2, 1], "hidden": [16],
              "node_increments": [8], "channel_increments": [4]}
    individual = DQNIndividual(2, obs_shape, 3, config, seed=0)
    if grow:
        rng = np.random.default_rng(0)
        individual._add_mlp_layer(rng)            # residual stream layers
        individual._add_nodes(rng, layer=1)
        individual._add_nodes(rng, layer=0)
        if len(obs_shape) == 3:
            individual._add_cnn_layer(rng)        # residual conv, 'same' padding
            grown = individual._set_kernel(1, 4, rng)   # 3 -> 4: padding [0, 1, 0, 1]
            assert grown.endswith("(function-preserving)")
            individual._set_kernel(2, 4, rng)     # the residual conv's kernel too
            individual._add_channels(rng, layer=1)
        individual.mutate_activation(rng)
    perturb(individual.net, scale=0.05)
    individual.net.eval()
    return individual


@pytest.mark.parametrize("obs_shape, grow", [((4,), False), ((4,), True), ((2, 20, 20), False),
                                             ((2, 20, 20), True)])
def test_dqn_export_loads_weights_only_and_the_readme_lines_rebuild_it(obs_shape, grow, tmp_path,
                                                                       readme):
    individual = dqn_individual(obs_shape, grow)
    path = tmp_path / "dqn.pt"
    export_policy(path, individual, {**CONFIG, "algorithm": "searl_dqn"}, None)
    p = torch.load(path, weights_only=True)
    assert p["format"] == "searl-policy/2" and p["kind"] == "dqn"
    if grow and len(obs_shape) == 3:
        assert [c["skip"] for c in p["convs"]] == [0, 0, 8]
        assert any(len(set(c["padding"])) > 1 for c in p["convs"])   # uneven per-side padding
    if grow:
        assert any(layer["skip"] for layer in p["value"]) and p["activation"] != "ReLU"
    x = torch.randint(0, 256, (8, *obs_shape), dtype=torch.uint8) if len(obs_shape) == 3 \
        else torch.randn(8, *obs_shape)
    with torch.no_grad():
        expected = individual.net.q_values(x)
        assert (readme["dqn_q_values"](p, x) - expected).abs().max() <= TOL
        loaded = load_policy(path)
        assert (loaded.net.q_values(x) - expected).abs().max() <= TOL
    assert loaded.act(x[0].numpy()) == int(expected[0].argmax())


def test_a_searl_policy_1_file_still_plays_with_a_note(tmp_path, capsys):
    actor = td3_actor("none")
    legacy = {"format": "searl-policy/1", "env": "Pendulum-v1", "algorithm": "searl_td3",
              "seed": 0, "individual": 0, "description": {}, "kind": "td3",
              "architecture": actor.architecture(), "state_dict": actor.state_dict(),
              "action_low": np.array([-2.0]), "action_high": np.array([2.0])}
    save_checkpoint(legacy, tmp_path / "old.pt")
    with pytest.raises(pickle.UnpicklingError):   # weights_only refuses numpy arrays
        torch.load(tmp_path / "old.pt", weights_only=True)
    x = torch.randn(4, 3)
    assert torch.equal(load_policy(tmp_path / "old.pt").net(x), actor(x))
    note = capsys.readouterr().err
    assert note.count("\n") == 1 and "searl-policy/1" in note and "weights_only=False" in note


def test_the_rebuild_lines_are_short(readme):
    text = readme_example("searl")
    body = text.split("def td3_actor", 1)[1].split("\ndef ", 1)[0]
    assert len(body.strip().splitlines()) <= 10
    body = text.split("def td3_sequential", 1)[1].split("\ndef ", 1)[0]
    assert len(body.strip().splitlines()) <= 10


@pytest.mark.slow
def test_readme_example_trains_on_its_own_env_and_plays_the_weights_only_elite(tmp_path):
    start = time.perf_counter()
    result = run_readme_example("searl", tmp_path)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.count("return") >= 3
    assert time.perf_counter() - start < 120
