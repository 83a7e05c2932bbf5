"""Torch-vectorised environments of Optim4RL (Lan et al., 2024): Catch and the 8 gridworlds.

Every environment here steps many copies at once as tensors (no Python loop over copies), draws
all its randomness from its own seeded ``torch.Generator`` and resets a copy automatically when
its episode ends: ``step`` then returns ``done = 1`` and the FIRST observation of the next
episode, as the reference does. Observations are float32 0/1 boards laid out (C, H, W).

- ``catch``: bsuite Catch (Osband et al., 2020, "Behaviour Suite for RL"), as in the reference
  ``envs/catch.py`` of github.com/sail-sg/optim4rl. A 10-row x 5-column board, one channel; the
  ball starts in a uniformly random column of the top row and falls one row per step; the paddle
  starts in the middle column (5 // 2 = 2) of the bottom row and moves left / stays / moves right
  (actions 0, 1, 2), clipped at the edges. When the ball reaches the bottom row (after 9 steps)
  the episode ends with reward +1 if the paddle is under it, else -1; every other reward is 0.
- Gridworlds of Oh et al. (2020, "Discovering Reinforcement Learning Algorithms", App. "Grid
  world"), as in the reference ``envs/gridworld.py``: a room of free cells surrounded by a wall;
  9 actions (stay, up, right, down, left, down-left, down-right, up-right, up-left); a move into
  a wall leaves the agent where it was. Each object is [reward, terminate prob, respawn prob].
  Reset puts the agent and all objects on distinct free cells. Stepping onto an object collects
  it: its reward is paid and it disappears; a collected -1 object ends the episode with
  probability 0.5; at every step (the collecting step included) each absent object reappears
  with its respawn probability on a uniformly random free cell (which may be the agent's or
  another object's cell, as in the reference). An episode also ends after ``max_steps`` steps.
  Rewards are multiplied by ``reward_scaling``. Observation channels: one per object, then the
  agent. Short names (the spec's) -> reference names, interior size, objects, horizon:
    sss small_sparse_short 3x8,  one +1 and one -1, respawn 0.05, 50 steps
    ssl small_sparse_long  8x3,  one +1 and one -1, respawn 0.05, 500 steps
    sds small_dense_short  4x6,  one +1 and one -1, respawn 0.5,  50 steps
    sdl small_dense_long   6x4,  one +1 and one -1, respawn 0.5,  500 steps
    bss big_sparse_short  10x12, two +1 and two -1, respawn 0.05, 50 steps
    bsl big_sparse_long   12x10, two +1 and two -1, respawn 0.05, 500 steps
    bds big_dense_short    9x13, two +1 and two -1, respawn 0.5,  50 steps
    bdl big_dense_long    13x9,  two +1 and two -1, respawn 0.5,  500 steps
  (+1 objects never terminate; -1 objects terminate with probability 0.5.)

Where this follows the reference rather than the spec's wording: the spec's map sizes are the
free interiors; the observation, like the reference's, also shows the wall border, so its H x W
is the interior + 2 (e.g. sss observations are 5 x 10). The spec says one channel per object
TYPE; the reference (followed here) has one channel per OBJECT, so the big maps have 5 channels.
Small differences from the reference: Catch observations are (1, H, W) rather than (H, W, 1);
``reward_scaling`` also applies to Catch (the reference's Catch ignores it; the default 1.0 is
the same); a probability p fires when a uniform draw u in [0, 1) has u < p (the reference uses
u <= p, which differs only on a set of measure zero). The random streams differ from JAX's.
"""
from dataclasses import dataclass

import torch

from common.cli import UsageError


class VecEnv:
    """Base class: ``num_envs`` copies of one environment stepped together, with auto-reset.

    Subclasses set ``name``, ``obs_shape`` (C, H, W), ``num_actions``, ``horizon`` (the longest
    episode) and ``_STATE_KEYS`` (the tensors that make up the state), and implement
    ``_alloc_state``, ``_restart(mask)``, ``_advance(action)`` and ``observe``.
    """
    name: str
    obs_shape: tuple[int, int, int]
    num_actions: int
    horizon: int
    _STATE_KEYS: tuple[str, ...] = ()

    def __init__(self, num_envs: int, seed: int, device="cpu", reward_scaling: float = 1.0):
        if int(num_envs) < 1:
            raise UsageError(f"num_envs must be at least 1, got {num_envs}")
        self.num_envs = int(num_envs)
        self.device = torch.device(device)
        self.reward_scaling = float(reward_scaling)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(seed))
        self._alloc_state()
        self.reset()

    # -- public API ---------------------------------------------------------------------------
    def reset(self) -> torch.Tensor:
        """Start a new episode in every copy; returns the observations [E, C, H, W]."""
        return self.reset_envs(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))

    def reset_envs(self, mask: torch.Tensor) -> torch.Tensor:
        """Start a new episode only where ``mask`` [E] is true; returns all observations."""
        mask = torch.as_tensor(mask, device=self.device).bool()
        if mask.shape != (self.num_envs,):
            raise ValueError(f"mask must have shape ({self.num_envs},), got {tuple(mask.shape)}")
        self._restart(mask)
        return self.observe()

    def step(self, action: torch.Tensor):
        """Apply ``action`` [E] (long); returns (obs, reward, done), reward and done float32 [E].

        Where done is 1 the episode ended at this step and obs is already the next episode's
        first observation.
        """
        action = torch.as_tensor(action, device=self.device).long()
        if action.shape != (self.num_envs,):
            raise ValueError(f"action must have shape ({self.num_envs},), got {tuple(action.shape)}")
        reward, done = self._advance(action)
        self._restart(done)
        return self.observe(), reward * self.reward_scaling, done.float()

    def state_dict(self) -> dict:
        """Everything needed to continue exactly from here (copies, not views)."""
        d = {k: getattr(self, k).clone() for k in self._STATE_KEYS}
        d.update(name=self.name, num_envs=self.num_envs, generator=self.generator.get_state())
        return d

    def load_state_dict(self, d: dict) -> None:
        if d["name"] != self.name or d["num_envs"] != self.num_envs:
            raise ValueError(f"state of {d['name']} x {d['num_envs']} cannot be loaded into "
                             f"{self.name} x {self.num_envs}")
        for k in self._STATE_KEYS:
            setattr(self, k, d[k].to(self.device).clone())
        self.generator.set_state(d["generator"])

    # -- helpers for subclasses -----------------------------------------------------------------
    def _rand(self, *shape) -> torch.Tensor:
        return torch.rand(shape, generator=self.generator, device=self.device)

    def _randint(self, high: int, *shape) -> torch.Tensor:
        return torch.randint(0, high, shape, generator=self.generator, device=self.device)

    def _zeros_long(self, *shape) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.long, device=self.device)


# ------------------------------------------------------------------------------------------------
# Catch
# ------------------------------------------------------------------------------------------------
class Catch(VecEnv):
    """bsuite Catch, 10 x 5, as in the reference's envs/catch.py (see the module docstring)."""
    name = "catch"
    ROWS, COLS = 10, 5
    obs_shape = (1, ROWS, COLS)
    num_actions = 3
    horizon = ROWS - 1  # the ball needs 9 steps to fall from the top row to the bottom row
    _STATE_KEYS = ("ball_row", "ball_col", "paddle_col")

    def _alloc_state(self):
        self.ball_row = self._zeros_long(self.num_envs)
        self.ball_col = self._zeros_long(self.num_envs)
        self.paddle_col = self._zeros_long(self.num_envs)

    def _restart(self, mask):
        # Draw for every copy, not only the masked ones, so the generator advances the same way
        # whatever the mask is (and no device-to-host sync is needed to count them).
        col = self._randint(self.COLS, self.num_envs)
        self.ball_row = torch.where(mask, 0, self.ball_row)
        self.ball_col = torch.where(mask, col, self.ball_col)
        self.paddle_col = torch.where(mask, self.COLS // 2, self.paddle_col)

    def _advance(self, action):
        self.paddle_col = (self.paddle_col + action - 1).clamp(0, self.COLS - 1)
        self.ball_row = self.ball_row + 1
        done = self.ball_row == self.ROWS - 1
        caught = self.ball_col == self.paddle_col
        reward = torch.where(done, torch.where(caught, 1.0, -1.0), 0.0)
        return reward, done

    def observe(self) -> torch.Tensor:
        board = torch.zeros(self.num_envs, self.ROWS * self.COLS, device=self.device)
        board.scatter_(1, (self.ball_row * self.COLS + self.ball_col)[:, None], 1.0)
        paddle = (self.ROWS - 1) * self.COLS + self.paddle_col
        board.scatter_(1, paddle[:, None], 1.0)
        return board.view(self.num_envs, *self.obs_shape)


# ------------------------------------------------------------------------------------------------
# Gridworlds (Oh et al., 2020)
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GridSpec:
    """One gridworld: ``str_map`` rows ('#' wall, anything else free), objects as
    (reward, terminate probability, respawn probability), and the horizon ``max_steps``."""
    str_map: tuple[str, ...]
    objects: tuple[tuple[float, float, float], ...]
    max_steps: int


def walled_room(rows: int, cols: int) -> tuple[str, ...]:
    """A rows x cols free interior inside a one-cell wall border."""
    wall = "#" * (cols + 2)
    return (wall,) + ("#" + " " * cols + "#",) * rows + (wall,)


def objects(n_each: int, respawn: float) -> tuple[tuple[float, float, float], ...]:
    """``n_each`` +1 objects (never terminate) followed by ``n_each`` -1 objects (terminate 0.5)."""
    return ((1.0, 0.0, respawn),) * n_each + ((-1.0, 0.5, respawn),) * n_each


SPARSE, DENSE = 0.05, 0.5   # respawn probabilities
SHORT, LONG = 50, 500       # horizons
GRIDWORLDS: dict[str, GridSpec] = {
    "small_sparse_short": GridSpec(walled_room(3, 8), objects(1, SPARSE), SHORT),
    "small_sparse_long": GridSpec(walled_room(8, 3), objects(1, SPARSE), LONG),
    "small_dense_short": GridSpec(walled_room(4, 6), objects(1, DENSE), SHORT),
    "small_dense_long": GridSpec(walled_room(6, 4), objects(1, DENSE), LONG),
    "big_sparse_short": GridSpec(walled_room(10, 12), objects(2, SPARSE), SHORT),
    "big_sparse_long": GridSpec(walled_room(12, 10), objects(2, SPARSE), LONG),
    "big_dense_short": GridSpec(walled_room(9, 13), objects(2, DENSE), SHORT),
    "big_dense_long": GridSpec(walled_room(13, 9), objects(2, DENSE), LONG),
}

# (row, col) offsets of the 9 actions, in the reference's order.
MOVES = ((0, 0), (-1, 0), (0, 1), (1, 0), (0, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))


class Gridworld(VecEnv):
    """A gridworld of Oh et al. (2020) (see the module docstring). ``name`` picks one of
    ``GRIDWORLDS``; tests may pass their own ``spec`` instead.

    State: ``agent_pos`` [E, 2] and ``obj_pos`` [E, K, 2] as (row, col), with (-1, -1) for an
    object that is absent (collected, not yet respawned), and ``time`` [E] steps so far.
    """
    num_actions = len(MOVES)
    _STATE_KEYS = ("agent_pos", "obj_pos", "time")

    def __init__(self, num_envs: int, seed: int, device="cpu", reward_scaling: float = 1.0, *,
                 name: str = "small_dense_short", spec: GridSpec | None = None):
        self.name = name
        self.spec = GRIDWORLDS[name] if spec is None else spec
        dev = torch.device(device)
        walls = torch.tensor([[c == "#" for c in row] for row in self.spec.str_map], device=dev)
        self.H, self.W = walls.shape
        self.K = len(self.spec.objects)
        self.walls_flat = walls.flatten()
        self.free_cells = (~self.walls_flat).nonzero().squeeze(1)  # flat indices r * W + c
        if len(self.free_cells) < self.K + 1:
            raise ValueError(f"{name}: {len(self.free_cells)} free cells for {self.K + 1} items")
        self.objects = torch.tensor(self.spec.objects, dtype=torch.float32, device=dev).view(-1, 3)
        self.moves = torch.tensor(MOVES, device=dev)
        self.obs_shape = (self.K + 1, self.H, self.W)
        self.horizon = self.max_steps = self.spec.max_steps
        super().__init__(num_envs, seed, device, reward_scaling)

    def _alloc_state(self):
        self.agent_pos = self._zeros_long(self.num_envs, 2)
        self.obj_pos = self._zeros_long(self.num_envs, self.K, 2)
        self.time = self._zeros_long(self.num_envs)

    def _cells_to_pos(self, cells):
        return torch.stack((cells // self.W, cells % self.W), dim=-1)

    def _restart(self, mask):
        # K + 1 distinct free cells per copy: the top K + 1 of iid uniform keys, one per free
        # cell, are a uniformly random subset (in random order). Drawn for all copies, see Catch.
        keys = self._rand(self.num_envs, len(self.free_cells))
        picks = self._cells_to_pos(self.free_cells[keys.topk(self.K + 1, dim=1).indices])
        self.agent_pos = torch.where(mask[:, None], picks[:, 0], self.agent_pos)
        self.obj_pos = torch.where(mask[:, None, None], picks[:, 1:], self.obj_pos)
        self.time = torch.where(mask, 0, self.time)

    def _move(self, action):
        """The agent's next position: clipped to the board, unchanged if it would hit a wall."""
        target = self.agent_pos + self.moves[action]
        row = target[:, 0].clamp(0, self.H - 1)
        col = target[:, 1].clamp(0, self.W - 1)
        blocked = self.walls_flat[row * self.W + col]
        return torch.where(blocked[:, None], self.agent_pos, torch.stack((row, col), dim=1))

    def _advance(self, action):
        self.agent_pos = self._move(action)
        reward_p, terminate_p, respawn_p = self.objects.unbind(1)
        # An absent object sits at (-1, -1), which the agent can never occupy.
        collected = (self.obj_pos == self.agent_pos[:, None, :]).all(dim=2)       # [E, K]
        reward = (collected * reward_p).sum(dim=1)
        terminated = (collected & (self._rand(self.num_envs, self.K) < terminate_p)).any(dim=1)
        obj_pos = torch.where(collected[..., None], -1, self.obj_pos)
        # Absent objects (the one just collected included) respawn anywhere free, independently.
        respawn = (obj_pos[..., 0] < 0) & (self._rand(self.num_envs, self.K) < respawn_p)
        cells = self.free_cells[self._randint(len(self.free_cells), self.num_envs, self.K)]
        self.obj_pos = torch.where(respawn[..., None], self._cells_to_pos(cells), obj_pos)
        self.time = self.time + 1
        return reward, terminated | (self.time >= self.max_steps)

    def observe(self) -> torch.Tensor:
        obs = torch.zeros(self.num_envs, self.K + 1, self.H * self.W, device=self.device)
        present = self.obj_pos[..., 0] >= 0
        # Each object has its own channel, so writing a 0 for an absent one (at a clamped index)
        # can never erase another object.
        flat = (self.obj_pos[..., 0] * self.W + self.obj_pos[..., 1]).clamp(min=0)
        obs[:, :self.K].scatter_(2, flat[..., None], present[..., None].float())
        agent = self.agent_pos[:, 0] * self.W + self.agent_pos[:, 1]
        obs[:, self.K].scatter_(1, agent[:, None], 1.0)
        return obs.view(self.num_envs, *self.obs_shape)


# ------------------------------------------------------------------------------------------------
# Names and construction
# ------------------------------------------------------------------------------------------------
ENV_NAMES: tuple[str, ...] = ("catch",) + tuple(GRIDWORLDS)
ALIASES: dict[str, str] = {
    "".join(word[0] for word in name.split("_")): name for name in GRIDWORLDS}  # sss, ssl, ...


def make_env(name: str, num_envs: int, seed: int, device="cpu",
             reward_scaling: float = 1.0) -> VecEnv:
    """The environment ``name`` (a name of ENV_NAMES or a short name of ALIASES)."""
    full = ALIASES.get(name, name)
    if full == "catch":
        return Catch(num_envs, seed, device, reward_scaling)
    if full in GRIDWORLDS:
        return Gridworld(num_envs, seed, device, reward_scaling, name=full)
    raise UsageError(f"unknown env {name!r}; allowed: {', '.join(ENV_NAMES)} "
                     f"(or the short names {', '.join(ALIASES)})")
