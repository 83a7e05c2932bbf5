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
- architecture growth: new conv layers are appended with kernel 3, stride 1 and 'same' padding
  (the reference re-assigns every layer's stride from a fixed table and can reach an empty feature
  map: kernels [8, 7, 7, 7], strides [2, 2, 2, 1] on 84x84). `preserve_function: False` gives
  the reference's growth: a fresh network of the new shape holding the old weights' overlapping
  (corner-aligned) slices, which changes the output. With `preserve_function: True` (default),
  "exact" meaning the same logits on the mean weights (eval mode) up to float rounding:
  * added nodes / channels: exact for every activation. The new units get zero outgoing weights;
  * an added MLP or conv layer: exact for every activation. It is a ReZero residual layer
    h + alpha * act(W h + b) with alpha = 0 learned (Bachlechner et al. 2020, as the TD3 side),
    still a NoisyLinear layer in the streams and a 3x3 stride-1 'same' conv in the torso. Its
    shortcut carries the units h had when the layer was born, zero-padded to the layer's width
    (He et al. 2016), so that it and the layer before it grow independently, one layer per
    mutation as in the reference, and units added later stay out of the shortcut. (An identity
    / Dirac init would be exact only after relu: act(act(x)) = act(x) fails for elu and gelu.);
  * a changed kernel keeps the layer's output size, so that nothing downstream moves: the
    padding changes with the kernel, per side (F.pad, which crops for a negative side).
    A larger kernel is the old one inside a zero border (centred; one column/row more on the
    right/bottom for an odd growth) with the padding widened to match: exact for every change
    3->4/5/7, 4->5/7, 5->7. A smaller kernel keeps the old kernel's window with the most weight
    and drops the rest, which changes the output unless the dropped border is all zero (a kernel
    that just grew and shrinks back) or the layer is a residual one with alpha = 0; the mutation's
    description says "function-preserving" or "not function-preserving" accordingly. No exact
    construction exists in general: one smaller kernel cannot see the input the dropped weights
    saw. Cost: a kernel change never shrinks the feature map here (the reference's does on the
    unpadded Nature layers), so the streams' first layers get larger (after 60 random mutations
    on 84x84: a 9x9 map instead of 6x6);
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
    A residual layer (`skip` > 0) also holds the ReZero gain alpha, 0 at birth: the network
    computes h + alpha * act(layer(h)) with it (see `hidden_layer`).
    """

    def __init__(self, in_features: int, out_features: int, std_init: float = 0.4,
                 skip: int = 0):
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
        self.skip = int(skip)
        self.alpha = nn.Parameter(torch.zeros(())) if skip else None

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


def padding_sides(padding) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) of a conv layer's padding (F.pad's order); an int pads all four
    sides alike. A negative side crops."""
    if np.ndim(padding) == 0:
        return (int(padding),) * 4
    left, right, top, bottom = (int(p) for p in padding)
    return left, right, top, bottom


def _compact_padding(sides):
    """The form kept in `arch["paddings"]`: an int when all four sides agree, else a list."""
    return sides[0] if len(set(sides)) == 1 else list(sides)


def conv_output_hw(hw, kernels, strides, paddings) -> tuple[int, int]:
    """(H, W) after the conv stack (floor((s + pads - k) / stride) + 1 per layer); (0, 0) once
    the map is empty."""
    h, w = hw
    for k, s, p in zip(kernels, strides, paddings):
        left, right, top, bottom = padding_sides(p)
        h, w = (h + top + bottom - k) // s + 1, (w + left + right - k) // s + 1
        if h < 1 or w < 1:
            return 0, 0
    return h, w


class TorsoConv(nn.Conv2d):
    """A conv layer of the torso whose padding may differ per side, or crop: a changed kernel
    keeps every output value through that (`DQNIndividual._set_kernel`). A residual layer
    (`skip` > 0) holds the ReZero gain alpha, as `NoisyLinear` does."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, padding,
                 skip: int = 0):
        left, right, top, bottom = padding_sides(padding)
        plain = left == right >= 0 and top == bottom >= 0   # nn.Conv2d's own padding does it
        super().__init__(in_channels, out_channels, kernel, stride=stride,
                         padding=(top, left) if plain else 0)
        self.pad_sides = None if plain else (left, right, top, bottom)
        self.skip = int(skip)
        self.alpha = nn.Parameter(torch.zeros(())) if skip else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_sides is not None:
            x = F.pad(x, self.pad_sides)
        return super().forward(x)


def hidden_layer(layer: nn.Module, x: torch.Tensor, act: nn.Module) -> torch.Tensor:
    """act(layer(x)); for a residual layer x + alpha * act(layer(x)) (ReZero, Bachlechner et al.
    2020): with alpha = 0 it is the identity whatever the activation, so adding one is exact."""
    y = act(layer(x))
    return y if layer.alpha is None else _shortcut(x, layer.skip, y.shape[1]) + layer.alpha * y


def _shortcut(x: torch.Tensor, skip: int, width: int) -> torch.Tensor:
    """The identity on the first `skip` units (channels) of x, zero-padded to `width`.

    `skip` is the width the residual layer was born with. Growth may widen the layer or its
    input later (each layer grows on its own, as in the reference), and the units it adds must
    stay out of the shortcut: an input unit added later landing on a shortcut position that
    carried zero would change the output. (ResNet's zero-padding shortcut, He et al. 2016.)"""
    return F.pad(x[:, :skip], (0, 0) * (x.dim() - 2) + (0, width - skip))


class DuelingC51Net(nn.Module):
    """Torso -> value and advantage NoisyLinear streams -> dueling atom logits [B, A, atoms].

    `arch` holds the evolvable part: channels, kernels, strides, paddings (an int or
    [left, right, top, bottom] per layer), conv_skip (conv torso; empty for vector observations),
    hidden (sizes of each stream's hidden layers), hidden_skip and activation. A skip > 0 makes
    a residual layer (added by growth) whose shortcut carries that many leading units; a residual
    conv layer keeps its input's height and width.
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
            for c, k, s, p, skip in zip(arch["channels"], arch["kernels"], arch["strides"],
                                        arch["paddings"], arch["conv_skip"]):
                if skip and not (skip <= min(in_channels, c) and _keeps_size(k, s, p)):
                    raise ValueError(f"residual conv layer {len(self.convs)} cannot add its "
                                     f"input to its output: {arch}")
                self.convs.append(TorsoConv(in_channels, c, k, s, p, skip=skip))
                in_channels = c
            h, w = conv_output_hw(self.obs_shape[1:], arch["kernels"], arch["strides"],
                                  arch["paddings"])
            if h < 1 or w < 1:
                raise UsageError(f"conv torso {arch} maps {self.obs_shape} to an empty feature "
                                 f"map ({h}x{w})")
            self.feature_hw = (h, w)
            features = in_channels * h * w
        else:
            self.feature_hw = (1, 1)
            features = int(np.prod(self.obs_shape))
        widths = [features, *arch["hidden"]]
        if any(skip > min(a, b) for skip, a, b in zip(arch["hidden_skip"], widths, widths[1:])):
            raise ValueError(f"a residual mlp layer's skip exceeds its widths: {arch}")
        self.value = self._stream(features, arch["hidden"], arch["hidden_skip"], num_atoms)
        self.advantage = self._stream(features, arch["hidden"], arch["hidden_skip"],
                                      num_atoms * n_actions)
        self.act = make_activation(arch["activation"])
        self.register_buffer("support", torch.linspace(v_min, v_max, num_atoms))

    def _stream(self, features: int, hidden, skips, out: int) -> nn.ModuleList:
        sizes = [features, *hidden, out]
        return nn.ModuleList(NoisyLinear(a, b, self.noise_std, skip=skip)
                             for a, b, skip in zip(sizes, sizes[1:], [*skips, 0]))

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
            x = hidden_layer(conv, x, self.act)
        x = x.reshape(batch, -1)
        value, advantage = x, x
        for layer in self.value[:-1]:
            value = hidden_layer(layer, value, self.act)
        for layer in self.advantage[:-1]:
            advantage = hidden_layer(layer, advantage, self.act)
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


def _copy_overlap(new: torch.Tensor, old: torch.Tensor) -> None:
    """Copy the overlapping slice of `old` into `new` (reference `preserve_parameters`)."""
    overlap = tuple(slice(0, min(a, b)) for a, b in zip(new.shape, old.shape))
    new[overlap] = old[overlap]


def _keeps_size(kernel: int, stride: int, padding) -> bool:
    left, right, top, bottom = padding_sides(padding)
    return stride == 1 and left + right == top + bottom == kernel - 1


def _kernel_shift(weight: torch.Tensor, kernel: int) -> tuple[int, int]:
    """Where the old kernel sits in the new one: new[y, x] = old[y - shift_y, x - shift_x].

    Growth: centred in a zero border (shift >= 0; an odd growth leaves the extra row/column
    at the bottom/right). Shrink: the new kernel is the old kernel's window with the most weight
    (shift <= 0), so a kernel that grew and shrinks back gets exactly its old weights."""
    size = weight.shape[-1]
    if kernel >= size:
        return (kernel - size) // 2, (kernel - size) // 2
    energy = weight.detach().pow(2).sum((0, 1))
    room = size - kernel
    # the most central window first, so that it wins ties (e.g. an all-zero kernel)
    offsets = sorted(range(room + 1), key=lambda o: abs(2 * o - room))
    best = max(((y, x) for y in offsets for x in offsets),
               key=lambda yx: energy[yx[0]:yx[0] + kernel, yx[1]:yx[1] + kernel].sum().item())
    return -best[0], -best[1]


def _place_kernel(new: torch.Tensor, old: torch.Tensor, shift: tuple[int, int]) -> None:
    """new[..., y, x] = old[..., y - shift[0], x - shift[1]] where that exists, 0 elsewhere."""
    new_index, old_index = [slice(None), slice(None)], [slice(None), slice(None)]
    for axis, s in zip((2, 3), shift):
        lo, hi = max(0, s), min(new.shape[axis], old.shape[axis] + s)
        new_index.append(slice(lo, hi))
        old_index.append(slice(lo - s, hi - s))
    new.zero_()
    new[tuple(new_index)] = old[tuple(old_index)]


def _shifted_padding(padding, shift: tuple[int, int], growth: int):
    """The padding that keeps every output of a conv whose kernel grew by `growth` (< 0: shrank)
    with the old kernel moved by `shift`: output i reads input i * stride + u - left, so the
    left/top side moves with the shift and the sum of both sides with the kernel size."""
    left, right, top, bottom = padding_sides(padding)
    shift_y, shift_x = shift
    return _compact_padding((left + shift_x, right + growth - shift_x,
                             top + shift_y, bottom + growth - shift_y))


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
                "conv_skip": [0] * n_conv,   # plain layers; growth appends residual ones
                "hidden": list(cfg["hidden"]), "hidden_skip": [0] * len(cfg["hidden"]),
                "activation": cfg["activation"]}
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
        pairs = list(zip(new.convs, old.convs))
        for new_stream, old_stream in ((new.value, old.value), (new.advantage, old.advantage)):
            pairs += zip(new_stream[:-1], old_stream[:-1])
            pairs.append((new_stream[-1], old_stream[-1]))   # output layers correspond
        with torch.no_grad():
            for a, b in pairs:   # layers keep their index: growth appends at the end
                for name, param in a.named_parameters():
                    if getattr(b, name, None) is not None:   # alpha only on residual layers
                        _copy_overlap(param, getattr(b, name))
        return new

    # -- acting ----------------------------------------------------------------------------
    @torch.no_grad()
    def networks(self) -> list[nn.Module]:
        return [self.net]

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
        # Deviation (preserve_function): a residual layer with alpha = 0, the identity for every
        # activation; its shortcut carries the hidden[-1] units it is born with
        skip = hidden[-1] if self.config["preserve_function"] else 0
        arch["hidden_skip"] = self.arch["hidden_skip"] + [skip]
        self._apply(arch, rng)
        kind = "residual mlp layer" if skip else "mlp layer"
        return f"{kind} {len(hidden)} added ({_join(arch['hidden'])})"

    def _draw_growth(self, key: str, increments_key: str, limit_key: str, rng, layer,
                     units: str, kind: str):
        """(layer, amount): `amount` more units for arch[key][layer], the layer drawn among
        those with room when None; or the description of a no-op when none has room."""
        increments = self.config[increments_key]
        amount = int(increments[rng.integers(len(increments))])
        layers = [i for i, size in enumerate(self.arch[key]) if size + amount <= self.config[limit_key]]
        if layer is None:
            if not layers:
                return f"no-op (+{amount} {units}: every layer at its limit)"
            layer = layers[int(rng.integers(len(layers)))]
        elif layer not in layers:
            return f"no-op (+{amount} {units}: {kind} {layer} at its limit)"
        return layer, amount

    def _add_nodes(self, rng: np.random.Generator, layer: int | None = None) -> str:
        """Nodes for hidden `layer` (drawn among those below the limit when None)."""
        drawn = self._draw_growth("hidden", "node_increments", "max_nodes", rng, layer,
                                  "nodes", "mlp layer")
        if isinstance(drawn, str):
            return drawn
        layer, amount = drawn
        old_size = self.arch["hidden"][layer]
        arch = copy.deepcopy(self.arch)
        arch["hidden"][layer] += amount
        new = self._apply(arch, rng)
        if self.config["preserve_function"]:
            # new units' outgoing weights start at zero: output unchanged (they stay out of any
            # residual layer's shortcut, see `_shortcut`)
            with torch.no_grad():
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
        # Deviation (preserve_function): a residual layer with alpha = 0, as for mlp layers
        skip = arch["channels"][-1] if self.config["preserve_function"] else 0
        arch["conv_skip"].append(skip)
        self._apply(arch, rng)
        kind = "residual conv layer" if skip else "conv layer"
        return f"{kind} {n} added ({_join(arch['channels'])})"

    def _change_kernel(self, rng: np.random.Generator) -> str:
        n = len(self.arch["channels"])
        if n <= 1:
            return self._add_cnn_layer(rng)   # reference: adds a layer instead
        # Reference: one of the conv layers 1..3 (never the first), kernel from {3, 4, 5, 7}.
        layer = int(rng.integers(1, min(4, n)))
        kernels = [k for k in self.config["kernel_choices"]
                   if k != self.arch["kernels"][layer] and self._kernel_fits(layer, k)]
        if not kernels:
            return f"no-op (no valid kernel for conv layer {layer})"
        return self._set_kernel(layer, int(kernels[int(rng.integers(len(kernels)))]), rng)

    def _reference_padding(self, layer: int, kernel: int):
        """The reference's kernel change keeps the padding rule: none, or (k - 1) // 2 for our
        appended 'same' layers. A residual layer (grown while preserve_function was on) must
        keep its size for any kernel: k - 1 split over the two sides."""
        if self.arch["conv_skip"][layer]:
            before = (kernel - 1) // 2
            return _compact_padding((before, kernel - 1 - before) * 2)
        return (kernel - 1) // 2 if any(padding_sides(self.arch["paddings"][layer])) else 0

    def _kernel_fits(self, layer: int, kernel: int) -> bool:
        """Whether the feature map stays non-empty with conv `layer`'s kernel set to `kernel`."""
        if self.config["preserve_function"]:
            return True   # the padding follows the kernel: the output size never changes
        kernels, paddings = list(self.arch["kernels"]), list(self.arch["paddings"])
        kernels[layer], paddings[layer] = kernel, self._reference_padding(layer, kernel)
        return min(conv_output_hw(self.obs_shape[1:], kernels, self.arch["strides"],
                                  paddings)) >= 1

    def _set_kernel(self, layer: int, kernel: int, rng: np.random.Generator) -> str:
        """Conv `layer` gets a `kernel` x `kernel` kernel; the description says whether the
        network still computes what it did."""
        old = self.net.convs[layer]
        current = self.arch["kernels"][layer]
        arch = copy.deepcopy(self.arch)
        change = f"conv layer {layer} kernel {current}->{kernel}"
        arch["kernels"][layer] = kernel
        if not self.config["preserve_function"]:   # reference: corner-aligned slice copy
            arch["paddings"][layer] = self._reference_padding(layer, kernel)
            self._apply(arch, rng)
            return f"{change} (slice copy: not function-preserving)"
        # Deviation: the padding follows the kernel, so the output keeps its size and values
        shift = _kernel_shift(old.weight, kernel)
        arch["paddings"][layer] = _shifted_padding(arch["paddings"][layer], shift,
                                                   kernel - current)
        new = self._apply(arch, rng)
        with torch.no_grad():
            _place_kernel(new.convs[layer].weight, old.weight, shift)
            # exact iff no weight was dropped (always so for a growth), or the layer is a
            # residual one that still adds nothing
            kept = torch.empty_like(old.weight)
            _place_kernel(kept, new.convs[layer].weight, (-shift[0], -shift[1]))
            exact = torch.equal(kept, old.weight) or (old.alpha is not None
                                                      and old.alpha.item() == 0.0)
        if exact:
            return f"{change} (function-preserving)"
        return f"{change} (not function-preserving: a smaller kernel drops the old one's border)"

    def _add_channels(self, rng: np.random.Generator, layer: int | None = None) -> str:
        """Channels for conv `layer` (drawn among those below the limit when None)."""
        drawn = self._draw_growth("channels", "channel_increments", "max_channels", rng, layer,
                                  "channels", "conv layer")
        if isinstance(drawn, str):
            return drawn
        layer, amount = drawn
        old_size = self.arch["channels"][layer]
        arch = copy.deepcopy(self.arch)
        arch["channels"][layer] += amount
        new = self._apply(arch, rng)
        if self.config["preserve_function"]:
            with torch.no_grad():   # new channels' outgoing weights start at zero (as for nodes)
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
