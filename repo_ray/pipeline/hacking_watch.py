"""The reward-hacking monitor in the driver: after each RL step, the pure check of
repo_ray/eval/hacking.py over the steps so far; the step's row gets its divergence and flag
(columns of the steps table) before runlog.flush writes it, the dashboard gets the
`repo_ray_reward_hacking` gauges, and a flagged step prints one console line.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from repo_ray.config import RepoRayConfig
from repo_ray.eval.hacking import HackingCheck, hacking_check
from repo_ray.pipeline.rundir import say
from repo_ray.telemetry import record as record_metric

if TYPE_CHECKING:
    from repo_ray.pipeline.loop import RLLoop, StepRecord


class HackingWatch:
    """Holds the step rows seen so far (those of a resumed run's earlier steps included)."""

    def __init__(self, cfg: RepoRayConfig, earlier_rows: Sequence[Mapping[str, Any]] = ()) -> None:
        m = cfg.eval.hacking_monitor
        self.window, self.threshold, self.n = m.window, m.threshold, cfg.reward.n
        self.rows: list[Mapping[str, Any]] = list(earlier_rows)
        self.flagged_steps: list[int] = []

    def observe(self, lp: RLLoop, step: StepRecord) -> HackingCheck:
        """Check the step just finished and annotate its row (still pending in the loop)."""
        row = step.row
        # after an in-run rollback (loop.py) steps are played again: the monitor forgets the undone ones
        self.rows = [r for r in self.rows if int(r.get("step") or 0) < row.step]
        self.rows.append(row.columns())
        check = hacking_check(self.rows, self.window, self.threshold, self.n)
        annotated = replace(row, hacking_divergence=check.divergence, hacking_flag=int(check.flagged))
        self.rows[-1] = annotated.columns()
        lp.pending_step_rows = [annotated if r is row else r for r in lp.pending_step_rows]
        step.row = annotated
        if math.isfinite(check.divergence):
            record_metric("repo_ray_reward_hacking", check.divergence, kind="divergence")
        record_metric("repo_ray_reward_hacking", float(check.flagged), kind="flag")
        if check.flagged:
            self.flagged_steps.append(check.step)
            say(check.line(self.window, self.threshold))
        return check
