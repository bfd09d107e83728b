"""The RL stage's run log and checkpoints: ledger, trajectory and step Parquet parts (one part
per step under RUN/rl/{ledger,trajectories,steps}), and checkpoint / restore of the learner
and the loop's cursor. The loop only produces rows; writing them lives here.

A checkpoint is written after the loop has drained (see loop.py), so restoring it and
deleting the log parts written after it gives a run that continues exactly where the
checkpoint left off.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from repo_ray.eval.stepstats import StepRow, steps_table
from repo_ray.pipeline.ledger import Ledger
from repo_ray.pipeline.rundir import RunDir, say

if TYPE_CHECKING:
    from repo_ray.pipeline.loop import LoopState, RLLoop

STATE_FILE = "driver_state.json"
LOG_PARTS = ("ledger", "trajectories", "steps")


def learner_metrics_type() -> type:
    """The learner's per-step metrics dataclass: its numeric fields are step columns."""
    from repo_ray.learner.trainers import StepMetrics

    return StepMetrics


def step_rows_table(rows: list[StepRow | dict[str, Any]]) -> pa.Table:
    return steps_table(rows, learner_metrics_type())


def _part(step: int) -> str:
    return f"part-{step:06d}.parquet"


def flush(rd: RunDir, lp: RLLoop, step: int) -> None:
    """Append this step's ledger entries, trajectory log rows and step rows (one part each)."""
    name = _part(step)
    rd.write_parquet(lp.ledger.take_unflushed(), "rl", "ledger", name)
    log_table = lp.take_log()
    if log_table is not None:
        rd.write_parquet(log_table, "rl", "trajectories", name)
    rows, lp.pending_step_rows = lp.pending_step_rows, []
    if rows:
        rd.write_parquet(step_rows_table(rows), "rl", "steps", name)


def checkpoint(rd: RunDir, lp: RLLoop, learner: Any) -> None:
    """Flush, save the learner and the loop state; `latest.json` is written last, so a
    checkpoint is only ever restored once it is complete."""
    step = lp.state.step
    flush(rd, lp, step)
    name = f"step-{step:06d}"
    ck = rd.local("rl", "checkpoints", name)
    learner.save_checkpoint(ck)
    state = asdict(lp.state)
    (ck / STATE_FILE).write_text(json.dumps(state))
    rd.sync_up(ck, "rl", "checkpoints", name)
    rd.write_json({"latest": name, **state}, "rl", "checkpoints", "latest.json")
    lp.checkpointed_step = step


def clear(rd: RunDir) -> None:
    """A fresh RL stage: no log parts, no checkpoints."""
    for part in (*LOG_PARTS, "checkpoints"):
        rd.delete("rl", part)


def restore(rd: RunDir, learner: Any) -> tuple[LoopState, Ledger]:
    """The state of the last checkpoint; log parts written after it are removed."""
    import pyarrow.compute as pc
    import pyarrow.fs as pafs

    from repo_ray.pipeline.loop import LoopState

    if not rd.exists("rl", "checkpoints", "latest.json"):
        say("resume: no checkpoint yet; starting the RL stage from the beginning")
        for part in LOG_PARTS:
            rd.delete("rl", part)
        return LoopState(), Ledger()
    latest = rd.read_json("rl", "checkpoints", "latest.json")
    learner.load_checkpoint(rd.local("rl", "checkpoints", latest["latest"]))
    step = latest["step"]
    for part in LOG_PARTS:
        if not rd.exists("rl", part):
            continue
        for info in rd.fs.get_file_info(pafs.FileSelector(rd.path("rl", part))):
            name = info.path.rsplit("/", 1)[-1]
            if name.startswith("part-") and int(name[5:11]) > step:
                rd.fs.delete_file(info.path)
    table = rd.read_parquet_dir("rl", "ledger")
    ledger = Ledger.from_table(table.filter(pc.less_equal(table["step"], step))) if table is not None else Ledger()
    state = LoopState(**{k: latest[k] for k in asdict(LoopState())})
    return state, ledger


def read_steps(rd: RunDir) -> list[dict[str, Any]]:
    """The steps table's rows (empty before the first step)."""
    table = rd.read_parquet_dir("rl", "steps")
    return table.to_pylist() if table is not None else []
