"""The ledger: every sample id recorded exactly once with its fate (DESIGN.md §6).

Kept in memory during a run and flushed as one Parquet part per RL step, so a resumed run
rebuilds it from the parts up to its checkpoint and no sample is counted twice. An in-run
rollback to a checkpoint (a learner rank died) forgets the entries recorded after the
checkpoint's `mark()`: those samples are played again and get their final fate then.
`rescored` counts how often a sample's reward was asked for again after a reward actor
died (the RewardPool, the RM scorer, a rule checker): re-scored, still recorded once.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pyarrow as pa

from repo_ray.types import SampleFate

LEDGER_SCHEMA = pa.schema([
    ("sample_id", pa.string()),
    ("fate", pa.string()),
    ("step", pa.int64()),
    ("adapter_version", pa.int64()),
    ("reason", pa.string()),
    ("rescored", pa.int64()),
])


class DuplicateSampleError(RuntimeError):
    """A sample id was given a second fate: a bug in the driver (work counted twice)."""


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    sample_id: str
    fate: SampleFate
    step: int
    adapter_version: int
    reason: str = ""
    rescored: int = 0


class Ledger:
    def __init__(self) -> None:
        self._entries: dict[str, LedgerEntry] = {}
        self._unflushed: list[LedgerEntry] = []
        self._mark = 0

    def record(self, sample_id: str, fate: SampleFate, step: int, adapter_version: int, reason: str = "",
               rescored: int = 0) -> None:
        if sample_id in self._entries:
            prev = self._entries[sample_id]
            raise DuplicateSampleError(
                f"sample {sample_id} already recorded as {prev.fate.value} at step {prev.step}; now {fate.value}"
            )
        entry = LedgerEntry(sample_id, SampleFate(fate), step, adapter_version, reason, int(rescored))
        self._entries[sample_id] = entry
        self._unflushed.append(entry)

    def __contains__(self, sample_id: str) -> bool:
        return sample_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def fate(self, sample_id: str) -> SampleFate:
        return self._entries[sample_id].fate

    def entry(self, sample_id: str) -> LedgerEntry:
        return self._entries[sample_id]

    def mark(self) -> None:
        """Remember the entries so far (a checkpoint was written with them flushed)."""
        self._mark = len(self._entries)

    def rollback(self) -> int:
        """Forget every entry recorded after the last `mark()`; returns how many."""
        ids = list(self._entries)[self._mark:]
        for sid in ids:
            del self._entries[sid]
        self._unflushed = [e for e in self._unflushed if e.sample_id in self._entries]
        return len(ids)

    def rescored(self) -> int:
        """Samples whose reward was asked for again after a reward actor died."""
        return sum(1 for e in self._entries.values() if e.rescored)

    def counts(self) -> dict[str, int]:
        return dict(Counter(e.fate.value for e in self._entries.values()))

    def take_unflushed(self) -> pa.Table:
        """The entries recorded since the last call, as a table (one Parquet part)."""
        rows = [
            {"sample_id": e.sample_id, "fate": e.fate.value, "step": e.step,
             "adapter_version": e.adapter_version, "reason": e.reason, "rescored": e.rescored}
            for e in self._unflushed
        ]
        self._unflushed = []
        return pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)

    @classmethod
    def from_table(cls, table: pa.Table) -> Ledger:
        ledger = cls()
        for row in table.to_pylist():
            ledger.record(row["sample_id"], SampleFate(row["fate"]), row["step"], row["adapter_version"], row["reason"],
                          row.get("rescored") or 0)
        ledger._unflushed = []
        ledger.mark()
        return ledger
