"""The Parquet files of a data directory: their schemas, documentation, writer and loaders.

Real data in the same schema can replace any file. Loaders validate every row, keep the
good ones, and report each bad one as `file:row: reason` (rows counted from 0), plus a
one-line summary of how many were dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

from repo_ray.domain.defects import DEFECTS
from repo_ray.domain.scenario import Scenario
from repo_ray.domain.sop import SopStage
from repo_ray.errors import DataFileError
from repo_ray.types import Message, Role

log = logging.getLogger(__name__)

ROOM_TYPE = pa.struct([
    ("name", pa.string()),
    ("current_price", pa.float64()),
    ("competitor_prices", pa.list_(pa.float64())),
    ("target_price", pa.float64()),
    ("floor_price", pa.float64()),
])
SCENARIO = pa.struct([
    ("scenario_id", pa.string()),
    ("hotel_name", pa.string()),
    ("city", pa.string()),
    ("star_rating", pa.int8()),
    ("check_in", pa.string()),
    ("check_out", pa.string()),
    ("persona", pa.string()),
    ("language", pa.string()),
    ("room_types", pa.list_(ROOM_TYPE)),
])
MESSAGES = pa.list_(pa.struct([("role", pa.string()), ("text", pa.string())]))


@dataclass(frozen=True)
class FileSpec:
    filename: str
    schema: pa.Schema
    doc: str
    columns: dict[str, str]
    # columns a file may lack (real data written before they existed), with the value assumed
    optional: dict[str, Any] = field(default_factory=dict)


SCENARIO_DOC = (
    "struct: scenario_id, hotel_name, city, star_rating (1-5), check_in/check_out (YYYY-MM-DD), persona "
    "(cooperative|hesitant|price_anchored|hostile|silent|partial), language (en|zh), room_types: list of "
    "{name, current_price, competitor_prices, target_price, floor_price} with 0 < floor <= target <= current"
)
MESSAGES_DOC = "list of {role: system|agent|hotel, text}; the hotel's silence is an empty text"

FILES: dict[str, FileSpec] = {
    "sft": FileSpec(
        "sft_dialogues.parquet",
        pa.schema([("dialogue_id", pa.string()), ("scenario", SCENARIO), ("messages", MESSAGES),
                   ("outcome", pa.string())]),
        "Expert negotiations for supervised fine-tuning; every agent turn is a training target.",
        {"dialogue_id": "unique id", "scenario": SCENARIO_DOC,
         "messages": MESSAGES_DOC + "; starts with the system prompt",
         "outcome": "deal | partial | no_deal | no_reply"},
    ),
    "preference": FileSpec(
        "preference_pairs.parquet",
        pa.schema([("pair_id", pa.string()), ("scenario", SCENARIO), ("context", MESSAGES), ("chosen", pa.string()),
                   ("rejected", pa.string()), ("defect", pa.string()), ("severity", pa.string()),
                   ("sop_stage", pa.string()), ("pair_kind", pa.string())]),
        "Chosen/rejected agent replies to the same context, for the reward model and DPO.",
        {"pair_id": "unique id", "scenario": SCENARIO_DOC, "context": MESSAGES_DOC + "; ends before the agent turn",
         "chosen": "the better reply", "rejected": "the worse reply, carrying `defect`",
         "defect": "a name from the defect registry", "severity": "minor | major | severe (the registry's)",
         "sop_stage": "SOP stage of the turn",
         "pair_kind": "template (rejected adds a defect's wording) | fact_minimal (rejected is chosen with one fact "
                      "made false: a cited price, the ask, an internal term); optional, default template"},
        optional={"pair_kind": "template"},
    ),
    "rl": FileSpec(
        "rl_scenarios.parquet",
        pa.schema([("scenario", SCENARIO)]),
        "Scenarios the RL stage negotiates against the hotel simulator.",
        {"scenario": SCENARIO_DOC},
    ),
    "eval": FileSpec(
        "eval_dialogues.parquet",
        pa.schema([("scenario", SCENARIO)]),
        "Held-out scenarios every policy plays in evaluation (personas balanced).",
        {"scenario": SCENARIO_DOC},
    ),
    "bad_cases": FileSpec(
        "bad_cases.parquet",
        pa.schema([("case_id", pa.string()), ("scenario", SCENARIO), ("context", MESSAGES),
                   ("bad_response", pa.string()), ("defect", pa.string()), ("severity", pa.string()),
                   ("sop_stage", pa.string())]),
        "Contexts where a weak model answered with a defect; a policy fixes the case if its reply avoids it.",
        {"case_id": "unique id", "scenario": SCENARIO_DOC, "context": MESSAGES_DOC,
         "bad_response": "the weak model's defective reply", "defect": "a name from the defect registry",
         "severity": "minor | major | severe (the registry's)", "sop_stage": "SOP stage of the turn"},
    ),
}


def schema_markdown() -> str:
    """Documentation of every file, for docs and `repo-ray data --describe`."""
    out = []
    for spec in FILES.values():
        out.append(f"### `{spec.filename}`\n\n{spec.doc}\n\n| column | type | meaning |\n|---|---|---|")
        for f in spec.schema:
            kind = "struct" if pa.types.is_struct(f.type) else f.type
            out.append(f"| `{f.name}` | `{kind}` | {spec.columns[f.name]} |")
        out.append("")
    return "\n".join(out)


def write_rows(rows: list[dict[str, Any]], kind: str, directory: Path) -> Path:
    spec = FILES[kind]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / spec.filename
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(pa.Table.from_pylist(rows, schema=spec.schema), tmp)
    tmp.replace(path)
    return path


# ---------------------------------------------------------------------------- loading
@dataclass(frozen=True)
class SftDialogue:
    dialogue_id: str
    scenario: Scenario
    messages: tuple[Message, ...]
    outcome: str


@dataclass(frozen=True)
class PreferencePair:
    pair_id: str
    scenario: Scenario
    context: tuple[Message, ...]
    chosen: str
    rejected: str
    defect: str
    severity: str
    sop_stage: str
    pair_kind: str = "template"  # see PAIR_KINDS


PAIR_KINDS = ("template", "fact_minimal")


@dataclass(frozen=True)
class BadCase:
    case_id: str
    scenario: Scenario
    context: tuple[Message, ...]
    bad_response: str
    defect: str
    severity: str
    sop_stage: str


T = TypeVar("T")


@dataclass
class Loaded(Generic[T]):
    rows: list[T]
    problems: list[str] = field(default_factory=list)  # "file:row: reason"

    @property
    def dropped(self) -> int:
        return len(self.problems)


def _messages(value: Any, what: str, need_agent_last: bool = False) -> tuple[Message, ...]:
    if not value:
        raise ValueError(f"{what} is empty")
    out = []
    for i, m in enumerate(value):
        if m is None or m.get("role") not in {r.value for r in Role}:
            raise ValueError(f"{what}[{i}].role is {None if m is None else m.get('role')!r}, not system|agent|hotel")
        if m.get("text") is None:
            raise ValueError(f"{what}[{i}].text is null")
        out.append(Message(Role(m["role"]), m["text"]))
    return tuple(out)


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} is empty")
    return value


def _defect(row: Mapping[str, Any]) -> tuple[str, str]:
    name, sev = row["defect"], row["severity"]
    if name not in DEFECTS:
        raise ValueError(f"defect {name!r} is not registered")
    if sev != DEFECTS[name].severity.value:
        raise ValueError(f"severity {sev!r} != registry's {DEFECTS[name].severity.value!r} for {name}")
    return name, sev


def _stage(value: Any) -> str:
    try:
        return SopStage(value).value
    except ValueError:
        raise ValueError(f"unknown sop_stage {value!r}") from None


def _parse_sft(r: Mapping[str, Any]) -> SftDialogue:
    msgs = _messages(r["messages"], "messages")
    if not any(m.role is Role.AGENT and m.text.strip() for m in msgs):
        raise ValueError("messages hold no agent turn")
    return SftDialogue(_text(r["dialogue_id"], "dialogue_id"), Scenario.from_row(r["scenario"]), msgs,
                       r["outcome"] or "")


def _parse_pair(r: Mapping[str, Any]) -> PreferencePair:
    chosen, rejected = _text(r["chosen"], "chosen"), _text(r["rejected"], "rejected")
    if chosen == rejected:
        raise ValueError("chosen and rejected are identical")
    kind = r["pair_kind"] or "template"  # a null cell reads as the default
    if kind not in PAIR_KINDS:
        raise ValueError(f"pair_kind {kind!r} is not one of {'|'.join(PAIR_KINDS)}")
    return PreferencePair(_text(r["pair_id"], "pair_id"), Scenario.from_row(r["scenario"]),
                          _messages(r["context"], "context"), chosen, rejected, *_defect(r), _stage(r["sop_stage"]),
                          kind)


def _parse_bad(r: Mapping[str, Any]) -> BadCase:
    return BadCase(_text(r["case_id"], "case_id"), Scenario.from_row(r["scenario"]), _messages(r["context"], "context"),
                   _text(r["bad_response"], "bad_response"), *_defect(r), _stage(r["sop_stage"]))


def _parse_scenario(r: Mapping[str, Any]) -> Scenario:
    return Scenario.from_row(r["scenario"])


_PARSERS: dict[str, tuple[Callable[[Mapping[str, Any]], Any], Callable[[Any], str]]] = {
    "sft": (_parse_sft, lambda x: x.dialogue_id),
    "preference": (_parse_pair, lambda x: x.pair_id),
    "rl": (_parse_scenario, lambda x: x.scenario_id),
    "eval": (_parse_scenario, lambda x: x.scenario_id),
    "bad_cases": (_parse_bad, lambda x: x.case_id),
}


# The longest text a data cell may hold: a system prompt is a few thousand characters and a
# reply at most a few thousand; a multi-megabyte cell is broken data and would only stall the
# tokenizer and the regex rules downstream.
MAX_TEXT_CHARS = 100_000


def oversized_text(value: Any, where: str, limit: int = MAX_TEXT_CHARS) -> str | None:
    """The first string in a (nested) cell longer than `limit`, as `path: N characters ...`."""
    if isinstance(value, str):
        return f"{where}: {len(value):,} characters, at most {limit:,}" if len(value) > limit else None
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        sub = f"{where}.{k}" if isinstance(k, str) else f"{where}[{k}]"
        if (found := oversized_text(v, sub, limit)) is not None:
            return found
    return None


def _kind(t: pa.DataType) -> str:
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string"
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number"
    if pa.types.is_struct(t):
        return "struct"
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return "list"
    if pa.types.is_null(t):
        return "null"  # an all-null column: every row then says what is missing
    return str(t)


def type_mismatch(expected: pa.DataType, actual: pa.DataType, where: str) -> str | None:
    """Why a column's type cannot hold the schema's (None when it can): the kinds must agree
    (any integer or float width is a number; string, large_string alike), structs must carry
    every field, lists must hold the right kind. A real file's int prices are fine."""
    ek, ak = _kind(expected), _kind(actual)
    if ak == "null":
        return None
    if ek != ak:
        got = ak if ak in ("struct", "list") else str(actual)
        want = f"a struct of {', '.join(expected.field(i).name for i in range(expected.num_fields))}" \
            if ek == "struct" else f"a {ek}" if ek == "list" else f"a {ek} ({expected})"
        return f"column {where} is {got}, expected {want}"
    if ek == "struct":
        have = {actual.field(i).name: actual.field(i).type for i in range(actual.num_fields)}
        for i in range(expected.num_fields):
            f = expected.field(i)
            if f.name not in have:
                return f"column {where}.{f.name} is missing"
            if (why := type_mismatch(f.type, have[f.name], f"{where}.{f.name}")) is not None:
                return why
    if ek == "list":
        return type_mismatch(expected.value_type, actual.value_type, f"{where}[]")
    return None


def table_rows(table: pa.Table, name: str) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(row, values, problem) per row. A string cell that is not valid UTF-8 makes only its own
    row unusable (Arrow decodes whole columns, so the slow per-row path runs only then)."""
    try:
        yield from ((i, raw, None) for i, raw in enumerate(table.to_pylist()))
        return
    except UnicodeDecodeError:
        pass
    for i in range(table.num_rows):
        row: dict[str, Any] = {}
        for col in table.column_names:
            try:
                row[col] = table.column(col)[i].as_py()
            except UnicodeDecodeError as err:
                yield i, None, f"{name}:{i}: {col}: not UTF-8 text (byte {err.start}: {err.reason})"
                break
        else:
            yield i, row, None


def read_table(path: Path, what: str = "file") -> pa.Table:
    """A Parquet file as a table, or DataFileError naming the file and the reason."""
    if not path.is_file():
        raise DataFileError(f"{path}: {what} not found" if not path.is_dir() else f"{path}: is a directory")
    if path.stat().st_size == 0:
        raise DataFileError(f"{path}: empty file (0 bytes), not Parquet")
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DataFileError(f"{path}: not a readable Parquet file ({reason.replace(str(path), 'file')})") from None


def load_rows(kind: str, directory: str | Path) -> Loaded[Any]:
    """Load and validate one file of a data directory; bad rows are dropped and reported.

    Whole-file problems (missing, not Parquet, no rows, a missing or wrong-typed column) are a
    DataFileError naming the file and the column; row problems are `file:row: reason`."""
    spec = FILES[kind]
    path = Path(directory) / spec.filename
    table = read_table(path)
    missing = [f.name for f in spec.schema if f.name not in table.column_names and f.name not in spec.optional]
    if missing:
        raise DataFileError(f"{path}: missing column(s) {missing}")
    for f in spec.schema:
        if f.name in table.column_names and (why := type_mismatch(f.type, table.schema.field(f.name).type,
                                                                    f.name)) is not None:
            raise DataFileError(f"{path}: {why}")
    if table.num_rows == 0:
        raise DataFileError(f"{path}: no rows")
    parse, id_of = _PARSERS[kind]
    rows, problems, seen = [], [], set()
    present = [f.name for f in spec.schema if f.name in table.column_names]
    defaults = {k: v for k, v in spec.optional.items() if k not in table.column_names}
    for i, raw, problem in table_rows(table.select(present), path.name):
        if problem is not None:
            problems.append(problem)
            continue
        raw = {**defaults, **raw}
        try:
            if (too_long := oversized_text(raw, "row")) is not None:
                raise ValueError(too_long.removeprefix("row."))
            item = parse(raw)
            if id_of(item) in seen:
                raise ValueError(f"duplicate id {id_of(item)!r}")
            seen.add(id_of(item))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            problems.append(f"{path.name}:{i}: {_reason(err)}")
            continue
        rows.append(item)
    for p in problems[:20]:
        log.warning(p)
    if problems:
        log.warning("%s: kept %d rows, dropped %d bad row(s)", path.name, len(rows), len(problems))
    return Loaded(rows, problems)


def _reason(err: BaseException) -> str:
    """One line; a KeyError's bare key becomes `missing field 'k'`."""
    if isinstance(err, KeyError):
        return f"missing field {err.args[0]!r}" if err.args else "missing field"
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
