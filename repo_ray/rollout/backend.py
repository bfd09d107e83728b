"""The rollout interface: sampling settings, one generated reply, and the `RolloutBackend`
protocol that the HF and vLLM backends implement and `play_negotiations` drives.

Conventions every backend keeps (the learner relies on them):
- the prompt is the chat-template prompt of `repo_ray.model.chat.encode_prompt` (one
  tokenisation, ours, for both backends);
- `logprobs[i]` = log_softmax(logits / temperature)[token_ids[i]] from the model's raw
  logits, before any top-k / top-p warping (the distribution the learner recomputes);
- generation stops at the template's end-of-turn token (ChatML: `<|im_end|>`) or another
  end-of-sequence id of the model; the stop token IS kept in `token_ids` / `logprobs`
  (finish_reason "stop") so training learns to stop, and is NOT in `text`. A reply cut by
  `max_new_tokens` has no stop token (finish_reason "length"): its token ids and logprobs
  are kept as sampled, and its text (`decode_reply`) ends at the last whole character,
  never in half a UTF-8 sequence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from repo_ray.types import AdapterAck, AdapterUpdate, Message

if TYPE_CHECKING:
    from repo_ray.config import RolloutConfig

FinishReason = Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class SamplingSettings:
    """How one generate call samples. `top_k` 0 and `top_p` 1.0 disable those warpers;
    `seed` None draws fresh randomness, an int makes the call reproducible."""

    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens {self.max_new_tokens} < 1")
        if not self.temperature > 0:
            raise ValueError(f"temperature {self.temperature} must be > 0 (logprobs divide by it)")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p {self.top_p} outside (0, 1]")
        if self.top_k < 0:
            raise ValueError(f"top_k {self.top_k} < 0")

    @classmethod
    def from_config(cls, rollout: RolloutConfig, seed: int | None = None) -> SamplingSettings:
        return cls(
            max_new_tokens=rollout.max_new_tokens,
            temperature=rollout.temperature,
            top_p=rollout.top_p,
            top_k=rollout.top_k,
            seed=seed,
        )

    def with_seed(self, seed: int | None) -> SamplingSettings:
        return replace(self, seed=seed)


@dataclass(frozen=True, slots=True)
class Generation:
    """One sampled reply to one chat history."""

    text: str  # decoded reply, without the stop token
    prompt_token_ids: list[int]
    token_ids: list[int]  # includes the stop token when finish_reason == "stop"
    logprobs: list[float]  # one per token id: log_softmax(raw logits / T), unwarped
    finish_reason: FinishReason

    def __post_init__(self) -> None:
        if len(self.token_ids) != len(self.logprobs):
            raise ValueError(f"{len(self.token_ids)} token ids but {len(self.logprobs)} logprobs")

    @property
    def truncated(self) -> bool:
        """Cut by max_new_tokens before any stop token."""
        return self.finish_reason == "length"


@runtime_checkable
class RolloutBackend(Protocol):
    """A policy that writes agent replies. Implementations: HFBackend, VLLMBackend."""

    @property
    def tokenizer(self):
        """The ChatML tokenizer the prompts are encoded with (the context policy counts with it)."""
        ...

    @property
    def adapter_version(self) -> int:
        """Version of the loaded LoRA adapter; 0 is the freshly initialised one (== the base)."""
        ...

    def generate(
        self, histories: Sequence[Sequence[Message]], sampling: SamplingSettings, n: int = 1
    ) -> list[list[Generation]]:
        """`n` independent samples per history (GRPO draws k per context); result[i][j] is
        sample j of history i. Each history is system / agent / hotel messages whose last
        message is not the agent's (the agent speaks next)."""
        ...

    def load_adapter(self, update: AdapterUpdate, worker_id: str) -> AdapterAck:
        """Load a published adapter; answer its version, the sha256 of the bytes received
        and the probe logprob under it (for `AdapterUpdate.verify_ack`)."""
        ...


class BackendState:
    """What HFBackend and VLLMBackend hold alike: the tokenizer, the loaded adapter version and
    the stop ids, behind the protocol's read-only properties. Subclasses set `_tokenizer`,
    `_stop_ids` and `_version` (0 until an adapter is loaded)."""

    _tokenizer: Any
    _stop_ids: list[int]
    _version: int = 0

    @property
    def tokenizer(self):
        return self._tokenizer

    @property
    def adapter_version(self) -> int:
        return self._version

    @property
    def stop_ids(self) -> list[int]:
        return list(self._stop_ids)


def stop_token_ids(tokenizer, generation_eos: int | Sequence[int] | None = None) -> list[int]:
    """The ids that end a reply: the chat template's end of turn (ChatML: `<|im_end|>`) plus
    the model's own end-of-sequence ids (a Qwen3 checkpoint also stops at `<|endoftext|>`).
    Both backends stop on this same set; the first is the one a reply ends with."""
    from repo_ray.model.chat import end_of_turn_id

    ids = [end_of_turn_id(tokenizer)]
    extra = [generation_eos] if isinstance(generation_eos, int) else list(generation_eos or [])
    if tokenizer.eos_token_id is not None:
        extra.append(tokenizer.eos_token_id)
    for t in extra:
        if int(t) not in ids:
            ids.append(int(t))
    return ids


def decode_reply(tokenizer, token_ids: Sequence[int], truncated: bool) -> str:
    """The text of a reply's tokens (stop token already left out). A byte-level tokenizer
    decodes a character cut by the token budget as U+FFFD (the lossy decode of its first
    bytes); for a truncated reply that tail is the budget's doing, not the policy's, so it
    is dropped and the text ends at the last whole character. A reply that stopped on its
    own keeps any U+FFFD: that breakage is the policy's, and format_breakage charges it."""
    text = tokenizer.decode(list(token_ids), skip_special_tokens=False)
    return text.rstrip("\ufffd") if truncated else text

