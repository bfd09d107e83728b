"""The contracts between repo-ray's parts (DESIGN.md §6).

Every value that crosses an actor boundary is one of these dataclasses. They validate
themselves on construction wherever a wrong value would silently corrupt training
(mismatched token/logprob/mask lengths, a masked reward with a total, a checksum that
does not match its bytes); bugs in producers then fail at the producer, not three actors
later in the learner.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ContractError(ValueError):
    """A value violates a contract of DESIGN.md §6 (a producer bug, not user input)."""


class Role(StrEnum):
    """Who speaks a message. ChatML maps agent -> assistant and hotel -> user."""

    SYSTEM = "system"
    AGENT = "agent"
    HOTEL = "hotel"


class SourceStatus(StrEnum):
    """Outcome of asking one reward source about one sample."""

    OK = "ok"
    TIMEOUT = "timeout"
    HTTP_ERROR = "http_error"
    RATE_LIMITED = "rate_limited"
    INVALID_OUTPUT = "invalid_output"
    BUDGET_EXHAUSTED = "budget_exhausted"
    ERROR = "error"


class SampleFate(StrEnum):
    """What finally happened to a sample; the ledger records each sample id once with one."""

    TRAINED = "trained"
    MASKED = "masked"
    DISCARDED = "discarded"


# The Ray namespace of every named actor and Serve app of repo-ray.
NAMESPACE = "repo_ray"


def run_scoped_name(kind: str, run_id: str) -> str:
    """Name of a named actor / Serve app of one run: Serve apps, limiters and actors carry
    the run id so two runs on one cluster never share state."""
    return f"{kind}-{run_id}"


# Names of the three reward sources, used as keys of RewardResult.sources.
SOURCE_RM = "rm"
SOURCE_JUDGE = "judge"
SOURCE_RULES = "rules"
REWARD_SOURCES = (SOURCE_RM, SOURCE_JUDGE, SOURCE_RULES)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ContractError(message)


def _is_finite(x: float) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    text: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "role", Role(self.role))
        _require(isinstance(self.text, str), f"Message.text must be str, got {type(self.text).__name__}")

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role.value, "text": self.text}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Message:
        return cls(role=Role(d["role"]), text=d["text"])


@dataclass(slots=True)
class Trajectory:
    """One agent turn: the unit of reward and of training.

    `messages` is the context the policy saw (system prompt with the scenario facts, then
    alternating agent/hotel turns); `response_*` describe the agent's reply. The reward
    sits on the last response token; no credit flows across turns. `response_logprobs`
    are log_softmax(logits / temperature) of the sampled tokens, before any top-k/top-p
    warping. `group_id` ties the k samples GRPO draws from one context (None otherwise).
    `truncated` is True when the reply hit the token budget (rollout.max_new_tokens) without
    a stop token: its tokens are kept as sampled (the learner trains on them), its text is
    cut back to the last whole character, and the `truncated` rule charges it (DESIGN.md §7).
    """

    sample_id: str
    scenario_id: str
    turn_index: int
    messages: list[Message]
    response_text: str
    prompt_token_ids: list[int]
    response_token_ids: list[int]
    response_logprobs: list[float]
    response_mask: list[int]
    sop_stage: str
    adapter_version: int
    timings: dict[str, float] = field(default_factory=dict)
    group_id: str | None = None
    truncated: bool = False

    def __post_init__(self) -> None:
        _require(bool(self.sample_id), "Trajectory.sample_id must be non-empty")
        _require(isinstance(self.truncated, bool), f"{self.sample_id}: truncated must be a bool")
        _require(bool(self.scenario_id), f"{self.sample_id}: scenario_id must be non-empty")
        _require(self.turn_index >= 0, f"{self.sample_id}: turn_index {self.turn_index} < 0")
        _require(self.adapter_version >= 0, f"{self.sample_id}: adapter_version {self.adapter_version} < 0")
        self.messages = [m if isinstance(m, Message) else Message.from_dict(m) for m in self.messages]
        _require(len(self.prompt_token_ids) > 0, f"{self.sample_id}: empty prompt_token_ids")
        n = len(self.response_token_ids)
        _require(n > 0, f"{self.sample_id}: empty response_token_ids")
        _require(
            len(self.response_logprobs) == n,
            f"{self.sample_id}: {len(self.response_logprobs)} logprobs for {n} response tokens",
        )
        _require(
            len(self.response_mask) == n,
            f"{self.sample_id}: response_mask length {len(self.response_mask)} != {n} response tokens",
        )
        _require(all(m in (0, 1) for m in self.response_mask), f"{self.sample_id}: response_mask must hold only 0/1")
        _require(any(self.response_mask), f"{self.sample_id}: response_mask has no trainable token")
        for i, lp in enumerate(self.response_logprobs):
            _require(
                _is_finite(lp) and lp <= 1e-6,
                f"{self.sample_id}: response_logprobs[{i}] = {lp} is not a finite log-probability",
            )
        _require(
            all(isinstance(t, int) and t >= 0 for t in self.prompt_token_ids + self.response_token_ids),
            f"{self.sample_id}: token ids must be non-negative ints",
        )

    @property
    def num_response_tokens(self) -> int:
        return len(self.response_token_ids)


@dataclass(frozen=True, slots=True)
class JudgeVerdict:
    """The judge's validated answer about one reply: per rubric item a clipped score (None:
    not applicable) and a short reason, E_judge (their weighted sum), and the item names the
    judge added that the rubric does not have (ignored)."""

    scores: dict[str, float | None]
    reasons: dict[str, str]
    e_judge: float
    ignored_items: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _require(_is_finite(self.e_judge), f"JudgeVerdict.e_judge {self.e_judge!r} is not finite")
        for k, v in self.scores.items():
            _require(v is None or _is_finite(v), f"JudgeVerdict.scores[{k!r}] = {v!r} is not finite")

    def to_dict(self) -> dict[str, Any]:
        return {"scores": dict(self.scores), "reasons": dict(self.reasons), "e_judge": self.e_judge,
                "ignored_items": list(self.ignored_items)}


@dataclass(frozen=True, slots=True)
class JudgeCalls:
    """How the judge's answer for one sample came about (diagnostics, never part of a reward):
    each HTTP call's outcome in order, whether the answer came from the cache, the API's token
    usage of the last call, and the time spent waiting for the rate limiter."""

    attempts: tuple[str, ...] = ()
    cached: bool = False
    usage: dict[str, int] = field(default_factory=dict)
    limiter_wait_s: float = 0.0
    late_permits: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"attempts": list(self.attempts), "cached": self.cached, "usage": dict(self.usage),
                "limiter_wait_s": self.limiter_wait_s, "late_permits": self.late_permits}


@dataclass(slots=True)
class SourceResult:
    """One reward source's answer for one sample. `score` is None whenever the source did
    not answer (status != ok): a missing score is never a 0 in disguise. `detail` is a short
    human line (why it failed, which rules fired). The judge also gives its `verdict` (status
    ok: the item scores behind `score`) and its `calls` record (any status)."""

    score: float | None
    status: SourceStatus
    latency_s: float = 0.0
    detail: str = ""
    verdict: JudgeVerdict | None = None
    calls: JudgeCalls | None = None

    def __post_init__(self) -> None:
        self.status = SourceStatus(self.status)
        if self.status is SourceStatus.OK:
            _require(self.score is not None and _is_finite(self.score),
                     f"status ok needs a finite score, got {self.score!r}")
            self.score = float(self.score)
        else:
            _require(self.score is None, f"status {self.status.value} must carry score None, got {self.score!r}")
        _require(_is_finite(self.latency_s) and self.latency_s >= 0, f"latency_s must be >= 0, got {self.latency_s!r}")
        if self.verdict is not None:
            _require(self.status is SourceStatus.OK, f"status {self.status.value} cannot carry a judge verdict")
            _require(self.score == self.verdict.e_judge,
                     f"score {self.score!r} is not the verdict's E_judge {self.verdict.e_judge!r}")

    @property
    def ok(self) -> bool:
        return self.status is SourceStatus.OK

    def log_detail(self) -> str:
        """The detail as the trajectory log stores it: the short line, or, with a verdict or a
        call record, one JSON object holding them (the Parquet edge; nothing parses it back)."""
        if self.verdict is None and self.calls is None:
            return self.detail
        record: dict[str, Any] = {"detail": self.detail}
        if self.verdict is not None:
            record.update(self.verdict.to_dict())
        if self.calls is not None:
            record.update(self.calls.to_dict())
        return json.dumps(record, ensure_ascii=False, sort_keys=True)


@dataclass(slots=True)
class RewardResult:
    """The reward of one sample with every source's answer.

    `r_total` is None exactly when the sample is masked (out of the loss, counted);
    `reason` then says why. `e_enh` is clip(e_judge + e_func, -n, n) over the sources that
    answered (see reward.failure_policy)."""

    sample_id: str
    r_model: float | None
    e_judge: float | None
    e_func: float | None
    e_enh: float | None
    r_total: float | None
    sources: dict[str, SourceResult]
    masked: bool
    reason: str = ""
    # times a source (or the whole pool) was asked again for this sample after its actor
    # died and was restarted (pipeline/placement.py, "What survives what")
    rescored: int = 0

    def __post_init__(self) -> None:
        _require(bool(self.sample_id), "RewardResult.sample_id must be non-empty")
        for name, src in self.sources.items():
            _require(isinstance(src, SourceResult), f"{self.sample_id}: sources[{name!r}] is not a SourceResult")
        if self.masked:
            _require(self.r_total is None, f"{self.sample_id}: masked sample must have r_total None")
            _require(bool(self.reason), f"{self.sample_id}: masked sample needs a reason")
        else:
            _require(
                self.r_total is not None and _is_finite(self.r_total),
                f"{self.sample_id}: unmasked sample needs a finite r_total, got {self.r_total!r}",
            )
            _require(self.r_model is not None, f"{self.sample_id}: unmasked sample needs r_model (an RM failure masks)")
        for name in ("r_model", "e_judge", "e_func", "e_enh"):
            v = getattr(self, name)
            _require(v is None or _is_finite(v), f"{self.sample_id}: {name} = {v!r} is not finite")


@dataclass(frozen=True, slots=True)
class AdapterAck:
    """A rollout worker's answer after loading an AdapterUpdate."""

    worker_id: str
    version: int
    sha256: str
    probe_logprob: float


class AdapterVerificationError(RuntimeError):
    """A worker loaded an adapter that does not match what the learner published."""


@dataclass(frozen=True, slots=True)
class AdapterUpdate:
    """A LoRA adapter version pushed from learner rank 0 to every rollout worker.

    `tensors` are safetensors bytes; `peft_config` is the adapter_config.json content
    (what vLLM's LoRARequest reads); `probe_logprob` is the learner's summed logprob of
    `probe_token_ids` under the new adapter, which every worker recomputes."""

    version: int
    tensors: bytes
    peft_config: dict[str, Any]
    sha256: str
    probe_token_ids: tuple[int, ...]
    probe_logprob: float

    def __post_init__(self) -> None:
        _require(self.version >= 0, f"adapter version {self.version} < 0")
        _require(len(self.tensors) > 0, f"adapter v{self.version}: empty tensors")
        _require(len(self.probe_token_ids) >= 2, f"adapter v{self.version}: probe needs at least 2 tokens")
        _require(_is_finite(self.probe_logprob), f"adapter v{self.version}: probe_logprob {self.probe_logprob!r}")
        actual = hashlib.sha256(self.tensors).hexdigest()
        _require(actual == self.sha256, f"adapter v{self.version}: sha256 {self.sha256[:12]}… does not match its bytes")

    @classmethod
    def build(
        cls,
        version: int,
        tensors: bytes,
        peft_config: Mapping[str, Any],
        probe_token_ids: Sequence[int],
        probe_logprob: float,
    ) -> AdapterUpdate:
        return cls(
            version=version,
            tensors=tensors,
            peft_config=dict(peft_config),
            sha256=hashlib.sha256(tensors).hexdigest(),
            probe_token_ids=tuple(int(t) for t in probe_token_ids),
            probe_logprob=float(probe_logprob),
        )

    def verify_ack(self, ack: AdapterAck, logprob_tolerance: float) -> None:
        """Raise AdapterVerificationError naming the worker when its load does not match."""
        if ack.version != self.version:
            raise AdapterVerificationError(
                f"worker {ack.worker_id}: loaded adapter v{ack.version}, expected v{self.version} (stale)"
            )
        if ack.sha256 != self.sha256:
            raise AdapterVerificationError(
                f"worker {ack.worker_id}: adapter v{self.version} checksum {ack.sha256[:12]}… != {self.sha256[:12]}…"
            )
        diff = abs(ack.probe_logprob - self.probe_logprob)
        if not math.isfinite(ack.probe_logprob) or diff > logprob_tolerance:
            raise AdapterVerificationError(
                f"worker {ack.worker_id}: adapter v{self.version} probe logprob {ack.probe_logprob:.6f} differs from "
                f"the learner's {self.probe_logprob:.6f} by {diff:.2e} > tolerance {logprob_tolerance:.1e}"
            )

    def __repr__(self) -> str:  # the bytes would flood logs
        return f"AdapterUpdate(version={self.version}, sha256={self.sha256[:12]}…, {len(self.tensors)} bytes)"
