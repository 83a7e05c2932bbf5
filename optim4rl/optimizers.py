"""Optimizers for Optim4RL: the learned optimizer of Lan et al. (2023), its learned baselines and
the classical optimizers, all behind one functional, optax-like interface.

Paper: Lan, Mahmood, Yan, Xu, "Learning to Optimize for Reinforcement Learning" (arXiv 2302.01470).
Sec. 4 explains why RL gradients (tiny, spread over many orders of magnitude, non-stationary) break
optimizers that read the raw gradient; Sec. 5 builds Optim4RL from two GRUs that learn pseudo first
and second moments, so that the update has the form of Adam, m / sqrt(v), with m carrying the sign
of the gradient. Reference implementation (JAX/flax/optax): components/optim.py of sail-sg/optim4rl.

Interface (shared with the rest of optim4rl/):

    opt = make_optimizer("Optim4RL", learning_rate=1e-3, seed=0)
    state = opt.init(params)                      # params: dict name -> tensor [A, ...]
    updates, state = opt.update(grads, state)     # theta_new = theta + updates

Every tensor is stacked on a leading population axis A (A independent agents; A = 1 for one
agent), and so is every leaf of every optimizer state, so that `torch.where(mask, new, old)` per
agent resets part of a population. The classical optimizers follow optax's formulas (optax.adam,
optax.rmsprop, optax.sgd, optax.clip, optax.clip_by_global_norm), with the global norm taken per
agent. The learned optimizers are torch.nn.Modules whose parameters are phi, the meta-parameters;
`update` is differentiable w.r.t. phi (through the update and through the hidden-state chain
across steps), while the gradient input is detached (no second-order terms).

Left out: the paper's earlier Optim4RL variant (inputs sign g and log|g|, MLP heads, a learned
sign) and STAR / VeLO, which come from learned_optimization (JAX) and have no PyTorch version here.
"""
from __future__ import annotations

import math
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from common.cli import UsageError
from common.runs import save_checkpoint, verify_checkpoint

Params = Dict[str, Tensor]
State = Dict[str, Any]   # str -> Tensor [A, ...] or a nested dict of such tensors

OPTIMIZERS = ("Adam", "RMSProp", "SGD", "SignSGD", "Optim4RL", "L2LGD2", "LinearOptim")

# jax.nn.initializers.variance_scaling divides the std of a normal truncated to [-2, 2] by this
# constant (the std of the truncated standard normal) so the kernel has exactly variance 1 / fan_in.
_TRUNCATED_NORMAL_STD = 0.87962566103423978


# ---------------------------------------------------------------------------------------------
# Helpers on stacked parameter dicts
# ---------------------------------------------------------------------------------------------

def _per_agent(x: Tensor, like: Tensor) -> Tensor:
    """View an [A] vector so it broadcasts against a stacked tensor [A, ...]."""
    return x.reshape((-1,) + (1,) * (like.dim() - 1))


def _population_size(tree: Params) -> int:
    if not tree:
        raise ValueError("empty parameter dict: nothing to optimise")
    sizes = {t.shape[0] for t in tree.values()}
    if len(sizes) != 1:
        raise ValueError(f"every tensor needs the same leading population axis, got sizes {sorted(sizes)}")
    return sizes.pop()


def global_norm_per_agent(grads: Params) -> Tensor:
    """||g_i||_2 over all tensors and all dims but the population axis: one norm per agent [A]."""
    a = _population_size(grads)
    return torch.sqrt(sum(g.reshape(a, -1).square().sum(1) for g in grads.values()))


def clip_elementwise(grads: Params, max_delta: float) -> Params:
    """optax.clip: every coordinate clipped to [-max_delta, max_delta]."""
    return {k: g.clamp(-max_delta, max_delta) for k, g in grads.items()}


def clip_by_global_norm_per_agent(grads: Params, max_norm: float) -> Params:
    """optax.clip_by_global_norm applied to each agent alone: g_i <- g_i * max_norm / ||g_i|| when
    ||g_i|| >= max_norm, unchanged otherwise. Clamping the squared norm at max_norm^2 gives a scale
    of exactly 1 below the threshold and keeps the backward pass finite when a norm is 0."""
    a = _population_size(grads)
    squared = sum(g.reshape(a, -1).square().sum(1) for g in grads.values())
    scale = max_norm / torch.sqrt(squared.clamp(min=max_norm ** 2))
    return {k: g * _per_agent(scale, g) for k, g in grads.items()}


def detach_state(state):
    """Cut the autograd history of every tensor of a (nested) state (truncated BPTT)."""
    if isinstance(state, Tensor):
        return state.detach()
    if isinstance(state, dict):
        return {k: detach_state(v) for k, v in state.items()}
    return state


# ---------------------------------------------------------------------------------------------
# The interface
# ---------------------------------------------------------------------------------------------

class Optimizer:
    """Functional optimizer over stacked Params. `update` returns the UPDATES, not new params."""

    name: str = "Optimizer"
    learning_rate: float = 1.0

    def init(self, params: Params) -> State:
        raise NotImplementedError

    def update(self, grads: Params, state: State) -> Tuple[Params, State]:
        raise NotImplementedError

    def _reset_value(self, path: Tuple[str, ...]) -> float:
        """The value a state leaf at `path` starts from (0 unless an optimizer says otherwise)."""
        return 0.0

    def reset_agents(self, state: State, mask: Tensor) -> State:
        """Return `state` with the agents where mask[i] (BoolTensor [A]) back at their initial state."""
        def walk(node, path):
            if isinstance(node, dict):
                return {k: walk(v, path + (k,)) for k, v in node.items()}
            fresh = torch.full_like(node, self._reset_value(path))
            return torch.where(_per_agent(mask.to(node.device), node), fresh, node)
        return walk(state, ())


class _Classical(Optimizer):
    """Shared gradient preprocessing of the classical optimizers (reference set_optim): an
    element-wise clip (optax.clip) if grad_clip > 0, else a global-norm clip if grad_norm > 0.
    As in the reference, grad_clip takes precedence when both are set."""

    def __init__(self, learning_rate: float, grad_clip: float = -1.0, grad_norm: float = -1.0):
        self.learning_rate = float(learning_rate)
        self.grad_clip = float(grad_clip)
        self.grad_norm = float(grad_norm)

    def _preprocess(self, grads: Params) -> Params:
        if self.grad_clip > 0:
            return clip_elementwise(grads, self.grad_clip)
        if self.grad_norm > 0:
            return clip_by_global_norm_per_agent(grads, self.grad_norm)
        return dict(grads)

    def _trace(self, updates: Params, state: State, momentum: Optional[float], nesterov: bool,
               new_state: State) -> Params:
        """optax.trace: t <- u + momentum * t; output t, or u + momentum * t (Nesterov)."""
        if not momentum:
            return updates
        trace = {k: u + momentum * state["trace"][k] for k, u in updates.items()}
        new_state["trace"] = trace
        if nesterov:
            return {k: u + momentum * trace[k] for k, u in updates.items()}
        return trace


class SGD(_Classical):
    """optax.sgd: u = -lr * g, or with momentum -lr * t where t <- g + momentum * t."""

    name = "SGD"

    def __init__(self, learning_rate: float, momentum: Optional[float] = None, nesterov: bool = False,
                 grad_clip: float = -1.0, grad_norm: float = -1.0):
        super().__init__(learning_rate, grad_clip, grad_norm)
        self.momentum = float(momentum) if momentum else None
        self.nesterov = bool(nesterov)

    def init(self, params: Params) -> State:
        if self.momentum is None:
            return {}
        return {"trace": {k: torch.zeros_like(p) for k, p in params.items()}}

    def update(self, grads: Params, state: State) -> Tuple[Params, State]:
        g = self._preprocess(grads)
        new_state: State = {}
        t = self._trace(g, state, self.momentum, self.nesterov, new_state)   # momentum before lr
        return {k: -self.learning_rate * v for k, v in t.items()}, new_state


class SignSGD(_Classical):
    """Sign-SGD: u = -lr * sign(g), every coordinate moves by lr whatever its gradient's size (0
    where g = 0). What an untrained Optim4RL approximates (its heads output about 0), and the direct
    control for a meta-trained phi that learned a constant step (README, "What phi learned")."""

    name = "SignSGD"

    def init(self, params: Params) -> State:
        return {}

    def update(self, grads: Params, state: State) -> Tuple[Params, State]:
        g = self._preprocess(grads)
        return {k: -self.learning_rate * torch.sign(v) for k, v in g.items()}, {}


class Adam(_Classical):
    """optax.adam (Kingma & Ba 2015), with one step count per agent so agents can restart alone."""

    name = "Adam"

    def __init__(self, learning_rate: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
                 eps_root: float = 0.0, grad_clip: float = -1.0, grad_norm: float = -1.0):
        super().__init__(learning_rate, grad_clip, grad_norm)
        self.b1, self.b2, self.eps, self.eps_root = float(b1), float(b2), float(eps), float(eps_root)

    def init(self, params: Params) -> State:
        a = _population_size(params)
        device = next(iter(params.values())).device
        return {"count": torch.zeros(a, dtype=torch.int64, device=device),
                "mu": {k: torch.zeros_like(p) for k, p in params.items()},
                "nu": {k: torch.zeros_like(p) for k, p in params.items()}}

    def update(self, grads: Params, state: State) -> Tuple[Params, State]:
        g = self._preprocess(grads)
        count = state["count"] + 1
        mu = {k: self.b1 * state["mu"][k] + (1 - self.b1) * v for k, v in g.items()}          # m_t
        nu = {k: self.b2 * state["nu"][k] + (1 - self.b2) * v.square() for k, v in g.items()}  # v_t
        updates = {}
        for k, v in g.items():
            c = _per_agent(count.to(v.dtype), v)
            mu_hat = mu[k] / (1 - self.b1 ** c)                    # bias correction of m_t
            nu_hat = nu[k] / (1 - self.b2 ** c)                    # bias correction of v_t
            # u = -lr * m_hat / (sqrt(v_hat + eps_root) + eps)
            updates[k] = -self.learning_rate * mu_hat / (torch.sqrt(nu_hat + self.eps_root) + self.eps)
        return updates, {"count": count, "mu": mu, "nu": nu}


class RMSProp(_Classical):
    """optax.rmsprop (Hinton's lecture 6): nu <- decay * nu + (1 - decay) * g^2 from nu_0 =
    initial_scale (0), u = -lr * g / sqrt(nu + eps) with eps INSIDE the square root; centered
    uses nu - mu^2; momentum (optax.trace) is applied after the learning-rate scaling."""

    name = "RMSProp"

    def __init__(self, learning_rate: float, decay: float = 0.9, eps: float = 1e-8,
                 initial_scale: float = 0.0, centered: bool = False, momentum: Optional[float] = None,
                 nesterov: bool = False, grad_clip: float = -1.0, grad_norm: float = -1.0):
        super().__init__(learning_rate, grad_clip, grad_norm)
        self.decay, self.eps, self.initial_scale = float(decay), float(eps), float(initial_scale)
        self.centered = bool(centered)
        self.momentum = float(momentum) if momentum else None
        self.nesterov = bool(nesterov)

    def _reset_value(self, path: Tuple[str, ...]) -> float:
        return self.initial_scale if path[:1] == ("nu",) else 0.0

    def init(self, params: Params) -> State:
        state: State = {"nu": {k: torch.full_like(p, self.initial_scale) for k, p in params.items()}}
        if self.centered:
            state["mu"] = {k: torch.zeros_like(p) for k, p in params.items()}
        if self.momentum is not None:
            state["trace"] = {k: torch.zeros_like(p) for k, p in params.items()}
        return state

    def update(self, grads: Params, state: State) -> Tuple[Params, State]:
        g = self._preprocess(grads)
        d = self.decay
        nu = {k: d * state["nu"][k] + (1 - d) * v.square() for k, v in g.items()}   # E[g^2]
        new_state: State = {"nu": nu}
        if self.centered:
            mu = {k: d * state["mu"][k] + (1 - d) * v for k, v in g.items()}          # E[g]
            new_state["mu"] = mu
            u = {k: -self.learning_rate * v * torch.rsqrt(nu[k] - mu[k].square() + self.eps)
                 for k, v in g.items()}
        else:
            u = {k: -self.learning_rate * v * torch.rsqrt(nu[k] + self.eps) for k, v in g.items()}
        return self._trace(u, state, self.momentum, self.nesterov, new_state), new_state


# ---------------------------------------------------------------------------------------------
# Learned optimizers: flax-compatible building blocks
# ---------------------------------------------------------------------------------------------

def _lecun_normal_(tensor: Tensor, fan_in: int, generator: torch.Generator) -> Tensor:
    """flax's default kernel init (jax lecun_normal): a standard normal truncated to [-2, 2],
    scaled to variance 1 / fan_in."""
    with torch.no_grad():
        nn.init.trunc_normal_(tensor, 0.0, 1.0, -2.0, 2.0, generator=generator)
        return tensor.mul_(math.sqrt(1.0 / fan_in) / _TRUNCATED_NORMAL_STD)


class Dense(nn.Module):
    """flax.linen.Dense: y = x @ kernel + bias, kernel [in, out] lecun-normal, bias zeros.
    Applied to features-first batches x [A, in, M] (see GRUCell) as kernel^T @ x + bias."""

    def __init__(self, in_features: int, out_features: int, generator: torch.Generator):
        super().__init__()
        self.kernel = nn.Parameter(_lecun_normal_(torch.empty(in_features, out_features), in_features,
                                                  generator))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: Tensor) -> Tensor:
        return _batched_linear(self.kernel, x, self.bias)


class GRUCell(nn.Module):
    """flax.linen.GRUCell, with the three gates' kernels side by side in the order (r, z, n):

        r  = sigmoid(x W_ir + b_ir + h W_hr)
        z  = sigmoid(x W_iz + b_iz + h W_hz)
        n  = act(x W_in + b_in + r * (h W_hn + b_hn))     # b_hn sits inside r * (...)
        h' = (1 - z) * n + z * h

    Initialisation as flax: each input kernel lecun-normal, each recurrent [H, H] block orthogonal,
    biases zero. These are torch.nn.GRUCell's equations with b_hr = b_hz = 0.

    Layout: features first, x [A, in, M] and h [A, H, M] (A agents, M coordinates per agent), so
    one call steps every coordinate of a population and every element-wise op runs over long
    contiguous rows of M (a coordinates-last [N, H] layout makes rows of 8: measured 2-4x slower).
    """

    def __init__(self, in_features: int, hidden_size: int, generator: torch.Generator,
                 activation: str = "Tanh"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise UsageError(f"unknown rnn_hidden_act {activation!r}; allowed: {', '.join(_ACTIVATIONS)}")
        h = hidden_size
        self.hidden_size = h
        self.activation = activation
        w_i = torch.empty(in_features, 3 * h)
        w_h = torch.empty(h, 3 * h)
        for gate in range(3):                                   # ir, iz, in (lecun normal)
            _lecun_normal_(w_i[:, gate * h:(gate + 1) * h], in_features, generator)
        with torch.no_grad():
            for gate in range(3):                               # hr, hz, hn (orthogonal)
                block = torch.empty(h, h)
                nn.init.orthogonal_(block, generator=generator)
                w_h[:, gate * h:(gate + 1) * h] = block
        self.w_i = nn.Parameter(w_i)                     # [in, 3H]: W_ir | W_iz | W_in
        self.b_i = nn.Parameter(torch.zeros(3 * h))      # b_ir | b_iz | b_in
        self.w_h = nn.Parameter(w_h)                     # [H, 3H]: W_hr | W_hz | W_hn
        self.b_hn = nn.Parameter(torch.zeros(h))         # the recurrent bias of the candidate n

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        hs, n_in, a = self.hidden_size, x.shape[1], x.shape[0]
        # One input block [x; h; 1] [A, in + H + 1, M]: each gate is then a single bmm with the
        # bias folded in (baddbmm would first copy a broadcast bias into its output).
        xh1 = torch.cat([x, h, torch.ones_like(x[:, :1])], dim=1)
        w_i, w_h, b_i = self.w_i, self.w_h, self.b_i
        zero_i, zero_h = w_i.new_zeros(n_in, hs), w_h.new_zeros(hs, hs)

        def gate(w_x: Tensor, w_hh: Tensor, b: Tensor) -> Tensor:     # [A, H, M]
            w = torch.cat([w_x, w_hh, b.unsqueeze(0)])                  # [in + H + 1, H]
            return torch.bmm(w.t().expand(a, -1, -1), xh1)

        r = torch.sigmoid(gate(w_i[:, :hs], w_h[:, :hs], b_i[:hs]))                  # reset gate
        z = torch.sigmoid(gate(w_i[:, hs:2 * hs], w_h[:, hs:2 * hs], b_i[hs:2 * hs]))  # update gate
        gi_n = gate(w_i[:, 2 * hs:], zero_h, b_i[2 * hs:])                           # x W_in + b_in
        gh_n = gate(zero_i, w_h[:, 2 * hs:], self.b_hn)                              # h W_hn + b_hn
        n = _ACTIVATIONS[self.activation](torch.addcmul(gi_n, r, gh_n))               # candidate
        return torch.lerp(n, h, z)                                                    # (1 - z) n + z h


def _batched_linear(kernel: Tensor, x: Tensor, bias: Tensor) -> Tensor:
    """kernel^T @ x + bias for features-first x [A, in, M] with a flax kernel [in, out]. bmm over
    an expanded (stride-0) kernel: torch.matmul would fold x into an [A*M, in] copy instead."""
    return torch.baddbmm(bias.unsqueeze(-1), kernel.t().expand(x.shape[0], -1, -1), x)


_ACTIVATIONS = {
    "Tanh": torch.tanh, "ReLU": torch.relu, "ELU": nn.functional.elu, "Softplus": nn.functional.softplus,
    "LeakyReLU": nn.functional.leaky_relu, "Sigmoid": torch.sigmoid, "Exp": torch.exp,
}


class MLPHead(nn.Module):
    """The reference's head after a GRU: Dense(d) -> relu for each d in mlp_dims, then Dense(out)."""

    def __init__(self, in_features: int, mlp_dims: Sequence[int], out_features: int,
                 generator: torch.Generator):
        super().__init__()
        dims = [in_features] + list(mlp_dims) + [out_features]
        self.layers = nn.ModuleList(Dense(dims[i], dims[i + 1], generator) for i in range(len(dims) - 1))

    def forward(self, x: Tensor) -> Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = torch.relu(x)
        return x


def l2l_preprocess(g: Tensor, p: float = 10.0, eps: float = 1e-8, dim: int = -1) -> Tensor:
    """Gradient preprocessing of Andrychowicz et al. (2016, App. A), as the reference's L2LGD2:
    (log(|g| + eps) / p, sign g) if log(|g| + eps) / p >= -1, else (-1, e^p * g); the two
    features are stacked along a new axis `dim`."""
    g_log = torch.log(g.abs() + eps) / p
    big = g_log >= -1.0
    first = torch.where(big, g_log, torch.full_like(g, -1.0))
    second = torch.where(big, torch.sign(g), math.exp(p) * g)
    return torch.stack([first, second], dim=dim)


class LearnedOptimizer(nn.Module, Optimizer):
    """A coordinate-wise RNN optimizer: phi (this module's parameters) is shared by every
    coordinate; each coordinate of each agent has its own hidden state. The coordinates of all
    tensors are flattened and concatenated into one batch g [A, M] that the GRUs step in one call.

    State: {"h": [A, H, M]} ("h1", "h2" for Optim4RL): A agents, hidden size H, M coordinates per
    agent in the order of the params dict's keys, each tensor's [A, ...] flattened row-major to
    [A, numel / A]; zeros at init (flax's initialize_carry). The network runs in phi's dtype;
    updates come back in each gradient's dtype.
    """

    hidden_names: Tuple[str, ...] = ("h",)

    def __init__(self, learning_rate: float, grad_clip: float = -1.0, hidden_size: int = 8,
                 mlp_dims: Sequence[int] = (), eps: float = 1e-8):
        nn.Module.__init__(self)
        if int(hidden_size) < 1:
            raise UsageError(f"hidden_size must be a positive integer, got {hidden_size!r}")
        if any(int(d) < 1 for d in mlp_dims):
            raise UsageError(f"mlp_dims must be positive integers, got {list(mlp_dims)!r}")
        self.learning_rate = float(learning_rate)
        self.grad_clip = float(grad_clip)
        self.hidden_size = int(hidden_size)
        self.mlp_dims = tuple(int(d) for d in mlp_dims)
        self.eps = float(eps)

    def _dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def init(self, params: Params) -> State:
        a = _population_size(params)
        m = sum(p[0].numel() for p in params.values())
        first = next(iter(params.values()))
        return {name: torch.zeros(a, self.hidden_size, m, dtype=self._dtype(), device=first.device)
                for name in self.hidden_names}

    def update(self, grads: Params, state: State) -> Tuple[Params, State]:
        return self(grads, state)

    def forward(self, grads: Params, state: State) -> Tuple[Params, State]:
        """The update; a forward pass, so torch.func.functional_call can swap phi in."""
        a = _population_size(grads)
        sizes = [g[0].numel() for g in grads.values()]
        # the gradient is an input, never differentiated through (no second-order terms)
        g = torch.cat([t.detach().reshape(a, -1) for t in grads.values()], dim=1).to(self._dtype())
        expected = (a, self.hidden_size, g.shape[1])
        for name in self.hidden_names:
            if tuple(state[name].shape) != expected:
                raise ValueError(f"optimizer state {name!r} has shape {tuple(state[name].shape)}, "
                                 f"expected {expected}: was it initialised with other params?")
        if self.grad_clip > 0:
            g = g.clamp(-self.grad_clip, self.grad_clip)                 # element-wise clip first
        u, new_state = self.step(g, {name: state[name] for name in self.hidden_names})
        updates = {k: chunk.reshape(t.shape).to(t.dtype)
                   for (k, t), chunk in zip(grads.items(), torch.split(u, sizes, dim=1))}
        return updates, new_state

    def step(self, g: Tensor, hidden: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, Tensor]]:
        """g [A, M] (clipped, detached), hidden name -> [A, H, M]; returns u [A, M] and new hidden."""
        raise NotImplementedError


class Optim4RL(LearnedOptimizer):
    """Optim4RL (Lan et al. 2023, Sec. 5, final version of the reference):

        h1 <- GRU1(g, h1),   o1 = head1(h1)      (pseudo first moment)
        h2 <- GRU2(g^2, h2), o2 = head2(h2)      (pseudo second moment)
        m = sign(g) * exp(o1),  v = exp(o2),  u = -lr * m / sqrt(v + eps)

    At initialisation m has the sign of g on every coordinate, so u points along -g (sign-SGD-like).
    """

    name = "Optim4RL"
    hidden_names = ("h1", "h2")

    def __init__(self, learning_rate: float, grad_clip: float = -1.0, hidden_size: int = 8,
                 mlp_dims: Sequence[int] = (), eps: float = 1e-8, rnn_hidden_act: str = "Tanh",
                 generator: Optional[torch.Generator] = None):
        super().__init__(learning_rate, grad_clip, hidden_size, mlp_dims, eps)
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        h = self.hidden_size
        self.rnn1 = GRUCell(1, h, generator, rnn_hidden_act)
        self.head1 = MLPHead(h, self.mlp_dims, 1, generator)
        self.rnn2 = GRUCell(1, h, generator, rnn_hidden_act)
        self.head2 = MLPHead(h, self.mlp_dims, 1, generator)

    def step(self, g, hidden):
        x = g.unsqueeze(1)                                 # [A, 1, M]
        h1 = self.rnn1(x, hidden["h1"])                    # GRU1 reads g
        o1 = self.head1(h1)[:, 0]
        h2 = self.rnn2(x.square(), hidden["h2"])           # GRU2 reads g^2
        o2 = self.head2(h2)[:, 0]
        m = torch.sign(g) * torch.exp(o1)                  # m = sign(g) * exp(o1)
        u = -self.learning_rate * m * torch.rsqrt(torch.exp(o2) + self.eps)   # -lr * m / sqrt(v + eps)
        return u, {"h1": h1, "h2": h2}


class LinearOptim(LearnedOptimizer):
    """LinearOptim (the paper's learned baseline): one GRU on g, three outputs,
    u = -lr * (exp(o1) * g + exp(o2) * o3)."""

    name = "LinearOptim"
    in_features = 1
    out_features = 3

    def __init__(self, learning_rate: float, grad_clip: float = -1.0, hidden_size: int = 8,
                 mlp_dims: Sequence[int] = (), eps: float = 1e-8,
                 generator: Optional[torch.Generator] = None):
        super().__init__(learning_rate, grad_clip, hidden_size, mlp_dims, eps)
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.rnn = GRUCell(self.in_features, self.hidden_size, generator)
        self.head = MLPHead(self.hidden_size, self.mlp_dims, self.out_features, generator)

    def step(self, g, hidden):
        h = self.rnn(g.unsqueeze(1), hidden["h"])
        o = self.head(h)                                   # [A, 3, M]
        # u = -lr * (exp(o1) * g + exp(o2) * o3)
        u = -self.learning_rate * (torch.exp(o[:, 0]) * g + torch.exp(o[:, 1]) * o[:, 2])
        return u, {"h": h}


class L2LGD2(LinearOptim):
    """L2LGD2 (Andrychowicz et al. 2016, with a GRU as in the reference): the GRU reads the
    preprocessed gradient (l2l_preprocess, p = 10); one output; u = -lr * exp(o) * g."""

    name = "L2LGD2"
    in_features = 2
    out_features = 1

    def __init__(self, learning_rate: float, grad_clip: float = -1.0, hidden_size: int = 8,
                 mlp_dims: Sequence[int] = (), eps: float = 1e-8, p: float = 10.0,
                 generator: Optional[torch.Generator] = None):
        super().__init__(learning_rate, grad_clip, hidden_size, mlp_dims, eps, generator)
        self.p = float(p)

    def step(self, g, hidden):
        h = self.rnn(l2l_preprocess(g, self.p, self.eps, dim=1), hidden["h"])   # [A, 2, M] in
        o = self.head(h)[:, 0]
        return -self.learning_rate * torch.exp(o) * g, {"h": h}   # u = -lr * exp(o) * g


# ---------------------------------------------------------------------------------------------
# Construction, saving and loading
# ---------------------------------------------------------------------------------------------

_CLASSES = {"Adam": Adam, "RMSProp": RMSProp, "SGD": SGD, "SignSGD": SignSGD,
            "Optim4RL": Optim4RL, "L2LGD2": L2LGD2, "LinearOptim": LinearOptim}
_OPTIONS = {
    "Adam": ("b1", "b2", "eps", "eps_root", "grad_clip", "grad_norm"),
    "RMSProp": ("decay", "eps", "initial_scale", "centered", "momentum", "nesterov", "grad_clip", "grad_norm"),
    "SGD": ("momentum", "nesterov", "grad_clip", "grad_norm"),
    "SignSGD": ("grad_clip", "grad_norm"),
    "Optim4RL": ("grad_clip", "hidden_size", "mlp_dims", "eps", "rnn_hidden_act", "param_load_path"),
    "LinearOptim": ("grad_clip", "hidden_size", "mlp_dims", "eps", "param_load_path"),
    "L2LGD2": ("grad_clip", "hidden_size", "mlp_dims", "eps", "p", "param_load_path"),
}


def make_optimizer(name: str, learning_rate: float, *, seed: Optional[int] = None,
                   generator: Optional[torch.Generator] = None, device="cpu", **kwargs) -> Optimizer:
    """Build one of OPTIMIZERS (case-insensitive name). Learned optimizers draw phi from
    `generator`, else from torch.Generator().manual_seed(seed or 0), then move to `device`; with a
    non-empty `param_load_path` phi is loaded from a file written by save_meta_params.
    Unknown names and options raise UsageError."""
    canonical = {n.lower(): n for n in OPTIMIZERS}.get(str(name).lower())
    if canonical is None:
        raise UsageError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZERS)}")
    unknown = sorted(set(kwargs) - set(_OPTIONS[canonical]))
    if unknown:
        raise UsageError(f"unknown option(s) {', '.join(unknown)} for optimizer {canonical}; "
                         f"allowed: learning_rate, {', '.join(_OPTIONS[canonical])}")
    if not isinstance(learning_rate, (int, float)) or learning_rate < 0:
        raise UsageError(f"learning_rate must be a non-negative number, got {learning_rate!r}")
    if canonical in ("Adam", "RMSProp", "SGD", "SignSGD"):
        return _CLASSES[canonical](learning_rate, **kwargs)
    load_path = kwargs.pop("param_load_path", "") or ""
    if generator is None:
        generator = torch.Generator().manual_seed(0 if seed is None else int(seed))
    opt = _CLASSES[canonical](learning_rate, generator=generator, **kwargs).to(device)
    if load_path:
        load_meta_params(opt, load_path)
    return opt


def save_meta_params(optimizer: LearnedOptimizer, path: str) -> None:
    """Write phi (the module's state_dict) to `path` atomically (common.runs.save_checkpoint)."""
    save_checkpoint({k: v.detach().cpu() for k, v in optimizer.state_dict().items()}, path)


def load_meta_params(optimizer: LearnedOptimizer, path: str) -> LearnedOptimizer:
    """Load phi written by save_meta_params into `optimizer` (in place; also returned)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UsageError(f"param_load_path {path!r} does not exist (expected a .pt file written by "
                         f"save_meta_params)")
    first = next(optimizer.parameters())
    verify_checkpoint(path)   # a flipped byte inside the tensors would otherwise load silently
    try:
        saved = torch.load(path, map_location=first.device, weights_only=True)
        optimizer.load_state_dict(saved)
    except Exception as error:   # a corrupt file or a phi of another optimizer / hidden size
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"cannot load meta-parameters from {path!r} into {optimizer.name} "
                         f"(hidden_size {optimizer.hidden_size}, mlp_dims {list(optimizer.mlp_dims)}): "
                         f"{detail}") from None
    return optimizer
