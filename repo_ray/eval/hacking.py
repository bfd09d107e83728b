"""The reward-hacking monitor: flags an RL step when one reward source rose while another fell
over the last steps (e.g. R_model up while E_func down: the policy found something the reward
model likes and the rules forbid). Pure, over step rows (the steps table's columns).

Definition, per step t with at least `window` steps so far:
- the change of a source s over the window = mean of its batch means over the window's second
  half minus the first half (steps t-window+1 .. t; halves of floor(window / 2), the middle
  step left out when the window is odd), divided by the source's scale: 1 for R_model (already
  z-scored against the reference set) and reward.n for E_judge and E_func (so a change of 0.1
  moves R_total = R_model (1 +- E_enh / n) by 10% of |R_model|, as R_model's 0.1 z does);
- divergence = max over ordered pairs (a rises, b falls) of min(change_a, -change_b): positive
  only when one source rose and another fell, and as large as the smaller of the two moves;
- flagged when divergence >= threshold (eval.hacking_monitor). A source missing from either
  half (disabled, or never answered) takes no part.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from repo_ray.eval.stepstats import mean_column

MONITORED = ("r_model", "e_judge", "e_func")
LABELS = {"r_model": "R_model", "e_judge": "E_judge", "e_func": "E_func"}


def source_scale(source: str, n: float) -> float:
    return 1.0 if source == "r_model" else float(n)


@dataclass(frozen=True, slots=True)
class HackingCheck:
    """The monitor's verdict at one step."""

    step: int
    divergence: float  # NaN before `window` steps or with fewer than two sources
    flagged: bool
    rising: str | None = None
    falling: str | None = None
    changes: dict[str, float] = field(default_factory=dict)  # source -> scaled change over the window

    def line(self, window: int, threshold: float) -> str:
        """The console line of a flagged step."""
        up, down = self.changes.get(self.rising or "", math.nan), self.changes.get(self.falling or "", math.nan)
        return (f"reward-hacking monitor, step {self.step}: {LABELS.get(self.rising or '', self.rising)} {up:+.3f} "
                f"while {LABELS.get(self.falling or '', self.falling)} {down:+.3f} over the last {window} steps "
                f"(threshold {threshold:g}; R_model in z units, E sources as a share of reward.n)")


def _value(row: Mapping[str, Any], key: str) -> float:
    v = row.get(key)
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def _mean(xs: Sequence[float]) -> float:
    vals = [x for x in xs if math.isfinite(x)]
    return sum(vals) / len(vals) if vals else math.nan


def window_changes(rows: Sequence[Mapping[str, Any]], window: int, n: float) -> dict[str, float]:
    """Scaled change of each monitored source over the last `window` rows (module docstring)."""
    if window < 2:
        raise ValueError(f"window {window} < 2")
    if len(rows) < window:
        return {}
    last = list(rows)[-window:]
    half = window // 2
    out = {}
    for s in MONITORED:
        col = mean_column(s)
        a, b = _mean([_value(r, col) for r in last[:half]]), _mean([_value(r, col) for r in last[-half:]])
        if math.isfinite(a) and math.isfinite(b):
            out[s] = (b - a) / source_scale(s, n)
    return out


def hacking_check(rows: Sequence[Mapping[str, Any]], window: int, threshold: float, n: float) -> HackingCheck:
    """The monitor at the last of `rows` (the steps so far, in order)."""
    step = int(_value(rows[-1], "step")) if rows and math.isfinite(_value(rows[-1], "step")) else len(rows)
    changes = window_changes(rows, window, n)
    best, pair = math.nan, (None, None)
    for a, da in changes.items():
        for b, db in changes.items():
            if a != b:
                d = min(da, -db)
                if not d <= best:  # NaN-safe max
                    best, pair = d, (a, b)
    flagged = math.isfinite(best) and best >= threshold
    return HackingCheck(step, best, flagged, *pair, changes=changes)


def hacking_series(rows: Sequence[Mapping[str, Any]], window: int, threshold: float, n: float) -> list[HackingCheck]:
    """The monitor at every step of a whole steps table (the report recomputes it from the log)."""
    rows = list(rows)
    return [hacking_check(rows[: i + 1], window, threshold, n) for i in range(len(rows))]
