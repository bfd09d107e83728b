"""Learner test fixtures: real tokenized expert replies as Trajectories (logprobs from a
forward pass of the tiny policy), and small learner configs."""

from __future__ import annotations

import pytest
import torch

from repo_ray.config import LearnerConfig, LoraSettings, OptimizerSettings
from repo_ray.domain.schemas import load_rows
from repo_ray.model.chat import encode_prompt, encode_response
from repo_ray.types import Message, RewardResult, Role, SourceResult, SourceStatus, Trajectory

LORA = LoraSettings(r=4, alpha=8, target_modules=["q_proj", "v_proj", "up_proj", "down_proj"])


def learner_config(**overrides) -> LearnerConfig:
    """A small learner: batch 8 = micro 4 x world 1 x gas 2, lr high enough to move a tiny model."""
    base = dict(
        world_size=1, zero_stage=0, batch_size=8, micro_batch_size=4, num_cpus_per_rank=0.25,
        lora=LORA, optimizer=OptimizerSettings(lr=5e-3, warmup_steps=0, grad_clip=1.0),
    )
    base.update(overrides)
    return LearnerConfig(**base)


def expert_turns(data_dir, n: int, max_context_messages: int = 1, max_chars: int = 120
                 ) -> list[tuple[list[Message], str]]:
    """(context, expert reply) pairs from the generated SFT dialogues. The long system prompt
    is replaced by one line and replies are kept short, so sequences stay ~40-90 tokens and
    a step takes a fraction of a second on a loaded 2-core machine."""
    out = []
    for d in load_rows("sft", data_dir).rows:
        system = Message(Role.SYSTEM, f"You negotiate room rates with {d.scenario.hotel_name}.")
        for i, m in enumerate(d.messages):
            if m.role is Role.AGENT and i <= max_context_messages and len(m.text) <= max_chars:
                out.append(([system, *d.messages[1:i]], m.text))
        if len(out) >= n:
            break
    return out[:n]


@torch.no_grad()
def rollout_logprobs(policy, prompt: list[int], response: list[int]) -> list[float]:
    """log p(response token | prefix) from one unpadded forward with full logits: what an HF
    rollout at temperature 1 records, computed independently of the learner's batching."""
    logits = policy(input_ids=torch.tensor([prompt + response])).logits[0, len(prompt) - 1:-1]
    lp = torch.log_softmax(logits.float(), -1).gather(-1, torch.tensor(response)[:, None]).squeeze(-1)
    return [min(0.0, float(x)) for x in lp]


def make_trajectories(policy, tokenizer, turns, group_size: int = 1, prefix: str = "s") -> list[Trajectory]:
    """Trajectories for (context, reply) pairs with rollout logprobs from `policy`.
    group_size > 1 ties consecutive samples into GRPO groups."""
    policy.eval()
    out = []
    for i, (ctx, text) in enumerate(turns):
        p, r = encode_prompt(tokenizer, ctx), encode_response(tokenizer, text)
        out.append(Trajectory(
            sample_id=f"{prefix}{i}", scenario_id=f"sc{i // group_size}", turn_index=0, messages=ctx,
            response_text=text, prompt_token_ids=p, response_token_ids=r,
            response_logprobs=rollout_logprobs(policy, p, r), response_mask=[1] * len(r), sop_stage="opening",
            adapter_version=0, group_id=f"g{i // group_size}" if group_size > 1 else None,
        ))
    return out


def reward(sample_id: str, r_model: float | None, r_total: float | None = None) -> RewardResult:
    """A RewardResult; r_model None masks the sample (as an RM failure does)."""
    if r_model is None:
        return RewardResult(sample_id, None, None, None, None, None,
                            {"rm": SourceResult(None, SourceStatus.TIMEOUT)}, masked=True, reason="rm timeout")
    total = r_model if r_total is None else r_total
    return RewardResult(sample_id, r_model, 0.0, 0.0, 0.0, total, {"rm": SourceResult(r_model, SourceStatus.OK)},
                        masked=False)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared, loaded 2-core
    machine two spinning OpenMP threads made these tests ~15x slower (7 s vs 128 s for
    test_trainers.py at load 10). Restored afterwards: other packages keep their setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def learner_tokenizer(domain_models):
    from repo_ray.model import load_tokenizer

    return load_tokenizer(domain_models.tokenizer_dir)


@pytest.fixture(scope="session")
def turns(data_dir):
    return expert_turns(data_dir, 16)


@pytest.fixture(scope="session")
def base_trajectories(domain_models, learner_tokenizer, turns):
    """8 trajectories with logprobs from the base policy (= the fresh adapter's, B = 0)."""
    from repo_ray.model import load_policy

    torch.manual_seed(0)
    return make_trajectories(load_policy(domain_models.policy_dir), learner_tokenizer, turns[:8])
