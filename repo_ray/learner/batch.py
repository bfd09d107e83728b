"""Trajectories, dialogues and preference pairs as padded token tensors for the learner.

Layout and alignment (used by every trainer): a row is `prompt ids + window ids`, where the
window is what the loss is about (an RL response, a DPO reply, an SFT dialogue after its
first token). Prompts are left-padded to width P and windows right-padded to width R, so
every window starts at column P; position ids come from the attention mask, so each real
token keeps the position it had unpadded (as in a left-padded rollout).

Logits at column t predict the token at column t + 1 (and the value head's output at t
is V of the state that has seen tokens ..t). Window token j (column P + j) is therefore
predicted at column P + j - 1: the trainers ask the model for the logits of the last
R + 1 columns only (`logits_to_keep`: never a [B, P + R, vocab] tensor) and drop the
last one, giving [B, R] aligned with `labels` = the window tokens. The same slice of the
value model's output gives V(s_j) for each window token. `algos.sequence_logprobs`
shifts nothing; this module and `trainers.window_logits` do the shift once.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Literal

import torch

from repo_ray.domain.schemas import PreferencePair, SftDialogue
from repo_ray.model.chat import encode_response, padding_id
from repo_ray.model.context import fit_context, fit_dialogue
from repo_ray.types import ContractError, Message, RewardResult, Trajectory

RewardField = Literal["r_total", "r_model"]


def reward_field(algorithm: str, grpo_reward: str = "rm") -> RewardField:
    """Which RewardResult field is an algorithm's scalar reward.

    repo -> r_total (RM enhanced by judge + rules); ppo -> r_model (RM only);
    grpo -> r_model, or r_total when `learner.grpo.reward == "enhanced"` (the ablation).
    """
    if algorithm == "repo":
        return "r_total"
    if algorithm == "ppo":
        return "r_model"
    if algorithm == "grpo":
        return "r_total" if grpo_reward == "enhanced" else "r_model"
    raise ValueError(f"no RL reward for algorithm {algorithm!r} (expected repo, ppo or grpo)")


@dataclass(frozen=True)
class Selection:
    """The samples that enter the loss, their scalar rewards, and the ids left out (masked)."""

    trajectories: list[Trajectory]
    scores: list[float]
    masked_ids: list[str]


def select_samples(
    pairs: Sequence[tuple[Trajectory, RewardResult]], algorithm: str, grpo_reward: str = "rm"
) -> Selection:
    """Keep unmasked samples with the mode's reward; masked ones are counted, never trained."""
    name = reward_field(algorithm, grpo_reward)
    kept, scores, masked = [], [], []
    for traj, result in pairs:
        if traj.sample_id != result.sample_id:
            raise ContractError(f"reward {result.sample_id} paired with trajectory {traj.sample_id}")
        if result.masked:
            masked.append(traj.sample_id)
            continue
        value = getattr(result, name)
        if value is None:  # r_model of an unmasked result is never None (RewardResult checks)
            raise ContractError(f"{traj.sample_id}: unmasked reward without {name}")
        kept.append(traj)
        scores.append(float(value))
    return Selection(kept, scores, masked)


@dataclass
class TokenBatch:
    """Padded rows: a prompt part, left-padded to width P, then a *window* part (the tokens
    the loss is about), right-padded to width R. See the module docstring for alignment.

    input_ids / attention_mask / position_ids: [B, P + R]; labels (the window tokens),
    loss_mask, rollout_logprobs: [B, R]; scores: [B] (0 when unused)."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    position_ids: torch.Tensor
    labels: torch.Tensor
    loss_mask: torch.Tensor
    rollout_logprobs: torch.Tensor
    scores: torch.Tensor
    prompt_lengths: torch.Tensor
    window_lengths: torch.Tensor
    group_ids: list[Hashable | None] = field(default_factory=list)
    sample_ids: list[str] = field(default_factory=list)

    @property
    def size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def window(self) -> int:
        """R: the model is asked for the logits of the last R + 1 positions only."""
        return int(self.labels.shape[1])

    @property
    def num_tokens(self) -> int:
        """Trainable (loss) tokens."""
        return int(self.loss_mask.sum())

    def model_inputs(self) -> dict[str, torch.Tensor]:
        return {"input_ids": self.input_ids, "attention_mask": self.attention_mask, "position_ids": self.position_ids}

    def to(self, device: torch.device | str) -> TokenBatch:
        tensors = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                   if isinstance(getattr(self, f.name), torch.Tensor)}
        return replace(self, **tensors)

    def select(self, rows: Sequence[int]) -> TokenBatch:
        """A sub-batch of `rows`, with padding trimmed to its own longest prompt and window."""
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        width_p = self.input_ids.shape[1] - self.window
        p = int(self.prompt_lengths[idx].max()) if len(idx) else 1
        r = int(self.window_lengths[idx].max()) if len(idx) else 1
        cols = slice(width_p - p, width_p + r)
        return TokenBatch(
            input_ids=self.input_ids[idx, cols],
            attention_mask=self.attention_mask[idx, cols],
            position_ids=self.position_ids[idx, cols],
            labels=self.labels[idx, :r],
            loss_mask=self.loss_mask[idx, :r],
            rollout_logprobs=self.rollout_logprobs[idx, :r],
            scores=self.scores[idx],
            prompt_lengths=self.prompt_lengths[idx],
            window_lengths=self.window_lengths[idx],
            group_ids=[self.group_ids[i] for i in idx.tolist()] if self.group_ids else [],
            sample_ids=[self.sample_ids[i] for i in idx.tolist()] if self.sample_ids else [],
        )


def pack_sequences(
    prompts: Sequence[Sequence[int]],
    windows: Sequence[Sequence[int]],
    window_masks: Sequence[Sequence[int]],
    pad_token_id: int,
    window_logprobs: Sequence[Sequence[float]] | None = None,
    scores: Sequence[float] | None = None,
    group_ids: Sequence[Hashable | None] | None = None,
    sample_ids: Sequence[str] | None = None,
) -> TokenBatch:
    """Left-pad the prompts, right-pad the windows, and derive position ids from the mask
    (so every real token keeps the position it had unpadded, as in a left-padded rollout).

    `window_masks[i][j]` (and `window_logprobs[i][j]`) describe window token j of row i.
    Every prompt must hold at least one token: the first window token needs a predecessor."""
    n = len(prompts)
    if n == 0:
        raise ValueError("cannot pack an empty batch")
    for i, (p, w, m) in enumerate(zip(prompts, windows, window_masks, strict=True)):
        if not p or not w:
            raise ValueError(f"row {i}: empty prompt ({len(p)}) or window ({len(w)})")
        if len(m) != len(w):
            raise ValueError(f"row {i}: window mask of {len(m)} for {len(w)} tokens")
    width_p = max(len(p) for p in prompts)
    width_r = max(len(w) for w in windows)
    input_ids = torch.full((n, width_p + width_r), pad_token_id, dtype=torch.long)
    attention = torch.zeros((n, width_p + width_r), dtype=torch.long)
    labels = torch.full((n, width_r), pad_token_id, dtype=torch.long)
    mask = torch.zeros((n, width_r), dtype=torch.float32)
    logprobs = torch.zeros((n, width_r), dtype=torch.float32)
    for i, (p, w) in enumerate(zip(prompts, windows)):
        input_ids[i, width_p - len(p):width_p] = torch.as_tensor(list(p), dtype=torch.long)
        input_ids[i, width_p:width_p + len(w)] = torch.as_tensor(list(w), dtype=torch.long)
        attention[i, width_p - len(p):width_p + len(w)] = 1
        labels[i, :len(w)] = torch.as_tensor(list(w), dtype=torch.long)
        mask[i, :len(w)] = torch.as_tensor(list(window_masks[i]), dtype=torch.float32)
        if window_logprobs is not None:
            logprobs[i, :len(w)] = torch.as_tensor(list(window_logprobs[i]), dtype=torch.float32)
    return TokenBatch(
        input_ids=input_ids,
        attention_mask=attention,
        position_ids=(attention.cumsum(-1) - 1).clamp(min=0),
        labels=labels,
        loss_mask=mask,
        rollout_logprobs=logprobs,
        scores=torch.as_tensor(list(scores) if scores is not None else [0.0] * n, dtype=torch.float32),
        prompt_lengths=torch.as_tensor([len(p) for p in prompts], dtype=torch.long),
        window_lengths=torch.as_tensor([len(w) for w in windows], dtype=torch.long),
        group_ids=list(group_ids) if group_ids is not None else [None] * n,
        sample_ids=list(sample_ids) if sample_ids is not None else [],
    )


def collate_trajectories(
    trajectories: Sequence[Trajectory], scores: Sequence[float], pad_token_id: int
) -> TokenBatch:
    """RL rows: prompt, then the response as the window; loss on the response tokens whose
    response_mask is 1, the rollout's logprobs alongside, one scalar score per row."""
    groups = [t.group_id if t.group_id is not None else t.sample_id for t in trajectories]
    return pack_sequences(
        [t.prompt_token_ids for t in trajectories], [t.response_token_ids for t in trajectories],
        [t.response_mask for t in trajectories], pad_token_id, [t.response_logprobs for t in trajectories],
        scores, groups, [t.sample_id for t in trajectories],
    )


def prepare_rl_batch(
    pairs: Sequence[tuple[Trajectory, RewardResult]], algorithm: str, grpo_reward: str, pad_token_id: int
) -> tuple[TokenBatch | None, Selection]:
    """Select (mask out, pick the reward) and collate; the batch is None when every sample is masked."""
    sel = select_samples(pairs, algorithm, grpo_reward)
    if not sel.trajectories:
        return None, sel
    return collate_trajectories(sel.trajectories, sel.scores, pad_token_id), sel


# ------------------------------------------------------------------------ SFT and DPO rows
def encode_dialogue(tokenizer, messages: Sequence[Message], max_tokens: int) -> tuple[list[int], list[int]]:
    """Token ids of a whole dialogue and a 0/1 mask that is 1 exactly on the agent's reply
    tokens, fitted to `max_tokens` by the one context policy (`repo_ray.model.context`):
    system prompt kept, oldest exchanges out first."""
    fitted = fit_dialogue(messages, tokenizer, max_tokens)
    return fitted.ids, fitted.mask


def collate_dialogues(dialogues: Sequence[SftDialogue], tokenizer, max_tokens: int) -> TokenBatch:
    """SFT rows: next-token loss on agent-turn tokens only. The whole dialogue but its first
    token is the window (agent turns sit all along it)."""
    encoded = [encode_dialogue(tokenizer, d.messages, max_tokens) for d in dialogues]
    return pack_sequences([ids[:1] for ids, _ in encoded], [ids[1:] for ids, _ in encoded],
                          [mask[1:] for _, mask in encoded], padding_id(tokenizer),
                          sample_ids=[d.dialogue_id for d in dialogues])


def collate_preferences(pairs: Sequence[PreferencePair], tokenizer, max_tokens: int) -> TokenBatch:
    """DPO rows: 2 * B rows, the chosen replies (rows 0..B-1) then the rejected ones (B..2B-1),
    each after its context. Both replies of a pair share one context fitted by the one
    context policy (`repo_ray.model.context`): system prompt kept, oldest turns out first,
    replies (what the loss is about) whole."""
    fitted = [fit_context(p.context, tokenizer, max_tokens,
                          [encode_response(tokenizer, p.chosen), encode_response(tokenizer, p.rejected)],
                          what="learner.dpo.max_tokens") for p in pairs]
    prompts = [f.prompt_ids for f in fitted] * 2
    replies = [f.responses[0] for f in fitted] + [f.responses[1] for f in fitted]
    sample_ids = [f"{p.pair_id}:chosen" for p in pairs] + [f"{p.pair_id}:rejected" for p in pairs]
    return pack_sequences(prompts, replies, [[1] * len(r) for r in replies], padding_id(tokenizer),
                          sample_ids=sample_ids)
