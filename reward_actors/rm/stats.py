"""What a trained RM directory says about itself (`rm_stats.json`): the z-score reference
statistics, the input length it was trained with, and its pairwise accuracy report."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from repo_ray.algos.reward_enhance import RMNormalizer
from repo_ray.errors import ModelLoadError
from reward_actors.rm.data import LENGTH_MATCH_TOLERANCE, EncodedPair

STATS_FILE = "rm_stats.json"
STATS_FORMAT = 1


@dataclass(frozen=True, slots=True)
class GroupAccuracy:
    """Pairs where the chosen reply scored strictly above the rejected one (ties are wrong)."""

    pairs: int
    correct: int

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.pairs if self.pairs else None

    def __str__(self) -> str:
        return "n/a (0 pairs)" if not self.pairs else f"{self.accuracy:.3f} ({self.correct}/{self.pairs})"


@dataclass(frozen=True, slots=True)
class AccuracyReport:
    """Pairwise accuracy overall, on length-matched pairs, per pair kind, and per defect:
    template defects (`per_defect`) apart from fact-minimal pairs (`minimal_per_defect`),
    where the rejected reply is the chosen one with one fact made false. High template
    accuracy says the RM knows the defects' wording; only the minimal pairs say it reads
    the facts."""

    overall: GroupAccuracy
    length_matched: GroupAccuracy  # template pairs only
    per_defect: dict[str, GroupAccuracy]  # template pairs only
    length_tolerance: float = LENGTH_MATCH_TOLERANCE
    per_kind: dict[str, GroupAccuracy] = field(default_factory=dict)  # template | fact_minimal
    minimal_per_defect: dict[str, GroupAccuracy] = field(default_factory=dict)  # fact_minimal pairs only

    @property
    def fact_minimal(self) -> GroupAccuracy:
        return self.per_kind.get("fact_minimal", GroupAccuracy(0, 0))

    def to_dict(self) -> dict[str, Any]:
        def g(x: GroupAccuracy) -> dict[str, Any]:
            return {"pairs": x.pairs, "correct": x.correct, "accuracy": x.accuracy}

        return {
            "overall": g(self.overall),
            "length_matched": g(self.length_matched),
            "length_tolerance": self.length_tolerance,
            "per_defect": {k: g(v) for k, v in sorted(self.per_defect.items())},
            "per_kind": {k: g(v) for k, v in sorted(self.per_kind.items())},
            "minimal_per_defect": {k: g(v) for k, v in sorted(self.minimal_per_defect.items())},
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AccuracyReport:
        def g(x: dict[str, Any]) -> GroupAccuracy:
            return GroupAccuracy(int(x["pairs"]), int(x["correct"]))

        return cls(g(d["overall"]), g(d["length_matched"]), {k: g(v) for k, v in d["per_defect"].items()},
                   float(d["length_tolerance"]), {k: g(v) for k, v in d.get("per_kind", {}).items()},
                   {k: g(v) for k, v in d.get("minimal_per_defect", {}).items()})

    def lines(self) -> list[str]:
        """A human-readable table (the `repo-ray train-rm` report)."""
        out = [
            f"overall          {self.overall}",
            f"length-matched   {self.length_matched}   (template pairs with |chosen - rejected| <= "
            f"{self.length_tolerance:.0%} of the longer reply, in tokens)",
            f"fact-minimal     {self.fact_minimal}   (rejected = chosen with one fact made false)",
        ]
        out += [f"  {name:<30} {acc}" for name, acc in sorted(self.minimal_per_defect.items())]
        out.append("template defects per defect:")
        out += [f"  {name:<30} {acc}" for name, acc in sorted(self.per_defect.items())]
        return out


def accuracy_report(
    pairs: Sequence[EncodedPair], chosen_scores: Sequence[float], rejected_scores: Sequence[float]
) -> AccuracyReport:
    if not len(pairs) == len(chosen_scores) == len(rejected_scores):
        raise ValueError(f"{len(pairs)} pairs, {len(chosen_scores)} chosen and {len(rejected_scores)} rejected scores")
    counts: dict[str, list[int]] = {}
    minimal: dict[str, list[int]] = {}
    kinds: dict[str, list[int]] = {}
    overall, matched = [0, 0], [0, 0]
    for p, c, r in zip(pairs, chosen_scores, rejected_scores, strict=True):
        hit = int(c > r)
        by_defect = minimal if p.pair_kind == "fact_minimal" else counts
        groups = [overall, by_defect.setdefault(p.defect, [0, 0]), kinds.setdefault(p.pair_kind, [0, 0])]
        # fact-minimal pairs are length-matched by construction and have their own line
        groups += [matched] if p.length_matched and p.pair_kind != "fact_minimal" else []
        for g in groups:
            g[0] += 1
            g[1] += hit

    def acc(d: dict[str, list[int]]) -> dict[str, GroupAccuracy]:
        return {k: GroupAccuracy(*v) for k, v in d.items()}

    return AccuracyReport(GroupAccuracy(*overall), GroupAccuracy(*matched), acc(counts), LENGTH_MATCH_TOLERANCE,
                          acc(kinds), acc(minimal))


@dataclass(frozen=True)
class RMStats:
    """Contents of `rm_stats.json`.

    `mean` / `std` are the raw RM scores' statistics over `reference` (see
    `train.REFERENCE_SET`); `max_tokens` is the input length the scorer must use so score
    time sees the inputs training saw. `held_out` is None when nothing was held out.
    """

    mean: float
    std: float
    reference: str
    reference_size: int
    max_tokens: int
    train: AccuracyReport
    held_out: AccuracyReport | None
    info: dict[str, Any] = field(default_factory=dict)  # base model, fine-tuning mode, split, timings

    def __post_init__(self) -> None:
        if not (math.isfinite(self.mean) and math.isfinite(self.std) and self.std > 0):
            raise ValueError(f"RM stats need a finite mean and std > 0, got {self.mean!r}, {self.std!r}")

    def normalizer(self) -> RMNormalizer:
        return RMNormalizer(self.mean, self.std)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["train"] = self.train.to_dict()
        d["held_out"] = self.held_out.to_dict() if self.held_out else None
        return {"format_version": STATS_FORMAT, **d}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RMStats:
        return cls(
            mean=float(d["mean"]),
            std=float(d["std"]),
            reference=str(d["reference"]),
            reference_size=int(d["reference_size"]),
            max_tokens=int(d["max_tokens"]),
            train=AccuracyReport.from_dict(d["train"]),
            held_out=AccuracyReport.from_dict(d["held_out"]) if d.get("held_out") else None,
            info=dict(d.get("info") or {}),
        )


def save_rm_stats(stats: RMStats, directory: str | os.PathLike) -> Path:
    path = Path(directory) / STATS_FILE
    path.write_text(json.dumps(stats.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path


def load_rm_stats(directory: str | os.PathLike) -> RMStats:
    """The stats of a trained RM directory; a missing or unreadable file is a one-line error."""
    path = Path(directory) / STATS_FILE
    if not path.is_file():
        raise ModelLoadError(f"{directory}: no {STATS_FILE} (not a reward model trained by `repo-ray train-rm`)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format_version") != STATS_FORMAT:
            raise ValueError(f"format_version {data.get('format_version')!r}, expected {STATS_FORMAT}")
        return RMStats.from_dict(data)
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise ModelLoadError(f"{path}: unreadable RM stats: {err}") from None
