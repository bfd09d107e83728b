"""`repo-ray check-rules FILE.jsonl`: run the RF rules over transcripts, one JSON line each.

Input line: {"response": str, "history": [{"role": "agent"|"hotel", "text": str}],
"language": "en"|"zh", "room_types": [{"name", "current_price", "competitor_prices",
"target_price", "floor_price"}], "allowed_numbers": [num] (optional)}; other keys are
ignored. Output line, in input order: {"e_func": num, "violations": [rule], "scores":
{rule: raw score}}, or {"error": reason} for a malformed line (also printed to stderr as
`line N: reason`, N from 1) while the other lines still run. A line longer than
MAX_LINE_CHARS is malformed.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from repo_ray.errors import DataFileError
from reward_actors.rules.base import RuleContext
from reward_actors.rules.efunc import e_func

# A reply with its whole history is a few kilobytes; a line past this is broken input and
# would only stall the regex rules (the same bound as a data file's text cell).
MAX_LINE_CHARS = 1_000_000


@dataclass(frozen=True, slots=True)
class CheckSummary:
    lines: int
    malformed: int


def json_object_line(line: str) -> dict[str, Any]:
    """One untrusted JSONL line as a JSON object, bounded before the parser sees it (also
    `repo-ray score`'s reader); raises ValueError with a one-line reason."""
    if not line.strip():
        raise ValueError("empty line")
    if len(line) > MAX_LINE_CHARS:
        raise ValueError(f"{len(line):,} characters, at most {MAX_LINE_CHARS:,} per line")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON: {err.msg} at column {err.colno}") from None
    if not isinstance(record, dict):
        raise ValueError(f"expected a JSON object, got {type(record).__name__}")
    return record


def check_line(line: str, weights: Mapping[str, float], overlength_chars: int = 600) -> dict[str, Any]:
    """The output object of one input line; raises ValueError with a one-line reason when malformed."""
    if line == _NOT_UTF8:
        raise ValueError("not UTF-8 text")
    record = json_object_line(line)
    if "response" not in record:
        raise ValueError("missing field 'response'")
    response = record["response"]
    if not isinstance(response, str):
        raise ValueError(f"response: expected a string, got {type(response).__name__}")
    ctx = RuleContext.from_record(record, overlength_chars=overlength_chars)
    result = e_func(response, ctx, weights)
    return {"e_func": result.e_func, "violations": result.violations, "scores": result.scores}


_NOT_UTF8 = "\x00not-utf8\x00"  # stands in for an undecodable line; no JSON text can equal it


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return _NOT_UTF8


def check_lines(lines: Iterable[str], weights: Mapping[str, float], overlength_chars: int = 600,
                errors: TextIO | None = None) -> Iterator[dict[str, Any]]:
    """One output object per input line, in order; malformed lines give {"error": reason}
    and a `line N: reason` on `errors`."""
    for n, line in enumerate(lines, start=1):
        try:
            yield check_line(line, weights, overlength_chars)
        except ValueError as err:
            reason = str(err)
            if errors is not None:
                print(f"line {n}: {reason}", file=errors)
            yield {"error": reason}


def check_file(path: Path, out: TextIO, weights: Mapping[str, float], overlength_chars: int = 600,
               errors: TextIO | None = None) -> CheckSummary:
    """Check every line of a JSONL file, writing output lines to `out`. A missing or empty
    file is a DataFileError (an empty input checking nothing is a mistake, not a pass)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataFileError(f"{path}: empty file (no lines)")
    errors = sys.stderr if errors is None else errors  # looked up per call: stderr may be replaced
    lines = malformed = 0
    with path.open("rb") as f:
        for obj in check_lines((_decode(raw) for raw in f), weights, overlength_chars, errors):
            lines += 1
            malformed += "error" in obj
            out.write(json.dumps(obj, ensure_ascii=False) + "\n")
    return CheckSummary(lines, malformed)
