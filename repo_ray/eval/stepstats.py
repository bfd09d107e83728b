"""The steps table (RUN/rl/steps, one row per RL step: the report's input) and the per-step
statistics of a batch. `StepRow` is the row; its columns, and the Parquet schema derived from
them, exist only here. Pure: no Ray, no torch (the learner's metrics type is passed in).

`BatchStats.of(trajectories, rewards)` (`batch_stats` gives the same as a dict):
- samples: every sample of the batch (trained and masked); masked: how many of them are
  masked (a `None` reward, never scored, counts as masked). Masked share = masked / samples.
- r_total_mean, r_model_mean, e_judge_mean, e_func_mean: means over the unmasked samples of
  the values present (a source that did not answer, or is disabled, is left out of its
  mean, never a 0); NaN when no sample has the value.
- response_len_mean: mean response length in tokens (stop token included) over ALL the
  batch's trajectories, masked ones too: it describes what the policy generates.
- distinct_1, distinct_2: corpus-level distinct-n (Li et al., 2016) over all response
  texts: distinct n-grams / all n-grams, with words (Latin letters and digits, lower-cased)
  and single CJK characters as tokens; n-grams do not cross replies. NaN with no n-gram.
"""

from __future__ import annotations

import functools
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields, is_dataclass
from typing import Any

import pyarrow as pa

from repo_ray.types import RewardResult, Trajectory

_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[\u3400-\u4dbf\u4e00-\u9fff]")


def text_tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the texts (NaN when there is no n-gram)."""
    if n < 1:
        raise ValueError(f"n = {n} < 1")
    seen: set[tuple[str, ...]] = set()
    total = 0
    for text in texts:
        toks = text_tokens(text)
        grams = list(zip(*(toks[i:] for i in range(n))))
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else math.nan


def _mean(values: Sequence[float | None]) -> float:
    xs = [float(v) for v in values if v is not None]
    return sum(xs) / len(xs) if xs else math.nan


@dataclass(frozen=True, slots=True)
class BatchStats:
    """The statistics of one batch (module docstring)."""

    samples: int
    masked: int
    r_total_mean: float
    r_model_mean: float
    e_judge_mean: float
    e_func_mean: float
    response_len_mean: float
    distinct_1: float
    distinct_2: float

    @classmethod
    def of(cls, trajectories: Sequence[Trajectory], rewards: Sequence[RewardResult | None]) -> BatchStats:
        """`rewards[i]` belongs to `trajectories[i]`."""
        if len(trajectories) != len(rewards):
            raise ValueError(f"{len(trajectories)} trajectories but {len(rewards)} rewards")
        for t, r in zip(trajectories, rewards, strict=True):
            if r is not None and r.sample_id != t.sample_id:
                raise ValueError(f"reward {r.sample_id} paired with trajectory {t.sample_id}")
        kept = [r for r in rewards if r is not None and not r.masked]
        return cls(
            samples=len(rewards),
            masked=len(rewards) - len(kept),
            r_total_mean=_mean([r.r_total for r in kept]),
            r_model_mean=_mean([r.r_model for r in kept]),
            e_judge_mean=_mean([r.e_judge for r in kept]),
            e_func_mean=_mean([r.e_func for r in kept]),
            response_len_mean=_mean([t.num_response_tokens for t in trajectories]),
            distinct_1=distinct_n((t.response_text for t in trajectories), 1),
            distinct_2=distinct_n((t.response_text for t in trajectories), 2),
        )


STEP_STAT_KEYS = tuple(f.name for f in fields(BatchStats))


def batch_stats(trajectories: Sequence[Trajectory], rewards: Sequence[RewardResult | None]) -> dict[str, float | int]:
    """`BatchStats.of(...)` as a dict keyed by STEP_STAT_KEYS."""
    return asdict(BatchStats.of(trajectories, rewards))


def mean_column(source: str) -> str:
    """The step column of a reward source's batch mean ("r_total" -> "r_total_mean")."""
    name = f"{source}_mean"
    if name not in STEP_STAT_KEYS:
        raise KeyError(f"no step column {name!r}; batch means: {[k for k in STEP_STAT_KEYS if k.endswith('_mean')]}")
    return name


# ---------------------------------------------------------------------------- the steps table
CONTROL_PREFIX = "control_"  # the frozen-policy control's BatchStats columns
LEARNER_PREFIX = "learner_"  # a learner metric named like a driver column (e.g. its own step_time_s)


@dataclass(frozen=True, slots=True)
class StepRow:
    """One RL step as the driver logs it. Columns: the scalar fields below, then the trained
    batch's BatchStats (over trained + masked samples; its `samples` is the row's, the trained
    count, so masked share = masked / samples as the report has always read it), then
    `control_` + every BatchStats field of the frozen control (0 / NaN without one), then
    every numeric field of the learner's metrics dataclass (`learner_` + name where the name
    is taken), so a field the learner adds becomes a column with no edit here."""

    step: int  # RL steps done = the adapter version published by this step
    adapter_version: int
    samples: int  # trained samples
    max_staleness: int  # largest learner version - sample adapter version in the batch
    step_time_s: float  # train + publish + verified push, seen from the driver
    samples_per_s: float  # trained + masked samples per second of the run so far
    batch: BatchStats
    control: BatchStats | None
    learner: Any  # the learner's metrics dataclass (repo_ray.learner.trainers.StepMetrics)
    # the reward-hacking monitor at this step (repo_ray/eval/hacking.py), set by the driver
    hacking_divergence: float = math.nan  # NaN before the monitor's window is full
    hacking_flag: int = 0  # 1: one source rose while another fell beyond eval.hacking_monitor.threshold

    def columns(self) -> dict[str, Any]:
        """The flat row (column -> value) of this step."""
        own = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _PARTS}
        out = dict(own)
        out.update({k: v for k, v in asdict(self.batch).items() if k not in own})
        if self.control is not None:
            out.update({CONTROL_PREFIX + k: v for k, v in asdict(self.control).items()})
        if self.learner is not None:
            for f, column, _ in _learner_columns(type(self.learner)):
                out[column] = getattr(self.learner, f)
        return out


_PARTS = ("batch", "control", "learner")


def _column_type(hint: Any) -> pa.DataType | None:
    """int -> int64, float (or float | None) -> float64; anything else is not a column."""
    args = [a for a in typing.get_args(hint) if a is not type(None)] if isinstance(hint, types.UnionType) \
        or typing.get_origin(hint) is typing.Union else [hint]
    if len(args) != 1 or args[0] is bool:
        return None
    return {int: pa.int64(), float: pa.float64()}.get(args[0])


@functools.cache
def _own_columns() -> tuple[tuple[str, pa.DataType], ...]:
    hints = typing.get_type_hints(StepRow)
    own = [(f.name, _column_type(hints[f.name])) for f in fields(StepRow) if f.name not in _PARTS]
    taken = {n for n, _ in own}
    batch_hints = typing.get_type_hints(BatchStats)
    own += [(k, _column_type(batch_hints[k])) for k in STEP_STAT_KEYS if k not in taken]
    own += [(CONTROL_PREFIX + k, _column_type(batch_hints[k])) for k in STEP_STAT_KEYS]
    return tuple(own)


@functools.cache
def _learner_columns(learner_type: type) -> tuple[tuple[str, str, pa.DataType], ...]:
    """(field, column, type) of every numeric field of the learner's metrics dataclass."""
    if not is_dataclass(learner_type):
        raise TypeError(f"{learner_type!r} is not a dataclass")
    taken = {n for n, _ in _own_columns()}
    hints = typing.get_type_hints(learner_type)
    out = []
    for f in fields(learner_type):
        dtype = _column_type(hints[f.name])
        if dtype is not None:
            out.append((f.name, LEARNER_PREFIX + f.name if f.name in taken else f.name, dtype))
    return tuple(out)


def steps_schema(learner_type: type) -> pa.Schema:
    """The steps table's schema for a learner metrics type (absent values: 0 / NaN)."""
    return pa.schema([*_own_columns(), *((c, t) for _, c, t in _learner_columns(learner_type))])


def steps_table(rows: Sequence[StepRow | Mapping[str, Any]], learner_type: type) -> pa.Table:
    """Step rows (or their `columns()`) as a table of `steps_schema(learner_type)`: a missing
    or None integer is 0, a missing or None float NaN."""
    schema = steps_schema(learner_type)

    def value(row: Mapping[str, Any], col: pa.Field) -> Any:
        v = row.get(col.name)
        missing = v is None or (isinstance(v, float) and math.isnan(v))
        if pa.types.is_integer(col.type):
            return 0 if missing else int(v)
        return math.nan if v is None else float(v)

    flat = [r.columns() if isinstance(r, StepRow) else r for r in rows]
    return pa.Table.from_pylist([{c.name: value(r, c) for c in schema} for r in flat], schema=schema)


class _Columns:
    """Attribute access to the fixed column names (`COLUMNS.step`): a misspelt column fails
    at import instead of reading as silently absent."""

    def __init__(self, names: Iterable[str]) -> None:
        self.__dict__.update({n: n for n in names})


COLUMNS = _Columns(n for n, _ in _own_columns())
