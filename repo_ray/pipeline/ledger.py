"""The ledger: every sample id recorded exactly once with its fate (DESIGN.md §6).

Kept in memory during a run and flushed as one Parquet part per RL step, so a resumed run
rebuilds it from the parts up to its checkpoint and no sample is counted twice.
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


class Ledger:
    def __init__(self) -> None:
        self._entries: dict[str, LedgerEntry] = {}
        self._unflushed: list[LedgerEntry] = []

    def record(self, sample_id: str, fate: SampleFate, step: int, adapter_version: int, reason: str = "") -> None:
        if sample_id in self._entries:
            prev = self._entries[sample_id]
            raise DuplicateSampleError(
                f"sample {sample_id} already recorded as {prev.fate.value} at step {prev.step}; now {fate.value}"
            )
        entry = LedgerEntry(sample_id, SampleFate(fate), step, adapter_version, reason)
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

    def counts(self) -> dict[str, int]:
        return dict(Counter(e.fate.value for e in self._entries.values()))

    def take_unflushed(self) -> pa.Table:
        """The entries recorded since the last call, as a table (one Parquet part)."""
        rows = [
            {"sample_id": e.sample_id, "fate": e.fate.value, "step": e.step,
             "adapter_version": e.adapter_version, "reason": e.reason}
            for e in self._unflushed
        ]
        self._unflushed = []
        return pa.Table.from_pylist(rows, schema=LEDGER_SCHEMA)

    @classmethod
    def from_table(cls, table: pa.Table) -> Ledger:
        ledger = cls()
        for row in table.to_pylist():
            ledger.record(row["sample_id"], SampleFate(row["fate"]), row["step"], row["adapter_version"], row["reason"])
        ledger._unflushed = []
        return ledger
