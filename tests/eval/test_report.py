"""The run report from a synthetic steps table and synthetic policy evaluations."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from repo_ray.eval.eval_judge import DIFFERENCES
from repo_ray.eval.metrics import METRICS, BadCaseRecord, DialogueRecord, capabilities, compute_metrics, dialogue_rating
from repo_ray.eval.report import eval_table_markdown, load_steps, reward_rise, write_eval_markdown, write_report
from repo_ray.eval.results import DialogueResult, PolicyEval, read_evals, write_evals
from tests.eval.helpers import ONE_ROOM, TWO_ROOMS, a, h, reply

STEP_COLUMNS = (
    "r_total_mean", "r_model_mean", "e_judge_mean", "e_func_mean", "response_len_mean", "distinct_1", "distinct_2",
    "control_r_total_mean", "control_r_model_mean", "control_e_judge_mean", "control_e_func_mean", "control_masked",
    "control_samples", "control_response_len_mean", "control_distinct_1", "control_distinct_2", "policy_loss",
    "value_loss", "clip_fraction", "approx_kl", "kl_to_sft", "entropy", "grad_norm", "step_time_s", "samples_per_s",
    "max_staleness",
)


def steps_table(n: int = 12, trained_slope: float = 0.2, control_slope: float = 0.0, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    steps = np.arange(1, n + 1)
    noise = 0.05 * (-1.0) ** steps  # deterministic wiggle: every third of the steps has the same mean of it
    cols: dict[str, list] = {"step": steps.tolist(), "adapter_version": steps.tolist(), "samples": [16] * n,
                             "masked": [i % 3 for i in range(n)]}
    for c in STEP_COLUMNS:
        cols[c] = (0.5 + 0.01 * rng.normal(size=n)).tolist()
    cols["r_total_mean"] = (-1 + trained_slope * steps + noise).tolist()
    cols["control_r_total_mean"] = (-1 + control_slope * steps - noise).tolist()
    cols["e_judge_mean"] = [math.nan] * n  # a source absent from the run
    cols["control_masked"], cols["control_samples"] = [1] * n, [16] * n
    types = {k: pa.int64() for k in ("step", "adapter_version", "samples", "masked")}
    return pa.table({k: pa.array(v, type=types.get(k, pa.float64())) for k, v in cols.items()})


def policy_eval(name: str, judge: float, rule_hits: int = 0) -> PolicyEval:
    records = []
    for i, sc in enumerate((ONE_ROOM, TWO_ROOMS, ONE_ROOM)):
        rs = [reply(judge, 0, {"price_pursuit": 7.0}), reply(judge, 1, {"sop_compliance": 6.0},
              {"hallucinated_numbers": ["unknown:3"]} if i < rule_hits else {})]
        transcript = [a("Hi, this is Alex from the travel platform."), h("Hi."),
                      a("Could you adjust the Deluxe King to ¥900?"), h("OK, ¥900 works for the Deluxe King.")]
        records.append(DialogueRecord(f"d{i}", sc, transcript, rs, {"Deluxe King": 900.0}, {"Deluxe King": 2}))
    cases = [BadCaseRecord(f"c{i}", "hallucinated_number", "major",
                           reply(0.2, rules={"hallucinated_numbers": ["u"]} if i < rule_hits else {}))
             for i in range(4)]
    m = compute_metrics(records, cases, excellent_threshold=0.6, bootstrap_samples=200, confidence=0.9, seed=0)
    dialogues = [DialogueResult(r.dialogue_id, r.scenario.to_row(), [x.to_dict() for x in r.transcript], r.responses,
                                r.agreed, r.deal_turns, "deal", dialogue_rating(r.responses), False, capabilities(r))
                 for r in records]
    settings = {"judge": "builtin-heuristic", "seed": 0, "bootstrap_samples": 200, "confidence": 0.9,
                "sampling": {"temperature": 1.0}, "max_turns": 2}
    return PolicyEval(name, f"/models/{name}", None, m, dialogues, [], ["d0", "d1"], settings)


EVALS = {"base": policy_eval("base", -0.2, rule_hits=3), "sft": policy_eval("sft", 0.3, rule_hits=1),
         "repo": policy_eval("repo", 0.7)}


def test_reward_rise_is_last_third_minus_first_third_with_the_control_subtracted():
    cols = {"step": np.arange(1, 10, dtype=float), "r_total_mean": np.array([0, 0, 0, 1, 1, 1, 2, 2, 2], dtype=float),
            "control_r_total_mean": np.array([0, 0, 0, 0, 0, 0, 0.5, 0.5, 0.5])}
    v = reward_rise(cols)
    assert (v.trained.first, v.trained.last, v.trained.delta.value) == (0.0, 2.0, 2.0)
    assert (v.trained.delta.lo, v.trained.delta.hi) == (2.0, 2.0)
    assert v.control.delta.value == 0.5 and v.net.value == pytest.approx(1.5)
    assert "ROSE under training, by more than the frozen control" in v.text
    assert "Too few RL steps" in reward_rise({"step": np.array([1.0, 2.0]), "r_total_mean": np.array([0.0, 1.0])}).text


def test_verdict_does_not_credit_training_for_a_rise_the_control_shares_or_for_noise():
    shared = reward_rise(load_steps(steps_table(trained_slope=0.2, control_slope=0.2)))
    assert "cannot be credited to training" in shared.text
    flat = reward_rise(load_steps(steps_table(trained_slope=0.0, control_slope=0.0)))
    assert "NO CLEAR CHANGE" in flat.text
    fell = reward_rise(load_steps(steps_table(trained_slope=-0.2)))
    assert "FELL" in fell.text


def test_report_files_exist_and_the_table_has_every_method_and_metric(tmp_path):
    steps_path = tmp_path / "steps.parquet"
    pq.write_table(steps_table(), steps_path)
    path = write_report(tmp_path / "run", steps_path, EVALS, tmp_path / "report")
    assert path == tmp_path / "report" / "report.md"
    for png in ("rewards.png", "masked.png", "text.png", "learner.png", "eval.png"):
        data = (tmp_path / "report" / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, png
    text = path.read_text()
    assert "R_total ROSE under training, by more than the frozen control" in text
    assert DIFFERENCES in text
    assert "| R_total | " in text and "| E_judge (RJ) | n/a |" in text  # the rise table, an absent source
    lines = text.splitlines()
    start = lines.index("| metric | base | sft | repo | base - sft | repo - sft |")
    table = [line for line in lines[start:] if line.startswith("| ")]
    for spec in METRICS.values():
        assert any(line.startswith(f"| {spec.label} ") for line in table), spec.label
    assert "![rewards per step](rewards.png)" in text and "![held-out evaluation](eval.png)" in text
    assert "### Reward-hacking monitor" in text and "No step flagged" in text  # the synthetic steps move together
    # the example dialogues show the same scenario for every policy
    assert text.count("#### base") == text.count("#### repo") == 2


def test_gain_over_sft_is_in_the_table_with_an_interval():
    table = eval_table_markdown(EVALS)
    rating = next(line for line in table.splitlines() if line.startswith("| dialogue rating"))
    cells = [c.strip() for c in rating.strip("|").split("|")]
    # base: replies 3 + 2 * -0.2 = 2.6 and 2.6 - 2 (a major problem) clipped to 1, so 1.8 on every dialogue
    assert cells[1].startswith("1.80")
    assert cells[4].startswith("-") and cells[5].startswith("+")  # base - sft < 0 < repo - sft
    assert "[" in cells[5]


def test_report_without_steps_or_control_still_writes(tmp_path):
    t = steps_table().drop_columns([c for c in steps_table().column_names if c.startswith("control_")])
    text = write_report(tmp_path, t, {"sft": EVALS["sft"]}, tmp_path / "r").read_text()
    assert "no frozen control" in text
    assert "No RL steps" in write_report(tmp_path, None, {}, tmp_path / "r2").read_text()


def test_policy_evals_round_trip_through_json_and_eval_markdown(tmp_path):
    path = write_evals(EVALS, tmp_path / "eval.json")
    back = read_evals(path)
    assert list(back) == ["base", "sft", "repo"]
    assert back["repo"].metrics.estimates == EVALS["repo"].metrics.estimates
    assert back["repo"].metrics.units == EVALS["repo"].metrics.units
    assert back["sft"].dialogues[0].responses[1].rule_tags == {"hallucinated_numbers": ["unknown:3"]}
    md = write_eval_markdown(back, tmp_path / "eval.md").read_text()
    assert "| metric | base | sft | repo | base - sft | repo - sft |" in md
    assert (tmp_path / "eval.png").is_file()


def test_ground_truth_leads_the_report_and_the_expert_row_is_the_ceiling():
    from repo_ray.eval.guardrails import SHARED_WITH_TRAINING
    from repo_ray.eval.report import evaluation_markdown

    evals = {**EVALS, "expert": policy_eval("expert", 0.9)}
    text = evaluation_markdown(evals)
    assert text.index("### Ground truth") < text.index("task success per room-type ticket") \
        < text.index("dialogue rating (1-5)")
    assert "| metric | base | sft | repo | expert |" in text and "the ceiling" in text
    assert SHARED_WITH_TRAINING in text and "what is still shared with training" in SHARED_WITH_TRAINING.lower()
