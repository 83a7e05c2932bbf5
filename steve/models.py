"""STEVE's networks (Buckman et al. 2018, Sec. 5 and App.; reference valuerl.py, worldmodel.py,
nn.py): the DDPG policy, an ensemble of Q-functions, and the world model — ensembles of
transition (Δs), reward and done predictors. Ensembles are batched: one weight tensor per layer
holds every member, so all members run in one matmul per layer (or, for one batch shared by every
member and no autograd, member by member: see EnsembleMLP).

Sampled members (the reference's `train_sample_count` / `eval_sample_count`, nn.py
EnsembleFeedForwardNet): each call may run a random subset of an ensemble, given as a tensor of
member indices (`members`, the reference's `ensemble_idxs`); None runs every member in order. A
count equal to the ensemble size draws nothing, so it leaves every random stream as it was."""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn


def sample_members(size: int, count: int | None, generator: torch.Generator | None,
                   device: torch.device) -> torch.Tensor | None:
    """A fresh random subset of `count` of `size` members (the reference's
    random_shuffle(range(size))[:count]), or None (every member, no draw) when count covers them."""
    if count is None or count >= size:
        return None
    return torch.randperm(size, generator=generator, device=device)[:count]


def random_members(size: int, count: int | None, batch: int, generator: torch.Generator | None,
                   device: torch.device) -> tuple[torch.Tensor | None, torch.Tensor]:
    """The reference's reduce_mode "random": a random subset, then one member of it per example.
    Returns (subset or None, pick [B]: each example's position in the subset)."""
    subset = sample_members(size, count, generator, device)
    choices = size if subset is None else subset.numel()
    return subset, torch.randint(choices, (batch,), generator=generator, device=device)


def subset_size(size: int, members: torch.Tensor | None) -> int:
    return size if members is None else members.numel()


class Routing(NamedTuple):
    """Examples grouped by the member that trains them: example b is row rank[b] of group
    member[b]; width is the largest group (the padded group size)."""
    member: torch.Tensor
    rank: torch.Tensor
    width: int


def group_by_member(member: torch.Tensor, members: int) -> Routing:
    """The Routing of examples whose members are `member` [B] (values in 0..members-1)."""
    one_hot = F.one_hot(member, members)                                 # [B, E]
    rank = one_hot.cumsum(0).gather(1, member[:, None]).squeeze(1) - 1   # position in its group
    return Routing(member, rank, int(one_hot.sum(0).max()))


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

    def params(self, members: torch.Tensor | None = None, frozen: bool = False):
        """(weight, bias) of the members in `members` (all when None); `frozen` cuts their gradient."""
        weight, bias = self.weight, self.bias
        if members is not None:
            weight, bias = weight[members], bias[members]
        if frozen:
            weight, bias = weight.detach(), bias.detach()
        return weight, bias

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None,
                frozen: bool = False) -> torch.Tensor:
        weight, bias = self.params(members, frozen)
        if weight.shape[0] == 1:  # one member (the policy): a plain matmul, no batch axis
            return torch.addmm(bias[0], x[0], weight[0]).unsqueeze(0)
        return torch.baddbmm(bias, x, weight)


class EnsembleMLP(nn.Module):
    """`members` MLPs with `hidden_layers` ReLU layers of `hidden_dim` units, run together."""

    def __init__(self, members: int, in_dim: int, out_dim: int, hidden_dim: int, hidden_layers: int):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * hidden_layers + [out_dim]
        self.members = members
        self.layers = nn.ModuleList(EnsembleLinear(members, a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor, members: torch.Tensor | None = None,
                frozen: bool = False) -> torch.Tensor:
        """x [E, B, in] (member e on slice e) or [B, in] (every member on the same batch) -> [E, B, out].
        `members` runs only that subset (slice i through member members[i]); `frozen` stops the
        gradient at the weights, so it reaches only x (the reference's stop_params_gradient)."""
        count = subset_size(self.members, members)
        if x.dim() == 2 and (count == 1 or not torch.is_grad_enabled()):
            return self._shared_batch_member_by_member(x, members, frozen)
        if x.dim() == 2:
            x = x.unsqueeze(0).expand(count, -1, -1)
        for layer in self.layers[:-1]:
            x = layer(x, members, frozen).relu_()  # in place: no layer's backward needs its output
        return self.layers[-1](x, members, frozen)

    def _shared_batch_member_by_member(self, x: torch.Tensor, members: torch.Tensor | None,
                                       frozen: bool) -> torch.Tensor:
        """The same maths for one [B, in] batch, one member at a time through every layer: its
        activations stay in the CPU cache (~20% faster than layer by layer on the target's
        1 536-row batches) and the batch is never expanded. Used without autograd (the target)
        and for a single member (the policy), where it also saves the batch-axis bookkeeping."""
        params = [layer.params(members, frozen) for layer in self.layers]
        weights = [weight.unbind() for weight, _ in params]   # per layer, one matrix per member
        biases = [bias.unbind() for _, bias in params]
        outputs = []
        for e in range(len(weights[0])):
            h = x
            for i in range(len(params)):
                h = torch.addmm(biases[i][e], h, weights[i][e])
                if i + 1 < len(params):
                    h = h.relu_()
            outputs.append(h)
        return torch.stack(outputs) if len(outputs) > 1 else outputs[0].unsqueeze(0)

    def routed(self, x: torch.Tensor, member: torch.Tensor | Routing,
               members: torch.Tensor | None = None) -> torch.Tensor:
        """Each example through its own member (`member` [B] ints, positions in `members` when a
        subset is given): the reference's per-example random member, which keeps the ensemble
        diverse while training on one batch. The examples are grouped by member and each group
        (padded with zero rows to the largest) runs through its member only, so the cost grows
        with B, not E·B; the padding rows get no gradient. x [B, in] -> [B, out]."""
        count = subset_size(self.members, members)
        routing = member if isinstance(member, Routing) else group_by_member(member, count)
        index = (routing.member, routing.rank)
        grouped = x.new_zeros(count, routing.width, x.shape[-1]).index_put(index, x)
        return self.forward(grouped, members)[index]

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

    def forward(self, obs: torch.Tensor, action: torch.Tensor, members: torch.Tensor | None = None,
                frozen: bool = False) -> torch.Tensor:
        """obs [..., S], action [..., A] -> [L, ...] (L = len(members) with a subset)."""
        x = torch.cat([obs, action], -1)
        out = self.net(x.reshape(-1, x.shape[-1]), members, frozen)
        return out.reshape(out.shape[0], *x.shape[:-1])

    def routed(self, obs, action, member, members: torch.Tensor | None = None):
        return self.net.routed(torch.cat([obs, action], -1), member, members).squeeze(-1)


def check_samples(members: int, samples: tuple[int, int] | None, name: str) -> tuple[int, int]:
    """(train, eval) sample counts of an ensemble, each in 1..members; None: every member."""
    samples = (members, members) if samples is None else tuple(samples)
    if len(samples) != 2 or not all(isinstance(n, int) and 1 <= n <= members for n in samples):
        raise ValueError(f"{name} sample counts must be (train, eval), each 1..{members}: got {samples}")
    return samples


class WorldModel(nn.Module):
    """Transition (s, a) -> 7 x 512 -> Δs; reward (s', s, a) -> 128 x 3 -> r̂; done (s', s, a) ->
    128 x 3 -> logit. M transition members (the done model shares their index), N reward members.
    `transition_samples` / `reward_samples` = (train, eval) counts of each ensemble (the done net
    uses the transition's): training routes each example to a member of a random train-count
    subset; imagination (the value learner's target) rolls out a random eval-count subset."""

    def __init__(self, obs_dim: int, action_dim: int, transition_members: int, reward_members: int,
                 transition_hidden: int = 512, transition_layers: int = 7, aux_hidden: int = 128,
                 aux_layers: int = 3, transition_samples: tuple[int, int] | None = None,
                 reward_samples: tuple[int, int] | None = None):
        super().__init__()
        self.members, self.reward_members = transition_members, reward_members
        self.transition_samples = check_samples(transition_members, transition_samples, "transition")
        self.reward_samples = check_samples(reward_members, reward_samples, "reward")
        self.transition_net = EnsembleMLP(transition_members, obs_dim + action_dim, obs_dim,
                                          transition_hidden, transition_layers)
        aux_in = 2 * obs_dim + action_dim
        self.done_net = EnsembleMLP(transition_members, aux_in, 1, aux_hidden, aux_layers)
        self.reward_net = EnsembleMLP(reward_members, aux_in, 1, aux_hidden, aux_layers)

    # -- imagination: member m on slice m of [M, B, ...] ------------------------------------------
    def transition(self, obs: torch.Tensor, action: torch.Tensor,
                   members: torch.Tensor | None = None) -> torch.Tensor:
        """s_{k+1} = s_k + Δ_m(s_k, a_k) for member m on slice m: [M, B, S] -> [M, B, S]; a [B, S]
        state (with [B, A] actions) shared by every member gives each member's step from it."""
        return obs + self.transition_net(torch.cat([obs, action], -1), members)

    def done_prob(self, next_obs, obs, action, members: torch.Tensor | None = None) -> torch.Tensor:
        """sigmoid(done_m(s', s, a)): [M, B]."""
        return torch.sigmoid(self.done_net(torch.cat([next_obs, obs, action], -1), members).squeeze(-1))

    def reward(self, obs, action, next_obs, members: torch.Tensor | None = None) -> torch.Tensor:
        """Every reward member scores every member's transition: [M, B, ...] -> [N, M, B]."""
        x = torch.cat([next_obs, obs, action], -1)
        out = self.reward_net(x.reshape(-1, x.shape[-1]), members)
        return out.reshape(out.shape[0], *x.shape[:-1])

    # -- training ------------------------------------------------------------------------------
    def loss(self, obs, action, reward, next_obs, done, generator: torch.Generator | None = None,
             l2_weight: float = 1e-4, full_batch: bool = False, l2_in_graph: bool = True):
        """½‖s' − ŝ'‖² + ½(r − r̂)² + sigmoid cross-entropy(done) + l2_weight·½‖θ‖², batch means.
        Each example trains one random member of a random train-count subset of each ensemble
        (the reference; the done net takes the transition's member); `full_batch` trains every
        member of the subsets on every example instead. With `l2_in_graph` False the returned
        total holds the L2 term's value but not its gradient: the caller adds l2_weight·θ to the
        gradient itself (WorldModelLearner: Adam's weight_decay), which is cheaper than
        differentiating ½‖θ‖² through the graph. Returns (total, {part: float})."""
        draws = self.training_draws(obs.shape[0], generator, obs.device, full_batch)
        total, parts = self.loss_given_draws(obs, action, reward, next_obs, done, draws, l2_weight, l2_in_graph)
        return total, {name: value.item() for name, value in parts.items()}

    def training_draws(self, batch: int, generator: torch.Generator | None, device: torch.device,
                       full_batch: bool) -> tuple:
        """The loss's random draws: (transition subset, reward subset, transition routing, reward
        routing); the routings are None with `full_batch`."""
        if full_batch:
            return (sample_members(self.members, self.transition_samples[0], generator, device),
                    sample_members(self.reward_members, self.reward_samples[0], generator, device), None, None)
        t_members, m = random_members(self.members, self.transition_samples[0], batch, generator, device)
        r_members, n = random_members(self.reward_members, self.reward_samples[0], batch, generator, device)
        return (t_members, r_members,
                group_by_member(m, subset_size(self.members, t_members)),   # the done net shares it
                group_by_member(n, subset_size(self.reward_members, r_members)))

    def loss_given_draws(self, obs, action, reward, next_obs, done, draws: tuple, l2_weight: float,
                         l2_in_graph: bool):
        """`loss` given its random draws (`training_draws`): no random numbers, no host syncs, so
        torch.compile takes it whole. Returns (total, {part: 0-d tensor})."""
        t_members, r_members, t_route, r_route = draws
        sa = torch.cat([obs, action], -1)
        aux = torch.cat([next_obs, obs, action], -1)
        if t_route is None:
            delta = self.transition_net(sa, t_members)
            done_logit = self.done_net(aux, t_members).squeeze(-1)
            reward_hat = self.reward_net(aux, r_members).squeeze(-1)
        else:
            delta = self.transition_net.routed(sa, t_route, t_members)
            done_logit = self.done_net.routed(aux, t_route, t_members).squeeze(-1)
            reward_hat = self.reward_net.routed(aux, r_route, r_members).squeeze(-1)
        obs_loss = 0.5 * ((next_obs - (obs + delta)) ** 2).sum(-1).mean()
        reward_loss = 0.5 * ((reward - reward_hat) ** 2).mean()
        done_loss = F.binary_cross_entropy_with_logits(done_logit, done.expand_as(done_logit)).mean()
        if l2_in_graph:
            reg = l2_weight * (self.transition_net.l2() + self.reward_net.l2() + self.done_net.l2())
        else:
            with torch.no_grad():
                reg = l2_weight * 0.5 * torch.stack(torch._foreach_norm(list(self.parameters()))).square().sum()
        total = obs_loss + reward_loss + done_loss + reg
        return total, {"next_obs_loss": obs_loss.detach(), "reward_loss": reward_loss.detach(),
                       "done_loss": done_loss.detach(), "reg_loss": reg.detach()}


@torch.no_grad()
def calibration(model: WorldModel, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
                next_obs: torch.Tensor, horizon: int) -> dict[str, float]:
    """How far the ensembles' spread predicts their error, on T consecutive real transitions of one
    episode (s_t, a_t, r_t, s_{t+1}), t = 0..T-1: for k = 1..`horizon`, every transition member
    rolls out k steps from each s_t with the real actions a_t..a_{t+k-1}, and
        state_k = mean_t ||mean_m ŝ_{t+k} - s_{t+k}||² / mean_t sum_d var_m ŝ_{t+k,d}
    (unbiased variance over the M members); reward_1 is the same for the reward members at the
    real (s, a, s'). A calibrated ensemble (truth and members drawn alike) gives about 1 + 1/M
    (1.25 for 4 members); above that the ensemble is over-confident, so STEVE's inverse-variance
    weights over-trust the model. Uses no random numbers: training is unchanged by it."""
    members, length = model.members, obs.shape[0]
    result: dict[str, float] = {}   # a one-member ensemble has no spread: its keys are left out
    states = obs.unsqueeze(0).expand(members, -1, -1)          # [M, T, S]: starts at every s_t
    for k in range(1, horizon + 1 if members > 1 else 1):
        starts = length - k + 1                                # s_t with k real steps after it
        if starts < 1:
            break
        acts = action[k - 1:k - 1 + starts].unsqueeze(0).expand(members, -1, -1)
        states = model.transition(states[:, :starts], acts)     # ŝ_{t+k} for every member
        truth = next_obs[k - 1:k - 1 + starts]
        error = (states.mean(0) - truth).square().sum(-1).mean()
        result[f"state_{k}"] = float(error / states.var(0).sum(-1).mean())
    if model.reward_members > 1:
        guesses = model.reward(obs, action, next_obs)          # [N, T]
        error = (guesses.mean(0) - reward).square().mean()
        result["reward_1"] = float(error / guesses.var(0).mean())
    return result
