"""Evaluation metrics (DESIGN.md §4), pure: from scored dialogues and bad cases to rates with
percentile-bootstrap confidence intervals. No model, no Ray: the harness plays and scores,
this module only counts.

Definitions (one place; the report and the README quote them):

- Problem: an evaluation guardrail check that fires (repo_ray/eval/guardrails.py, the
  evaluation's own code; named like the RF rules, its defect: the registry's defect of that
  name; for `price_constraints` the tag says which: below floor or above current), or an evaluation
  judge item scored at or below `JUDGE_PROBLEM_AT` (-5 of [-10, 10], a clear violation; its
  defect: the registry's defect of that item; the three items without one count as
  `EXTRA_ITEM_PROBLEMS`). A problem's severity is its defect's registry severity.
- Dialogue rating 1-5: the mean over the dialogue's replies of a per-reply score,
  `clip(3 + 2 * j - p, 1, 5)`, where j is the reply's normalised judge score (in [-1, 1], so
  3 + 2j spans 1..5) and p the cost of the reply's worst problem (guardrail or judge item):
  1 (minor), 2 (major) or 4 (severe: the reply scores 1), 0 with none. Each reply's problems
  are combined per reply, so a policy with one problem per reply and a policy with one
  problem in its only reply rate alike, and the ratings spread over 1..5 instead of piling at
  1 under a summed penalty. Not rounded (the rating counts round it half up).
- Excellent reply: normalised judge score >= `eval.excellent_threshold` and no rule fires.
  Excellent share: dialogues with at least one excellent reply.
- Bad-case outcome of the policy's reply in the case's context: the case's defect is
  present when its registered catcher finds it (the rule, with the matching tag; or the
  judge item at or below -5). Present: unresolved (severe unresolved when the case's
  severity is severe). Gone: clean fix when no other problem is found, else fix with a
  minor problem (worst other problem minor) or fix with a major problem (major or severe).
  Fix = clean + minor + major.
- Capabilities, per dialogue (true when every reply passes):
  dialogue fluency: no format_breakage, mixed_language, repeated_phrasing, overlength, and
  judge persuasive_style >= 0; workflow compliance: judge sop_compliance,
  no_repeated_confirmation and silence_not_consent >= 0; negotiation effectiveness: the
  agent pursued the price (some reply's price_pursuit > 0 and their mean >= 0) and the
  negotiation moved (a ticket agreed, or the hotel named a price below a room's current
  price); domain understanding: no hallucinated_numbers, price_constraints or
  internal_term_leakage. Items a judge marks not applicable (None) pass.
- Response rate: dialogues in which the hotel said anything (it only ever answers the
  agent, so: replied after the opening). Task success: room-type tickets agreed below the
  current price, over all tickets. Price vs target: mean (agreed - target) / target over
  agreed tickets (negative = better than target). Turns to a deal: mean agent turn (from 1)
  at which an agreed ticket was agreed. Guardrail violations: replies on which an
  evaluation guardrail check fires, per 100 replies of the evaluation dialogues.
- Intervals: percentile bootstrap over units (dialogues, or bad cases), each unit carrying a
  numerator and a denominator (a ticket metric resamples whole dialogues), the statistic
  sum(num) / sum(den); `eval.bootstrap_samples` resamples at `eval.confidence`, seeded by
  (seed, unit family): every dialogue metric uses the same resamples, every bad-case metric
  too, so complementary rates get complementary intervals. Gains between two policies are
  paired: the same units resampled for both.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import numpy as np

from repo_ray.domain.defects import DEFECTS, SEVERITY_RANK, Severity
from repo_ray.domain.rubric import JUDGE_ITEMS, RULES
from repo_ray.domain.scenario import Scenario
from repo_ray.eval.eval_judge import room_prices
from repo_ray.hashing import stable_seed
from repo_ray.types import Message, Role

JUDGE_PROBLEM_AT = -5.0  # an item at or below this is a violation (a problem)
JUDGE_DEFECT: dict[str, str] = {d.check: d.name for d in DEFECTS.values() if d.catcher == "judge"}
# Rubric items no registered defect is caught by: what their violation counts as.
EXTRA_ITEM_PROBLEMS: dict[str, tuple[str, Severity]] = {
    "emotional_soothing": ("ignored_concern", Severity.MINOR),
    "price_pursuit": ("dropped_price_pursuit", Severity.MAJOR),
    "no_overpromising": ("over_promise", DEFECTS["over_promise"].severity),
}
# Rules no registered (text) defect is caught by: what their violation counts as.
EXTRA_RULE_PROBLEMS: dict[str, tuple[str, Severity]] = {
    "truncated": ("truncated_reply", Severity.MAJOR),  # a fact of the generation, not injectable text
}
RULE_DEFECTS: dict[str, tuple[str, ...]] = {
    rule: tuple(d.name for d in DEFECTS.values() if d.catcher == "rule" and d.check == rule)
    or ((EXTRA_RULE_PROBLEMS[rule][0],) if rule in EXTRA_RULE_PROBLEMS else ())
    for rule in RULES
}
PROBLEM_COST = {Severity.MINOR: 1.0, Severity.MAJOR: 2.0, Severity.SEVERE: 4.0}

FLUENCY_RULES = ("format_breakage", "mixed_language", "repeated_phrasing", "overlength")
DOMAIN_RULES = ("hallucinated_numbers", "price_constraints", "internal_term_leakage")
WORKFLOW_ITEMS = ("sop_compliance", "no_repeated_confirmation", "silence_not_consent")
CAPABILITIES = ("dialogue_fluency", "workflow_compliance", "negotiation_effectiveness", "domain_understanding")

if set(JUDGE_DEFECT) | set(EXTRA_ITEM_PROBLEMS) != set(JUDGE_ITEMS):
    raise RuntimeError("every rubric item needs a problem name (defect registry or EXTRA_ITEM_PROBLEMS)")
if any(not names for names in RULE_DEFECTS.values()):
    raise RuntimeError(f"rules without a defect: {[r for r, n in RULE_DEFECTS.items() if not n]}")


def problem_severity(name: str) -> Severity:
    if name in DEFECTS:
        return DEFECTS[name].severity
    for extra, sev in (*EXTRA_ITEM_PROBLEMS.values(), *EXTRA_RULE_PROBLEMS.values()):
        if extra == name:
            return sev
    raise KeyError(f"unknown problem {name!r}")


def rule_problem_names(rule: str, tags: Sequence[str]) -> list[str]:
    """The defects a fired rule stands for: when the rule catches several, those its tags name
    (a tag `below_floor:...` names price_below_floor), else all of them."""
    names = RULE_DEFECTS[rule]
    if len(names) == 1:
        return [names[0]]
    kinds = {t.split(":", 1)[0] for t in tags}
    named = [n for n in names if any(k and k in n for k in kinds)]
    return named or list(names)


# ---------------------------------------------------------------------------- one reply
@dataclass
class ResponseFindings:
    """One scored reply: the evaluation judge's items and normalised score, the rules that fired."""

    turn: int  # 0-based agent turn in its dialogue
    response: str
    judge_score: float  # normalised, in [-1, 1]
    judge_scores: dict[str, float | None] = field(default_factory=dict)
    judge_reasons: dict[str, str] = field(default_factory=dict)
    rule_tags: dict[str, list[str]] = field(default_factory=dict)  # fired rules only

    @property
    def violations(self) -> list[str]:
        return [r for r in RULES if r in self.rule_tags]

    def rule_problems(self) -> dict[str, Severity]:
        out: dict[str, Severity] = {}
        for rule, tags in self.rule_tags.items():
            for name in rule_problem_names(rule, tags):
                out[name] = problem_severity(name)
        return out

    def judge_problems(self) -> dict[str, Severity]:
        out: dict[str, Severity] = {}
        for item, s in self.judge_scores.items():
            if s is None or s > JUDGE_PROBLEM_AT:
                continue
            name = JUDGE_DEFECT.get(item) or EXTRA_ITEM_PROBLEMS[item][0]
            out[name] = problem_severity(name)
        return out

    def problems(self) -> dict[str, Severity]:
        """Every problem found in the reply (rules and judge), name -> severity."""
        return {**self.judge_problems(), **self.rule_problems()}

    def worst_rule_severity(self) -> Severity | None:
        sevs = list(self.rule_problems().values())
        return max(sevs, key=SEVERITY_RANK.__getitem__) if sevs else None

    def worst_severity(self) -> Severity | None:
        """The severity of the reply's worst problem, guardrail or judge item."""
        sevs = list(self.problems().values())
        return max(sevs, key=SEVERITY_RANK.__getitem__) if sevs else None

    def score(self) -> float:
        """The reply's 1..5 score: 3 + 2 * judge score - the cost of its worst problem."""
        worst = self.worst_severity()
        raw = 3.0 + 2.0 * self.judge_score - (PROBLEM_COST[worst] if worst is not None else 0.0)
        return min(5.0, max(1.0, raw))

    def is_excellent(self, threshold: float) -> bool:
        return self.judge_score >= threshold and not self.rule_tags

    def item(self, name: str) -> float | None:
        return self.judge_scores.get(name)

    def to_dict(self) -> dict[str, Any]:
        return {"turn": self.turn, "response": self.response, "judge_score": self.judge_score,
                "judge_scores": self.judge_scores, "judge_reasons": self.judge_reasons,
                "rule_tags": {k: list(v) for k, v in self.rule_tags.items()},
                "problems": {k: v.value for k, v in self.problems().items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ResponseFindings:
        return cls(int(d["turn"]), d["response"], float(d["judge_score"]), dict(d.get("judge_scores") or {}),
                   dict(d.get("judge_reasons") or {}), {k: list(v) for k, v in (d.get("rule_tags") or {}).items()})


# ---------------------------------------------------------------------------- one dialogue
@dataclass
class DialogueRecord:
    """One played evaluation dialogue and its scored replies."""

    dialogue_id: str
    scenario: Scenario
    transcript: list[Message]  # agent/hotel turns (a leading system prompt is ignored); "" = silence
    responses: list[ResponseFindings]
    agreed: dict[str, float]  # room type -> agreed price at the end
    deal_turns: dict[str, int] | None = None  # room type -> agent turn (from 1) it was agreed at; None = unknown

    @property
    def hotel_texts(self) -> list[str]:
        return [m.text for m in self.transcript if m.role is Role.HOTEL]


def dialogue_rating(responses: Sequence[ResponseFindings]) -> float:
    """1..5: the mean of the replies' scores (module docstring)."""
    if not responses:
        raise ValueError("a dialogue without replies has no rating")
    return sum(r.score() for r in responses) / len(responses)


def rating_bucket(rating: float) -> int:
    """A rating rounded half up to 1..5 (the rating counts)."""
    return int(min(5, max(1, math.floor(rating + 0.5))))


def has_excellent(responses: Sequence[ResponseFindings], threshold: float) -> bool:
    return any(r.is_excellent(threshold) for r in responses)


def _items_pass(responses: Sequence[ResponseFindings], items: Iterable[str]) -> bool:
    return all(r.item(i) is None or r.item(i) >= 0 for r in responses for i in items)


def _rules_clean(responses: Sequence[ResponseFindings], rules: Iterable[str]) -> bool:
    return not any(rule in r.rule_tags for r in responses for rule in rules)


def hotel_moved(scenario: Scenario, hotel_texts: Iterable[str]) -> bool:
    """The hotel named a price below the current price of the room it was about."""
    return any(p < scenario.room(room).current_price for t in hotel_texts for room, p in room_prices(t, scenario))


def capabilities(d: DialogueRecord) -> dict[str, bool]:
    """The four binary capabilities of one dialogue (module docstring)."""
    rs = d.responses
    pursuit = [r.item("price_pursuit") for r in rs if r.item("price_pursuit") is not None]
    pursued = bool(pursuit) and max(pursuit) > 0 and sum(pursuit) / len(pursuit) >= 0
    moved = bool(d.agreed) or hotel_moved(d.scenario, d.hotel_texts)
    return {
        "dialogue_fluency": _rules_clean(rs, FLUENCY_RULES) and _items_pass(rs, ("persuasive_style",)),
        "workflow_compliance": _items_pass(rs, WORKFLOW_ITEMS),
        "negotiation_effectiveness": pursued and moved,
        "domain_understanding": _rules_clean(rs, DOMAIN_RULES),
    }


@dataclass(frozen=True, slots=True)
class TicketOutcome:
    room: str
    agreed: float | None
    success: bool  # agreed below the current price
    vs_target: float | None  # (agreed - target) / target
    deal_turn: int | None


def ticket_outcomes(d: DialogueRecord) -> list[TicketOutcome]:
    out = []
    for r in d.scenario.room_types:
        price = d.agreed.get(r.name)
        turn = d.deal_turns.get(r.name) if (d.deal_turns is not None and price is not None) else None
        out.append(TicketOutcome(
            r.name, price, price is not None and price < r.current_price,
            None if price is None else (price - r.target_price) / r.target_price, turn,
        ))
    return out


# ---------------------------------------------------------------------------- bad cases
class BadCaseOutcome(StrEnum):
    CLEAN_FIX = "clean_fix"
    FIX_MINOR = "fix_minor"
    FIX_MAJOR = "fix_major"
    UNRESOLVED = "unresolved"


@dataclass
class BadCaseRecord:
    """The policy's reply in one bad case's context, scored."""

    case_id: str
    defect: str
    severity: Severity
    response: ResponseFindings

    def __post_init__(self) -> None:
        self.severity = Severity(self.severity)
        if self.defect not in DEFECTS:
            raise ValueError(f"bad case {self.case_id}: unknown defect {self.defect!r}")


def defect_present(defect: str, findings: ResponseFindings) -> bool:
    """Whether the defect's registered catcher finds it in the reply."""
    d = DEFECTS[defect]
    if d.catcher == "rule":
        tags = findings.rule_tags.get(d.check)
        return tags is not None and defect in rule_problem_names(d.check, tags)
    s = findings.item(d.check)
    return s is not None and s <= JUDGE_PROBLEM_AT


@dataclass(frozen=True, slots=True)
class BadCaseVerdict:
    outcome: BadCaseOutcome
    severe_unresolved: bool
    new_problems: dict[str, Severity]

    @property
    def fixed(self) -> bool:
        return self.outcome is not BadCaseOutcome.UNRESOLVED


def bad_case_verdict(case: BadCaseRecord) -> BadCaseVerdict:
    """Clean fix / fix with a minor or major problem / unresolved (module docstring)."""
    others = {k: v for k, v in case.response.problems().items() if k != case.defect}
    if defect_present(case.defect, case.response):
        return BadCaseVerdict(BadCaseOutcome.UNRESOLVED, case.severity is Severity.SEVERE, others)
    if not others:
        return BadCaseVerdict(BadCaseOutcome.CLEAN_FIX, False, others)
    worst = max(others.values(), key=SEVERITY_RANK.__getitem__)
    return BadCaseVerdict(BadCaseOutcome.FIX_MINOR if worst is Severity.MINOR else BadCaseOutcome.FIX_MAJOR,
                          False, others)


# ---------------------------------------------------------------------------- intervals
@dataclass(frozen=True, slots=True)
class Estimate:
    """A statistic with its bootstrap interval; value/lo/hi None when it has no data (n units)."""

    value: float | None
    lo: float | None
    hi: float | None
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "lo": self.lo, "hi": self.hi, "n": self.n}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Estimate:
        return cls(d.get("value"), d.get("lo"), d.get("hi"), int(d.get("n", 0)))


def metric_seed(seed: int, key: str) -> int:
    return stable_seed(seed, key)


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def bootstrap_ratio(num: Sequence[float], den: Sequence[float], samples: int, confidence: float,
                    seed: int) -> Estimate:
    """sum(num) / sum(den) with a percentile-bootstrap interval over the units (resampled
    with replacement; resamples whose denominator is 0 are left out)."""
    n_arr, d_arr = np.asarray(num, dtype=float), np.asarray(den, dtype=float)
    if n_arr.shape != d_arr.shape:
        raise ValueError(f"{n_arr.size} numerators but {d_arr.size} denominators")
    if d_arr.sum() <= 0:
        return Estimate(None, None, None, int((d_arr > 0).sum()))
    value = float(n_arr.sum() / d_arr.sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_arr.size, size=(samples, n_arr.size))
    dens = d_arr[idx].sum(axis=1)
    ok = dens > 0
    stats = n_arr[idx].sum(axis=1)[ok] / dens[ok]
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha]) if stats.size else (math.nan, math.nan)
    return Estimate(value, _finite(lo), _finite(hi), int((d_arr > 0).sum()))


def paired_difference(a: Mapping[str, tuple[float, float]], b: Mapping[str, tuple[float, float]], samples: int,
                      confidence: float, seed: int) -> Estimate:
    """ratio(a) - ratio(b) over the units both have, with a paired percentile bootstrap."""
    common = sorted(set(a) & set(b))
    if not common:
        return Estimate(None, None, None, 0)
    an, ad = (np.array([a[u][i] for u in common], dtype=float) for i in (0, 1))
    bn, bd = (np.array([b[u][i] for u in common], dtype=float) for i in (0, 1))
    if ad.sum() <= 0 or bd.sum() <= 0:
        return Estimate(None, None, None, len(common))
    value = float(an.sum() / ad.sum() - bn.sum() / bd.sum())
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(common), size=(samples, len(common)))
    da, db = ad[idx].sum(axis=1), bd[idx].sum(axis=1)
    ok = (da > 0) & (db > 0)
    stats = an[idx].sum(axis=1)[ok] / da[ok] - bn[idx].sum(axis=1)[ok] / db[ok]
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha]) if stats.size else (math.nan, math.nan)
    return Estimate(value, _finite(lo), _finite(hi), len(common))


# ---------------------------------------------------------------------------- the metric set
Kind = Literal["rating", "share", "mean", "per100"]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    label: str
    kind: Kind
    higher_is_better: bool


BAD_CASE_KEYS = ("fix", "clean_fix", "fix_minor", "fix_major", "unresolved", "severe_unresolved")
# Ground truth first: what the simulated hotel did (tickets, prices, replies) needs no judge.
GROUND_TRUTH = ("task_success", "price_vs_target", "response_rate", "turns_to_deal")
METRICS: dict[str, MetricSpec] = {
    "task_success": MetricSpec("task success per room-type ticket", "share", True),
    "price_vs_target": MetricSpec("price reached vs target, (agreed - target) / target", "mean", False),
    "response_rate": MetricSpec("simulated response rate", "share", True),
    "turns_to_deal": MetricSpec("agent turns to a deal (agreed tickets)", "mean", False),
    "rating": MetricSpec("dialogue rating (1-5)", "rating", True),
    "excellent_share": MetricSpec("dialogues with >= 1 excellent reply", "share", True),
    "bad_case.fix": MetricSpec("bad cases fixed (any)", "share", True),
    "bad_case.clean_fix": MetricSpec("bad cases: clean fix", "share", True),
    "bad_case.fix_minor": MetricSpec("bad cases: fix with a minor problem", "share", False),
    "bad_case.fix_major": MetricSpec("bad cases: fix with a major problem", "share", False),
    "bad_case.unresolved": MetricSpec("bad cases: unresolved", "share", False),
    "bad_case.severe_unresolved": MetricSpec("bad cases: severe unresolved", "share", False),
    **{f"capability.{c}": MetricSpec(c.replace("_", " "), "share", True) for c in CAPABILITIES},
    "judge_score": MetricSpec("mean normalised eval-judge score per reply", "mean", True),
    **{f"guardrail.{r}": MetricSpec(f"guardrail {r} per 100 replies", "per100", False) for r in RULES},
}


@dataclass
class EvalMetrics:
    """Every metric of one policy: estimates (key -> Estimate, keys of METRICS) and the
    per-unit (numerator, denominator) pairs behind them, kept for paired comparisons."""

    estimates: dict[str, Estimate]
    units: dict[str, dict[str, tuple[float, float]]]
    rating_counts: dict[int, int]
    outcome_counts: dict[str, int]
    dialogues: int
    responses: int
    bad_cases: int

    def __getitem__(self, key: str) -> Estimate:
        return self.estimates[key]

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimates": {k: v.to_dict() for k, v in self.estimates.items()},
            "units": {k: {u: list(p) for u, p in v.items()} for k, v in self.units.items()},
            "rating_counts": {str(k): v for k, v in self.rating_counts.items()},
            "outcome_counts": dict(self.outcome_counts),
            "dialogues": self.dialogues, "responses": self.responses, "bad_cases": self.bad_cases,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EvalMetrics:
        return cls(
            {k: Estimate.from_dict(v) for k, v in d["estimates"].items()},
            {k: {u: (float(p[0]), float(p[1])) for u, p in v.items()} for k, v in d.get("units", {}).items()},
            {int(k): int(v) for k, v in d.get("rating_counts", {}).items()},
            dict(d.get("outcome_counts", {})), int(d["dialogues"]), int(d["responses"]), int(d["bad_cases"]),
        )


def metric_units(dialogues: Sequence[DialogueRecord], bad_cases: Sequence[BadCaseRecord],
                 excellent_threshold: float) -> dict[str, dict[str, tuple[float, float]]]:
    """Per metric key, unit id -> (numerator, denominator)."""
    units: dict[str, dict[str, tuple[float, float]]] = {k: {} for k in METRICS}
    for d in dialogues:
        u, rs = d.dialogue_id, d.responses
        units["rating"][u] = (float(dialogue_rating(rs)), 1.0)
        units["excellent_share"][u] = (float(has_excellent(rs, excellent_threshold)), 1.0)
        for c, ok in capabilities(d).items():
            units[f"capability.{c}"][u] = (float(ok), 1.0)
        units["response_rate"][u] = (float(any(t.strip() for t in d.hotel_texts)), 1.0)
        tickets = ticket_outcomes(d)
        agreed = [t for t in tickets if t.agreed is not None]
        timed = [t for t in agreed if t.deal_turn is not None]
        units["task_success"][u] = (float(sum(t.success for t in tickets)), float(len(tickets)))
        units["price_vs_target"][u] = (float(sum(t.vs_target for t in agreed)), float(len(agreed)))
        units["turns_to_deal"][u] = (float(sum(t.deal_turn for t in timed)), float(len(timed)))
        units["judge_score"][u] = (float(sum(r.judge_score for r in rs)), float(len(rs)))
        for rule in RULES:
            units[f"guardrail.{rule}"][u] = (100.0 * sum(rule in r.rule_tags for r in rs), float(len(rs)))
    for c in bad_cases:
        v = bad_case_verdict(c)
        flags = {"fix": v.fixed, "clean_fix": v.outcome is BadCaseOutcome.CLEAN_FIX,
                 "fix_minor": v.outcome is BadCaseOutcome.FIX_MINOR, "fix_major": v.outcome is BadCaseOutcome.FIX_MAJOR,
                 "unresolved": v.outcome is BadCaseOutcome.UNRESOLVED, "severe_unresolved": v.severe_unresolved}
        for k, flag in flags.items():
            units[f"bad_case.{k}"][c.case_id] = (float(flag), 1.0)
    return units


def unit_family(key: str) -> str:
    """Metrics over the same units share their resamples (one seed per family), so that
    complementary rates (fix vs unresolved) get complementary intervals."""
    return "bad_cases" if key.startswith("bad_case.") else "dialogues"


def compute_metrics(dialogues: Sequence[DialogueRecord], bad_cases: Sequence[BadCaseRecord], *,
                    excellent_threshold: float, bootstrap_samples: int, confidence: float,
                    seed: int = 0) -> EvalMetrics:
    """Every metric of METRICS with its interval (module docstring)."""
    ids = [d.dialogue_id for d in dialogues]
    if len(set(ids)) != len(ids):
        raise ValueError("dialogue ids repeat")
    if len({c.case_id for c in bad_cases}) != len(bad_cases):
        raise ValueError("bad-case ids repeat")
    units = metric_units(dialogues, bad_cases, excellent_threshold)
    estimates = {}
    for key, per_unit in units.items():
        pairs = list(per_unit.values())
        estimates[key] = bootstrap_ratio([p[0] for p in pairs], [p[1] for p in pairs], bootstrap_samples, confidence,
                                         metric_seed(seed, unit_family(key)))
    ratings = Counter(rating_bucket(units["rating"][d.dialogue_id][0]) for d in dialogues)
    outcomes = Counter(bad_case_verdict(c).outcome.value for c in bad_cases)
    return EvalMetrics(
        estimates, units, {k: ratings.get(k, 0) for k in range(1, 6)},
        {o.value: outcomes.get(o.value, 0) for o in BadCaseOutcome},
        len(dialogues), sum(len(d.responses) for d in dialogues), len(bad_cases),
    )


def gain(a: EvalMetrics, b: EvalMetrics, key: str, samples: int, confidence: float, seed: int = 0) -> Estimate:
    """a - b on one metric, paired over the units both were evaluated on."""
    return paired_difference(a.units.get(key, {}), b.units.get(key, {}), samples, confidence,
                             metric_seed(seed, f"gain:{unit_family(key)}"))
