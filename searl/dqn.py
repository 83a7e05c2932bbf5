"""The SEARL-DQN individual (paper Sec. 4.2 and Appendix C): a dueling, distributional (C51)
DQN with noisy linear layers whose hyperparameters and architecture evolve.

Network (reference `EvolvableCnnDQN`): a torso (CNN for image stacks, uint8 divided by 255;
flatten for vector observations) feeding two separate MLP streams, value and advantage, whose
linear layers are all NoisyLinear (factorised Gaussian, Fortunato et al. 2018). The dueling
combination is applied to the atom logits, then a softmax over the 51 atoms on [v_min, v_max].
Train mode = noisy weights, eval mode = mean weights (noise off), as in the reference.

Learning (reference `DQNTraining.update_parameters`): at the start of every `learn` call the
target network is re-copied from the online network and Adam is re-created; one-step C51
targets (Bellemare et al. 2017) with the next action chosen by the target network's expected Q;
cross-entropy loss; the noise of both networks is resampled every 5th update and the target
follows by a soft update (tau) every 2nd update; no gradient clipping.

Deviations from the reference, each marked `Deviation:` where it is implemented:
- the C51 projection gives all the mass to the atom when b = (Tz - v_min) / dz is an integer
  (the reference's floor/ceil split drops that mass, e.g. a terminal reward of 0 on [-10, 10]);
- the loss uses log_softmax of the logits instead of log(prob clamped in place to [0.01, 0.99]);
- `act(obs, explore=True)` acts on noisy weights, resampled every step. The reference evaluates
  fitness episodes in eval mode, i.e. on the mean weights, with no epsilon and no noise: call
  `act(obs, explore=False)` for that behaviour;
- architecture growth: new conv layers are appended with stride 1 and 'same' padding (the
  reference re-assigns every layer's stride from a fixed table and can reach an empty feature
  map: kernels [8, 7, 7, 7], strides [2, 2, 2, 1] on 84x84); with `preserve_function` (default)
  added nodes/channels get zero outgoing weights (output unchanged exactly), an added layer starts
  as the identity (exact for relu), a changed kernel keeps its old weights centred;
  `preserve_function: False` gives the reference's overlapping slice copy with fresh weights;
- mutations that cannot change anything (a layer at its size limit) pick another layer, or say
  "no-op" when none can grow, instead of silently doing nothing.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from common.cli import UsageError
from common.nets import activation as make_activation
from searl.mutations import mutate_scalar, parameter_noise

DQN_DEFAULTS: dict = {
    # distributional dueling network (reference EvolvableCnnDQN)
    "num_atoms": 51, "v_min": -10.0, "v_max": 10.0,
    "channels": [32, 32], "kernels": [8, 4], "strides": [4, 2],
    "paddings": None,            # None = no padding for the initial conv layers (Nature torso)
    "hidden": [128], "activation": "relu",
    "noise_std": 0.4,            # NoisyLinear sigma_0 (reference std_init)
    # training (reference DQNTraining)
    "lr": 1e-4, "batch_size": 128, "gamma": 0.99,
    "tau": 0.005,                # soft target update; the DQN config is not public, TD3's is 0.005
    "target_update_every": 2,    # soft update every 2nd gradient step (reference)
    "noise_reset_every": 5,      # resample online and target noise every 5th step (reference)
    "reward_clip": None,         # e.g. 1.0 to clip rewards in the targets (not in the reference)
    # mutation (reference mutation_cnn / EvolvableCnnDQN hard limits)
    "max_mlp_layers": 3, "max_cnn_layers": 6, "max_channels": 256, "max_nodes": 1024,
    "kernel_choices": [3, 4, 5, 7], "channel_increments": [8, 16, 32],
    "node_increments": [32, 64, 128],
    "activations": ["relu", "elu", "gelu"],
    "lr_min": 1e-5, "lr_max": 5e-3,
    "preserve_function": True,
    # SEARL re-creates the target network and Adam at every `learn` call (reference); the
    # single-agent DQN baseline sets False and keeps both across its one-update calls.
    "reset_each_learn": True,
    # Fitness episodes act greedily on the mean weights in the reference (no exploration but the
    # population's own diversity); True acts on freshly resampled noisy weights instead.
    "noisy_exploration": False,
}

# Architecture mutation probabilities (reference `architecture_mutate`).
ARCHITECTURE_MUTATIONS = {"mlp_layer": 0.10, "cnn_layer": 0.10, "kernel": 0.10,
                          "channels": 0.35, "nodes": 0.35}


class NoisyLinear(nn.Module):
    """Factorised Gaussian noisy linear layer (Fortunato et al. 2018, Eq. 10-11):
    w = mu_w + sigma_w * f(eps_out) f(eps_in)^T, b = mu_b + sigma_b * f(eps_out),
    f(x) = sign(x) sqrt(|x|). Noisy in train mode, mean weights in eval mode (reference).
    Init as the reference: mu ~ U(+-1/sqrt(in)), sigma_w = std/sqrt(in), sigma_b = std/sqrt(out).
    """

    def __init__(self, in_features: int, out_features: int, std_init: float = 0.4):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight_mu = nn.Parameter(torch.empty(out_features, in_features))
        self.weight_sigma = nn.Parameter(torch.empty(out_features, in_features))
        self.bias_mu = nn.Parameter(torch.empty(out_features))
        self.bias_sigma = nn.Parameter(torch.empty(out_features))
        self.register_buffer("eps_in", torch.zeros(in_features))
        self.register_buffer("eps_out", torch.zeros(out_features))
        bound = 1.0 / math.sqrt(in_features)
        with torch.no_grad():
            self.weight_mu.uniform_(-bound, bound)
            self.bias_mu.uniform_(-bound, bound)
            self.weight_sigma.fill_(std_init / math.sqrt(in_features))
            self.bias_sigma.fill_(std_init / math.sqrt(out_features))

    @staticmethod
    def _scaled(rng: np.random.Generator, size: int) -> torch.Tensor:
        x = torch.from_numpy(rng.standard_normal(size).astype(np.float32))
        return x.sign() * x.abs().sqrt()

    @torch.no_grad()
    def reset_noise(self, rng: np.random.Generator) -> None:
        self.eps_in.copy_(self._scaled(rng, self.in_features))
        self.eps_out.copy_(self._scaled(rng, self.out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return F.linear(x, self.weight_mu, self.bias_mu)
        weight = self.weight_mu + self.weight_sigma * torch.outer(self.eps_out, self.eps_in)
        return F.linear(x, weight, self.bias_mu + self.bias_sigma * self.eps_out)


def conv_output_size(size: int, kernels, strides, paddings) -> int:
    """Spatial size after the conv stack (floor((s + 2p - k) / stride) + 1 per layer)."""
    for k, s, p in zip(kernels, strides, paddings):
        size = (size + 2 * p - k) // s + 1
    return size


class DuelingC51Net(nn.Module):
    """Torso -> value and advantage NoisyLinear streams -> dueling atom logits [B, A, atoms].

    `arch` holds the evolvable part: channels, kernels, strides, paddings (conv torso; empty for
    vector observations), hidden (sizes of each stream's hidden layers) and activation.
    """

    def __init__(self, obs_shape, n_actions: int, arch: dict, num_atoms: int, v_min: float,
                 v_max: float, noise_std: float):
        super().__init__()
        self.obs_shape, self.n_actions, self.num_atoms = tuple(obs_shape), n_actions, num_atoms
        self.noise_std = noise_std
        self.arch = copy.deepcopy(arch)
        self.image = len(self.obs_shape) == 3
        self.convs = nn.ModuleList()
        if self.image:
            in_channels = self.obs_shape[0]
            for c, k, s, p in zip(arch["channels"], arch["kernels"], arch["strides"],
                                  arch["paddings"]):
                self.convs.append(nn.Conv2d(in_channels, c, k, stride=s, padding=p))
                in_channels = c
            h = conv_output_size(self.obs_shape[1], arch["kernels"], arch["strides"],
                                 arch["paddings"])
            w = conv_output_size(self.obs_shape[2], arch["kernels"], arch["strides"],
                                 arch["paddings"])
            if h < 1 or w < 1:
                raise UsageError(f"conv torso {arch} maps {self.obs_shape} to an empty feature "
                                 f"map ({h}x{w})")
            self.feature_hw = (h, w)
            features = in_channels * h * w
        else:
            self.feature_hw = (1, 1)
            features = int(np.prod(self.obs_shape))
        self.value = self._stream(features, arch["hidden"], num_atoms)
        self.advantage = self._stream(features, arch["hidden"], num_atoms * n_actions)
        self.act = make_activation(arch["activation"])
        self.register_buffer("support", torch.linspace(v_min, v_max, num_atoms))

    def _stream(self, features: int, hidden, out: int) -> nn.ModuleList:
        sizes = [features, *hidden, out]
        return nn.ModuleList(NoisyLinear(a, b, self.noise_std) for a, b in zip(sizes, sizes[1:]))

    def noisy_layers(self):
        return [*self.value, *self.advantage]

    def reset_noise(self, rng: np.random.Generator) -> None:
        for layer in self.noisy_layers():
            layer.reset_noise(rng)

    def set_activation(self, name: str) -> None:
        self.act = make_activation(name)
        self.arch["activation"] = name

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        for conv in self.convs:
            x = self.act(conv(x))
        x = x.reshape(batch, -1)
        value, advantage = x, x
        for layer in self.value[:-1]:
            value = self.act(layer(value))
        for layer in self.advantage[:-1]:
            advantage = self.act(layer(advantage))
        value = self.value[-1](value).view(batch, 1, self.num_atoms)
        advantage = self.advantage[-1](advantage).view(batch, self.n_actions, self.num_atoms)
        return value + advantage - advantage.mean(1, keepdim=True)   # dueling (Wang et al.)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return distributions over the atoms, [B, A, atoms]."""
        return F.softmax(self.logits(x), dim=-1)

    def q_values(self, x: torch.Tensor) -> torch.Tensor:
        return (self.forward(x) * self.support).sum(-1)


def c51_projection(next_probs: torch.Tensor, rewards: torch.Tensor, terminated: torch.Tensor,
                   gamma: float, support: torch.Tensor) -> torch.Tensor:
    """Project r + gamma (1 - terminated) z onto the support (Bellemare et al. 2017, Alg. 1).

    next_probs [B, N] (distribution of the next state's chosen action), rewards/terminated [B].
    Deviation: when b lands exactly on an atom (l == u) the whole mass goes to it; the reference's
    (u - b) / (b - l) split gives it zero weight and loses that probability mass.
    """
    batch, n = next_probs.shape
    v_min, v_max = float(support[0]), float(support[-1])
    delta = (v_max - v_min) / (n - 1)
    tz = rewards[:, None] + gamma * (1.0 - terminated[:, None]) * support[None, :]
    b = (tz.clamp(v_min, v_max) - v_min) / delta
    lower, upper = b.floor().long(), b.ceil().long()
    lower_weight = upper.float() - b
    upper_weight = b - lower.float()
    exact = lower == upper
    lower_weight = torch.where(exact, torch.ones_like(b), lower_weight)
    offset = (torch.arange(batch, device=next_probs.device) * n)[:, None]
    projected = torch.zeros(batch * n, dtype=next_probs.dtype, device=next_probs.device)
    projected.index_add_(0, (lower + offset).reshape(-1), (next_probs * lower_weight).reshape(-1))
    projected.index_add_(0, (upper + offset).reshape(-1), (next_probs * upper_weight).reshape(-1))
    return projected.view(batch, n)


def _copy_overlap(new: torch.Tensor, old: torch.Tensor, centre_spatial: bool = False) -> None:
    """Copy the overlapping slice of `old` into `new` (reference `preserve_parameters`); conv
    kernels are aligned at their centres when `centre_spatial` (ours) instead of their corners."""
    dims = [min(a, b) for a, b in zip(new.shape, old.shape)]
    new_index = [slice(0, d) for d in dims]
    old_index = [slice(0, d) for d in dims]
    if centre_spatial and new.dim() == 4:
        for axis in (2, 3):
            shift = (new.shape[axis] - old.shape[axis]) // 2
            if shift >= 0:
                new_index[axis] = slice(shift, shift + dims[axis])
            else:
                old_index[axis] = slice(-shift, -shift + dims[axis])
    new[tuple(new_index)] = old[tuple(old_index)]


class DQNIndividual:
    """One member of the SEARL-DQN population: network, hyperparameters, lineage and fitness."""

    def __init__(self, index: int, obs_shape, n_actions: int, config: dict, seed: int,
                 device="cpu"):
        unknown = set(config) - set(DQN_DEFAULTS)
        if unknown:
            raise UsageError(f"unknown SEARL-DQN config key(s) {sorted(unknown)}; allowed: "
                             f"{', '.join(DQN_DEFAULTS)}")
        self.config = copy.deepcopy({**DQN_DEFAULTS, **config})
        cfg = self.config
        self.index, self.parent, self.mutation = int(index), None, "init"
        self.fitness: list[float] = []
        self.train_steps = 0
        self.obs_shape, self.n_actions = tuple(obs_shape), int(n_actions)
        self.device = torch.device(device)
        root = np.random.default_rng(seed)
        init_seed = int(root.integers(2 ** 62))
        self.noise_rng = np.random.default_rng(int(root.integers(2 ** 62)))
        image = len(self.obs_shape) == 3
        n_conv = len(cfg["channels"]) if image else 0
        if image and not (len(cfg["kernels"]) == len(cfg["strides"]) == n_conv):
            raise UsageError("channels, kernels and strides must have the same length")
        if image and n_conv == 0:
            raise UsageError("image observations need at least one conv layer ('channels')")
        if not cfg["hidden"]:
            raise UsageError("'hidden' needs at least one layer size")
        paddings = cfg["paddings"] if cfg["paddings"] is not None else [0] * n_conv
        arch = {"channels": list(cfg["channels"])[:n_conv] if image else [],
                "kernels": list(cfg["kernels"])[:n_conv] if image else [],
                "strides": list(cfg["strides"])[:n_conv] if image else [],
                "paddings": list(paddings)[:n_conv] if image else [],
                "hidden": list(cfg["hidden"]), "activation": cfg["activation"]}
        self.net = self._build(arch, init_seed)
        self.target = self.optimizer = None  # kept between calls only without reset_each_learn

    # -- network plumbing ------------------------------------------------------------------
    def _build(self, arch: dict, init_seed: int) -> DuelingC51Net:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):   # layer inits leave the global stream alone
            torch.manual_seed(init_seed)
            net = DuelingC51Net(self.obs_shape, self.n_actions, arch, cfg["num_atoms"],
                                cfg["v_min"], cfg["v_max"], cfg["noise_std"])
        net.reset_noise(self.noise_rng)
        return net.to(self.device)

    @property
    def arch(self) -> dict:
        return self.net.arch

    def _regrow(self, arch: dict, rng: np.random.Generator) -> DuelingC51Net:
        """A new network with `arch`, holding the old network's overlapping weight slices."""
        old = self.net
        new = self._build(arch, int(rng.integers(2 ** 62)))
        centre = bool(self.config["preserve_function"])
        with torch.no_grad():
            for a, b in zip(new.convs, old.convs):
                _copy_overlap(a.weight, b.weight, centre_spatial=centre)
                _copy_overlap(a.bias, b.bias)
            for new_stream, old_stream in ((new.value, old.value),
                                           (new.advantage, old.advantage)):
                pairs = list(zip(new_stream[:-1], old_stream[:-1]))
                pairs.append((new_stream[-1], old_stream[-1]))   # output layers correspond
                for a, b in pairs:
                    for name in ("weight_mu", "weight_sigma", "bias_mu", "bias_sigma"):
                        _copy_overlap(getattr(a, name), getattr(b, name))
        return new

    # -- acting ----------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool) -> int:
        """Greedy action on the expected Q of one observation, on the mean weights (reference);
        with `explore` and `noisy_exploration`, on freshly resampled noisy weights."""
        x = torch.as_tensor(np.asarray(obs)).unsqueeze(0).to(self.device)
        if explore and self.config["noisy_exploration"]:
            self.net.train()
            self.net.reset_noise(self.noise_rng)
        else:
            self.net.eval()
        return int(self.net.q_values(x).argmax(1).item())

    # -- learning --------------------------------------------------------------------------
    def learn(self, buffer, n_updates: int, rng: np.random.Generator) -> dict:
        """`n_updates` C51 gradient steps on batches drawn uniformly from `buffer` with `rng`."""
        if n_updates <= 0:
            return {"loss": float("nan"), "updates": 0}
        if len(buffer) == 0:
            raise ValueError("cannot learn from an empty replay buffer")
        cfg = self.config
        net = self.net
        net.train()
        # Reference: a fresh target copy and a fresh optimizer at every training phase.
        if cfg["reset_each_learn"] or self.target is None:
            self.target = copy.deepcopy(net)
            self.target.train()
            for p in self.target.parameters():
                p.requires_grad_(False)
            self.optimizer = torch.optim.Adam(net.parameters(), lr=cfg["lr"], fused=True)
        target, optimizer = self.target, self.optimizer
        online_params, target_params = list(net.parameters()), list(target.parameters())
        support, gamma, batch_size = net.support, cfg["gamma"], int(cfg["batch_size"])
        rows = torch.arange(batch_size, device=self.device)
        loss_sum = torch.zeros((), device=self.device)
        first = 0 if cfg["reset_each_learn"] else self.train_steps  # schedules below count from here
        for it in range(first, first + n_updates):
            batch = buffer.batch_at(rng.integers(0, len(buffer), size=batch_size))
            obs, next_obs = batch.obs.to(self.device), batch.next_obs.to(self.device)
            actions = batch.actions.to(self.device).long().view(-1)
            rewards = batch.rewards.to(self.device)
            if cfg["reward_clip"] is not None:
                rewards = rewards.clamp(-cfg["reward_clip"], cfg["reward_clip"])
            terminated = batch.terminated.to(self.device)   # never truncated: keeps bootstrapping
            with torch.no_grad():
                next_dist = target(next_obs)
                next_action = (next_dist * support).sum(-1).argmax(1)   # target's own argmax
                target_dist = c51_projection(next_dist[rows, next_action], rewards, terminated,
                                             gamma, support)
            # Deviation: log_softmax instead of log of probabilities clamped to [0.01, 0.99].
            log_probs = F.log_softmax(net.logits(obs), dim=-1)[rows, actions]
            loss = -(target_dist * log_probs).sum(-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if it % cfg["noise_reset_every"] == 0:
                net.reset_noise(self.noise_rng)
                target.reset_noise(self.noise_rng)
            if it % cfg["target_update_every"] == 0 and it != 0:
                with torch.no_grad():
                    torch._foreach_lerp_(target_params, online_params, cfg["tau"])
            loss_sum += loss.detach()
        self.train_steps += n_updates
        if cfg["reset_each_learn"]:  # nothing to carry (or to pickle) to the next call
            self.target = self.optimizer = None
        return {"loss": float(loss_sum) / n_updates, "updates": n_updates}

    # -- evolution -------------------------------------------------------------------------
    def clone(self, index: int) -> "DQNIndividual":
        """An independent deep copy with a new index; parent = this index, fitness copied."""
        child = copy.deepcopy(self)
        child.index, child.parent, child.mutation = int(index), self.index, "none"
        child.noise_rng = np.random.default_rng(int(self.noise_rng.integers(2 ** 62)))
        return child

    def mutate_parameters(self, rng: np.random.Generator) -> str:
        """Gaussian parameter noise on the 2-D weights (reference: the state-dict matrices, i.e.
        the noisy layers' mu and sigma; conv kernels are 4-D and left alone)."""
        weights = [w for layer in self.net.noisy_layers()
                   for w in (layer.weight_mu, layer.weight_sigma)]
        changed = parameter_noise(weights, rng)
        self.mutation = f"parameters({changed} weights)"
        return self.mutation

    def mutate_activation(self, rng: np.random.Generator) -> str:
        """Switch torso and streams to another activation (reference: relu/elu/gelu)."""
        current = self.arch["activation"]
        choices = [a for a in self.config["activations"] if a != current]
        new = choices[int(rng.integers(len(choices)))]
        self.net.set_activation(new)
        self.mutation = f"activation({current} -> {new})"
        return self.mutation

    def mutate_rl_hyperparameter(self, rng: np.random.Generator) -> str:
        """lr x0.8 or x1.2, clipped to [lr_min, lr_max] (reference bounds 1e-5, 5e-3)."""
        old = self.config["lr"]
        self.config["lr"] = mutate_scalar(old, self.config["lr_min"], self.config["lr_max"], rng)
        self.optimizer = None
        self.mutation = f"rl_hyperparameter(lr {old:.4g} -> {self.config['lr']:.4g})"
        return self.mutation

    def mutate_architecture(self, rng: np.random.Generator) -> str:
        """One architecture change drawn with the reference's probabilities (vector observations:
        the MLP ones only, renormalised)."""
        kinds = list(ARCHITECTURE_MUTATIONS)
        if not self.net.image:
            kinds = ["mlp_layer", "nodes"]
        probs = np.array([ARCHITECTURE_MUTATIONS[k] for k in kinds])
        kind = kinds[int(rng.choice(len(kinds), p=probs / probs.sum()))]
        description = getattr(self, f"_add_{kind}" if kind != "kernel" else "_change_kernel")(rng)
        self.mutation = f"architecture({description})"
        return self.mutation

    def _apply(self, arch: dict, rng: np.random.Generator) -> DuelingC51Net:
        new = self._regrow(arch, rng)
        self.net = new
        self.target = self.optimizer = None  # parameter shapes changed
        return new

    def _add_mlp_layer(self, rng: np.random.Generator) -> str:
        hidden = self.arch["hidden"]
        if len(hidden) >= self.config["max_mlp_layers"]:
            return self._add_nodes(rng)      # reference: falls back to adding nodes
        arch = copy.deepcopy(self.arch)
        arch["hidden"] = hidden + [hidden[-1]]   # reference: a copy of the last hidden layer
        new = self._apply(arch, rng)
        if self.config["preserve_function"]:
            # The appended layer starts as the identity: exact after relu (relu(relu(x)) = relu(x)).
            with torch.no_grad():
                for stream in (new.value, new.advantage):
                    layer = stream[len(hidden)]
                    layer.weight_mu.copy_(torch.eye(hidden[-1]))
                    layer.bias_mu.zero_()
        return f"mlp layer {len(hidden)} added ({_join(arch['hidden'])})"

    def _add_nodes(self, rng: np.random.Generator) -> str:
        hidden = self.arch["hidden"]
        increments = self.config["node_increments"]
        amount = int(increments[rng.integers(len(increments))])
        layers = [i for i, h in enumerate(hidden) if h + amount <= self.config["max_nodes"]]
        if not layers:
            return f"no-op (+{amount} nodes: every layer at its limit)"
        layer = layers[int(rng.integers(len(layers)))]
        old_size = hidden[layer]
        arch = copy.deepcopy(self.arch)
        arch["hidden"][layer] += amount
        new = self._apply(arch, rng)
        if self.config["preserve_function"]:
            with torch.no_grad():   # new units' outgoing weights start at zero: output unchanged
                for stream in (new.value, new.advantage):
                    stream[layer + 1].weight_mu[:, old_size:] = 0.0
        return f"+{amount} nodes in mlp layer {layer} ({_join(arch['hidden'])})"

    def _add_cnn_layer(self, rng: np.random.Generator) -> str:
        if len(self.arch["channels"]) >= self.config["max_cnn_layers"]:
            return self._add_channels(rng)   # reference: falls back to adding channels
        arch = copy.deepcopy(self.arch)
        n = len(arch["channels"])
        # Deviation: appended with kernel 3, stride 1, padding 1 ('same'); the reference appends
        # kernel 3 but re-assigns all strides from a table (see the module docstring).
        arch["channels"].append(arch["channels"][-1])
        arch["kernels"].append(3)
        arch["strides"].append(1)
        arch["paddings"].append(1)
        new = self._apply(arch, rng)
        if self.config["preserve_function"]:
            with torch.no_grad():   # identity (Dirac) kernel: exact after relu
                nn.init.dirac_(new.convs[n].weight)
                new.convs[n].bias.zero_()
        return f"conv layer {n} added ({_join(arch['channels'])})"

    def _change_kernel(self, rng: np.random.Generator) -> str:
        n = len(self.arch["channels"])
        if n <= 1:
            return self._add_cnn_layer(rng)   # reference: adds a layer instead
        # Reference: one of the conv layers 1..3 (never the first), kernel from {3, 4, 5, 7}.
        layer = int(rng.integers(1, min(4, n)))
        arch = copy.deepcopy(self.arch)
        current = arch["kernels"][layer]
        padded = arch["paddings"][layer] > 0   # our appended 'same' layers keep (k - 1) // 2
        candidates = []
        for k in self.config["kernel_choices"]:
            if k == current:
                continue
            trial = copy.deepcopy(arch)
            trial["kernels"][layer] = k
            if padded:
                trial["paddings"][layer] = (k - 1) // 2
            size = min(conv_output_size(s, trial["kernels"], trial["strides"], trial["paddings"])
                       for s in self.obs_shape[1:])
            if size >= 1:
                candidates.append(trial)
        if not candidates:
            return f"no-op (no valid kernel for conv layer {layer})"
        arch = candidates[int(rng.integers(len(candidates)))]
        old_weight = self.net.convs[layer].weight
        new = self._apply(arch, rng)
        if self.config["preserve_function"]:
            # the old kernel sits at the centre of a zero kernel: with 'same' padding an odd
            # kernel that grows (3 -> 5 -> 7) computes exactly what it did before
            with torch.no_grad():
                new.convs[layer].weight.zero_()
                _copy_overlap(new.convs[layer].weight, old_weight, centre_spatial=True)
        return f"conv layer {layer} kernel {current}->{arch['kernels'][layer]}"

    def _add_channels(self, rng: np.random.Generator) -> str:
        channels = self.arch["channels"]
        increments = self.config["channel_increments"]
        amount = int(increments[rng.integers(len(increments))])
        layers = [i for i, c in enumerate(channels) if c + amount <= self.config["max_channels"]]
        if not layers:
            return f"no-op (+{amount} channels: every layer at its limit)"
        layer = layers[int(rng.integers(len(layers)))]
        old_size = channels[layer]
        arch = copy.deepcopy(self.arch)
        arch["channels"][layer] += amount
        new = self._apply(arch, rng)
        if self.config["preserve_function"]:
            with torch.no_grad():   # new channels' outgoing weights start at zero
                if layer + 1 < len(new.convs):
                    new.convs[layer + 1].weight[:, old_size:] = 0.0
                else:   # last conv: flattened (C, H, W) features, the new channels come last
                    h, w = new.feature_hw
                    for stream in (new.value, new.advantage):
                        stream[0].weight_mu[:, old_size * h * w:] = 0.0
        return f"+{amount} channels in conv layer {layer} ({_join(arch['channels'])})"

    # -- logging ---------------------------------------------------------------------------
    def describe(self) -> dict:
        arch = self.arch
        return {"hidden": _join(arch["hidden"]), "channels": _join(arch["channels"]),
                "kernels": _join(arch["kernels"]), "activation": arch["activation"],
                "lr": self.config["lr"], "batch_size": int(self.config["batch_size"])}


def _join(values) -> str:
    return "-".join(str(int(v)) for v in values)
