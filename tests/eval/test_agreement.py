"""`repo-ray judge-agreement`: Cohen's kappa on hand-made ratings with known answers, the labels
file's validation, agreement against hand-made findings, and the command end to end with the
real evaluation judge (built in, and as an endpoint on 127.0.0.1)."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from repo_ray.cli import main
from repo_ray.domain.rubric import JUDGE_ITEMS
from repo_ray.errors import DataFileError
from repo_ray.eval.agreement import (
    EXAMPLE_SOURCE,
    REQUIRED_COLUMNS,
    SOURCE_KEY,
    agreement_report,
    cohen_kappa,
    defect_capability,
    defect_item,
    example_label_rows,
    kappa_estimate,
    load_labels,
    write_labels,
)
from repo_ray.eval.metrics import CAPABILITIES, JUDGE_PROBLEM_AT
from tests.eval.helpers import ONE_ROOM, OPENING, a, h, reply

CONTEXT = [a(OPENING).to_dict(), h("Hi, sure, what can I do for you?").to_dict()]
ASK = "Could you adjust the Deluxe King to ¥900?"


def row(label_id: str = "r0", dialogue_id: str | None = None, context=None, response: str = ASK, **labels) -> dict:
    return {"label_id": label_id, "dialogue_id": dialogue_id or label_id, "scenario": ONE_ROOM.to_row(),
            "context": CONTEXT if context is None else context, "response": response, **labels}


def write(tmp_path, rows, schema=None, name="labels.parquet"):
    path = tmp_path / name
    if schema is None:
        write_labels(rows, path)
    else:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)
    return path


# ---------------------------------------------------------------------------- kappa
@pytest.mark.parametrize("weighting", ["none", "quadratic"])
def test_kappa_is_one_when_the_raters_agree_on_every_item(weighting):
    k = cohen_kappa([-10, 0, 5, 5, 8], [-10, 0, 5, 5, 8], weighting)
    assert k.value == pytest.approx(1.0) and k.n == 5


@pytest.mark.parametrize("weighting", ["none", "quadratic"])
def test_kappa_is_zero_when_agreement_is_exactly_what_chance_gives(weighting):
    # marginals 1/2, 1/2 for both raters: chance agreement 1/2, observed agreement 1/2
    assert cohen_kappa([1, 1, 0, 0], [1, 0, 1, 0], weighting).value == pytest.approx(0.0)


def test_unweighted_kappa_matches_the_textbook_two_by_two_table():
    # 50 items: both yes 20, A yes / B no 5, A no / B yes 10, both no 15.
    # p_o = 35/50 = 0.7; p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = (0.7 - 0.5) / (1 - 0.5) = 0.4
    rater_a = [1] * 20 + [1] * 5 + [0] * 10 + [0] * 15
    rater_b = [1] * 20 + [0] * 5 + [1] * 10 + [0] * 15
    assert cohen_kappa(rater_a, rater_b).value == pytest.approx(0.4)


def test_quadratic_kappa_credits_near_misses_computed_by_hand():
    # a = [0, 1, 2, 2], b = [0, 2, 2, 1], weights (i - j)^2 / 4:
    # observed disagreement (0 + 1/4 + 0 + 1/4) / 4 = 1/8; marginals (1/4, 1/4, 1/2) for both, so the
    # chance disagreement is 2 * (1/16 * 1/4 + 1/8 * 1 + 1/8 * 1/4) = 11/32; kappa = 1 - (1/8) / (11/32) = 7/11.
    assert cohen_kappa([0, 1, 2, 2], [0, 2, 2, 1], "quadratic").value == pytest.approx(7 / 11)
    # unweighted, both misses count in full: p_o = 1/2, p_e = 3/8, kappa = (1/8) / (5/8) = 0.2
    assert cohen_kappa([0, 1, 2, 2], [0, 2, 2, 1]).value == pytest.approx(0.2)


@pytest.mark.parametrize("weighting", ["none", "quadratic"])
def test_kappa_is_none_with_a_reason_when_both_raters_use_one_category(weighting):
    k = cohen_kappa([7, 7, 7], [7, 7, 7], weighting)
    assert k.value is None and "undefined" in k.reason and "7" in k.reason
    assert cohen_kappa([], [], weighting).value is None
    # one rater constant, the other not: defined, and no better than chance
    assert cohen_kappa([1, 1, 1, 1], [1, 1, 0, 1], weighting).value == pytest.approx(0.0)


def test_kappa_interval_resamples_whole_dialogues_and_brackets_the_point():
    human, judge = [8, -8, 6, -6, 4, 2], [7, -9, 6, -4, 5, -1]
    spread, why = kappa_estimate(human, judge, ["d1", "d2", "d3", "d4", "d5", "d6"], "quadratic", 300, 0.9, 1)
    assert why == "" and spread.n == 6 and spread.lo < spread.value <= spread.hi
    # one dialogue holds every row: each resample is that dialogue, so the interval collapses
    one, _ = kappa_estimate(human, judge, ["d"] * 6, "quadratic", 300, 0.9, 1)
    assert one.lo == pytest.approx(one.value) and one.hi == pytest.approx(one.value)
    same, why = kappa_estimate([3, 3], [3, 3], ["d1", "d2"], "quadratic", 300, 0.9, 1)
    assert same.value is None and same.lo is None and "undefined" in why


# ---------------------------------------------------------------------------- the labels file
def test_missing_required_column_names_the_file_and_column(tmp_path):
    rows = [row()]
    del rows[0]["response"]
    path = write(tmp_path, rows, schema=pa.Table.from_pylist(rows).schema)
    with pytest.raises(DataFileError, match=r"labels\.parquet: missing column\(s\) \['response'\]"):
        load_labels(path)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ({"price_pursuit": 12.0}, "labels.parquet:1: price_pursuit is 12.0, not an integer in [-10, 10]"),
        ({"price_pursuit": 3.5}, "labels.parquet:1: price_pursuit is 3.5, not an integer in [-10, 10]"),
        ({"response": "  "}, "labels.parquet:1: response is empty"),
        ({"label_id": "r0"}, "labels.parquet:1: label_id 'r0' repeats row 0"),
        ({"context": CONTEXT[:1]}, "labels.parquet:1: context ends with an agent message"),
    ],
    ids=["out-of-range", "not-integer", "empty-response", "duplicate-id", "context-ends-with-agent"],
)
def test_bad_value_is_one_line_naming_file_and_row(tmp_path, bad, fragment):
    rows = [row("r0", price_pursuit=8.0), {**row("r1", price_pursuit=-4.0), **bad}]
    path = write(tmp_path, rows, schema=pa.Table.from_pylist(rows).schema)  # a float column, as pandas writes
    with pytest.raises(DataFileError) as err:
        load_labels(path)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_unknown_column_is_an_error_so_a_misspelt_label_is_not_ignored(tmp_path):
    rows = [row(price_persuit=5)]
    with pytest.raises(DataFileError, match=r"unknown column\(s\) \['price_persuit'\]"):
        load_labels(write(tmp_path, rows, schema=pa.Table.from_pylist(rows).schema))


def test_rows_of_one_dialogue_must_share_a_transcript_and_agree_on_capabilities(tmp_path):
    later = CONTEXT + [a(ASK).to_dict(), h("Hmm, that is low.").to_dict()]
    contradicting = [row("r0", "d", domain_understanding=True),
                     row("r1", "d", later, "I understand. Would ¥950 work?", domain_understanding=False)]
    with pytest.raises(DataFileError, match=r"labels\.parquet:0: dialogue 'd': domain_understanding is true but "
                                            r"row 1 says false"):
        load_labels(write(tmp_path, contradicting))
    diverging = [row("r0", "d", response="Could you do ¥950?", price_pursuit=6),
                 row("r1", "d", later, "Would ¥950 work?", price_pursuit=6)]
    with pytest.raises(DataFileError, match=r"labels\.parquet:0: dialogue 'd': context plus reply is not a prefix"):
        load_labels(write(tmp_path, diverging))


def test_every_bad_row_is_counted_in_the_one_line(tmp_path):
    rows = [row(f"r{i}", price_pursuit=20) for i in range(4)]
    with pytest.raises(DataFileError, match=r"labels\.parquet:0: .* \(bad rows also: 1, 2, 3\)$"):
        load_labels(write(tmp_path, rows))


def test_labels_load_with_nan_as_no_score_and_the_dialogue_read_as_far_as_its_rows_go(tmp_path):
    later = CONTEXT + [a(ASK).to_dict(), h("Hmm, that is low.").to_dict()]
    rows = [row("r0", "d", price_pursuit=8.0), row("r1", "d", later, "Would ¥950 work?", price_pursuit=math.nan,
                                                    workflow_compliance=True)]
    as_pandas_writes = pa.schema([*REQUIRED_COLUMNS, ("price_pursuit", pa.float64()),
                                  ("workflow_compliance", pa.bool_())])
    labels = load_labels(write(tmp_path, rows, schema=as_pandas_writes))
    assert [r.items for r in labels.replies] == [{"price_pursuit": 8}, {}]
    d = labels.dialogues["d"]
    assert d.capabilities == {"workflow_compliance": True}
    assert d.transcript[0].role.value == "system"  # rendered: the file has none
    assert [m.text for m in d.transcript[1:]] == [OPENING, "Hi, sure, what can I do for you?", ASK,
                                                  "Hmm, that is low.", "Would ¥950 work?"]
    assert [r.position for r in labels.replies] == [3, 5] and d.agent_positions() == [1, 3, 5]
    assert labels.item_columns == ("price_pursuit",) and labels.source is None


# ---------------------------------------------------------------------------- agreement
def test_item_agreement_rounds_judge_scores_and_counts_judge_not_applicable(tmp_path):
    rows = [row("r0", price_pursuit=8), row("r1", price_pursuit=-8), row("r2", price_pursuit=6)]
    labels = load_labels(write(tmp_path, rows))
    findings = {("r0", 3): reply(items={"price_pursuit": 7.5}), ("r1", 3): reply(items={"price_pursuit": -9.6}),
                ("r2", 3): reply(items={"price_pursuit": None})}
    report = agreement_report(labels, findings, judge="hand-made", bootstrap_samples=100, confidence=0.9, seed=0)
    item = next(i for i in report.items if i.item == "price_pursuit")
    # pairs (8, 8) and (-8, -10): observed (0 + 4) / 2 = 2; chance 64 + 81 + 1 = 146; kappa = 1 - 2 / 146
    assert (item.n, item.judge_not_applicable, item.mean_abs_diff) == (2, 1, 1.0)
    assert item.kappa.value == pytest.approx(72 / 73)
    assert item.problem_kappa.value == pytest.approx(1.0)
    unlabelled = next(i for i in report.items if i.item == "sop_compliance")
    assert unlabelled.n == 0 and unlabelled.kappa.value is None and not unlabelled.labelled
    assert "not labelled (no column)" in report.table()


def test_capability_accuracy_counts_and_kappa_against_the_judges_verdict(tmp_path):
    # domain understanding fails for the judge when a domain rule fires on any reply
    human = [True, True, False, False]
    fired = [False, True, True, True]
    rows = [row(f"d{i}", domain_understanding=v) for i, v in enumerate(human)]
    labels = load_labels(write(tmp_path, rows))
    findings = {(f"d{i}", 3): reply(rules={"hallucinated_numbers": ["77"]} if f else {}) for i, f in enumerate(fired)}
    findings.update({(f"d{i}", 1): reply() for i in range(4)})  # the opening turn of each dialogue
    report = agreement_report(labels, findings, judge="hand-made", bootstrap_samples=200, confidence=0.9, seed=0)
    cap = next(c for c in report.capabilities if c.capability == "domain_understanding")
    assert cap.accuracy.value == pytest.approx(0.75) and cap.accuracy.n == 4
    assert cap.counts == {"both_true": 1, "human_only": 1, "judge_only": 0, "both_false": 2}
    # p_o = 3/4; p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2; kappa = (3/4 - 1/2) / (1/2) = 1/2
    assert cap.kappa.value == pytest.approx(0.5)
    assert next(c for c in report.capabilities if c.capability == "dialogue_fluency").accuracy.value is None


# ---------------------------------------------------------------------------- the example file
def test_example_labels_come_from_the_defect_registry_and_say_they_are_synthetic():
    assert (defect_item("silence_as_consent"), defect_capability("silence_as_consent")) == \
        ("silence_not_consent", "workflow_compliance")
    assert (defect_item("over_promise"), defect_capability("over_promise")) == ("no_overpromising", None)
    assert (defect_item("hallucinated_number"), defect_capability("hallucinated_number")) == \
        (None, "domain_understanding")
    assert (defect_item("cot_leakage"), defect_capability("cot_leakage")) == (None, None)
    rows = example_label_rows(16, seed=0)
    assert rows and all(r["note"].startswith("synthetic") for r in rows)
    for r in rows:
        scores = [r[i] for i in JUDGE_ITEMS if i in r]
        verdicts = [r[c] for c in CAPABILITIES if c in r]
        if r["label_id"].endswith("/defective"):
            assert all(s <= JUDGE_PROBLEM_AT for s in scores) and verdicts in ([], [False])
        else:
            assert all(s > 0 for s in scores) and verdicts in ([], [True])


# ---------------------------------------------------------------------------- the command
def test_judge_agreement_reports_every_rubric_item_and_capability_with_the_eval_judge(tmp_path, capsys):
    labels, out = tmp_path / "labels.parquet", tmp_path / "report" / "agreement.json"
    assert main(["judge-agreement", "--write-example", str(labels), "--example-pairs", "32"]) == 0
    assert "SYNTHETIC" in capsys.readouterr().out
    assert pq.read_schema(labels).metadata[SOURCE_KEY].decode() == EXAMPLE_SOURCE
    assert main(["judge-agreement", "--labels", str(labels), "--out", str(out),
                 "--set", "eval.bootstrap_samples=100"]) == 0
    text = capsys.readouterr().out
    for name in (*JUDGE_ITEMS, *CAPABILITIES):
        assert name in text
    assert "builtin-heuristic" in text and "synthetic" in text
    report = json.loads(out.read_text())
    assert [i["item"] for i in report["items"]] == list(JUDGE_ITEMS)
    scored = [i for i in report["items"] if i["kappa_quadratic"]["value"] is not None]
    assert scored and all(-1.0 <= i["kappa_quadratic"]["value"] <= 1.0 for i in scored)
    fluency = next(c for c in report["capabilities"] if c["capability"] == "dialogue_fluency")
    assert fluency["accuracy"]["n"] == sum(fluency["counts"].values()) > 0


def test_judge_agreement_asks_an_endpoint_judge_on_loopback(tmp_path, capsys):
    from reward_actors.judge.server import JudgeServerOptions, JudgeServerProcess

    labels = write_labels(example_label_rows(16, seed=0), tmp_path / "labels.parquet")
    with JudgeServerProcess.start(JudgeServerOptions(seed=0)) as srv:
        assert srv.base_url.startswith("http://127.0.0.1:")
        assert main(["judge-agreement", "--labels", str(labels), "--set", f"eval.judge.base_url={srv.base_url}",
                     "--set", "eval.bootstrap_samples=50"]) == 0
        requests = srv.stats()["counters"]["requests"]
    text = capsys.readouterr().out
    assert f"endpoint {srv.base_url}" in text and all(i in text for i in JUDGE_ITEMS)
    assert requests >= len(load_labels(labels).replies)


def test_bad_labels_file_exits_2_with_one_line(tmp_path, capsys):
    path = write(tmp_path, [row("r0", price_pursuit=8), row("r1", price_pursuit=11)])
    assert main(["judge-agreement", "--labels", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("repo-ray judge-agreement: error: labels.parquet:1: price_pursuit is 11")
