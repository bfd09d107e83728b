"""Credit assignment under a terminal reward: GAE lambda, value-head init and value clip
compared side by side on a synthetic token-level bandit (pure torch, no Ray, CPU).

    .venv/bin/python bench/credit_assignment.py [--iters 80] [--seeds 3]

The task mirrors one agent turn: T tokens are sampled, and one scalar reward arrives on
the last token only (DESIGN.md §6). The reward is decided by the EARLY tokens: the share
of the first K positions whose token hits that position's target, plus noise; later
tokens are irrelevant. The policy is a table of logits per (position, previous token),
the critic an MLP over a running sum of learnt features of the prefix, with a linear head (as the learner's value model:
a body, then Linear(hidden, 1)), so it can learn how much reward the prefix has already
earned. Each iteration runs the repo's own update: `terminal_rewards` -> `compute_gae` ->
masked whitening -> `ppo_policy_loss` + clipped `value_loss`, `ppo_epochs` optimizer
steps per batch (the demo's 2; with one epoch the value clip can never act, since V ==
V_old throughout a single optimizer step).

Reported per setting (mean over seeds):
- early/late |A|: mean |advantage| on the K reward-deciding tokens over that on the last
  K tokens, in the first and the last 10 iterations (1.0 = early tokens get as much
  signal as the last ones; lambda^(T-1-t) shrinks it while the critic knows nothing);
- value clipped: share of tokens where the clipped value loss was taken;
- reward at iterations 20 / 60 / last, and the first iteration at which the batch-mean
  reward (5-iteration running mean) reaches 0.6 (random policy: 1/V).
"""

from __future__ import annotations

import argparse
import itertools
import time

import torch
from torch import nn

from repo_ray.algos import compute_gae, masked_whiten, ppo_policy_loss, terminal_rewards, value_loss

K, VOCAB = 4, 8  # reward-deciding early tokens, vocabulary
TARGET = torch.arange(K) % VOCAB  # the token that scores at each early position


class Critic(nn.Module):
    """V(s_t) from the tokens before t: a running sum of learnt (position, token) features
    (what the prefix has earned so far) and the position, an MLP body, a linear head."""

    def __init__(self, tokens: int, init_std: float, hidden: int = 32):
        super().__init__()
        self.features = nn.Parameter(0.1 * torch.randn(tokens, VOCAB, 8))
        self.position = nn.Embedding(tokens, 8)
        self.body = nn.Sequential(nn.Linear(16, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, 1)
        if init_std == 0.0:
            nn.init.zeros_(self.head.weight)
        else:
            nn.init.normal_(self.head.weight, std=init_std)
        nn.init.zeros_(self.head.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        f = self.features[torch.arange(tokens.shape[1]), tokens]  # [B, T, 8]: token t's feature
        before = torch.cumsum(f, 1) - f  # the prefix before t
        x = torch.cat([before, self.position.weight.expand(tokens.shape[0], -1, -1)], -1)
        return self.head(self.body(x)).squeeze(-1)


def policy_logprobs(table: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    prev = torch.cat([torch.full_like(tokens[:, :1], VOCAB), tokens[:, :-1]], dim=1)
    logits = table[torch.arange(tokens.shape[1]), prev]  # [B, T, V]
    return torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)


@torch.no_grad()
def sample(table: torch.Tensor, batch: int, gen: torch.Generator) -> torch.Tensor:
    tokens = torch.empty(batch, table.shape[0], dtype=torch.long)
    prev = torch.full((batch,), VOCAB)
    for t in range(table.shape[0]):
        probs = torch.softmax(table[t, prev], -1)
        prev = tokens[:, t] = torch.multinomial(probs, 1, generator=gen).squeeze(-1)
    return tokens


def reward(tokens: torch.Tensor, gen: torch.Generator, noise: float = 0.1) -> torch.Tensor:
    hits = (tokens[:, :K] == TARGET).float().mean(-1)
    return hits + noise * torch.randn(tokens.shape[0], generator=gen)


def run(tokens_per_turn: int, lam: float, init_std: float, value_clip: float | None, seed: int, iters: int,
        batch: int = 64,
        ppo_epochs: int = 2, lr: float = 0.02, value_lr: float = 0.01) -> dict[str, float]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    table = torch.zeros(tokens_per_turn, VOCAB + 1, VOCAB, requires_grad=True)  # uniform start
    critic = Critic(tokens_per_turn, init_std)
    opt_pi = torch.optim.Adam([table], lr=lr)
    opt_v = torch.optim.Adam(critic.parameters(), lr=value_lr)
    mask = torch.ones(batch, tokens_per_turn)
    clip = value_clip if value_clip is not None else 1e9
    rewards, ratios, value_clipped = [], [], []
    for _ in range(iters):
        tokens = sample(table.detach(), batch, gen)
        r = reward(tokens, gen)
        with torch.no_grad():
            old_lp = policy_logprobs(table, tokens)
            old_v = critic(tokens)
            adv, ret = compute_gae(terminal_rewards(r, mask), old_v, mask, gamma=1.0, lam=lam)
        ratios.append(float(adv[:, :K].abs().mean() / adv[:, -K:].abs().mean().clamp(min=1e-12)))
        adv = masked_whiten(adv, mask)
        for _ in range(ppo_epochs):
            pl = ppo_policy_loss(policy_logprobs(table, tokens), old_lp, adv, mask, 0.2)
            opt_pi.zero_grad()
            pl.loss.backward()
            opt_pi.step()
            vl = value_loss(critic(tokens), old_v, ret, mask, clip)
            opt_v.zero_grad()
            (0.5 * vl.loss).backward()
            opt_v.step()
            value_clipped.append(float(vl.clip_fraction))
        rewards.append(float((tokens[:, :K] == TARGET).float().mean()))  # noise-free batch reward
    running = [sum(rewards[max(0, i - 4):i + 1]) / len(rewards[max(0, i - 4):i + 1]) for i in range(iters)]
    reach = next((i + 1 for i, m in enumerate(running) if m >= 0.6), float("nan"))
    return {"early_late": sum(ratios[:10]) / 10, "early_late_end": sum(ratios[-10:]) / 10,
            "value_clipped": sum(value_clipped) / len(value_clipped), "r20": rewards[19],
            "r60": rewards[min(59, iters - 1)], "r_last": sum(rewards[-5:]) / 5, "iters_to_0.6": reach}


def table(tokens: int, settings, seeds: int, iters: int) -> None:
    print(f"\nT={tokens} tokens, reward from the first K={K}, vocab {VOCAB}, batch 64, ppo_epochs 2, "
          f"{iters} iterations, {seeds} seeds; random-policy reward {1 / VOCAB:.3f}")
    print("| lambda | value head init | value clip | early/late abs(A) start | end | value clipped "
          "| reward @20 | @60 | last | iters to 0.6 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for lam, init_std, clip in settings:
        runs = [run(tokens, lam, init_std, clip, seed, iters) for seed in range(seeds)]
        m = {k: sum(r[k] for r in runs) / len(runs) for k in runs[0]}
        print(f"| {lam} | {'zero' if init_std == 0 else f'N(0, {init_std})'} | {clip if clip else 'off'} "
              f"| {m['early_late']:.3f} | {m['early_late_end']:.3f} | {m['value_clipped']:.3f} | {m['r20']:.3f} "
              f"| {m['r60']:.3f} | {m['r_last']:.3f} | {m['iters_to_0.6']:.1f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=80)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.process_time()
    # every combination on a short turn; lambda alone on a 3x longer one (real replies are longer)
    table(32, itertools.product((0.95, 1.0), (0.0, 0.02), (0.2, None)), args.seeds, args.iters)
    table(96, [(0.95, 0.0, 0.2), (1.0, 0.0, 0.2)], args.seeds, args.iters)
    print(f"\ntotal CPU time {time.process_time() - started:.1f} s")


if __name__ == "__main__":
    main()
