"""SEARL's training step (Sec. 3.4) for a whole population at once: every individual's TD3
updates as ONE computation of stacked, padded tensors and batched matrix products.

SEARL trains each individual of a generation for the same number of TD3 updates on the shared
replay memory. The individuals are independent (own networks, learning rates, Adam states,
target networks, minibatches and target-policy noise), so their updates can run side by side:
parameter i of the stack belongs to individual i alone, the losses are summed over individuals,
and the gradient of the sum with respect to individual i's slice is exactly individual i's own
gradient. This is what `searl.td3.TD3Individual.learn` does one individual at a time, with the
same numbers (tests/test_searl_batched.py checks both paths agree after several generations of
growth and activation mutations).

Individuals of different shapes are batched by padding (`StackedMLP`):
- each hidden layer is padded to the widest network at that layer, with zero weights, and a
  unit mask keeps LayerNorm's mean and variance over each individual's own units (a masked
  LayerNorm); padded units stay exactly zero in value and gradient, so training leaves them 0;
- residual layers (searl.evolvable) keep their partial skip and their alpha; a network with
  fewer layers than the deepest passes through identity layers (used when the whole population
  acts together; training groups have one depth);
- each network's activation (relu, elu, tanh) is applied to its own rows.

What changes the shape of the computation (batch size, policy delay, optimizer, number of
layers) splits the population into groups that are each trained batched; learning rates, the
target-policy noise, widths and activations may differ within a group, so the default config
(mutating lr_actor and lr_critic) starts as one group.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
import torch.nn.functional as F

from common.activations import fast_activation
from common.compiling import compiled
from common.device import keep_freed_memory

ADAM_BETAS, EPS = (0.9, 0.999), 1e-8   # torch's defaults, as LeanAdam / torch.optim use
ADAMAX_BETAS, RMSPROP_ALPHA = (0.9, 0.999), 0.99
# numpy's tanh / elu kernels: torch's CPU ones are several times slower (common/activations.py)
ACTIVATION_FUNCTIONS = {name: fast_activation(name) for name in ("relu", "elu", "tanh")}
TANH = fast_activation("tanh")


class StackedMLP:
    """N `searl.evolvable.EvolvableMLP`s of any widths, depths and activations (same input and
    output sizes) as padded tensors of shape (N, ...); `forward(params, x)` maps (N, B, in) to
    (N, B, out). `params` are the stacked parameters (or detached copies, e.g. targets).
    Layer l is padded to the widest network at that layer (a network that has no layer l
    passes its last layer's units through it)."""

    def __init__(self, nets, device=None):
        first = nets[0].output.weight
        device = torch.device(device) if device is not None else first.device
        dtype = first.dtype
        self.device, self.dtype = device, dtype
        self.depth = max(len(net.layers) for net in nets)
        self.widths = [max(net.hidden[min(l, len(net.hidden) - 1)] for net in nets)
                       for l in range(self.depth)]
        self.layer_norm = nets[0].layer_norm
        self.output_tanh = nets[0].output_activation == "tanh"
        in_dim, out_dim, n = nets[0].in_dim, nets[0].out_dim, len(nets)

        def zeros(*shape):
            return torch.zeros(n, *shape, dtype=dtype)

        self.params, self.layers = [], []
        for l, width in enumerate(self.widths):
            fan_in = in_dim if l == 0 else self.widths[l - 1]
            weight, bias, gain, beta = zeros(width, fan_in), zeros(width), zeros(width), zeros(width)
            alpha, mask, skip = zeros(1, 1), zeros(1, width), zeros(1, width)
            count, eps, plain, residual = zeros(1, 1), zeros(1, 1), zeros(1, 1), zeros(1, 1)
            for i, net in enumerate(nets):
                if l >= len(net.layers):  # identity: pass everything through, no branch
                    mask[i], skip[i], count[i], eps[i] = 1.0, 1.0, width, 1e-5
                    continue
                layer = net.layers[l]
                out, fin = layer.linear.weight.shape
                weight[i, :out, :fin] = layer.linear.weight.detach()
                bias[i, :out] = layer.linear.bias.detach()
                if layer.norm is not None:
                    gain[i, :out] = layer.norm.weight.detach()
                    beta[i, :out] = layer.norm.bias.detach()
                    eps[i] = layer.norm.eps
                mask[i, :, :out], count[i] = 1.0, out
                if layer.skip:
                    skip[i, :, :layer.skip], residual[i] = 1.0, 1.0
                    alpha[i] = layer.alpha.detach()
                else:
                    plain[i] = 1.0
            tensors = [weight, bias] + ([gain, beta] if self.layer_norm else []) + \
                      ([alpha] if l > 0 else [])
            self.params += [t.to(device).requires_grad_() for t in tensors]
            self.layers.append(tuple(t.to(device) for t in (mask, count, eps, skip, plain, residual)))
        out_weight, out_bias = zeros(out_dim, self.widths[-1]), zeros(out_dim)
        for i, net in enumerate(nets):
            out_weight[i, :, :net.hidden[-1]] = net.output.weight.detach()
            out_bias[i] = net.output.bias.detach()
        self.params += [out_weight.to(device).requires_grad_(), out_bias.to(device).requires_grad_()]
        # runs of consecutive networks with the same activation: one call per run (callers
        # order the networks by activation, so there is usually one run per activation)
        names = [net.activation for net in nets]
        starts = [i for i in range(n) if i == 0 or names[i] != names[i - 1]]
        self.activation_runs = [(start, end, ACTIVATION_FUNCTIONS[names[start]])
                                for start, end in zip(starts, starts[1:] + [n])]
        # layers where every network has all the layer's units and one eps can use torch's
        # fused layer_norm (the usual case early in a run)
        self.fused_eps = [float(c[2][0]) if bool((c[1] == w).all())
                          and len(set(c[2].flatten().tolist())) == 1 else None
                          for c, w in zip(self.layers, self.widths)]
        self.all_plain = [bool((c[4] == 1).all()) for c in self.layers]

    def forward(self, params, x: torch.Tensor) -> torch.Tensor:
        h, k = x, 0
        for l, (mask, count, eps, skip, plain, residual) in enumerate(self.layers):
            weight, bias = params[k], params[k + 1]
            k += 2
            z = torch.baddbmm(bias.unsqueeze(1), h, weight.transpose(1, 2))
            if self.layer_norm:
                gain, beta = params[k].unsqueeze(1), params[k + 1].unsqueeze(1)
                k += 2
                if self.fused_eps[l] is not None:
                    z = torch.addcmul(beta, F.layer_norm(z, (self.widths[l],), eps=self.fused_eps[l]),
                                      gain)
                else:
                    z = _masked_layer_norm(z, mask, count, eps, gain, beta)
            y = self._activation(z)
            if l == 0:
                h = y
            else:  # plain: y; residual: skip(h) + alpha y; identity: h
                alpha = params[k]
                k += 1
                h = y if self.all_plain[l] else torch.addcmul(_resized(h, y.shape[-1]) * skip,
                                                              plain + residual * alpha, y)
        out = torch.baddbmm(params[k + 1].unsqueeze(1), h, params[k].transpose(1, 2))
        return TANH(out) if self.output_tanh else out

    def _activation(self, z: torch.Tensor) -> torch.Tensor:
        if len(self.activation_runs) == 1:
            return self.activation_runs[0][2](z)
        return torch.cat([fn(z[start:end]) for start, end, fn in self.activation_runs])

    @torch.no_grad()
    def write_back(self, nets) -> None:
        """Copy each individual's slice of the stacked parameters into its own network."""
        params = self.params
        for i, net in enumerate(nets):
            k = 0
            for l in range(self.depth):
                weight, bias = params[k], params[k + 1]
                k += 2
                if self.layer_norm:
                    gain, beta = params[k], params[k + 1]
                    k += 2
                alpha = params[k] if l > 0 else None
                k += 1 if l > 0 else 0
                if l >= len(net.layers):
                    continue
                layer = net.layers[l]
                out, fin = layer.linear.weight.shape
                layer.linear.weight.copy_(weight[i, :out, :fin])
                layer.linear.bias.copy_(bias[i, :out])
                if layer.norm is not None:
                    layer.norm.weight.copy_(gain[i, :out])
                    layer.norm.bias.copy_(beta[i, :out])
                if layer.skip:
                    layer.alpha.copy_(alpha[i, 0, 0])
            net.output.weight.copy_(params[k][i, :, :net.hidden[-1]])
            net.output.bias.copy_(params[k + 1][i])


def _resized(h: torch.Tensor, width: int) -> torch.Tensor:
    """h's units cut or zero-padded to `width` (a skip path between layers of other widths)."""
    if h.shape[-1] >= width:
        return h[..., :width]
    return F.pad(h, (0, width - h.shape[-1]))


def _masked_layer_norm(z, mask, count, eps, gain, beta):
    """LayerNorm over each network's own units only (mask 1), padded units give exactly 0.
    Masking z first keeps the padded units out of the statistics AND out of the gradient."""
    z = z * mask
    mean = z.sum(-1, keepdim=True) / count
    centred = torch.addcmul(z, mean, mask, value=-1.0)
    var = torch.linalg.vecdot(centred, centred).unsqueeze(-1) / count
    return torch.addcmul(beta, centred * torch.rsqrt(var + eps), gain)


class StackedOptimizer:
    """Adam / Adamax / RMSprop / SGD with torch's defaults on stacked parameters, with one
    learning rate per individual. `rows[i]` are individual i's rows (networks) in the stack.
    Adam runs torch's fused Adam kernel once per individual on views of its rows: the same
    kernel, hence the same numbers, as the one-by-one path's LeanAdam."""

    def __init__(self, params, lrs, rows, kind: str):
        if kind not in ("adam", "adamax", "rmsprop", "sgd"):
            raise ValueError(f"unknown optimizer {kind!r}")
        self.params, self.kind, self.t, self.lrs = params, kind, 0, [float(lr) for lr in lrs]
        self.grads = [torch.zeros_like(p) for p in params]   # persistent: views stay valid
        self.first = [torch.zeros_like(p) for p in params]
        self.second = [torch.zeros_like(p) for p in params]
        row_lr = torch.zeros(params[0].shape[0], dtype=torch.float64)
        for lr, individual_rows in zip(self.lrs, rows):
            row_lr[individual_rows] = lr
        self.row_lrs = [row_lr.to(p.device, p.dtype).view(-1, *[1] * (p.dim() - 1)) for p in params]

        def views(tensors, individual_rows):
            return [t[r] for r in individual_rows for t in tensors]
        # every individual's Adam step count is t: one tensor, listed once per parameter view,
        # is incremented once per step (instead of one tensor per view and individual)
        self.step_count = torch.zeros((), dtype=torch.float32, device=params[0].device)
        self.per_individual = [
            (views(params, r), views(self.grads, r), views(self.first, r), views(self.second, r),
             [self.step_count] * (len(r) * len(params)))
            for r in rows]

    @torch.no_grad()
    def step(self, grads) -> None:
        torch._foreach_copy_(self.grads, grads)
        self.t += 1
        if self.kind == "adam":
            beta1, beta2 = ADAM_BETAS
            self.step_count.add_(1)
            for lr, (params, grads_, exp_avg, exp_avg_sq, steps) in zip(self.lrs, self.per_individual):
                torch._fused_adam_(params, grads_, exp_avg, exp_avg_sq, [], steps, amsgrad=False,
                                   lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=EPS,
                                   maximize=False, grad_scale=None, found_inf=None)
        elif self.kind == "adamax":
            beta1, beta2 = ADAMAX_BETAS
            torch._foreach_lerp_(self.first, self.grads, 1 - beta1)
            for p, m, u, g, lr in zip(self.params, self.first, self.second, self.grads, self.row_lrs):
                torch.maximum(u.mul_(beta2), g.abs().add_(EPS), out=u)
                p.sub_((lr / (1 - beta1 ** self.t)) * m / u)
        elif self.kind == "rmsprop":
            torch._foreach_mul_(self.second, RMSPROP_ALPHA)
            torch._foreach_addcmul_(self.second, self.grads, self.grads, 1 - RMSPROP_ALPHA)
            for p, v, g, lr in zip(self.params, self.second, self.grads, self.row_lrs):
                p.sub_(lr * g / (v.sqrt() + EPS))
        else:
            for p, g, lr in zip(self.params, self.grads, self.row_lrs):
                p.sub_(lr * g)


def _clip_(grads, clip: float) -> None:
    """Element-wise clipping to [-clip, clip], as searl.td3._step."""
    torch._foreach_clamp_max_(grads, clip)
    torch._foreach_clamp_min_(grads, -clip)


def batching_groups(individuals) -> list[list[int]]:
    """Indices of the individuals that can share one batched computation: same batch size,
    policy delay, optimizer and number of layers (learning rates, policy noise, widths and
    activations may differ). Depth splits the population because a shallow network padded to a
    deep one would compute every missing layer for nothing (measured: 3-4x slower than one by
    one for a population grown to 1-3 layers)."""
    groups = defaultdict(list)
    for i, ind in enumerate(individuals):
        key = (ind.hp["batch_size"], ind.hp["policy_delay"], ind.hp["optimizer"],
               len(ind.actor.layers))
        groups[key].append(i)
    return list(groups.values())


def learn_together(individuals, buffer, n_updates: int, rngs, compile: bool = False) -> list[dict]:
    """`n_updates` TD3 updates of every individual (one batching group), each with its own
    minibatches and noise from its own `rngs[i]`, exactly as `TD3Individual.learn` would.
    `compile`: the losses and their gradients through torch.compile (equal to float rounding)."""
    # networks with the same activation side by side: one activation call per kind
    order = sorted(range(len(individuals)), key=lambda i: individuals[i].actor.activation)
    group = _Group([individuals[i] for i in order], compile)
    losses = group.train(buffer, n_updates, [rngs[i] for i in order])
    result = [None] * len(individuals)
    for position, i in enumerate(order):
        result[i] = {"critic_loss": losses[position]}
    return result


class _Group:
    """The stacked actors, twin critics, targets and optimizers of one batching group.
    The first and the second critics are two stacks (rows in `critic_order`, sorted by the
    critics' activation): tensors of P rows stay in the CPU's cache better than 2P rows (a few
    percent faster per update, measured)."""

    def __init__(self, individuals, compile: bool = False):
        first = individuals[0]
        self.individuals, self.p, self.device = individuals, len(individuals), first.device
        self.critic_loss, self.actor_loss = ((compiled(_critic_loss, "searl"), compiled(_actor_loss, "searl"))
                                             if compile else (_critic_loss, _actor_loss))
        self.batch_size, self.delay, kind = (first.hp[k] for k in ("batch_size", "policy_delay",
                                                                   "optimizer"))
        self.gamma, self.tau, self.clip, self.noise_clip = (
            first.config[k] for k in ("gamma", "tau", "clip_grad", "noise_clip"))
        self.critic_order = sorted(range(self.p), key=lambda i: individuals[i].critics[0].activation)
        self.critic_nets = [[individuals[i].critics[c] for i in self.critic_order] for c in (0, 1)]
        self.actors = StackedMLP([ind.actor for ind in individuals], self.device)
        self.critics = [StackedMLP(nets, self.device) for nets in self.critic_nets]
        self.critic_params = self.critics[0].params + self.critics[1].params
        self.actor_targets = [t.detach().clone() for t in self.actors.params]
        self.critic_targets = [t.detach().clone() for t in self.critic_params]
        rows = [[i] for i in range(self.p)]
        self.actor_opt = StackedOptimizer(self.actors.params, [ind.hp["lr_actor"] for ind in individuals],
                                          rows, kind)
        self.critic_opt = StackedOptimizer(
            self.critic_params, [individuals[i].hp["lr_critic"] for i in self.critic_order], rows, kind)
        self.noise_std = torch.tensor([ind.hp["policy_noise"] for ind in individuals],
                                      dtype=self.actors.dtype, device=self.device).view(-1, 1, 1)
        identity = self.critic_order == list(range(self.p))
        self.to_critic = None if identity else torch.tensor(self.critic_order, device=self.device)
        self.from_critic = None if identity else torch.tensor(
            np.argsort(self.critic_order), device=self.device)

    def _critic_input(self, obs, action) -> torch.Tensor:
        x = torch.cat([obs, action], 2)
        return x if self.to_critic is None else x.index_select(0, self.to_critic)

    def _in_individual_order(self, q: torch.Tensor) -> torch.Tensor:
        return q if self.from_critic is None else q.index_select(0, self.from_critic)

    def q_values(self, params, obs, action) -> list[torch.Tensor]:
        """[Q1, Q2], each (P, B), in the individuals' order; `params`: both critics' stacks."""
        x = self._critic_input(obs, action)
        half = len(self.critics[0].params)
        return [self._in_individual_order(critic.forward(part, x).squeeze(-1))
                for critic, part in zip(self.critics, (params[:half], params[half:]))]

    def q1_of_policy(self, obs) -> torch.Tensor:
        """(P, B): the first critic (frozen) at the current actors' actions."""
        x = self._critic_input(obs, self.actors.forward(self.actors.params, obs))
        frozen = [t.detach() for t in self.critics[0].params]
        return self._in_individual_order(self.critics[0].forward(frozen, x).squeeze(-1))

    def train(self, buffer, n_updates: int, rngs) -> list[float]:
        p, b, device, dtype = self.p, self.batch_size, self.device, self.actors.dtype
        # the same draws, in the same order, as TD3Individual.learn makes from its rng
        generators = [torch.Generator(device=device).manual_seed(int(rng.integers(2**62)))
                      for rng in rngs]
        online = self.actors.params + self.critic_params
        targets = self.actor_targets + self.critic_targets
        losses = torch.zeros(p, dtype=dtype, device=device)
        for step in range(n_updates):
            idx = np.concatenate([rng.integers(0, len(buffer), size=b) for rng in rngs])
            batch = buffer.batch_at(idx)
            obs, action, next_obs, reward, terminated = (
                t.to(device, dtype).view(p, b, *t.shape[1:])
                for t in (batch.obs, batch.actions, batch.next_obs, batch.rewards, batch.terminated))
            noise = torch.stack([torch.randn(action.shape[1:], generator=g, device=device,
                                             dtype=dtype) for g in generators])
            loss, per_individual = self.critic_loss(self, obs, action, next_obs, reward, terminated, noise)
            self._step(self.critic_opt, loss, self.critic_params)
            losses += per_individual
            if step % self.delay == 0:  # delayed actor and target updates
                self._step(self.actor_opt, self.actor_loss(self, obs), self.actors.params)
                with torch.no_grad():
                    torch._foreach_lerp_(targets, online, self.tau)
        self.actors.write_back([ind.actor for ind in self.individuals])
        for critic, nets in zip(self.critics, self.critic_nets):
            critic.write_back(nets)
        if n_updates == 0:
            return [float("nan")] * p
        return (losses / n_updates / 2).tolist()

    def _step(self, optimizer, loss, params) -> None:
        # a layer plain in every network leaves its (unused) alpha without a gradient
        grads = [torch.zeros_like(p) if g is None else g
                 for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True))]
        _clip_(grads, self.clip)
        optimizer.step(grads)


def _critic_loss(group: _Group, obs, action, next_obs, reward, terminated, noise):
    """The sum over individuals of TD3's twin-critic MSEs (the gradient of the sum is each
    individual's own), and each individual's loss."""
    with torch.no_grad():  # TD3 target: clipped noise, min of the twin target critics
        noise = (noise * group.noise_std).clamp(-group.noise_clip, group.noise_clip)
        next_action = (group.actors.forward(group.actor_targets, next_obs) + noise).clamp(-1, 1)
        next_q = torch.min(*group.q_values(group.critic_targets, next_obs, next_action))
        y = reward + group.gamma * (1 - terminated) * next_q
    q1, q2 = group.q_values(group.critic_params, obs, action)
    per_individual = (q1 - y).pow(2).mean(1) + (q2 - y).pow(2).mean(1)  # the two MSEs
    return per_individual.sum(), per_individual.detach()


def _actor_loss(group: _Group, obs):
    """The deterministic policy gradient's loss, -Q1(s, pi(s)), summed over individuals."""
    return -group.q1_of_policy(obs).mean(1).sum()


class PopulationPolicy:
    """The actors of a population as one stacked network: one forward pass acts for all."""

    def __init__(self, individuals):
        self.individuals = individuals
        self.actors = StackedMLP([ind.actor for ind in individuals])

    @torch.no_grad()
    def act(self, obs: np.ndarray, explore: bool, rows=None) -> np.ndarray:
        """Actions in [-1, 1] for obs of shape (P, obs_dim); `explore` adds each individual's
        own N(0, 0.1) noise from its own RNG, as `TD3Individual.act` does. Only `rows` (the
        individuals still playing) draw noise."""
        x = torch.as_tensor(obs, device=self.actors.device, dtype=self.actors.dtype).unsqueeze(1)
        actions = self.actors.forward(self.actors.params, x)[:, 0].cpu().numpy()
        rows = range(len(self.individuals)) if rows is None else rows
        if explore:
            for i in rows:
                ind = self.individuals[i]
                noise = ind.rng.normal(0.0, ind.config["exploration_noise"], size=actions[i].shape)
                actions[i] = np.clip(actions[i] + noise, -1.0, 1.0)
        return actions.astype(np.float32)


def reuse_freed_memory() -> None:
    """common.device.keep_freed_memory with 1 GiB thresholds: the batched step allocates ~1 MB
    activations that glibc would otherwise mmap and unmap every time, so each one page-faults
    anew (~1.5x slower per update on a CPU, measured). A no-op without glibc."""
    keep_freed_memory(1 << 30, 1 << 30)
