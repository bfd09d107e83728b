"""How far to trust the evaluation judge: its agreement with human labels (`repo-ray
judge-agreement`). The labels file's schema and loader, Cohen's kappa, and the report; the
scoring itself is the evaluation's own (`EvalJudge` of `eval.judge` plus the RF rules).

The labels file (Parquet), one row per labelled agent reply:

- `label_id`, `dialogue_id`, `scenario` (the data files' scenario struct), `context` (the
  messages before the reply, data-file message format), `response` — required.
- One nullable integer column per rubric item (`JUDGE_ITEMS`), the human score on the
  evaluation judge's scale [-10, 10]; null means "no human score" (not labelled, or not
  applicable). A column may be left out when the item is not labelled at all.
- One nullable bool column per capability (`CAPABILITIES`), a verdict on the dialogue: rows
  of one dialogue must not contradict each other; the dialogue is read as far as its longest
  row goes (that row's context plus its reply), and every row's context plus reply must be a
  prefix of it.
- `note`: optional free text. Any other column is an error (a misspelt label column would
  otherwise be ignored in silence).

What is compared:
- Rubric items: per row and item, the human score against the judge's score rounded half up
  to an integer, over the rows where both scored. Reported: Cohen's kappa with QUADRATIC
  weights (the scale is ordinal: -8 against -10 is a near miss), with a percentile-bootstrap
  interval that resamples whole dialogues (rows of one dialogue are not independent); the
  unweighted kappa of the problem flag (score <= `JUDGE_PROBLEM_AT`, what bad-case outcomes
  read); the mean absolute difference; and how often the human scored an item the judge
  called not applicable.
- Capabilities: the human verdict against `capabilities()` of the dialogue as `repo-ray eval`
  scores it (every agent turn through the judge and the rules; agreed prices read off the
  transcript with the evaluation judge's own parser, since there is no simulator state).
  Reported: accuracy with a bootstrap interval over dialogues, the 2x2 counts, unweighted kappa.
- Kappa is undefined (None, with the reason) when chance agreement is total: both raters used
  one and the same category on every pair. A resample where it is undefined is left out of the
  interval.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from repo_ray.atomic import atomic_output
from repo_ray.config import RepoRayConfig
from repo_ray.domain.defects import DEFECTS, Severity
from repo_ray.domain.rubric import JUDGE_ITEMS, JUDGE_SCORE_RANGE
from repo_ray.domain.scenario import Scenario, render_system_prompt
from repo_ray.domain.schemas import MESSAGES, SCENARIO, oversized_text, read_table, table_rows, type_mismatch
from repo_ray.errors import DataFileError
from repo_ray.eval.eval_judge import EvalJudge, JudgeRequest, read_negotiation
from repo_ray.eval.metrics import (
    CAPABILITIES,
    DOMAIN_RULES,
    EXTRA_ITEM_PROBLEMS,
    FLUENCY_RULES,
    JUDGE_PROBLEM_AT,
    WORKFLOW_ITEMS,
    DialogueRecord,
    Estimate,
    ResponseFindings,
    bootstrap_ratio,
    capabilities,
    metric_seed,
)
from repo_ray.types import Message, Role

Weighting = Literal["none", "quadratic"]
Findings = Mapping[tuple[str, int], ResponseFindings]  # (dialogue_id, transcript position) -> the reply's findings

# ---------------------------------------------------------------------------- the labels file
REQUIRED_COLUMNS = pa.schema([
    ("label_id", pa.string()),
    ("dialogue_id", pa.string()),
    ("scenario", SCENARIO),
    ("context", MESSAGES),
    ("response", pa.string()),
])
LABELS_SCHEMA = pa.schema([
    *REQUIRED_COLUMNS,
    *(pa.field(item, pa.int8()) for item in JUDGE_ITEMS),
    *(pa.field(c, pa.bool_()) for c in CAPABILITIES),
    ("note", pa.string()),
])
LOW, HIGH = (int(x) for x in JUDGE_SCORE_RANGE)
SOURCE_KEY = b"repo_ray.labels_source"  # schema metadata: who labelled (the example file says "synthetic")


@dataclass(frozen=True, slots=True)
class LabelledReply:
    """One row: the reply at `position` of its dialogue's transcript and its human item scores."""

    label_id: str
    dialogue_id: str
    row: int
    position: int  # index of the reply in LabelledDialogue.transcript
    items: dict[str, int]  # labelled items only


@dataclass(frozen=True, slots=True)
class LabelledDialogue:
    """A dialogue as far as its rows go, starting with a system prompt (rendered when the file has none)."""

    dialogue_id: str
    scenario: Scenario
    transcript: tuple[Message, ...]
    capabilities: dict[str, bool]  # labelled capabilities only

    def agent_positions(self) -> list[int]:
        return [i for i, m in enumerate(self.transcript) if m.role is Role.AGENT]


@dataclass(frozen=True)
class LabelSet:
    path: str
    replies: list[LabelledReply]
    dialogues: dict[str, LabelledDialogue]
    item_columns: tuple[str, ...]  # rubric items the file has a column for
    capability_columns: tuple[str, ...]
    source: str | None  # the file's SOURCE_KEY metadata, e.g. synthetic labels


def _score(value: Any, item: str) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):  # pandas writes missing ints as NaN
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not LOW <= value <= HIGH or \
            value != int(value):
        raise ValueError(f"{item} is {value!r}, not an integer in [{LOW}, {HIGH}]")
    return int(value)


def _verdict(value: Any, capability: str) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise ValueError(f"{capability} is {value!r}, not true, false or null")


def _text(value: Any, column: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{column} is empty")
    return value


def _context(value: Any) -> tuple[Message, ...]:
    out = []
    for i, m in enumerate(value or ()):
        if m is None or m.get("role") not in {r.value for r in Role}:
            raise ValueError(f"context[{i}].role is {None if m is None else m.get('role')!r}, not system|agent|hotel")
        if m.get("text") is None:
            raise ValueError(f"context[{i}].text is null")
        out.append(Message(Role(m["role"]), m["text"]))
    turns = [m for m in out if m.role is not Role.SYSTEM]
    if turns and turns[-1].role is Role.AGENT:
        raise ValueError("context ends with an agent message; the labelled reply must answer the hotel or open")
    return tuple(out)


@dataclass
class _Row:
    label_id: str
    dialogue_id: str
    scenario: Scenario
    raw_scenario: dict[str, Any]
    context: tuple[Message, ...]
    response: str
    items: dict[str, int]
    capabilities: dict[str, bool]
    row: int = 0

    @property
    def turns(self) -> list[Message]:
        """Context plus reply, without the system prompt."""
        return [m for m in self.context if m.role is not Role.SYSTEM] + [Message(Role.AGENT, self.response)]


def _parse(raw: Mapping[str, Any], items: Sequence[str], caps: Sequence[str]) -> _Row:
    scores = {i: s for i in items if (s := _score(raw[i], i)) is not None}
    verdicts = {c: v for c in caps if (v := _verdict(raw[c], c)) is not None}
    return _Row(_text(raw["label_id"], "label_id"), _text(raw["dialogue_id"], "dialogue_id"),
                Scenario.from_row(raw["scenario"]), raw["scenario"], _context(raw["context"]),
                _text(raw["response"], "response"), scores, verdicts)


def _dialogue(rows: list[_Row], name: str) -> tuple[LabelledDialogue, list[tuple[int, str]]]:
    """The dialogue of rows sharing one dialogue_id, and the (row, problem) that make rows unusable."""
    longest = max(rows, key=lambda r: len(r.turns))
    turns, problems, verdicts = longest.turns, [], dict(longest.capabilities)
    said_by: dict[str, _Row] = {c: longest for c in verdicts}
    for r in rows:
        where = f"{name}:{r.row}: dialogue {r.dialogue_id!r}"
        if r.raw_scenario != longest.raw_scenario:
            problems.append((r.row, f"{where}: scenario differs from row {longest.row}'s"))
        elif r.turns != turns[:len(r.turns)]:
            problems.append((r.row, f"{where}: context plus reply is not a prefix of row {longest.row}'s"))
        for c, v in r.capabilities.items():
            if verdicts.setdefault(c, v) != v:
                problems.append((r.row, f"{where}: {c} is {str(v).lower()} but row {said_by[c].row} says "
                                        f"{str(verdicts[c]).lower()}"))
            said_by.setdefault(c, r)
    system = next((m for m in longest.context if m.role is Role.SYSTEM),
                  Message(Role.SYSTEM, render_system_prompt(longest.scenario)))
    return LabelledDialogue(longest.dialogue_id, longest.scenario, (system, *turns), verdicts), problems


def load_labels(path: str | Path) -> LabelSet:
    """Read and validate a labels file. Any bad row makes the file unusable (an agreement over a
    silently shrunk label set would mislead): DataFileError with the first `file:row: reason`
    and the rows of the others."""
    path = Path(path)
    table = read_table(path, "labels file")
    names = table.column_names
    missing = [f.name for f in REQUIRED_COLUMNS if f.name not in names]
    if missing:
        raise DataFileError(f"{path}: missing column(s) {missing}")
    unknown = [c for c in names if c not in LABELS_SCHEMA.names]
    if unknown:
        import difflib

        near = {c: m[0] for c in unknown if (m := difflib.get_close_matches(c, LABELS_SCHEMA.names, n=1))}
        hint = "; did you mean " + ", ".join(f"{m!r} for {c!r}" if len(near) > 1 else repr(m)
                                            for c, m in near.items()) + "?" if near else \
            f"; label columns are the rubric items {list(JUDGE_ITEMS)} and the capabilities {list(CAPABILITIES)}"
        raise DataFileError(f"{path}: unknown column(s) {unknown}{hint}")
    for f in LABELS_SCHEMA:
        if f.name in names and (why := type_mismatch(f.type, table.schema.field(f.name).type, f.name)) is not None:
            raise DataFileError(f"{path}: {why}")
    items = tuple(i for i in JUDGE_ITEMS if i in names)
    caps = tuple(c for c in CAPABILITIES if c in names)
    if not items and not caps:
        raise DataFileError(f"{path}: no label column (a rubric item of {list(JUDGE_ITEMS)} or a capability of "
                            f"{list(CAPABILITIES)})")
    problems: list[tuple[int, str]] = []
    rows: list[_Row] = []
    seen: dict[str, int] = {}
    for i, raw, bad in table_rows(table, path.name):
        try:
            if bad is not None:
                raise ValueError(bad.split(": ", 1)[1])
            if (too_long := oversized_text(raw, "row")) is not None:
                raise ValueError(too_long.removeprefix("row."))
            r = _parse(raw, items, caps)
            if r.label_id in seen:
                raise ValueError(f"label_id {r.label_id!r} repeats row {seen[r.label_id]}")
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            problems.append((i, f"{path.name}:{i}: {err}"))
            continue
        seen[r.label_id] = r.row = i
        rows.append(r)
    by_dialogue: dict[str, list[_Row]] = {}
    for r in rows:
        by_dialogue.setdefault(r.dialogue_id, []).append(r)
    dialogues: dict[str, LabelledDialogue] = {}
    for did, group in by_dialogue.items():
        dialogues[did], found = _dialogue(group, path.name)
        problems.extend(found)
    if problems:
        problems.sort()
        others = sorted({i for i, _ in problems[1:]} - {problems[0][0]})
        more = f" (bad rows also: {', '.join(map(str, others[:10]))}{', ...' if len(others) > 10 else ''})" \
            if others else ""
        raise DataFileError(problems[0][1] + more)
    if not rows:
        raise DataFileError(f"{path}: no rows")
    replies = [LabelledReply(r.label_id, r.dialogue_id, r.row, len(r.turns), r.items) for r in rows]
    meta = table.schema.metadata or {}
    source = meta[SOURCE_KEY].decode() if SOURCE_KEY in meta else None
    return LabelSet(str(path), replies, dialogues, items, caps, source)


def write_labels(rows: Sequence[Mapping[str, Any]], path: str | Path, source: str | None = None) -> Path:
    """Write label rows (dicts with the required columns and any label columns) in LABELS_SCHEMA,
    with a column for each label some row carries (an absent column reads as "not labelled")."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    used = {k for r in rows for k in r}
    schema = pa.schema([f for f in LABELS_SCHEMA if f.name in REQUIRED_COLUMNS.names or f.name in used],
                       metadata={SOURCE_KEY: source.encode()} if source else None)
    table = pa.Table.from_pylist([dict(r) for r in rows], schema=schema)
    with atomic_output(path, "wb") as f:
        pq.write_table(table, f)
    return path


# ---------------------------------------------------------------------------- kappa
@dataclass(frozen=True, slots=True)
class Kappa:
    value: float | None
    reason: str = ""  # why value is None
    n: int = 0


def _disagreements(a: np.ndarray, b: np.ndarray, w: np.ndarray,
                   weighting: Weighting) -> tuple[np.ndarray, np.ndarray]:
    """Observed and chance-expected disagreement per row of pair weights `w` (resamples x pairs);
    kappa = 1 - observed / chance. Quadratic weights on numeric categories: the chance term is
    the mean of (a_i - b_j)^2 over all pairs i, j = var(a) + var(b) + (mean a - mean b)^2."""
    tot = w.sum(axis=1)
    if weighting == "quadratic":
        observed = w @ (a - b) ** 2 / tot
        ma, mb = w @ a / tot, w @ b / tot
        chance = (w @ a ** 2 / tot - ma ** 2) + (w @ b ** 2 / tot - mb ** 2) + (ma - mb) ** 2
    elif weighting == "none":
        observed = 1.0 - w @ (a == b).astype(float) / tot
        chance = 1.0 - sum((w @ (a == c).astype(float) / tot) * (w @ (b == c).astype(float) / tot)
                           for c in np.union1d(a, b))
    else:
        raise ValueError(f"unknown weighting {weighting!r}")
    return observed, chance


_TOTAL_CHANCE = 1e-12


def cohen_kappa(a: Sequence[float], b: Sequence[float], weighting: Weighting = "none") -> Kappa:
    """Cohen's kappa of two raters over the same items: unweighted (categories are labels) or
    quadratic-weighted (categories are numbers on an ordinal scale). None, with the reason,
    when there are no pairs or both raters used one and the same category throughout."""
    if len(a) != len(b):
        raise ValueError(f"{len(a)} ratings against {len(b)}")
    if not len(a):
        return Kappa(None, "no rows with both scores", 0)
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    observed, chance = _disagreements(x, y, np.ones((1, x.size)), weighting)
    if chance[0] <= _TOTAL_CHANCE:
        return Kappa(None, f"undefined: both gave {a[0]} every time", x.size)
    return Kappa(float(1.0 - observed[0] / chance[0]), "", x.size)


def kappa_estimate(a: Sequence[float], b: Sequence[float], units: Sequence[str], weighting: Weighting,
                   samples: int, confidence: float, seed: int) -> tuple[Estimate, str]:
    """Kappa with a percentile-bootstrap interval that resamples whole units (pairs of one unit
    stay together); resamples where kappa is undefined are left out. Also the point's reason."""
    point = cohen_kappa(a, b, weighting)
    ids = sorted(set(units))
    if point.value is None:
        return Estimate(None, None, None, len(ids)), point.reason
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    index = {u: i for i, u in enumerate(ids)}
    unit_of = np.array([index[u] for u in units])
    rng = np.random.default_rng(seed)
    counts = np.stack([np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids)) for _ in range(samples)])
    w = counts[:, unit_of].astype(float)
    observed, chance = _disagreements(x, y, w, weighting)
    ok = chance > _TOTAL_CHANCE
    stats = 1.0 - observed[ok] / chance[ok]
    alpha = (1.0 - confidence) / 2.0
    if not stats.size:
        return Estimate(point.value, None, None, len(ids)), ""
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return Estimate(point.value, float(lo), float(hi), len(ids)), ""


# ---------------------------------------------------------------------------- the report
@dataclass(frozen=True, slots=True)
class ItemAgreement:
    item: str
    n: int  # rows where both scored
    kappa: Estimate  # quadratic-weighted, interval over dialogues
    kappa_reason: str  # why kappa.value is None
    problem_kappa: Kappa  # unweighted, on score <= JUDGE_PROBLEM_AT
    mean_abs_diff: float | None
    judge_not_applicable: int  # the human scored it, the judge called it not applicable
    labelled: bool  # the file has a column for it

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item, "n": self.n, "kappa_quadratic": self.kappa.to_dict(),
                "kappa_reason": self.kappa_reason or None,
                "problem_kappa": {"value": self.problem_kappa.value, "reason": self.problem_kappa.reason or None},
                "mean_abs_diff": self.mean_abs_diff, "judge_not_applicable": self.judge_not_applicable,
                "labelled": self.labelled}


@dataclass(frozen=True, slots=True)
class CapabilityAgreement:
    capability: str
    accuracy: Estimate  # share of dialogues where judge and human agree; n = dialogues
    counts: dict[str, int]  # human/judge: both_true, human_only, judge_only, both_false
    kappa: Kappa  # unweighted
    labelled: bool

    def to_dict(self) -> dict[str, Any]:
        return {"capability": self.capability, "accuracy": self.accuracy.to_dict(), "counts": dict(self.counts),
                "kappa": {"value": self.kappa.value, "reason": self.kappa.reason or None}, "labelled": self.labelled}


@dataclass
class AgreementReport:
    labels: str
    labels_source: str | None
    judge: str
    rows: int
    dialogues: int
    items: list[ItemAgreement]
    capabilities: list[CapabilityAgreement]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "labels_source": self.labels_source, "judge": self.judge, "rows": self.rows,
                "dialogues": self.dialogues, "items": [i.to_dict() for i in self.items],
                "capabilities": [c.to_dict() for c in self.capabilities], "settings": self.settings}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, indent=1, allow_nan=False)

    def table(self) -> str:
        s = self.settings
        pct = f"{100 * s['confidence']:g}%"
        out = [f"labels: {self.labels} ({self.rows} rows, {self.dialogues} dialogues)"]
        if self.labels_source:
            out.append(f"labels source: {self.labels_source}")
        out += [f"judge: {self.judge}",
                f"rubric items: Cohen's kappa, quadratic-weighted, on the integer scale [{LOW}, {HIGH}] (judge scores",
                f"  rounded half up); {pct} percentile-bootstrap interval over dialogues ({s['bootstrap_samples']} "
                f"resamples);",
                f"  problem: unweighted kappa of 'score <= {JUDGE_PROBLEM_AT:g}'; |diff|: mean absolute difference;",
                "  judge n/a: the human scored an item the judge found not applicable.",
                "capabilities: per dialogue; accuracy with the same interval, unweighted kappa, counts human/judge.",
                ""]
        out.append(f"{'rubric item':<26} {'n':>4}  {'kappa':>6}  {pct + ' interval':<17} {'problem':>7}  "
                   f"{'|diff|':>6}  {'judge n/a':>9}")
        for i in self.items:
            if i.kappa.value is None:
                why = i.kappa_reason if i.labelled else "not labelled (no column)"
                out.append(f"{i.item:<26} {i.n:>4}  {'-':>6}  {why}" + (
                    f"; judge n/a {i.judge_not_applicable}" if i.judge_not_applicable else ""))
                continue
            out.append(f"{i.item:<26} {i.n:>4}  {i.kappa.value:>6.2f}  {_interval(i.kappa):<17} "
                       f"{_num(i.problem_kappa.value):>7}  {_num(i.mean_abs_diff, '.1f'):>6}  "
                       f"{i.judge_not_applicable:>9}")
        out += ["", f"{'capability':<26} {'n':>4}  {'accuracy':>8}  {pct + ' interval':<17} {'kappa':>6}  "
                    "human+/judge+  +/-  -/+  -/-"]
        for c in self.capabilities:
            if c.accuracy.value is None:
                out.append(f"{c.capability:<26} {c.accuracy.n:>4}  {'-':>8}  "
                           + ("no labelled dialogues" if c.labelled else "not labelled (no column)"))
                continue
            k = c.counts
            out.append(f"{c.capability:<26} {c.accuracy.n:>4}  {c.accuracy.value:>8.2f}  {_interval(c.accuracy):<17} "
                       f"{_num(c.kappa.value):>6}  {k['both_true']:>13}  {k['human_only']:>3}  {k['judge_only']:>3}  "
                       f"{k['both_false']:>3}")
        return "\n".join(out)


def _num(x: float | None, fmt: str = ".2f") -> str:
    return "-" if x is None else format(x, fmt)


def _interval(e: Estimate) -> str:
    return "-" if e.lo is None or e.hi is None else f"[{e.lo:.2f}, {e.hi:.2f}]"


def judge_integer(score: float) -> int:
    """The judge's score on the labels' integer scale: rounded half up."""
    return int(math.floor(score + 0.5))


def agreement_report(labels: LabelSet, findings: Findings, *, judge: str,
                     bootstrap_samples: int, confidence: float, seed: int) -> AgreementReport:
    """Compare the labels with the judge's findings, keyed by (dialogue_id, transcript position)."""
    unit_seed = metric_seed(seed, "agreement:dialogues")  # every item resamples the same dialogues
    items = []
    for item in JUDGE_ITEMS:
        human, machine, units, judge_na = [], [], [], 0
        for r in labels.replies:
            if item not in r.items:
                continue
            s = findings[r.dialogue_id, r.position].judge_scores.get(item)
            if s is None:
                judge_na += 1
                continue
            human.append(r.items[item])
            machine.append(judge_integer(s))
            units.append(r.dialogue_id)
        kappa, why = kappa_estimate(human, machine, units, "quadratic", bootstrap_samples, confidence, unit_seed)
        problem = cohen_kappa([h <= JUDGE_PROBLEM_AT for h in human], [m <= JUDGE_PROBLEM_AT for m in machine])
        mad = float(np.mean(np.abs(np.subtract(human, machine)))) if human else None
        items.append(ItemAgreement(item, len(human), kappa, why, problem, mad, judge_na, item in labels.item_columns))
    verdicts = {did: judge_capabilities(d, findings) for did, d in labels.dialogues.items() if d.capabilities}
    caps = []
    for cap in CAPABILITIES:
        pairs = [(d.capabilities[cap], verdicts[did][cap]) for did, d in labels.dialogues.items()
                 if cap in d.capabilities]
        agree = [float(h == j) for h, j in pairs]
        accuracy = bootstrap_ratio(agree, [1.0] * len(agree), bootstrap_samples, confidence, unit_seed)
        counts = {"both_true": sum(h and j for h, j in pairs), "human_only": sum(h and not j for h, j in pairs),
                  "judge_only": sum(j and not h for h, j in pairs),
                  "both_false": sum(not h and not j for h, j in pairs)}
        kappa = cohen_kappa([h for h, _ in pairs], [j for _, j in pairs])
        caps.append(CapabilityAgreement(cap, accuracy, counts, kappa, cap in labels.capability_columns))
    settings = {"bootstrap_samples": bootstrap_samples, "confidence": confidence, "seed": seed,
                "item_kappa": "quadratic-weighted, judge scores rounded half up to integers",
                "problem_at": JUDGE_PROBLEM_AT, "interval_units": "dialogues"}
    return AgreementReport(labels.path, labels.source, judge, len(labels.replies), len(labels.dialogues), items, caps,
                           settings)


def judge_capabilities(d: LabelledDialogue, findings: Findings) -> dict[str, bool]:
    """`capabilities()` of a labelled dialogue from the findings of every agent turn in it."""
    turns = [m for m in d.transcript if m.role is not Role.SYSTEM]
    record = DialogueRecord(d.dialogue_id, d.scenario, turns,
                            [findings[d.dialogue_id, p] for p in d.agent_positions()],
                            dict(read_negotiation(d.scenario, d.transcript).agreed))
    return capabilities(record)


def score_labels(labels: LabelSet, judge: EvalJudge, overlength_chars: int) -> Findings:
    """Score, as `repo-ray eval` does (judge items and every RF rule), each labelled reply and every
    agent turn of the dialogues with capability labels; each reply once."""
    from repo_ray.eval.harness import score_replies  # the evaluation's own scoring, not a copy

    keys = list(dict.fromkeys([(r.dialogue_id, r.position) for r in labels.replies]
                              + [(d.dialogue_id, p) for d in labels.dialogues.values() if d.capabilities
                                 for p in d.agent_positions()]))
    requests, turns = [], []
    for did, pos in keys:
        d = labels.dialogues[did]
        requests.append(JudgeRequest(d.scenario, d.transcript[:pos], d.transcript[pos].text))
        turns.append(sum(m.role is Role.AGENT for m in d.transcript[:pos]))
    return dict(zip(keys, score_replies(judge, requests, turns, overlength_chars), strict=True))


def check_judge(cfg: RepoRayConfig, labels_path: str | Path, seed: int | None = None) -> AgreementReport:
    """`repo-ray judge-agreement`: the evaluation judge of `cfg` (plus the RF rules) against a labels file."""
    labels = load_labels(labels_path)
    judge = EvalJudge(cfg.eval.judge)
    findings = score_labels(labels, judge, cfg.reward.overlength_chars)
    ev = cfg.eval
    described = f"{judge.kind}, rubric {ev.judge.rubric_version}, with the RF rules"
    return agreement_report(labels, findings, judge=described,
                            bootstrap_samples=ev.bootstrap_samples, confidence=ev.confidence,
                            seed=cfg.seed if seed is None else seed)


# ---------------------------------------------------------------------------- an example file
EXAMPLE_SOURCE = "synthetic: derived from generated preference pairs and the defect registry, not human"
# A convention, not a measurement: the defect's rubric item on the defective reply by its
# severity (all at or below JUDGE_PROBLEM_AT), and on the expert reply in the same context.
SYNTHETIC_DEFECT_SCORE = {Severity.MINOR: -6, Severity.MAJOR: -8, Severity.SEVERE: -10}
SYNTHETIC_EXPERT_SCORE = 6


def defect_item(defect: str) -> str | None:
    """The rubric item that judges a defect: its catcher when that is the judge, else the item whose
    problem the defect is (metrics.EXTRA_ITEM_PROBLEMS: over_promise -> no_overpromising)."""
    d = DEFECTS[defect]
    if d.catcher == "judge":
        return d.check
    return next((item for item, (name, _) in EXTRA_ITEM_PROBLEMS.items() if name == defect), None)


def defect_capability(defect: str) -> str | None:
    """The capability a defect breaks, by the rules and items `capabilities()` reads."""
    d = DEFECTS[defect]
    if d.check in FLUENCY_RULES or d.check == "persuasive_style":
        return "dialogue_fluency"
    if d.check in DOMAIN_RULES:
        return "domain_understanding"
    if d.check in WORKFLOW_ITEMS:
        return "workflow_compliance"
    return None


def example_label_rows(pairs: int, seed: int, zh_fraction: float = 0.2,
                       max_room_types: int = 3) -> list[dict[str, Any]]:
    """SYNTHETIC labels for a demonstration file: each generated preference pair gives two
    one-row dialogues in the same context, the expert reply and the defective one, labelled on
    the defect's rubric item and the capability it breaks (pairs whose defect touches neither,
    e.g. cot_leakage, are skipped)."""
    from repo_ray.domain.datagen import preference_rows

    rows = []
    for p in preference_rows(pairs, seed, zh_fraction, max_room_types):
        defect = p["defect"]
        item, cap = defect_item(defect), defect_capability(defect)
        if item is None and cap is None:
            continue
        bad_score = SYNTHETIC_DEFECT_SCORE[DEFECTS[defect].severity]
        for kind, reply, score, verdict in (("expert", p["chosen"], SYNTHETIC_EXPERT_SCORE, True),
                                            ("defective", p["rejected"], bad_score, False)):
            did = f"{p['pair_id']}/{kind}"
            row: dict[str, Any] = {"label_id": did, "dialogue_id": did, "scenario": p["scenario"],
                                   "context": p["context"], "response": reply,
                                   "note": f"synthetic: {kind} reply, defect {defect}"}
            if item is not None:
                row[item] = score
            if cap is not None:
                row[cap] = verdict
            rows.append(row)
    return rows
