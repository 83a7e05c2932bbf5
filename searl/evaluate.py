"""Play a trained SEARL (or baseline) policy: the elite a run exported as `elite_policy.pt`.

    python searl/evaluate.py RUN_DIR --episodes 10            # noise-free episodes, mean return
    python searl/evaluate.py RUN_DIR/elite_policy.pt --episodes 20 --seed 3

`searl/train.py` writes `elite_policy.pt` into the run folder (SEARL: the elite just selected,
after every generation; the single-agent baselines: the agent, at the end). The file stands alone: the
weights, the architecture (hidden widths, skips, activation, LayerNorm eps), and how actions map
to the env (policy output in [-1, 1] scaled to the action bounds; observations are used raw, as in
training: SEARL does not normalise them). The file holds only tensors and plain Python values
(format "searl-policy/2"): `torch.load(path, weights_only=True)` reads it, and a few lines of
plain torch rebuild the network (searl/README.md, "Use it in your code").
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

if __package__ in (None, ""):  # run as a script: make this paper's package and common/ importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import ArgumentParser, UsageError, run_main  # noqa: E402
from common.envs import check_env_id, make_env  # noqa: E402
from common.runs import load_checkpoint, save_checkpoint  # noqa: E402
from searl.algorithm import to_env_action  # noqa: E402
from searl.evolvable import EvolvableMLP  # noqa: E402

ELITE_FILE = "elite_policy.pt"
FORMAT = "searl-policy/2"
LEGACY_FORMATS = ("searl-policy/1",)   # pickled modules / numpy arrays: read with weights_only=False


def export_policy(path, individual, config: dict, env) -> None:
    """Write `individual`'s acting network and what is needed to act with it (atomically), as
    plain data that `torch.load(path, weights_only=True)` reads: tensors, ints, floats, strings,
    bools, None, lists and dicts (the layout: searl/README.md, "Use it in your code")."""
    payload = {"format": FORMAT, "env": config["env"], "algorithm": config["algorithm"],
               "seed": int(config["seed"]), "individual": int(individual.index),
               "description": _plain(individual.describe())}
    if hasattr(individual, "actor"):  # TD3: a continuous policy in [-1, 1]
        payload.update(kind="td3", **td3_layout(individual.actor),
                       action_low=[float(v) for v in np.ravel(env.action_space.low)],
                       action_high=[float(v) for v in np.ravel(env.action_space.high)])
    else:  # DQN: greedy on the expected Q of the distributional network (mean weights)
        payload.update(kind="dqn", **dqn_layout(individual.net))
    save_checkpoint(payload, path)


def _plain(value):
    """`value` with numpy scalars and tuples turned into Python ints/floats/lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _module_spec(module: torch.nn.Module) -> list:
    """[torch.nn class name, *constructor args] that rebuild `module` (its weights aside)."""
    if isinstance(module, torch.nn.Linear):
        return ["Linear", module.in_features, module.out_features]
    if isinstance(module, torch.nn.LayerNorm):
        return ["LayerNorm", int(module.normalized_shape[0]), float(module.eps)]
    return [type(module).__name__]   # an activation, made with its default arguments


def _td3_blocks(actor: EvolvableMLP) -> list:
    """(hidden layer or None for the output, [its torch.nn modules in forward order]) per block:
    the order in which a file's `layers` and `state_dict` list them."""
    blocks = [(layer, [layer.linear, *([layer.norm] if layer.norm is not None else []), layer.act])
              for layer in actor.layers]
    return blocks + [(None, [actor.output, actor.output_act])]


def td3_layout(actor: EvolvableMLP) -> dict:
    """The actor as blocks of torch.nn modules: `layers` (one per hidden layer, then the output
    layer), each {"modules": [[class name, *args], ...], "skip": int, "alpha": float}, and
    `state_dict` keyed as torch.nn.Sequential(*all modules in order) keys it."""
    modules = [m for _, block in _td3_blocks(actor) for m in block]
    state_dict = {f"{i}.{k}": v.detach().cpu().clone()
                  for i, module in enumerate(modules) for k, v in module.state_dict().items()}
    layers = [{"modules": [_module_spec(m) for m in block], "skip": int(layer.skip if layer else 0),
               "alpha": float(layer.alpha.item()) if layer is not None and layer.skip else 0.0}
              for layer, block in _td3_blocks(actor)]
    return {"architecture": _plain(actor.architecture()), "layers": layers,
            "state_dict": state_dict}


def _td3_network(payload: dict) -> EvolvableMLP:
    """The EvolvableMLP a searl-policy/2 TD3 file describes: its modules, in the file's order,
    take the weights keyed by their index."""
    net = EvolvableMLP.from_architecture(payload["architecture"])
    modules = [m for _, block in _td3_blocks(net) for m in block]
    weights = [{} for _ in modules]
    for key, value in payload["state_dict"].items():
        index, name = key.split(".", 1)
        weights[int(index)][name] = value
    with torch.no_grad():
        for module, state in zip(modules, weights, strict=True):
            module.load_state_dict(state)
        for layer, block in zip(net.layers, payload["layers"]):
            if block["skip"]:
                layer.alpha.fill_(block["alpha"])
    return net


def _mean_weights(layer) -> tuple:
    """(weight, bias) a DQN layer acts with: a noisy layer's means, a plain layer's own."""
    if hasattr(layer, "weight_mu"):
        return layer.weight_mu, layer.bias_mu
    return layer.weight, layer.bias


def dqn_layout(net) -> dict:
    """The dueling C51 network on its mean weights (what acting uses): `convs` (torso, empty for
    vector observations) [{weight, bias, stride, padding [left, right, top, bottom], skip,
    alpha}], `value` and `advantage` streams [{weight, bias, skip, alpha}] (the last entry of
    each is the output layer), `activation` (a torch.nn class name), `support` (the atoms)."""
    from searl.dqn import padding_sides

    def entry(layer, **extra):
        weight, bias = _mean_weights(layer)
        return {"weight": weight.detach().cpu().clone(), "bias": bias.detach().cpu().clone(),
                **extra, "skip": int(layer.skip),
                "alpha": float(layer.alpha.item()) if layer.alpha is not None else 0.0}

    convs = [entry(conv, stride=int(conv.stride[0]),
                   padding=list(padding_sides(net.arch["paddings"][i])))
             for i, conv in enumerate(net.convs)]
    return {"obs_shape": list(net.obs_shape), "n_actions": int(net.n_actions),
            "activation": type(net.act).__name__, "convs": convs,
            "value": [entry(layer) for layer in net.value],
            "advantage": [entry(layer) for layer in net.advantage],
            "support": net.support.detach().cpu().clone(), "architecture": _plain(net.arch)}


def _dqn_network(payload: dict):
    """The DuelingC51Net a searl-policy/2 DQN file describes (eval mode: mean weights)."""
    from searl.dqn import DuelingC51Net

    support = payload["support"]
    net = DuelingC51Net(payload["obs_shape"], payload["n_actions"], payload["architecture"],
                        len(support), float(support[0]), float(support[-1]), 0.0)
    with torch.no_grad():
        net.support.copy_(support)
        for layers, entries in ((net.convs, payload["convs"]), (net.value, payload["value"]),
                                (net.advantage, payload["advantage"])):
            for layer, entry in zip(layers, entries, strict=True):
                weight, bias = _mean_weights(layer)
                weight.copy_(entry["weight"])
                bias.copy_(entry["bias"])
                if layer.alpha is not None:
                    layer.alpha.fill_(entry["alpha"])
    return net


class LoadedPolicy:
    """A policy read from an exported file: `act(obs)` returns the env's action."""

    def __init__(self, payload: dict):
        self.payload = payload
        self.kind, self.env_id = payload["kind"], payload["env"]
        if payload["format"] in LEGACY_FORMATS:
            self.net = (EvolvableMLP.from_architecture(payload["architecture"],
                                                       payload["state_dict"])
                        if self.kind == "td3" else payload["network"])
        else:
            self.net = _td3_network(payload) if self.kind == "td3" else _dqn_network(payload)
        self.net.eval()
        self.dtype = next(self.net.parameters()).dtype

    @torch.no_grad()
    def act(self, obs: np.ndarray):
        """The policy's action: in [-1, 1] (TD3; `action_low` / `action_high` in the file map
        it to the env's bounds, as `searl.algorithm.to_env_action` does) or an action index."""
        x = torch.as_tensor(np.asarray(obs)).unsqueeze(0)
        x = x if x.dtype == torch.uint8 else x.to(self.dtype)   # Atari frames stay uint8
        if self.kind == "td3":
            return self.net(x)[0].numpy()
        return int(self.net.q_values(x).argmax(1).item())


def load_policy(path) -> LoadedPolicy:
    """The policy in `path` (a run folder or the file itself); one clear UsageError if not.
    A searl-policy/2 file is read with weights_only=True; an older searl-policy/1 file (pickled
    network, numpy bounds) only with weights_only=False, so only load files you trust."""
    path = Path(path)
    if path.is_dir():
        path = path / ELITE_FILE
    if not path.is_file():
        raise UsageError(f"no exported policy at {path}: pass a SEARL run folder (holding "
                         f"{ELITE_FILE}) or the file itself")
    try:
        payload = load_checkpoint(path, weights_only=True)
    except UsageError:  # a searl-policy/1 file (pickled classes), or a truncated/foreign one
        payload = load_checkpoint(path)     # a truncated or foreign file: its one-line UsageError
        if isinstance(payload, dict) and payload.get("format") in LEGACY_FORMATS:
            print(f"note: {path} is a {payload['format']} file (pickled; torch.load needs "
                  f"weights_only=False for it); a new run exports {FORMAT}", file=sys.stderr)
    if not isinstance(payload, dict) or payload.get("format") not in (FORMAT, *LEGACY_FORMATS):
        raise UsageError(f"{path} is not a SEARL policy file (expected format {FORMAT})")
    return LoadedPolicy(payload)


def play(policy: LoadedPolicy, env_id: str, episodes: int, seed: int) -> list[float]:
    """Noise-free episodes; returns each episode's undiscounted return."""
    env = _make_env(env_id, seed)
    if policy.kind == "td3" and env.observation_space.shape != (policy.payload["architecture"]["in_dim"],):
        raise UsageError(f"the policy takes {policy.payload['architecture']['in_dim']} observations; "
                         f"{env_id} gives {env.observation_space.shape}: pass the env it was trained on "
                         f"({policy.env_id})")
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(
                to_env_action(policy.act(obs), env.action_space))
            total, done = total + float(reward), terminated or truncated
        returns.append(total)
    env.close()
    return returns


def _make_env(env_id: str, seed: int):
    from searl.atari import is_atari, make_atari_env

    return make_atari_env(env_id, seed) if is_atari(env_id) else make_env(env_id, seed)


def parse_args(argv):
    parser = ArgumentParser(prog="searl/evaluate.py", description=__doc__,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("policy", help=f"a SEARL run folder (with {ELITE_FILE}) or the file")
    parser.add_argument("--episodes", type=int, default=10, help="episodes to play (default: 10)")
    parser.add_argument("--env", default=None,
                        help="env id (default: the one the policy was trained on)")
    parser.add_argument("--seed", type=int, default=1000,
                        help="episode i resets with seed + i (default: 1000)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.episodes < 1:
        raise UsageError(f"--episodes must be at least 1, got {args.episodes}")
    if args.seed < 0:   # gymnasium takes no negative seed
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    policy = load_policy(args.policy)
    env_id = args.env or policy.env_id
    check_env_id(env_id)
    torch.set_num_threads(1)
    returns = play(policy, env_id, args.episodes, args.seed)
    described = policy.payload["description"]
    print(f"{policy.payload['algorithm']} individual {policy.payload['individual']} "
          f"({described.get('hidden', '')}, {described.get('actor_activation', described.get('activation', ''))}) "
          f"on {env_id}: mean return {np.mean(returns):.1f} +- {np.std(returns):.1f} over "
          f"{len(returns)} episodes (min {min(returns):.1f}, max {max(returns):.1f})")


if __name__ == "__main__":
    run_main(main, prog="searl/evaluate.py")
