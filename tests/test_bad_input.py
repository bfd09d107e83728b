"""Bad input (issue 15 item 4), table-driven and in-process through the CLI: every loader and
command given a broken file answers in ONE line naming the file, the row or field, and the
reason (exit 2 for an unusable file, 1 for bad rows or lines, whose good neighbours are kept);
and nothing is left half-written when a write fails."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from repo_ray.cli import main
from repo_ray.config import DataConfig
from repo_ray.domain.schemas import FILES

GOOD_CONFIG = "name: bad-input\nlearner:\n  batch_size: 16\n  micro_batch_size: 8\n"


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[Path, dict], list[str]]  # writes the input under a temp dir, returns the CLI argv
    rc: int
    expect: tuple[str, ...]  # every one must appear in the (single) error line
    lines: int = 1  # stderr lines: the error, or one per bad row / line where the command keeps the others
    file: str | None = None  # the culprit's file name the line must name; default: the first path in argv


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict:
    """A small valid data directory and labels file to corrupt."""
    from repo_ray.domain.datagen import write_dataset
    from repo_ray.eval.agreement import example_label_rows

    d = tmp_path_factory.mktemp("good-data")
    write_dataset(DataConfig(sft_dialogues=3, preference_pairs=6, rl_scenarios=6, eval_dialogues=3, bad_cases=3), d)
    return {
        "dir": d,
        "rl": pq.read_table(d / "rl_scenarios.parquet").to_pylist(),
        "pairs": pq.read_table(d / "preference_pairs.parquet"),
        "labels": example_label_rows(12, 0, 0.0, 1),
    }


# ---------------------------------------------------------------------------- writers
def config(text: str | bytes, *extra: str) -> Callable[[Path, dict], list[str]]:
    def make(tmp: Path, good: dict) -> list[str]:
        p = tmp / "run.yaml"
        p.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["config", "--config", str(p), *extra]
    return make


def bomb(levels: int = 7) -> str:
    lines = ['l0: &l0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def rl_file(mutate: Callable[[list[dict]], list[dict] | pa.Table], kind: str = "rl"):
    """validate-data over a copy of the good rl_scenarios rows after `mutate`."""
    def make(tmp: Path, good: dict) -> list[str]:
        out = mutate(copy.deepcopy(good["rl"]))
        table = out if isinstance(out, pa.Table) else pa.Table.from_pylist(out, schema=FILES["rl"].schema)
        pq.write_table(table, tmp / FILES["rl"].filename)
        return ["validate-data", "--dir", str(tmp), "rl"]
    return make


def room(rows: list[dict], i: int, **fields) -> list[dict]:
    rows[i]["scenario"]["room_types"][0].update(fields)
    return rows


def raw_file(name: str, data: bytes, kind: str):
    def make(tmp: Path, good: dict) -> list[str]:
        (tmp / name).write_bytes(data)
        return ["validate-data", "--dir", str(tmp), kind]
    return make


def pairs_with(column: str, values: pa.Array):
    def make(tmp: Path, good: dict) -> list[str]:
        t = good["pairs"]
        t = t.set_column(t.column_names.index(column), column, values(t) if callable(values) else values)
        pq.write_table(t, tmp / FILES["preference"].filename)
        return ["validate-data", "--dir", str(tmp), "preference"]
    return make


def bad_utf8_first(t: pa.Table) -> pa.Array:
    """A string column whose first cell is not UTF-8 (Arrow lets such bytes be written as string)."""
    good = [s.encode() for s in t.column("chosen").to_pylist()]
    cells = [b"\xff\xfe broken"] + good[1:]
    offsets, pos = [0], 0
    for c in cells:
        pos += len(c)
        offsets.append(pos)
    offsets_buffer = pa.array(offsets, pa.int32()).buffers()[1]
    return pa.Array.from_buffers(pa.string(), len(cells), [None, offsets_buffer, pa.py_buffer(b"".join(cells))])


def labels(mutate: Callable[[list[dict]], list[dict] | pa.Table]):
    def make(tmp: Path, good: dict) -> list[str]:
        from repo_ray.eval.agreement import write_labels

        out = mutate(copy.deepcopy(good["labels"]))
        p = tmp / "labels.parquet"
        if isinstance(out, pa.Table):
            pq.write_table(out, p)
        else:
            write_labels(out, p)
        return ["judge-agreement", "--labels", str(p)]
    return make


def relabel(rows: list[dict], **fields) -> list[dict]:
    rows[0].update(fields)
    return rows


def jsonl(lines: list[str | bytes], command: str = "check-rules"):
    def make(tmp: Path, good: dict) -> list[str]:
        p = tmp / "replies.jsonl"
        p.write_bytes(b"".join((s if isinstance(s, bytes) else s.encode()) + b"\n" for s in lines) if lines else b"")
        if command == "check-rules":
            return ["check-rules", str(p), "--out", str(tmp / "out.jsonl")]
        cfg = tmp / "run.yaml"
        cfg.write_text(GOOD_CONFIG)
        return ["score", "--config", str(cfg), str(p), "--run-dir", str(tmp / "no-run")]
    return make


REPLY = json.dumps({"response": "Could you do ¥800 for the Deluxe King?", "history": [], "language": "en",
                    "room_types": []})


def run_dir_is_file(tmp: Path, good: dict) -> list[str]:
    (tmp / "run.yaml").write_text(GOOD_CONFIG)
    (tmp / "run-as-file").write_text("not a directory")
    return ["train", "--config", str(tmp / "run.yaml"), "--run-dir", str(tmp / "run-as-file")]


CASES = [
    # ------------------------------------------------------------------ configs
    Case("config: empty file", config(""), 2, ("empty config",)),
    Case("config: only comments", config("# nothing here\n"), 2, ("empty config",)),
    Case("config: duplicate top-level key", config("name: a\nseed: 1\nname: b\n"), 2,
         ("duplicate key 'name'", "line 3", "first at line 1")),
    Case("config: duplicate key deep in the tree", config("learner:\n  ppo:\n    lam: 1\n    lam: 0.9\n"), 2,
         ("duplicate key 'lam'", "line 4")),
    Case("config: billion laughs", config(bomb()), 2, ("aliases expand to more than",)),
    Case("config: recursive alias", config("a: &a [1, *a]\n"), 2, ("invalid YAML",)),
    Case("config: wrong type deep in the tree", config("learner:\n  ppo:\n    clip_eps: wide\n"), 2,
         ("learner.ppo.clip_eps", "valid number", "'wide'")),
    Case("config: unknown enum value", config("rollout:\n  backend: tpu\n"), 2,
         ("rollout.backend", "'hf' or 'vllm'", "'tpu'")),
    Case("config: negative size", config("learner:\n  batch_size: -16\n"), 2,
         ("learner.batch_size", "greater than or equal to 1", "-16")),
    Case("config: negative timeout", config("reward:\n  timeouts:\n    judge_s: -1\n"), 2,
         ("reward.timeouts.judge_s", "greater than 0")),
    Case("config: misspelt key deep in the tree", config("reward:\n  timeouts:\n    judge_sec: 3\n"), 2,
         ("reward.timeouts.judge_sec", "unknown key")),
    Case("config: top level is a list", config("- a\n- b\n"), 2, ("top level must be a mapping",)),
    Case("config: not UTF-8", config(b"name: caf\xe9\n"), 2, ("not UTF-8",)),
    Case("config: a 2 MB file", config("name: x\n" + "# " + "y" * (2 << 20) + "\n"), 2, ("a config is at most",)),
    Case("config: broken YAML syntax", config("learner: [1, 2\n"), 2, ("invalid YAML", "line")),
    Case("config: bad --set override", config(GOOD_CONFIG, "--set", "learner.batch_size=lots"), 2,
         ("learner.batch_size", "'lots'")),
    Case("config: run dir that is a file", run_dir_is_file, 2, ("run-as-file", "is a file, not a directory"),
         file="run-as-file"),
    # ------------------------------------------------------------------ data files
    Case("data: missing column", rl_file(lambda rows: pa.table({"other": [1, 2]})), 2,
         ("missing column(s) ['scenario']",), file="rl_scenarios.parquet"),
    Case("data: wrong-typed column", rl_file(lambda rows: pa.table({"scenario": ["a", "b"]})), 2,
         ("column scenario is string", "expected a struct"), file="rl_scenarios.parquet"),
    Case("data: wrong-typed field deep in a struct", rl_file(lambda rows: pa.Table.from_pylist(
        [{**r, "scenario": {**r["scenario"], "room_types": [{**rt, "floor_price": str(rt["floor_price"])}
                                                           for rt in r["scenario"]["room_types"]]}} for r in rows])),
         2, ("column scenario.room_types[].floor_price is string", "number"), file="rl_scenarios.parquet"),
    Case("data: NaN price (good rows kept)", rl_file(lambda rows: room(rows, 0, current_price=float("nan"))), 1,
         ("rl_scenarios.parquet:0:", "finite")),
    Case("data: NaN competitor price", rl_file(lambda rows: room(rows, 1, competitor_prices=[float("nan")])), 1,
         ("rl_scenarios.parquet:1:", "finite")),
    Case("data: negative price", rl_file(lambda rows: room(rows, 2, floor_price=-5.0)), 1,
         ("rl_scenarios.parquet:2:", "need 0 < floor (-5)")),
    Case("data: floor above current", rl_file(lambda rows: room(rows, 0, floor_price=1e6)), 1,
         ("rl_scenarios.parquet:0:", "floor (1e+06)")),
    Case("data: unknown persona", rl_file(lambda rows: (rows[3]["scenario"].update(persona="rude"), rows)[1]), 1,
         ("rl_scenarios.parquet:3:", "unknown persona 'rude'")),
    Case("data: a 10 MB string", rl_file(lambda rows: (rows[4]["scenario"].update(hotel_name="h" * 10_000_000),
                                                       rows)[1]), 1,
         ("rl_scenarios.parquet:4:", "scenario.hotel_name", "10,000,000 characters")),
    Case("data: invalid UTF-8 cell", pairs_with("chosen", bad_utf8_first), 1,
         ("preference_pairs.parquet:0:", "chosen", "not UTF-8")),
    Case("data: binary column where text belongs", pairs_with("chosen", lambda t: pa.array(
        [s.encode() for s in t.column("chosen").to_pylist()], pa.binary())), 2,
         ("column chosen is binary", "expected a string"), file="preference_pairs.parquet"),
    Case("data: empty file", raw_file("rl_scenarios.parquet", b"", "rl"), 2, ("empty file (0 bytes)",),
         file="rl_scenarios.parquet"),
    Case("data: no rows", rl_file(lambda rows: []), 2, ("no rows",), file="rl_scenarios.parquet"),
    Case("data: not Parquet", raw_file("rl_scenarios.parquet", b"scenario_id,hotel\n1,x\n", "rl"), 2,
         ("not a readable Parquet file",), file="rl_scenarios.parquet"),
    Case("data: file missing", lambda tmp, good: ["validate-data", "--dir", str(tmp), "bad_cases"], 2,
         ("file not found",), file="bad_cases.parquet"),
    # ------------------------------------------------------------------ labels (judge-agreement)
    Case("labels: unknown column", labels(lambda rows: pa.Table.from_pylist(
        [{**r, "sop_complaince": 3} for r in rows])), 2,
         ("unknown column(s) ['sop_complaince']", "did you mean 'sop_compliance'")),
    Case("labels: score out of range", labels(lambda rows: relabel(rows, **{next(
        k for k, v in rows[0].items() if isinstance(v, int) and not isinstance(v, bool)): 99})), 2,
         ("labels.parquet:0:", "99", "not an integer in [-10, 10]")),
    Case("labels: wrong-typed column", labels(lambda rows: pa.Table.from_pylist(
        [{**r, "response": i} for i, r in enumerate(rows)])), 2, ("column response is int64",)),
    Case("labels: a 10 MB reply", labels(lambda rows: relabel(rows, response="r" * 10_000_000)), 2,
         ("labels.parquet:0:", "response", "10,000,000 characters")),
    Case("labels: empty file", lambda tmp, good: ((tmp / "labels.parquet").write_bytes(b""),
                                                  ["judge-agreement", "--labels", str(tmp / "labels.parquet")])[1],
         2, ("empty file",)),
    # ------------------------------------------------------------------ check-rules
    Case("check-rules: empty file", jsonl([]), 2, ("replies.jsonl", "empty file")),
    Case("check-rules: broken JSON between good lines", jsonl([REPLY, '{"response": ', REPLY]), 1,
         ("line 2:", "invalid JSON")),
    Case("check-rules: invalid UTF-8 line", jsonl([REPLY, b'{"response": "\xff"}']), 1, ("line 2:", "not UTF-8")),
    Case("check-rules: a 10 MB line", jsonl([json.dumps({"response": "x" * 10_000_000}), REPLY]), 1,
         ("line 1:", "10,000,016 characters", "at most 1,000,000")),
    Case("check-rules: wrong-typed field", jsonl([json.dumps({"response": 42})]), 1,
         ("line 1:", "response: expected a string, got int")),
    Case("check-rules: file missing", lambda tmp, good: ["check-rules", str(tmp / "none.jsonl")], 2,
         ("none.jsonl", "file not found")),
    # ------------------------------------------------------------------ score
    Case("score: run dir missing", jsonl([REPLY], "score"), 2, ("no-run", "run directory not found"), file="no-run"),
    Case("score: input file missing", lambda tmp, good: [*jsonl([], "score")(tmp, good)[:3], str(tmp / "nope.jsonl"),
                                                         "--run-dir", str(tmp)],
         2, ("nope.jsonl", "file not found"), file="nope.jsonl"),
]


def culprit(argv: list[str], case: Case) -> str:
    if case.file:
        return case.file
    if argv[0] == "validate-data":
        return FILES[argv[-1]].filename
    return Path(next(a for a in argv[1:] if "/" in a)).name


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_one_line_naming_the_culprit(case: Case, good, tmp_path, capsys):
    argv = case.make(tmp_path, good)
    rc = main(argv)
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.strip()]
    assert rc == case.rc, err
    if rc == 1 and argv[0] == "validate-data":  # the bad row dropped, every other row kept
        kept = pq.read_table(Path(argv[2]) / FILES[argv[-1]].filename).num_rows - 1
        assert f"{kept} good, 1 dropped" in captured.out
    assert len(err) == case.lines, err
    line = err[0]
    assert culprit(argv, case) in line or line.startswith("line "), line
    for text in case.expect:
        assert text in line, (text, line)
    assert len(line) < 400, line  # a line, not a paragraph


@pytest.mark.parametrize("line, reason", [
    (json.dumps({"scenario": {}, "context": [], "response": "x" * 2_000_000}), "2,000,0"),
    ("{not json", "invalid JSON"),
    (json.dumps({"context": [], "response": "hi"}), "missing field 'scenario'"),
    (json.dumps({"scenario": [], "context": [], "response": "hi"}), "scenario: expected an object"),
])
def test_score_lines_are_refused_with_the_reason(line, reason):
    """`repo-ray score` parses each line before any model sees it (its CLI cases need a trained RM:
    tests/pipeline/test_score.py); the reason is the one the output line carries."""
    from repo_ray.pipeline.score import parse_line

    with pytest.raises(ValueError, match=re.escape(reason)):
        parse_line(line, 1)


def test_there_are_at_least_thirty_cases_over_every_loader():
    assert len(CASES) >= 30
    prefixes = {c.name.split(":")[0] for c in CASES}
    assert prefixes == {"config", "data", "labels", "check-rules", "score"}


# ---------------------------------------------------------------------------- good rows kept
def test_good_rows_around_bad_ones_are_kept(good, tmp_path):
    from repo_ray.domain.schemas import load_rows

    rows = room(copy.deepcopy(good["rl"]), 0, current_price=float("nan"))
    rows[1]["scenario"]["hotel_name"] = "h" * 200_000
    pq.write_table(pa.Table.from_pylist(rows, schema=FILES["rl"].schema), tmp_path / FILES["rl"].filename)
    loaded = load_rows("rl", tmp_path)
    assert [s.scenario_id for s in loaded.rows] == [r["scenario"]["scenario_id"] for r in good["rl"][2:]]
    assert [p.split(":")[1] for p in loaded.problems] == ["0", "1"]


def test_check_rules_scores_the_good_lines_around_a_bad_one(tmp_path, capsys):
    argv = jsonl([REPLY, "not json", REPLY])(tmp_path, {})
    assert main(argv) == 1
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(out) == 3 and "e_func" in out[0] and "error" in out[1] and out[2] == out[0]


def test_a_config_with_merge_keys_and_overrides_is_not_a_duplicate(tmp_path):
    from repo_ray.config import load_config

    p = tmp_path / "ok.yaml"
    p.write_text("name: merged\nrollout:\n  <<: {num_workers: 3, max_turns: 4}\n  max_turns: 5\n")
    cfg = load_config(p)
    assert (cfg.rollout.num_workers, cfg.rollout.max_turns) == (3, 5)


# ---------------------------------------------------------------------------- nothing half-written
def test_a_failed_parquet_write_leaves_neither_a_file_nor_a_temporary(tmp_path, monkeypatch):
    from repo_ray.pipeline import rundir as rundir_mod
    from repo_ray.pipeline.rundir import RunDir

    rd = RunDir(str(tmp_path / "run"))
    table = pa.table({"x": list(range(100))})
    rd.write_parquet(table, "rl", "ledger", "part-0.parquet")
    real = rundir_mod.pq.write_table

    def dies_midway(t, where, **kw):
        real(t.slice(0, 10), where, **kw)  # some bytes are out when the process "dies"
        raise OSError("disk full")

    monkeypatch.setattr(rundir_mod.pq, "write_table", dies_midway)
    with pytest.raises(OSError):
        rd.write_parquet(table, "rl", "ledger", "part-1.parquet")
    with pytest.raises(OSError):
        rd.write_parquet(table, "rl", "ledger", "part-0.parquet")  # over an existing part
    ledger = tmp_path / "run" / "rl" / "ledger"
    assert sorted(p.name for p in ledger.iterdir()) == ["part-0.parquet"]
    assert pq.read_table(ledger / "part-0.parquet").num_rows == 100  # the old part, whole
    assert rd.read_parquet_dir("rl", "ledger").num_rows == 100


def test_a_failed_json_write_keeps_the_old_file(tmp_path):
    from repo_ray.pipeline.rundir import RunDir

    rd = RunDir(str(tmp_path / "run"))
    rd.write_json({"step": 1}, "summary.json")
    with pytest.raises(ValueError):  # a circular reference: json fails before any byte is written
        rd.write_json(_cyclic(), "summary.json")
    assert rd.read_json("summary.json") == {"step": 1}
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["summary.json"]


def _cyclic() -> dict:
    d: dict = {}
    d["self"] = d
    return d


def test_an_interrupted_cli_output_leaves_no_file(tmp_path):
    from repo_ray.atomic import atomic_output

    out = tmp_path / "report.md"
    out.write_text("old report")
    with pytest.raises(KeyboardInterrupt), atomic_output(out) as f:
        f.write("half of the new one")
        raise KeyboardInterrupt
    assert out.read_text() == "old report" and [p.name for p in tmp_path.iterdir()] == ["report.md"]
