"""The steps table derived from StepRow, and the run log's flush / checkpoint / restore
(pure: no Ray; the loop and the learner are stand-ins)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, make_dataclass

import pyarrow as pa

from repo_ray.eval.stepstats import COLUMNS, BatchStats, StepRow, steps_schema, steps_table
from repo_ray.learner.trainers import StepMetrics
from repo_ray.pipeline.ledger import Ledger
from repo_ray.pipeline.loop import LoopState
from repo_ray.pipeline.rundir import RunDir
from repo_ray.pipeline.runlog import STATE_FILE, checkpoint, flush, read_steps, restore
from repo_ray.types import SampleFate

# every column the steps table had before it was derived from StepRow: none may go missing
COLUMNS_BEFORE = (
    "step", "adapter_version", "samples", "masked", "max_staleness", "control_samples", "control_masked",
    "step_time_s", "samples_per_s", "r_total_mean", "r_model_mean", "e_judge_mean", "e_func_mean",
    "response_len_mean", "distinct_1", "distinct_2", "control_r_total_mean", "control_r_model_mean",
    "control_e_judge_mean", "control_e_func_mean", "control_response_len_mean", "control_distinct_1",
    "control_distinct_2", "policy_loss", "value_loss", "clip_fraction", "approx_kl", "kl_to_sft", "entropy",
    "grad_norm",
)


def stats(samples: int = 4, masked: int = 1, r: float = 0.5) -> BatchStats:
    return BatchStats(samples, masked, r, r - 0.1, math.nan, -1.0, 12.0, 0.6, 0.8)


def learner_metrics(**kw) -> StepMetrics:
    values = {}
    for f in StepMetrics.__dataclass_fields__.values():
        values[f.name] = "repo" if f.name == "algorithm" else 0
    values.update(policy_loss=0.25, step_time_s=9.0, samples=3, **kw)
    return StepMetrics(**values)


def row(step: int, control: BatchStats | None = None, learner=None) -> StepRow:
    return StepRow(step=step, adapter_version=step, samples=3, max_staleness=1, step_time_s=2.0, samples_per_s=1.5,
                   batch=stats(), control=control, learner=learner if learner is not None else learner_metrics())


def test_steps_schema_keeps_every_column_and_types_counts_as_integers():
    from repo_ray.eval.report import LEARNER_PLOTS

    schema = steps_schema(StepMetrics)
    assert set(COLUMNS_BEFORE) <= set(schema.names)
    assert len(schema.names) == len(set(schema.names))
    for name in ("step", "samples", "masked", "control_samples", "max_staleness"):
        assert schema.field(name).type == pa.int64(), name
    assert schema.field("r_total_mean").type == pa.float64() and schema.field("value_loss").type == pa.float64()
    assert "algorithm" not in schema.names  # not numeric: not a column
    assert set(LEARNER_PLOTS) <= set(schema.names)  # the report plots columns that exist
    assert COLUMNS.control_r_total_mean == "control_r_total_mean"


def test_a_field_the_learner_adds_becomes_a_column_without_an_edit():
    extended = make_dataclass("ExtendedMetrics", [("importance_weight_mean", float, field(default=1.0))],
                              bases=(StepMetrics,), frozen=True)
    schema = steps_schema(extended)
    assert schema.field("importance_weight_mean").type == pa.float64()
    base = learner_metrics()
    metrics = extended(**{f: getattr(base, f) for f in StepMetrics.__dataclass_fields__}, importance_weight_mean=0.7)
    table = steps_table([row(1, learner=metrics)], extended)
    assert table.column("importance_weight_mean").to_pylist() == [0.7]


def test_step_row_columns_the_driver_wins_a_name_clash_and_the_learner_keeps_its_own():
    cols = row(2).columns()
    assert cols["step_time_s"] == 2.0 and cols["learner_step_time_s"] == 9.0
    assert cols["samples"] == 3 and cols["learner_samples"] == 3 and cols["masked"] == 1
    assert cols["policy_loss"] == 0.25 and cols["r_total_mean"] == 0.5


def test_steps_table_without_control_reads_zero_counts_and_nan_means():
    table = steps_table([row(1), row(2, control=stats(8, 2, 0.1))], StepMetrics)
    assert table.column("control_samples").to_pylist() == [0, 8]
    ctl = table.column("control_r_total_mean").to_pylist()
    assert math.isnan(ctl[0]) and ctl[1] == 0.1
    assert math.isnan(table.column("e_judge_mean").to_pylist()[0])


@dataclass
class FakeLoop:
    state: LoopState
    ledger: Ledger = field(default_factory=Ledger)
    pending_step_rows: list = field(default_factory=list)
    checkpointed_step: int = 0
    pending_events: list = field(default_factory=list)
    open_chunks: dict = field(default_factory=dict)

    def take_log(self):
        return None

    def pending_chunks(self):
        return []


class FakeLearner:
    def __init__(self):
        self.loaded = None

    def save_checkpoint(self, path):
        (path / "weights.txt").write_text("w")

    def load_checkpoint(self, path):
        self.loaded = path


def test_restore_returns_the_checkpoint_state_and_drops_later_log_parts(tmp_path):
    rd = RunDir(str(tmp_path / "run"))
    lp = FakeLoop(LoopState(step=1, cursor=8, next_chunk=2, turns_per_episode=2.5))
    lp.ledger.record("a", SampleFate.TRAINED, 1, 0)
    lp.pending_step_rows.append(row(1))
    checkpoint(rd, lp, FakeLearner())
    assert lp.checkpointed_step == 1 and (rd.local("rl", "checkpoints", "step-000001") / STATE_FILE).is_file()
    lp.state.step = 2  # a step after the checkpoint, flushed, then the run dies
    lp.ledger.record("b", SampleFate.MASKED, 2, 1, "rm timeout")
    lp.pending_step_rows.append(row(2))
    flush(rd, lp, 2)
    assert [r["step"] for r in read_steps(rd)] == [1, 2]

    learner = FakeLearner()
    state, ledger = restore(rd, learner)
    assert state == LoopState(step=1, cursor=8, next_chunk=2, turns_per_episode=2.5)
    assert learner.loaded.name == "step-000001"
    assert "a" in ledger and "b" not in ledger
    assert [r["step"] for r in read_steps(rd)] == [1]
