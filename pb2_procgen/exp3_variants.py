"""How much each difference of our TV.EXP3.M (exp3.py) from the reference's update matters, measured on
a synthetic time-varying bandit. Not used by train.py; it writes results/exp3_variants.json, from
which results.py builds the README's table.

    python pb2_procgen/exp3_variants.py [--seeds 1000] [--out pb2_procgen/results/exp3_variants.json]

The reference (procgen_autorl exp3.py, commit ec35f04) differs from exp3.py in four ways, each a
switch of `Variant` applied on top of ours, one at a time and all four together:

- `share_played_only`: the Exp3.S share term s = e·ω·Σw/K enters only for arms played that round,
  and multiplies: w_a ← w_a·(exp(kγ x̂/K) + s) per play (a capped played arm: w_a ← w_a + s); ours
  adds s to every arm after the exponential update, as Exp3.S does.
- `fixed_gamma`: γ = 0.2 whenever k ≥ K (B ≥ K); ours uses Exp3.M's γ with k = K − 1 (0.149 for
  K = 4, B = 4, T = 10).
- `permanent_cap`: Exp3.M's cap (weights above the threshold α set to α for the round's
  probabilities) is written into the weights and stays; ours caps a copy and keeps the weights.
- `share_in_probabilities`: the probabilities get + s as well (then renormalised for the draw).

and, together with the four, the two differences README detail 7 already lists (`reference_gamma`:
γ from T/10 without the cap at 1 when B < K; `estimate_over_Bm`: x̂ divided by B·m_i when B < K);
plus `no_draw_cap`: the explorer draws from the single-play distribution q instead of m/B, so no
category can exceed 1/B (the cap both ours and the reference have when B < K; when B ≥ K there is
no cap in either).

The bandit: K arms, k = B plays per round (DepRound when k < K, i.i.d. otherwise), Bernoulli rewards
with means drawn uniformly in [0, 1] per arm and drawn afresh at round T/2 (a time-varying
problem, as a hyperparameter's best category changes during training). Score per round: the
expected reward of one explorer's draw (Σ_i P(i)·μ_i) and the probability it puts on the best arm,
averaged over the T rounds; paired seeds (the same arm means per seed for every variant).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pb2_procgen.exp3 import TVExp3M, dep_round, exp3m_probabilities  # noqa: E402

SETTINGS = {  # name: (K categories, B plays per round, T rounds)
    "CartPole (K 4, B 4, T 10)": (4, 4, 10),
    "Procgen (K 8, B 4, T 50)": (8, 4, 50),
}


@dataclass(frozen=True)
class Variant:
    share_played_only: bool = False
    fixed_gamma: bool = False
    permanent_cap: bool = False
    share_in_probabilities: bool = False
    no_draw_cap: bool = False
    reference_gamma: bool = False        # B < K: γ from T/10, uncapped (README detail 7)
    estimate_over_Bm: bool = False       # B < K: x̂ = Σr / (B·m) (README detail 7)


VARIANTS = {
    "ours (exp3.py)": Variant(),
    "share term only for played arms, multiplied in": Variant(share_played_only=True),
    "γ = 0.2 when B ≥ K": Variant(fixed_gamma=True),
    "cap written into the weights (permanent)": Variant(permanent_cap=True),
    "share term added to the probabilities": Variant(share_in_probabilities=True),
    "all four": Variant(True, True, True, True),
    "all four, and γ from T/10 and x̂ / (B·m) (the reference's update)": Variant(
        True, True, True, True, reference_gamma=True, estimate_over_Bm=True),
    "no 1/B cap on the explorer's draw": Variant(no_draw_cap=True),
}


class VariantExp3M(TVExp3M):
    """TVExp3M with the reference's update differences switched on one by one."""

    def __init__(self, n_arms: int, plays: int, horizon: int, variant: Variant):
        super().__init__(n_arms, plays, horizon)
        self.variant = variant
        if variant.fixed_gamma and plays >= n_arms:
            self.gamma = 0.2
        if variant.reference_gamma and plays < n_arms:
            self.gamma = float(np.sqrt(n_arms * np.log(n_arms / plays) / ((np.e - 1) * plays * horizon / 10)))
        self.divisor = plays if variant.estimate_over_Bm and plays < n_arms else 1

    def share(self) -> float:
        return np.e * self.omega / self.n_arms          # s = e·ω·Σw/K with Σw = 1

    def marginals(self):
        K, k = self.n_arms, self.plays
        if k < K:
            p, capped = exp3m_probabilities(self.weights, k, self.gamma)
            if self.variant.permanent_cap and capped.any():
                w = self.weights / self.weights.sum()
                # the capped weight α is the one that gives p = 1 (the reference's weights[idx] = α)
                r = (1.0 / k - self.gamma / K) / (1.0 - self.gamma)
                rest = w[~capped].sum()
                alpha = r * rest / (1.0 - capped.sum() * r)
                w = np.where(capped, alpha, w)
                self.weights = w / w.sum()
        else:
            q, _ = exp3m_probabilities(self.weights, 1, self.gamma)
            p, capped = k * q / q.sum(), np.zeros(K, bool)
        if self.variant.share_in_probabilities:
            p = p + k * self.share()
        return p, capped

    def probabilities(self) -> np.ndarray:
        if self.variant.no_draw_cap:
            q, _ = exp3m_probabilities(self.weights, 1, self.gamma)
            return q / q.sum()
        return super().probabilities()

    def update(self, arms, rewards) -> None:
        arms, rewards = np.asarray(arms, int), np.asarray(rewards, float) / self.divisor
        if not self.variant.share_played_only:
            return super().update(arms, rewards)
        m, capped = self.marginals()
        eta = self.plays * self.gamma / self.n_arms
        s = self.share()
        w = self.weights / self.weights.sum()
        for arm, reward in zip(arms, rewards):       # per row, as the reference's loop
            if capped[arm]:
                w[arm] += s
            else:
                w[arm] *= np.exp(eta * reward / max(m[arm], 1e-12)) + s
        self.weights = w / w.sum()


def play(variant: Variant, K: int, B: int, T: int, seed: int) -> tuple[float, float]:
    """(mean expected reward of an explorer's draw, mean probability on the best arm) over T rounds."""
    env = np.random.default_rng([seed, 0])
    means = [env.uniform(size=K), env.uniform(size=K)]
    rng = np.random.default_rng([seed, 1])
    bandit = VariantExp3M(K, B, T, variant)
    reward_sum = best_sum = 0.0
    for t in range(T):
        mu = means[0] if t < T // 2 else means[1]
        probs = bandit.probabilities()
        reward_sum += float(probs @ mu)
        best_sum += float(probs[np.argmax(mu)])
        if B < K:                                    # B distinct arms, arm i with probability m_i
            m, _ = bandit.marginals()
            arms = dep_round(np.clip(m * B / m.sum(), 0.0, 1.0), B, rng)
        else:
            arms = rng.choice(K, size=B, p=probs)
        rewards = (env.uniform(size=len(arms)) < mu[arms]).astype(float)
        bandit.update(arms, rewards)
    return reward_sum / T, best_sum / T


def measure(seeds: int) -> dict:
    out = {}
    for setting, (K, B, T) in SETTINGS.items():
        out[setting] = {"K": K, "B": B, "T": T, "variants": {}}
        for name, variant in VARIANTS.items():
            rows = np.array([play(variant, K, B, T, seed) for seed in range(seeds)])
            out[setting]["variants"][name] = {"switches": asdict(variant),
                                              "expected_reward": [round(v, 6) for v in rows[:, 0].tolist()],
                                              "p_best_mean": float(rows[:, 1].mean())}
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "exp3_variants.json")
    args = parser.parse_args(argv)
    data = {"script": "pb2_procgen/exp3_variants.py", "seeds": args.seeds, "settings": measure(args.seeds)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(data, separators=(",", ":")) + "\n")
    for setting, entry in data["settings"].items():
        base = np.array(entry["variants"]["ours (exp3.py)"]["expected_reward"])
        print(setting)
        for name, v in entry["variants"].items():
            r, pb = np.array(v["expected_reward"]), v["p_best_mean"]
            d = r - base
            print(f"  {name:50s} reward {r.mean():.4f}  p_best {pb:.4f}  "
                  f"diff {d.mean():+.4f} ± {d.std(ddof=1) / np.sqrt(len(d)):.4f}")


if __name__ == "__main__":
    main()
