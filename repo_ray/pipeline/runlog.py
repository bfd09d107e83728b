"""The RL stage's run log and checkpoints: ledger, trajectory and step Parquet parts (one part
per step under RUN/rl/{ledger,trajectories,steps}), and checkpoint / restore of the learner
and the loop's cursor. The loop only produces rows; writing them lives here.

A checkpoint holds the learner, the loop's cursor with its pending chunks (loop.py: they
are dispatched again on restore), and the judge limiter's spend (re-seeded on --resume, so a
resumed run never forgets the budget). Restoring it deletes the log parts written after it:
the run continues where the checkpoint left off, each sample once in the ledger. Events
(restarts, re-scorings, rollbacks, alerts) go to RUN/rl/events, one part per step.
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
LOG_PARTS = ("ledger", "trajectories", "steps", "events")
LIMITER_SPEND = "judge_limiter_spend"
EVENTS_SCHEMA = pa.schema([("step", pa.int64()), ("kind", pa.string()), ("actor", pa.string()),
                           ("detail", pa.string()), ("time_s", pa.float64())])


def learner_metrics_type() -> type:
    """The learner's per-step metrics dataclass: its numeric fields are step columns."""
    from repo_ray.learner.trainers import StepMetrics

    return StepMetrics


def step_rows_table(rows: list[StepRow | dict[str, Any]]) -> pa.Table:
    return steps_table(rows, learner_metrics_type())


def _part(step: int) -> str:
    return f"part-{step:06d}.parquet"


def flush(rd: RunDir, lp: RLLoop, step: int) -> None:
    """Append this step's ledger entries, trajectory log rows and step rows (one part each;
    a second flush at the same step, e.g. the run-end drain after a step's checkpoint, adds
    part-STEP-1 rather than overwrite)."""
    name, again = _part(step), 0
    while any(rd.exists("rl", part, name) for part in LOG_PARTS):
        again += 1
        name = _part(step).replace(".parquet", f"-{again}.parquet")
    rd.write_parquet(lp.ledger.take_unflushed(), "rl", "ledger", name)
    log_table = lp.take_log()
    if log_table is not None:
        rd.write_parquet(log_table, "rl", "trajectories", name)
    rows, lp.pending_step_rows = lp.pending_step_rows, []
    if rows:
        rd.write_parquet(step_rows_table(rows), "rl", "steps", name)
    events, lp.pending_events = lp.pending_events, []
    if events:
        rd.write_parquet(pa.Table.from_pylist([asdict(e) for e in events], schema=EVENTS_SCHEMA), "rl", "events", name)


def checkpoint(rd: RunDir, lp: RLLoop, learner: Any, limiter: Any | None = None) -> float:
    """Flush, save the learner, the loop state with its pending chunks and the limiter's spend;
    `latest.json` is written last, so a checkpoint is only ever restored once it is complete.
    The loop need not be drained (loop.py). Returns the seconds it took."""
    import time

    t0 = time.perf_counter()
    step = lp.state.step
    flush(rd, lp, step)
    name = f"step-{step:06d}"
    ck = rd.local("rl", "checkpoints", name)
    learner.save_checkpoint(ck)
    state = asdict(lp.state)
    state["pending"] = lp.pending_chunks()
    state["save_s"] = round(time.perf_counter() - t0, 3)  # flush + learner save: what a checkpoint costs
    spend = limiter_spend(limiter)
    if spend is not None:
        state[LIMITER_SPEND] = spend
    (ck / STATE_FILE).write_text(json.dumps(state))
    rd.sync_up(ck, "rl", "checkpoints", name)
    previous = rd.read_json("rl", "checkpoints", "latest.json").get("latest") \
        if rd.exists("rl", "checkpoints", "latest.json") else None
    rd.write_json({"latest": name, **state}, "rl", "checkpoints", "latest.json")
    lp.checkpointed_step = step
    lp.ledger.mark()
    lp.open_chunks = {c[0]: lp._chunk_at(*c) for c in state["pending"]}
    if previous and previous != name:  # one checkpoint is kept: the learner state of older ones is never read
        rd.delete("rl", "checkpoints", previous)
    return time.perf_counter() - t0


def limiter_spend(limiter: Any | None) -> dict[str, Any] | None:
    """The judge limiter's spend (calls, tokens, exhausted) as JSON, or None without a judge."""
    if limiter is None:
        return None
    import ray

    try:
        return asdict(ray.get(limiter.spend.remote(), timeout=30))
    except Exception as err:  # noqa: BLE001 - a limiter being restarted keeps its own copy (limiter.py)
        say(f"checkpoint: judge limiter spend not read ({type(err).__name__}); the limiter keeps its own copy")
        return None


def reseed_limiter(limiter: Any | None, spend: dict[str, Any] | None) -> None:
    """Give a resumed run's limiter the spend of its checkpoint (the larger one wins)."""
    if limiter is None or not spend:
        return
    import ray

    from reward_actors.judge.limiter import LimiterSpend

    now = ray.get(limiter.restore_spend.remote(LimiterSpend(**spend)))
    say(f"judge limiter: {now.calls_spent} calls, {now.tokens_spent} tokens spent before the resume")


def truncate_after(rd: RunDir, step: int) -> None:
    """Delete the log parts written after the checkpoint of `step`."""
    import pyarrow.fs as pafs

    for part in LOG_PARTS:
        if not rd.exists("rl", part):
            continue
        for info in rd.fs.get_file_info(pafs.FileSelector(rd.path("rl", part))):
            name = info.path.rsplit("/", 1)[-1]
            if name.startswith("part-") and int(name[5:11]) > step:
                rd.fs.delete_file(info.path)


def checkpoint_state(rd: RunDir, step: int) -> LoopState:
    """The loop state of the checkpoint of `step` (the in-run rollback; log parts after it go)."""
    from repo_ray.pipeline.loop import LoopState

    if not rd.exists("rl", "checkpoints", "latest.json"):  # no checkpoint yet: back to the start
        truncate_after(rd, 0)
        return LoopState()
    latest = rd.read_json("rl", "checkpoints", "latest.json")
    if latest["step"] != step:
        raise RuntimeError(f"the last checkpoint is of step {latest['step']}, not {step}")
    truncate_after(rd, step)
    return LoopState(**{k: latest[k] for k in asdict(LoopState()) if k in latest})


def clear(rd: RunDir) -> None:
    """A fresh RL stage: no log parts, no checkpoints."""
    for part in (*LOG_PARTS, "checkpoints"):
        rd.delete("rl", part)


def restore(rd: RunDir, learner: Any, limiter: Any | None = None) -> tuple[LoopState, Ledger]:
    """The state of the last checkpoint; log parts written after it are removed; the limiter
    gets the checkpoint's spend."""
    import pyarrow.compute as pc

    from repo_ray.pipeline.loop import LoopState

    if not rd.exists("rl", "checkpoints", "latest.json"):
        say("resume: no checkpoint yet; starting the RL stage from the beginning")
        for part in LOG_PARTS:
            rd.delete("rl", part)
        return LoopState(), Ledger()
    latest = rd.read_json("rl", "checkpoints", "latest.json")
    learner.load_checkpoint(rd.local("rl", "checkpoints", latest["latest"]))
    step = latest["step"]
    truncate_after(rd, step)
    table = rd.read_parquet_dir("rl", "ledger")
    ledger = Ledger.from_table(table.filter(pc.less_equal(table["step"], step))) if table is not None else Ledger()
    state = LoopState(**{k: latest[k] for k in asdict(LoopState()) if k in latest})
    reseed_limiter(limiter, latest.get(LIMITER_SPEND))
    return state, ledger


def read_events(rd: RunDir) -> list[dict[str, Any]]:
    """The run's events (restarts, re-scorings, rollbacks, alerts), oldest first."""
    table = rd.read_parquet_dir("rl", "events")
    return table.to_pylist() if table is not None else []


def read_steps(rd: RunDir) -> list[dict[str, Any]]:
    """The steps table's rows (empty before the first step)."""
    table = rd.read_parquet_dir("rl", "steps")
    return table.to_pylist() if table is not None else []
