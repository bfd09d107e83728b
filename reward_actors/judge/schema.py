"""The judge's answer: strict validation of untrusted JSON and the weighted sum E_judge.

Accepted answer (any other top-level keys are ignored):

    {"scores": {"<item>": {"score": <number in [-10, 10]> | null, "reason": "<text>"}, ...}}

- Every rubric item (repo_ray.domain.rubric.JUDGE_ITEMS, plus judge.extra_items) must be present (null when not
  applicable): an answer that silently drops items would read as a neutral 0.
- Unknown item names are ignored and listed in `JudgeVerdict.ignored_items` (real judges
  add extras; they must not fail the sample nor count).
- `score` must be a JSON number or null: strings, booleans, NaN and infinities are invalid.
  Numbers outside [-10, 10] are clipped. `reason` is optional text, cut to 200 characters.
- Anything else (not JSON, not an object, a missing item, a wrong type) raises
  `InvalidJudgeOutput` -> status invalid_output.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from repo_ray.domain.rubric import JUDGE_ITEMS, JUDGE_SCORE_RANGE
from repo_ray.types import JudgeVerdict  # the contract type; re-exported here as the parser's result

MAX_REASON_CHARS = 200


class InvalidJudgeOutput(ValueError):
    """The judge's answer does not follow the schema (its reason is safe to log: it quotes no input)."""


class ItemScore(BaseModel):
    model_config = ConfigDict(extra="ignore")

    score: StrictFloat | StrictInt | None = Field(..., description="item score; null when not applicable")
    reason: str = Field("", description="short justification")


class JudgeAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")

    scores: dict[str, ItemScore]


def answer_json_schema(items: Mapping[str, str] = JUDGE_ITEMS) -> dict:
    """The JSON Schema of an answer for these rubric items, for servers with structured output
    (`response_format: {"type": "json_schema", ...}`): every item required, a number or null
    and a reason each. Kept to the subset every constrained decoder takes (types, required,
    additionalProperties): the score's range and the reason's length are enforced by
    parse_judge_answer (clipped, cut), not by the decoder."""
    item = {
        "type": "object",
        "properties": {"score": {"anyOf": [{"type": "number"}, {"type": "null"}]}, "reason": {"type": "string"}},
        "required": ["score", "reason"],
        "additionalProperties": False,
    }
    scores = {"type": "object", "properties": {k: item for k in items}, "required": list(items),
              "additionalProperties": False}
    return {"type": "object", "properties": {"scores": scores}, "required": ["scores"], "additionalProperties": False}


def _reject_constant(name: str) -> float:
    raise InvalidJudgeOutput(f"non-finite number {name} in the answer")


def clip_score(x: float) -> float:
    lo, hi = JUDGE_SCORE_RANGE
    return float(min(hi, max(lo, x)))


def e_judge(scores: Mapping[str, float | None], weights: Mapping[str, float]) -> float:
    """sum(weight_i * score_i) over items with a score; items without a weight count 0."""
    return float(sum(weights.get(k, 0.0) * v for k, v in scores.items() if v is not None))


def parse_judge_answer(content: str | None, weights: Mapping[str, float],
                       items: Mapping[str, str] = JUDGE_ITEMS) -> JudgeVerdict:
    """Validate the judge's message content against the rubric `items` (domain.rubric.rubric_items);
    raise InvalidJudgeOutput on any schema problem."""
    if not isinstance(content, str) or not content.strip():
        raise InvalidJudgeOutput("empty answer")
    try:
        raw = json.loads(content, parse_constant=_reject_constant)
    except json.JSONDecodeError as err:
        raise InvalidJudgeOutput(f"answer is not JSON ({err.msg} at char {err.pos})") from None
    if not isinstance(raw, dict):
        raise InvalidJudgeOutput(f"answer is a JSON {type(raw).__name__}, not an object")
    raw_scores = raw.get("scores")
    if not isinstance(raw_scores, dict):
        raise InvalidJudgeOutput("answer has no `scores` object")
    # unknown items are dropped before validation, whatever their shape
    ignored = tuple(sorted(str(k) for k in raw_scores if k not in items))
    raw = {"scores": {k: v for k, v in raw_scores.items() if k in items}}
    try:
        answer = JudgeAnswer.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise InvalidJudgeOutput(f"answer field {loc}: {first['msg']}") from None
    missing = [k for k in items if k not in answer.scores]
    if missing:
        raise InvalidJudgeOutput(f"answer lacks rubric item(s) {missing}")
    scores: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    for k in items:
        item = answer.scores[k]
        if item.score is not None and not math.isfinite(item.score):
            raise InvalidJudgeOutput(f"answer item {k}: score is not finite")
        scores[k] = None if item.score is None else clip_score(item.score)
        reasons[k] = item.reason[:MAX_REASON_CHARS]
    return JudgeVerdict(scores, reasons, e_judge(scores, weights), ignored)
