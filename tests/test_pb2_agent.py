"""The PPO/DrAC agent of pb2_procgen: augmentations, IMPALA network, GAE, reward scaling,
hyperparameter setting, segments on CartPole and Procgen, determinism, and a learning check."""
import math
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from common.cli import UsageError
from pb2_procgen.augment import (CUTOUT_BOX, CUTOUT_PIVOT, PAD, augment, hsv_to_rgb,
                                 rgb_to_hsv)
from pb2_procgen.ppo import (PPO_DEFAULTS, ActorCritic, ImpalaCNN, PPOAgent, RewardNormalizer,
                             compute_gae)
from pb2_procgen.procgen_env import PROCGEN_GAMES, ProcgenVecEnv, is_procgen
from pb2_procgen.search_space import PROCGEN_AUGMENTATIONS, VECTOR_AUGMENTATIONS

TINY = dict(num_envs=4, num_steps=32, minibatches=2)
TINY_PROCGEN = dict(num_envs=2, num_steps=16, minibatches=2, epochs=1)


def gen(seed):
    return torch.Generator().manual_seed(seed)


def images(n=32, seed=0):
    return torch.randint(0, 256, (n, 3, 64, 64), generator=gen(seed), dtype=torch.uint8)


# ---------------------------------------------------------------------------- augmentations

@pytest.mark.parametrize("name", PROCGEN_AUGMENTATIONS)
def test_image_augmentation_keeps_shape_dtype_range_and_is_deterministic(name):
    obs = images()
    out = augment(name, obs, gen(1))
    assert out.shape == obs.shape and out.dtype == torch.uint8
    assert torch.equal(out, augment(name, obs, gen(1)))          # same generator state
    assert not torch.equal(out, obs)                               # it changes the batch
    if name != "grayscale":                                        # grayscale has no randomness
        assert not torch.equal(out, augment(name, obs, gen(2)))
    unit = obs.float() / 255
    out_f = augment(name, unit, gen(1))
    assert out_f.dtype == torch.float32 and out_f.shape == obs.shape
    assert out_f.min() >= 0 and out_f.max() <= 1
    assert torch.allclose(out_f * 255, out.float(), atol=1.0)      # uint8 and float agree


def test_flip_and_rotate_apply_one_of_the_allowed_transforms_per_sample():
    obs = images()
    out = augment("flip", obs, gen(3))
    flipped = [torch.equal(o, x.flip(1)) for o, x in zip(out, obs)]
    kept = [torch.equal(o, x) for o, x in zip(out, obs)]
    assert all(f or k for f, k in zip(flipped, kept)) and any(flipped) and any(kept)
    out = augment("rotate", obs, gen(3))
    turns = [[k for k in range(4) if torch.equal(o, torch.rot90(x, k, (1, 2)))]
             for o, x in zip(out, obs)]
    assert all(len(t) == 1 for t in turns)
    assert {t[0] for t in turns} == {0, 1, 2, 3}


def test_crop_is_a_window_of_the_replicate_padded_image():
    obs = images(8)
    out = augment("crop", obs, gen(4))
    padded = torch.nn.functional.pad(obs.float(), (PAD,) * 4, mode="replicate")
    for o, p in zip(out.float(), padded):
        assert any(torch.equal(o, p[:, y:y + 64, x:x + 64])
                   for y in range(2 * PAD + 1) for x in range(2 * PAD + 1))


@pytest.mark.parametrize("name", ["cutout", "cutout-color"])
def test_cutout_changes_one_box_of_allowed_size_and_place(name):
    obs = images(16) | 1                                   # no pixel is 0: zeroing is visible
    out = augment(name, obs, gen(5))
    for o, x in zip(out, obs):
        changed = (o != x).any(0)
        rows, cols = changed.any(1).nonzero()[:, 0], changed.any(0).nonzero()[:, 0]
        h = rows.max() - rows.min() + 1
        top = rows.min().item()
        assert CUTOUT_BOX[0] <= h < CUTOUT_BOX[1] and top == CUTOUT_PIVOT[0] + h
        assert cols.min().item() - CUTOUT_PIVOT[1] in range(*CUTOUT_BOX)
        box = o[:, rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        # one flat colour per sample (black for cutout)
        assert (box == box[:, :1, :1]).all()
        if name == "cutout":
            assert (box == 0).all()


def test_grayscale_weights_and_hsv_round_trip():
    x = torch.rand((4, 3, 8, 8), generator=gen(6))
    gray = augment("grayscale", x, gen(0))
    expected = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(gray, expected[:, None].expand_as(x), atol=1e-6)
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)
    # pure red, green and blue have hues 0, 1/3, 2/3
    primaries = torch.eye(3).view(3, 3, 1, 1)
    assert torch.allclose(rgb_to_hsv(primaries)[:, 0, 0, 0], torch.tensor([0, 1 / 3, 2 / 3]))


def test_vector_augmentations():
    obs = torch.randn((256, 4), generator=gen(7)) + 3.0        # no feature is 0 by chance
    for name in VECTOR_AUGMENTATIONS:
        out = augment(name, obs, gen(8))
        assert out.shape == obs.shape and out.dtype == obs.dtype
        assert torch.equal(out, augment(name, obs, gen(8)))
        assert not torch.equal(out, obs)
    noise = augment("gaussian", obs, gen(8)) - obs
    assert abs(noise.std().item() - 0.1) < 0.01
    ratio = augment("scale", obs, gen(8)) / obs
    assert ratio.min() >= 0.8 and ratio.max() <= 1.2 and ratio.std() > 0.05
    dropped = augment("dropout", obs, gen(8)) == 0
    assert 0.15 < dropped.float().mean().item() < 0.25
    flipped = augment("sign-flip", obs, gen(8)) == -obs
    assert (flipped.sum(1) == 1).all()


def test_unknown_or_misapplied_augmentation_is_a_usage_error():
    with pytest.raises(UsageError, match="allowed"):
        augment("blur", images(2), gen(0))
    with pytest.raises(UsageError):
        augment("crop", torch.zeros(2, 4), gen(0))


# ---------------------------------------------------------------------- network and returns

def test_impala_network_shapes():
    torso = ImpalaCNN((3, 64, 64), (16, 32, 32), 256)
    assert torso.fc.in_features == 32 * 8 * 8
    net = ActorCritic(torso, 15)
    logits, values = net(images(5))
    assert logits.shape == (5, 15) and values.shape == (5,)
    # uint8 input is scaled by 1/255 inside
    obs = images(2)
    assert torch.allclose(net(obs)[0], net(obs.float() / 255)[0])


def test_gae_matches_a_hand_computed_example_with_a_terminal_in_the_middle():
    gamma, lam = 0.9, 0.8
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    values = torch.tensor([[0.5], [1.0], [1.5]])
    # value of the state after each step; after the terminal it is the next episode's first
    # state, which must not be used; after step 2 it is the bootstrap value
    next_values = torch.tensor([[1.0], [99.0], [2.0]])
    terminated = torch.tensor([[0.0], [1.0], [0.0]])
    adv = compute_gae(rewards, values, next_values, terminated, terminated.clone(), gamma, lam)
    a2 = 3 + 0.9 * 2.0 - 1.5                       # 3.3
    a1 = 2 - 1.0                                   # terminal: no bootstrap, no chaining
    a0 = (1 + 0.9 * 1.0 - 0.5) + 0.9 * 0.8 * a1    # 1.4 + 0.72 = 2.12
    assert torch.allclose(adv[:, 0], torch.tensor([a0, a1, a2]))
    # a time-limit end bootstraps from the final observation but does not chain advantages
    truncated_end = torch.tensor([[0.0], [1.0], [0.0]])
    adv = compute_gae(rewards, values, torch.tensor([[1.0], [4.0], [2.0]]),
                      torch.zeros(3, 1), truncated_end, gamma, lam)
    assert adv[1, 0].item() == pytest.approx(2 + 0.9 * 4.0 - 1.0)
    assert adv[0, 0].item() == pytest.approx(1.4 + 0.72 * (2 + 3.6 - 1.0))


def test_reward_normalizer_divides_by_the_running_std_of_discounted_returns():
    norm = RewardNormalizer(gamma=0.5, clip=10.0)
    norm.reset(2)
    rng = np.random.default_rng(0)
    ret, seen = np.zeros(2), []
    for t in range(50):
        r, done = rng.normal(size=2), np.array([t % 7 == 6, False])
        out = norm(r, done)
        ret = 0.5 * ret + r
        seen.append(ret.copy())
        assert np.allclose(out, np.clip(r / np.sqrt(np.var(np.concatenate(seen)) + 1e-8),
                                        -10, 10), rtol=1e-2)
        ret[done] = 0.0


# --------------------------------------------------------------------------------- the agent

def test_defaults_and_config_errors():
    for key, value in dict(num_envs=64, num_steps=256, epochs=3, minibatches=8, gamma=0.999,
                           gae_lambda=0.95, value_coef=0.5, max_grad_norm=0.5,
                           adam_eps=1e-5).items():
        assert PPO_DEFAULTS[key] == value
    assert set(PROCGEN_GAMES) >= {"bigfish", "starpilot"} and len(PROCGEN_GAMES) == 16
    assert is_procgen("bigfish") and not is_procgen("CartPole-v1")
    with pytest.raises(UsageError, match="unknown PPO config"):
        PPOAgent("CartPole-v1", {}, {"num_env": 4})
    with pytest.raises(UsageError, match="does not apply"):
        PPOAgent("CartPole-v1", {"aug_type": "crop"}, TINY)
    with pytest.raises(UsageError, match="unknown environment"):
        PPOAgent("CartPol-v1", {}, TINY)
    with pytest.raises(UsageError, match="unknown hyperparameter"):
        PPOAgent("CartPole-v1", {}, TINY).set_hyperparameters({"learning_rate": 1e-3})


def test_set_hyperparameters_writes_lr_and_survives_load_state_dict():
    source = PPOAgent("CartPole-v1", {"lr": 1e-3}, TINY, seed=1)
    target = PPOAgent("CartPole-v1", {"lr": 2e-4}, TINY, seed=2)
    assert all(g["lr"] == 2e-4 for g in target.optimizer.param_groups)
    source.train_segment(1, seed=3)
    state = source.state_dict()
    # exploit: copy weights + optimizer state, then apply the explored config
    target.load_state_dict(state)
    assert target.hyperparameters["lr"] == 2e-4
    assert all(g["lr"] == 2e-4 for g in target.optimizer.param_groups)
    target.set_hyperparameters({"lr": 3e-5, "aug_type": "sign-flip", "aug_coef": 0.3})
    assert all(g["lr"] == 3e-5 for g in target.optimizer.param_groups)
    assert target.hyperparameters["aug_type"] == "sign-flip"
    assert target.agent_steps == source.agent_steps == 4 * 32
    for a, b in zip(target.net.parameters(), source.net.parameters()):
        assert torch.equal(a, b)
    assert target.optimizer.state_dict()["state"][0]["step"] == \
        source.optimizer.state_dict()["state"][0]["step"]
    # the state is a copy: training on does not change it
    before = state["net"]["actor.weight"].clone()
    source.train_segment(1, seed=4)
    assert torch.equal(state["net"]["actor.weight"], before)


def test_cartpole_segment_steps_and_determinism():
    a = PPOAgent("CartPole-v1", {}, TINY, seed=0)
    result = a.train_segment(300, seed=11)
    assert result["steps"] >= 300 and result["steps"] % (4 * 32) == 0
    assert result["steps"] == a.agent_steps == 3 * 128
    assert result["episodes"] > 0 and math.isfinite(result["train_return"])
    # same state + same seed -> same segment, also after a pickle round trip
    b = pickle.loads(pickle.dumps(a))
    c = PPOAgent("CartPole-v1", {}, TINY, seed=5)
    c.load_state_dict(a.state_dict())
    ra, rb, rc = (x.train_segment(100, seed=12) for x in (a, b, c))
    assert ra == rb == rc
    for p, q in zip(a.net.parameters(), c.net.parameters()):
        assert torch.equal(p, q)
    ret = a.test_return(3, seed=100)
    assert math.isfinite(ret) and a.last_test_steps > 0
    assert ret == b.test_return(3, seed=100)
    assert a.train_segment(100, seed=13) != b.train_segment(100, seed=14)


def test_gradient_accumulation_over_chunks_equals_whole_minibatch_updates():
    whole = PPOAgent("CartPole-v1", {"aug_coef": 0.0}, {**TINY, "chunk_size": None}, seed=3)
    chunked = PPOAgent("CartPole-v1", {"aug_coef": 0.0}, {**TINY, "chunk_size": 24}, seed=3)
    initial = whole.state_dict()["net"]
    whole.train_segment(1, seed=4)
    chunked.train_segment(1, seed=4)
    for name, p in whole.net.state_dict().items():
        assert not torch.equal(p, initial[name])                   # the update moved it
        assert torch.allclose(p, chunked.net.state_dict()[name], atol=1e-5)


def test_procgen_segment_runs_and_is_deterministic():
    agents = [PPOAgent("bigfish", {"aug_type": aug}, TINY_PROCGEN, seed=0)
              for aug in ("color-jitter", "color-jitter")]
    results = [agent.train_segment(40, seed=21) for agent in agents]
    assert results[0]["steps"] == 64 and results[0]["steps"] % (2 * 16) == 0
    assert results[0] == results[1]
    assert agents[0].agent_steps == 64
    for p, q in zip(agents[0].net.parameters(), agents[1].net.parameters()):
        assert torch.equal(p, q)
    assert math.isfinite(agents[0].test_return(1, seed=100))


def test_procgen_adapter_shapes_seeding_and_quiet_import():
    env = ProcgenVecEnv("bigfish", 3, seed=7)
    obs = env.reset()
    assert obs.shape == (3, 3, 64, 64) and obs.dtype == np.uint8
    frames = [obs]
    for _ in range(20):
        obs, rewards, dones, finished = env.step(np.zeros(3, dtype=np.int64))
        frames.append(obs)
        assert rewards.shape == (3,) and dones.shape == (3,) and isinstance(finished, list)
    env.close()
    again = ProcgenVecEnv("bigfish", 3, seed=7)
    assert np.array_equal(again.reset(), frames[0])
    again.close()
    other = ProcgenVecEnv("bigfish", 3, seed=8)
    assert not np.array_equal(other.reset(), frames[0])
    other.close()
    with pytest.raises(UsageError, match="unknown Procgen game"):
        ProcgenVecEnv("bigfsh", 1, 0)
    code = ("from pb2_procgen.procgen_env import ProcgenVecEnv; "
            "e = ProcgenVecEnv('bigfish', 1, 0); e.reset(); e.close()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Gym" not in done.stderr and "gym" not in done.stdout


@pytest.mark.slow
def test_cartpole_learns_above_random():
    config = dict(num_envs=8, num_steps=128, minibatches=4, epochs=4)
    agent = PPOAgent("CartPole-v1", {"lr": 1e-3, "entropy_coef": 0.0, "clip_param": 0.2,
                                     "aug_coef": 0.05, "aug_type": "gaussian"}, config, seed=0)
    result = agent.train_segment(40_000, seed=1)
    assert result["steps"] >= 40_000
    # a random policy averages about 22; this seed reaches well over 100
    assert result["train_return"] > 100, result


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_population_with_drac_runs_on_cuda(tmp_path):
    import json

    from pb2_procgen.train import main as train_main
    agent = PPOAgent("bigfish", {"lr": 5e-4, "entropy_coef": 0.01, "clip_param": 0.2, "aug_coef": 0.1,
                                 "aug_type": "crop"},
                     {"num_envs": 4, "num_steps": 32, "minibatches": 2, "epochs": 1}, seed=0, device="cuda")
    result = agent.train_segment(128, seed=0)
    assert next(agent.net.parameters()).is_cuda and np.isfinite(result["train_return"])
    out = tmp_path / "run"
    train_main(["--smoke", "--env", "bigfish", "--search", "PB2", "--cat_exp", "exp3_dep", "--device", "cuda",
                "--no-plots", "--out-dir", str(out)])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rounds"] >= 2 and math.isfinite(summary["best_return"])


def test_a_procgen_segment_in_which_no_episode_ends_has_no_return():
    """bigfish, 4 envs x 32 steps, segment seed 1: no episode ends, so there is no return to
    report (None, never NaN: the run never ranks or compares on it)."""
    agent = PPOAgent("bigfish", {}, dict(num_envs=4, num_steps=32, minibatches=2, epochs=1), seed=0)
    result = agent.train_segment(1, seed=1)
    assert result["episodes"] == 0 and result["train_return"] is None and result["steps"] == 128
