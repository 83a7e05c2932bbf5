"""Two runs with the same seed are identical end to end: env, replay sampling and training."""
import numpy as np
import torch

from common.buffers import ReplayBuffer
from common.device import seed_everything
from common.envs import StepCounter, make_env
from common.nets import mlp


def tiny_training_run(seed, steps=300):
    seed_everything(seed)
    counter = StepCounter()
    env = make_env("CartPole-v1", seed, counter=counter)
    buffer = ReplayBuffer(1000, env.observation_space.shape, (), action_dtype=np.int64, seed=seed)
    q = mlp(4, 2, hidden=(32,))
    optimizer = torch.optim.Adam(q.parameters(), lr=1e-3)
    obs, _ = env.reset()
    for _ in range(steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        buffer.add(obs, action, reward, next_obs, terminated, truncated)
        obs = env.reset()[0] if terminated or truncated else next_obs
        batch = buffer.sample(16)
        with torch.no_grad():
            target = batch.rewards + 0.99 * (1 - batch.terminated) * q(batch.next_obs).max(1).values
        predicted = q(batch.obs).gather(1, batch.actions[:, None]).squeeze(1)
        loss = torch.nn.functional.mse_loss(predicted, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert counter.count == steps == buffer.total_added
    return torch.cat([p.detach().flatten() for p in q.parameters()])


def test_same_seed_same_result_and_other_seed_differs():
    first = tiny_training_run(0)
    assert torch.equal(first, tiny_training_run(0))
    assert not torch.equal(first, tiny_training_run(1))
