"""A benchmark's figures handed to `make bench` (bench/run.py).

A benchmark prints its table for a person and calls `emit(name, figures)` once at the end;
under bench/run.py (which sets REPO_RAY_BENCH_OUT to a directory) that also writes
`<name>.json`, from which RESULTS.md's summary is rendered. Run on its own, a benchmark
only prints.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

OUT_ENV = "REPO_RAY_BENCH_OUT"


def emit(name: str, figures: dict[str, Any]) -> None:
    """Hand this run's figures (JSON-able: numbers, strings, lists, dicts) to bench/run.py."""
    out = os.environ.get(OUT_ENV)
    if not out:
        return
    path = Path(out) / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(figures, indent=2, sort_keys=True))
    tmp.replace(path)
