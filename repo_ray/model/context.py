"""The one context-fitting policy: what part of a dialogue a model sees under a token budget.
Rollouts (the prompt), SFT and DPO (training rows) and the reward model (training and
scoring) all call it, so every one of them sees the scenario facts. Pure and deterministic.

Policy (DESIGN.md §7, "every reward source sees the facts it judges"):
1. the system message (role, SOP, guardrails and the scenario facts) is always kept, whole;
2. the oldest agent/hotel exchanges are dropped first, in pairs, so the kept dialogue starts
   where the original's exchanges start and still alternates;
3. when one exchange is left, its agent turn goes too: system + the last message (the hotel
   reply the agent answers, or for SFT the last agent reply) is the smallest context;
4. a response (a training example's reply, an RM side) is kept whole while the smallest
   context leaves room for it; only when even system + last message + response exceed the
   budget is the response's *tail* cut, and the cut is counted (`response_cut`, `fits`
   False). We cut the response rather than refuse the row: one overlong reply (the
   "overlong" defect is one) must not stop a training run, and the scorer must give every
   rollout turn a score; training and scoring cut the same way, so the RM sees at score
   time what it saw in training;
5. a budget below the system prompt plus the last message is a config error
   (`ContextBudgetError`): the system prompt is never truncated. Its tail holds the room
   types and prices; a model shown half of them cannot check a number.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from repo_ray.errors import UserError
from repo_ray.model.chat import encode_prompt, encode_response
from repo_ray.types import Message, Role

log = logging.getLogger(__name__)


class ContextBudgetError(UserError, ValueError):
    """The system prompt plus the last message exceed the token budget."""


@dataclass(frozen=True, slots=True)
class FittedContext:
    """A context cut to a budget: the kept messages, their prompt ids (ChatML, generation
    prompt included), the responses placed after it, and what was left out."""

    messages: tuple[Message, ...]  # system + the kept turns
    prompt_ids: list[int]
    responses: tuple[list[int], ...]  # each response as kept (whole unless response_cut > 0)
    dropped_turns: int  # messages dropped from the front of the dialogue
    response_cut: int  # response tokens cut from responses' tails (0: every response whole)

    @property
    def fits(self) -> bool:
        """Every response is whole (the context may still have lost old turns)."""
        return self.response_cut == 0

    @property
    def complete(self) -> bool:
        """Nothing left out at all."""
        return self.fits and self.dropped_turns == 0

    def input_ids(self, i: int = 0) -> list[int]:
        """The prompt followed by response `i`: one model input."""
        return self.prompt_ids + self.responses[i]


@dataclass(frozen=True, slots=True)
class FittedDialogue:
    """A whole dialogue (SFT) cut to a budget: ids, a 0/1 mask that is 1 on the agent's reply
    tokens, and what was left out."""

    ids: list[int]
    mask: list[int]
    dropped_turns: int
    response_cut: int  # tokens cut from the tail when even the smallest dialogue is too long

    @property
    def fits(self) -> bool:
        return self.response_cut == 0


@dataclass
class ContextTally:
    """Counts over many fits, for a caller's log line or metrics: rows seen, rows that lost
    old turns, turns dropped in all, rows whose response tail was cut."""

    rows: int = 0
    rows_with_drops: int = 0
    dropped_turns: int = 0
    rows_cut: int = 0
    tokens_cut: int = 0
    _what: str = field(default="contexts", repr=False)

    def add(self, fitted: FittedContext | FittedDialogue) -> None:
        self.rows += 1
        self.rows_with_drops += fitted.dropped_turns > 0
        self.dropped_turns += fitted.dropped_turns
        self.rows_cut += fitted.response_cut > 0
        self.tokens_cut += fitted.response_cut

    def line(self, budget: int) -> str:
        return (f"{self.rows} {self._what} at {budget} tokens: {self.rows_with_drops} lost old turns "
                f"({self.dropped_turns} messages), {self.rows_cut} had their response tail cut "
                f"({self.tokens_cut} tokens)")


def _split(messages: Sequence[Message]) -> tuple[list[Message], list[Message]]:
    messages = list(messages)
    if not messages or messages[0].role is not Role.SYSTEM:
        raise ValueError("a context starts with the system message (the scenario facts)")
    return messages[:1], messages[1:]


def _starts(n_turns: int) -> list[int]:
    """Where the kept dialogue may start, longest first: whole exchanges off the front,
    then the last message alone (or nothing, for a system-only context)."""
    if n_turns == 0:
        return [0]
    return sorted({*range(0, n_turns - 1, 2), n_turns - 1})


def _budget_error(max_tokens: int, needed: int, what: str) -> ContextBudgetError:
    return ContextBudgetError(
        f"{what}={max_tokens} is below the {needed} tokens of the system prompt (scenario facts, never truncated) "
        f"plus the last message; raise it"
    )


def fit_context(
    messages: Sequence[Message],
    tokenizer,
    max_tokens: int,
    responses: Sequence[Sequence[int]] = (),
    what: str = "max_tokens",
) -> FittedContext:
    """The longest suffix of the dialogue (plus the system message) whose prompt, followed by
    the longest of `responses`, has at most `max_tokens` tokens (see the module docstring).

    All responses share one kept context (a chosen and a rejected reply are compared in the
    same context, not one with more history than the other). `what` names the budget's
    config key in the error."""
    system, turns = _split(messages)
    responses = [list(r) for r in responses]
    longest = max((len(r) for r in responses), default=0)
    prompt: list[int] = []
    start = 0
    for start in _starts(len(turns)):
        prompt = encode_prompt(tokenizer, system + turns[start:])
        if len(prompt) + longest <= max_tokens:
            break
    if len(prompt) > max_tokens or (responses and len(prompt) >= max_tokens):
        raise _budget_error(max_tokens, len(prompt) + (1 if responses else 0), what)
    room = max_tokens - len(prompt)
    kept = [r[:room] for r in responses]
    return FittedContext(
        messages=tuple(system + turns[start:]),
        prompt_ids=prompt,
        responses=tuple(kept),
        dropped_turns=start,
        response_cut=sum(len(r) - len(k) for r, k in zip(responses, kept, strict=True)),
    )


def fit_prompt(messages: Sequence[Message], tokenizer, max_prompt_tokens: int) -> FittedContext:
    """A rollout prompt: `fit_context` with no response; a prompt never fits by cutting, so a
    budget below system + the last message is `ContextBudgetError` (rollout.max_prompt_tokens)."""
    return fit_context(messages, tokenizer, max_prompt_tokens, what="rollout.max_prompt_tokens")


def encode_dialogue(tokenizer, messages: Sequence[Message]) -> tuple[list[int], list[int]]:
    """Token ids of a whole dialogue up to its last agent reply, and a 0/1 mask that is 1
    exactly on the agent's reply tokens (each reply + its `<|im_end|>`). Built turn by turn
    from `encode_prompt` and `encode_response`, the very ids rollout produces."""
    ids: list[int] = []
    mask: list[int] = []
    for i, m in enumerate(messages):
        if m.role is not Role.AGENT:
            continue
        prompt = encode_prompt(tokenizer, messages[:i])
        if prompt[: len(ids)] != ids:
            raise ValueError("chat template is not prefix-consistent across turns; cannot mask agent turns")
        mask += [0] * (len(prompt) - len(ids))
        reply = encode_response(tokenizer, m.text)
        ids = prompt + reply
        mask += [1] * len(reply)
    return ids, mask


def fit_dialogue(messages: Sequence[Message], tokenizer, max_tokens: int) -> FittedDialogue:
    """An SFT dialogue under the same policy: system kept, oldest exchanges out first, so each
    kept agent turn is trained in the context a rollout under this budget would give it; if
    even system + the last agent reply is too long, its tail is cut (counted)."""
    system, turns = _split(messages)
    last_agent = max((i for i, m in enumerate(turns) if m.role is Role.AGENT), default=None)
    if last_agent is None:
        raise ValueError("a training dialogue holds at least one agent turn")
    turns = turns[: last_agent + 1]  # what follows the last reply is never a target
    ids: list[int] = []
    mask: list[int] = []
    start = 0
    for start in _starts(len(turns)):
        ids, mask = encode_dialogue(tokenizer, system + turns[start:])
        if len(ids) <= max_tokens:
            break
    # the smallest dialogue is system + the last agent reply; the system prompt stays whole
    prompt_len = mask.index(1) if 1 in mask else len(mask)
    if prompt_len >= max_tokens:
        raise _budget_error(max_tokens, prompt_len + 1, "max_tokens")
    cut = max(0, len(ids) - max_tokens)
    return FittedDialogue(ids[:max_tokens], mask[:max_tokens], dropped_turns=start, response_cut=cut)


def fit_budgets_to_model(cfg, max_positions: int | None):
    """`cfg` with every token budget held to the model's `max_position_embeddings`, and one
    note per budget it lowered ("field: old -> new"). A rollout prompt leaves room for the
    reply (max_prompt_tokens + max_new_tokens <= the limit); a training or RM row is at most
    the limit. A model without the figure (None) leaves `cfg` as it is.

    Past its positions a RoPE model still runs but is untrained there (and an absolute-position
    model fails), so a budget written for a long-context model must not silently exceed a
    small one's: SmolLM2-135M has 8192, the paper's 32B model far more."""
    if not max_positions:
        return cfg, []
    notes: list[str] = []

    def held(section, field: str, limit: int, where: str):
        value = getattr(section, field)
        if value <= limit:
            return {}
        notes.append(f"{where}.{field}: {value} -> {limit}")
        return {field: limit}

    r = cfg.rollout
    prompt_room = max_positions - r.max_new_tokens
    if prompt_room < 1:
        raise ContextBudgetError(f"rollout.max_new_tokens={r.max_new_tokens} leaves no prompt room within the "
                                 f"model's max_position_embeddings={max_positions}; lower it")
    vllm = r.vllm.model_copy(update=held(r.vllm, "max_model_len", max_positions, "rollout.vllm"))
    rollout = r.model_copy(update={**held(r, "max_prompt_tokens", prompt_room, "rollout"), "vllm": vllm})
    learner = cfg.learner.model_copy(update={
        "sft": cfg.learner.sft.model_copy(update=held(cfg.learner.sft, "max_tokens", max_positions, "learner.sft")),
        "dpo": cfg.learner.dpo.model_copy(update=held(cfg.learner.dpo, "max_tokens", max_positions, "learner.dpo")),
    })
    rm = cfg.reward.model
    reward = cfg.reward.model_copy(update={
        "model": rm.model_copy(update=held(rm, "max_tokens", max_positions, "reward.model"))})
    if not notes:
        return cfg, []
    for note in notes:
        log.warning("context budget %s (the model's max_position_embeddings is %d)", note, max_positions)
    return cfg.model_copy(update={"rollout": rollout, "learner": learner, "reward": reward}), notes
