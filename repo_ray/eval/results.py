"""What evaluation found, as stored in eval.json: `PolicyEval` per policy with its dialogues
and bad cases, and reading / writing them. The harness produces these and the reports read
them; both import this module, neither the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repo_ray.atomic import atomic_write_text
from repo_ray.domain.scenario import Scenario
from repo_ray.eval.metrics import DialogueRecord, EvalMetrics, ResponseFindings
from repo_ray.types import Message


@dataclass
class DialogueResult:
    """One evaluation dialogue with its findings, as stored in eval.json."""

    dialogue_id: str
    scenario: dict[str, Any]  # Scenario.to_row()
    transcript: list[dict[str, str]]  # agent/hotel messages, no system prompt
    responses: list[ResponseFindings]
    agreed: dict[str, float]
    deal_turns: dict[str, int] | None
    end_reason: str
    rating: float  # 1..5, the mean of the replies' scores
    excellent: bool
    capabilities: dict[str, bool]

    def record(self) -> DialogueRecord:
        return DialogueRecord(self.dialogue_id, Scenario.from_row(self.scenario),
                              [Message.from_dict(m) for m in self.transcript], self.responses, self.agreed,
                              self.deal_turns)

    def to_dict(self) -> dict[str, Any]:
        return {"dialogue_id": self.dialogue_id, "scenario": self.scenario, "transcript": self.transcript,
                "responses": [r.to_dict() for r in self.responses], "agreed": self.agreed,
                "deal_turns": self.deal_turns, "end_reason": self.end_reason, "rating": self.rating,
                "excellent": self.excellent, "capabilities": self.capabilities}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DialogueResult:
        return cls(d["dialogue_id"], d["scenario"], list(d["transcript"]),
                   [ResponseFindings.from_dict(r) for r in d["responses"]], dict(d["agreed"]),
                   None if d.get("deal_turns") is None else {k: int(v) for k, v in d["deal_turns"].items()},
                   d["end_reason"], float(d["rating"]), bool(d["excellent"]), dict(d["capabilities"]))


@dataclass
class BadCaseResult:
    """The policy's reply to one bad case and its outcome, as stored in eval.json."""

    case_id: str
    defect: str
    severity: str
    last_hotel: str  # the hotel message the reply answers ("" = silence or none)
    bad_response: str  # what the weak model said
    response: ResponseFindings
    outcome: str
    severe_unresolved: bool
    new_problems: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"case_id": self.case_id, "defect": self.defect, "severity": self.severity,
                "last_hotel": self.last_hotel, "bad_response": self.bad_response, "response": self.response.to_dict(),
                "outcome": self.outcome, "severe_unresolved": self.severe_unresolved,
                "new_problems": self.new_problems}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BadCaseResult:
        return cls(d["case_id"], d["defect"], d["severity"], d.get("last_hotel", ""), d.get("bad_response", ""),
                   ResponseFindings.from_dict(d["response"]), d["outcome"], bool(d["severe_unresolved"]),
                   dict(d.get("new_problems", {})))


@dataclass
class PolicyEval:
    """Everything evaluation found about one policy; `to_json` / `from_json` round-trip it."""

    name: str
    policy_path: str
    adapter: str | None  # adapter directory, "AdapterUpdate vN", or None
    metrics: EvalMetrics
    dialogues: list[DialogueResult]
    bad_cases: list[BadCaseResult]
    example_ids: list[str]
    settings: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0

    def examples(self) -> list[DialogueResult]:
        by_id = {d.dialogue_id: d for d in self.dialogues}
        return [by_id[i] for i in self.example_ids if i in by_id]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "policy_path": self.policy_path, "adapter": self.adapter,
                "metrics": self.metrics.to_dict(), "dialogues": [d.to_dict() for d in self.dialogues],
                "bad_cases": [b.to_dict() for b in self.bad_cases], "example_ids": self.example_ids,
                "settings": self.settings, "wall_s": self.wall_s}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PolicyEval:
        return cls(d["name"], d["policy_path"], d.get("adapter"), EvalMetrics.from_dict(d["metrics"]),
                   [DialogueResult.from_dict(x) for x in d.get("dialogues", [])],
                   [BadCaseResult.from_dict(x) for x in d.get("bad_cases", [])], list(d.get("example_ids", [])),
                   dict(d.get("settings", {})), float(d.get("wall_s", 0.0)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1, allow_nan=False)

    @classmethod
    def from_json(cls, text: str) -> PolicyEval:
        return cls.from_dict(json.loads(text))


def write_evals(evals: dict[str, PolicyEval], path: Path) -> Path:
    """eval.json: {name: PolicyEval dict} in the given order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({k: v.to_dict() for k, v in evals.items()}, ensure_ascii=False, indent=1,
                                       allow_nan=False))
    return path


def read_evals(path: Path) -> dict[str, PolicyEval]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {k: PolicyEval.from_dict(v) for k, v in data.items()}
