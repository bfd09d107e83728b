"""The context policy for long negotiations: which messages the policy sees under a prompt
token budget. Pure: the same messages, tokenizer and budget always give the same context.

Policy (oldest first out, scenario facts always in):
1. the system message (role, SOP, guardrails and the scenario facts) is always kept, whole;
2. the oldest agent/hotel exchanges are dropped in pairs, so the kept dialogue still
   starts with an agent turn and alternates;
3. when only the last exchange is left, its agent turn goes too: system + the hotel's
   last reply (the message the agent answers) is the smallest context;
4. if even that does not fit, `ContextBudgetError`: the system prompt is never truncated.
   Its tail holds the room types and prices, and a policy shown half of them would be
   punished for "hallucinating" numbers it was never given. Simulator replies are a few
   sentences, so this only happens when `rollout.max_prompt_tokens` is set below the size
   of a system prompt, on the first turn: a config error, reported as one.
"""

from __future__ import annotations

from collections.abc import Sequence

from repo_ray.errors import UserError
from repo_ray.model.chat import encode_prompt
from repo_ray.types import Message, Role


class ContextBudgetError(UserError, ValueError):
    """The system prompt plus the hotel's last reply exceed rollout.max_prompt_tokens."""


def fit_context(messages: Sequence[Message], tokenizer, max_prompt_tokens: int) -> list[Message]:
    """The longest suffix of the dialogue (plus the system message) whose ChatML prompt
    (`encode_prompt`, generation prompt included) has at most `max_prompt_tokens` tokens."""
    messages = list(messages)
    if not messages or messages[0].role is not Role.SYSTEM:
        raise ValueError("a rollout context starts with the system message (the scenario facts)")
    system, turns = messages[:1], messages[1:]
    if len(encode_prompt(tokenizer, messages)) <= max_prompt_tokens:
        return messages
    # Drop whole exchanges from the front: the kept part starts where the original's
    # exchanges start (agent first, or hotel first when the dialogue opened with the hotel).
    step = 2
    start = 0
    while len(turns) - start > 1:
        start = min(start + step, len(turns) - 1)
        candidate = system + turns[start:]
        if len(encode_prompt(tokenizer, candidate)) <= max_prompt_tokens:
            return candidate
    needed = len(encode_prompt(tokenizer, system + turns[-1:]))
    raise ContextBudgetError(
        f"rollout.max_prompt_tokens={max_prompt_tokens} is below the {needed} tokens of the system prompt "
        f"(scenario facts, never truncated) plus the hotel's last reply; raise it"
    )
