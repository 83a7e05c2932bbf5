"""STEVE's networks (Buckman et al. 2018, Sec. 5 and App.; reference valuerl.py, worldmodel.py,
nn.py): the DDPG policy, an ensemble of Q-functions, and the world model — ensembles of
transition (Δs), reward and done predictors. Ensembles are batched: one weight tensor per layer
holds every member, so all members run in one matmul per layer."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class EnsembleLinear(nn.Module):
    """E independent linear layers: x [E, B, in] -> [E, B, out]. Each member is Xavier-initialised
    on its own [in, out] matrix (the reference's TF initialiser treated the ensemble axis as a
    receptive field, shrinking the init by √E; per-member Xavier is the usual ensemble init)."""

    def __init__(self, members: int, in_dim: int, out_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_dim))
        bound = (6.0 / (in_dim + out_dim)) ** 0.5   # Xavier-uniform per member
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleMLP(nn.Module):
    """`members` MLPs with `hidden_layers` ReLU layers of `hidden_dim` units, run together."""

    def __init__(self, members: int, in_dim: int, out_dim: int, hidden_dim: int, hidden_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * hidden_layers + [out_dim]
        self.members = members
        self.layers = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [E, B, in] (member e on slice e) or [B, in] (every member on the same batch) -> [E, B, out]."""
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(self.members, -1, -1)
        for layer in self.layers[:-1]:
            x = F.relu(layer(x))
        return self.layers[-1](x)

    def routed(self, x: torch.Tensor, member: torch.Tensor) -> torch.Tensor:
        """Each example through its own member (`member` [B] ints): the reference's per-example
        random member, which keeps the ensemble diverse while training on one batch."""
        out = self.forward(x)                                           # [E, B, out]
        return out[member, torch.arange(x.shape[0], device=x.device)]

    def l2(self) -> torch.Tensor:
        """½‖θ‖² over weights and biases (the reference's l2_loss)."""
        return 0.5 * sum((p ** 2).sum() for p in self.parameters())


class Policy(nn.Module):
    """obs -> 128 -> 128 -> 128 -> action, ReLU, linear pre-tanh output; act() applies tanh."""

    def __init__(self, obs_dim: int, action_dim: int, hidden_dim: int = 128, hidden_layers: int = 3):
        super().__init__()
        self.net = EnsembleMLP(1, obs_dim, action_dim, hidden_dim, hidden_layers)

    def pre_tanh(self, obs: torch.Tensor) -> torch.Tensor:
        flat = obs.reshape(-1, obs.shape[-1])
        return self.net(flat)[0].reshape(*obs.shape[:-1], -1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.pre_tanh(obs))


class QEnsemble(nn.Module):
    """Q_l(s, a) for l = 1..L (L = 1 without the Bayesian ensemble): (s, a) -> 128 x 3 -> 1."""

    def __init__(self, obs_dim: int, action_dim: int, members: int, hidden_dim: int = 128,
                 hidden_layers: int = 3):
        super().__init__()
        self.net = EnsembleMLP(members, obs_dim + action_dim, 1, hidden_dim, hidden_layers)
        self.members = members

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """obs [..., S], action [..., A] -> [L, ...]."""
        x = torch.cat([obs, action], -1)
        flat = x.reshape(-1, x.shape[-1])
        return self.net(flat).squeeze(-1).reshape(self.members, *x.shape[:-1])

    def routed(self, obs, action, member):
        return self.net.routed(torch.cat([obs, action], -1), member).squeeze(-1)


class WorldModel(nn.Module):
    """Transition (s, a) -> 7 x 512 -> Δs; reward (s', s, a) -> 128 x 3 -> r̂; done (s', s, a) ->
    128 x 3 -> logit. M transition members (the done model shares their index), N reward members."""

    def __init__(self, obs_dim: int, action_dim: int, transition_members: int, reward_members: int,
                 transition_hidden: int = 512, transition_layers: int = 7, aux_hidden: int = 128,
                 aux_layers: int = 3):
        super().__init__()
        self.members, self.reward_members = transition_members, reward_members
        self.transition_net = EnsembleMLP(transition_members, obs_dim + action_dim, obs_dim,
                                          transition_hidden, transition_layers)
        aux_in = 2 * obs_dim + action_dim
        self.done_net = EnsembleMLP(transition_members, aux_in, 1, aux_hidden, aux_layers)
        self.reward_net = EnsembleMLP(reward_members, aux_in, 1, aux_hidden, aux_layers)

    # -- imagination: member m on slice m of [M, B, ...] ------------------------------------------
    def transition(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """s_{k+1} = s_k + Δ_m(s_k, a_k) for member m on slice m: [M, B, S] -> [M, B, S]."""
        return obs + self.transition_net(torch.cat([obs, action], -1))

    def done_prob(self, next_obs, obs, action) -> torch.Tensor:
        """sigmoid(done_m(s', s, a)): [M, B]."""
        return torch.sigmoid(self.done_net(torch.cat([next_obs, obs, action], -1)).squeeze(-1))

    def reward(self, obs, action, next_obs) -> torch.Tensor:
        """Every reward member scores every member's transition: [M, B, ...] -> [N, M, B]."""
        x = torch.cat([next_obs, obs, action], -1)
        return self.reward_net(x.reshape(-1, x.shape[-1])).squeeze(-1).reshape(
            self.reward_members, *x.shape[:-1])

    # -- training ------------------------------------------------------------------------------
    def loss(self, obs, action, reward, next_obs, done, generator: torch.Generator | None = None,
             l2_weight: float = 1e-4, full_batch: bool = False):
        """½‖s' − ŝ'‖² + ½(r − r̂)² + sigmoid cross-entropy(done) + l2_weight·½‖θ‖², batch means.
        Each example trains one random member of each ensemble (the reference); `full_batch`
        trains every member on every example instead."""
        sa = torch.cat([obs, action], -1)
        aux = torch.cat([next_obs, obs, action], -1)
        if full_batch:
            delta, done_logit = self.transition_net(sa), self.done_net(aux).squeeze(-1)
            reward_hat = self.reward_net(aux).squeeze(-1)
        else:
            batch = obs.shape[0]
            m = torch.randint(self.members, (batch,), generator=generator, device=obs.device)
            n = torch.randint(self.reward_members, (batch,), generator=generator, device=obs.device)
            delta = self.transition_net.routed(sa, m)
            done_logit = self.done_net.routed(aux, m).squeeze(-1)
            reward_hat = self.reward_net.routed(aux, n).squeeze(-1)
        obs_loss = 0.5 * ((next_obs - (obs + delta)) ** 2).sum(-1).mean()
        reward_loss = 0.5 * ((reward - reward_hat) ** 2).mean()
        done_loss = F.binary_cross_entropy_with_logits(done_logit, done.expand_as(done_logit)).mean()
        reg = l2_weight * (self.transition_net.l2() + self.reward_net.l2() + self.done_net.l2())
        total = obs_loss + reward_loss + done_loss + reg
        return total, {"next_obs_loss": obs_loss.item(), "reward_loss": reward_loss.item(),
                       "done_loss": done_loss.item(), "reg_loss": reg.item()}
