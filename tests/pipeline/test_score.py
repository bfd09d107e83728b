"""`repo-ray score`: replies scored in-process by the run's RM, the training judge (a local
judge server on 127.0.0.1) and the rules; one JSON line per input line, in order."""

from __future__ import annotations

import json
import random

import pytest
import yaml

from repo_ray.cli import main

KEYS = ("line", "r_model", "e_judge", "e_func", "e_enh", "r_total", "masked", "reason", "sources", "violations")
N = 100.0  # reward.n (default)


def _expert_and_false_price():
    """An English expert evidence reply citing a competitor price, and the same reply with
    that price made false (moved off every figure of the scenario and dialogue), with its context."""
    from repo_ray.domain.datagen import generate_scenario, play_expert_dialogue
    from repo_ray.domain.scenario import Persona, format_price
    from repo_ray.domain.sop import SopStage

    for i in range(50):
        sc = generate_scenario(random.Random(f"score-test:{i}"), f"score-{i:03d}", 0.0, 1, Persona.COOPERATIVE)
        for point in play_expert_dialogue(sc, seed=i).points:
            room = sc.room_types[0]
            cited = format_price(room.competitor_prices[0])
            if point.stage is SopStage.EVIDENCE and point.text.count(cited) == 1:
                wrong = room.competitor_prices[0] + 130
                assert wrong not in sc.allowed_numbers()
                return sc, point.history, point.text, point.text.replace(cited, format_price(wrong))
    raise AssertionError("no expert evidence reply cites a competitor price")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, data_dir, domain_models, domain_model_cfg):
    """A run directory holding only a trained tiny RM (RUN/rm/model), as `repo-ray train` leaves it.
    Its quality does not matter here (one step on 16 pairs, ~5 s on one torch thread): the
    tests check the plumbing and what the judge and rules say."""
    import torch

    from repo_ray.config import RepoRayConfig, RewardConfig, RewardModelTraining
    from repo_ray.domain.schemas import load_rows
    from reward_actors.rm.train import train_reward_model

    run = tmp_path_factory.mktemp("score-run")
    rm = RewardModelTraining(epochs=1, lr=1e-3, batch_size=16, max_tokens=512, holdout_fraction=0.0, finetune="full")
    cfg = RepoRayConfig(seed=0, model=domain_model_cfg, reward=RewardConfig(model=rm))
    pairs = load_rows("preference", data_dir).rows[:16]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on 2 shared cores, intra-op threads of a tiny model mostly spin
    try:
        train_reward_model(cfg, pairs, domain_models.reward_dir, run / "rm" / "model",
                           tokenizer_path=domain_models.tokenizer_dir, device="cpu")
    finally:
        torch.set_num_threads(threads)
    return run


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, domain_model_cfg):
    path = tmp_path_factory.mktemp("score-cfg") / "score.yaml"
    path.write_text(yaml.safe_dump({
        "model": domain_model_cfg.model_dump(mode="json"),
        "judge": {"api_key_env": None, "timeout_s": 5.0, "local_server": {"enabled": True}},
    }))
    return path


@pytest.fixture(scope="module")
def scored(run_dir, config_file, tmp_path_factory):
    """The command run once on: expert reply, false-price reply, three malformed lines, the
    expert reply again with the system prompt given explicitly."""
    sc, history, expert, false = _expert_and_false_price()
    ctx = [m.to_dict() for m in history if m.role.value != "system"]  # the command prepends the system prompt
    row = sc.to_row()
    lines = [
        json.dumps({"scenario": row, "context": ctx, "response": expert}),
        json.dumps({"scenario": row, "context": ctx, "response": false}),
        json.dumps({"scenario": row, "context": [{"role": "user", "text": "hi"}], "response": expert}),
        "{not json",
        json.dumps({"scenario": row, "context": ctx}),
        json.dumps({"scenario": row, "context": [m.to_dict() for m in history], "response": expert}),
    ]
    tmp = tmp_path_factory.mktemp("score-io")
    src, out = tmp / "in.jsonl", tmp / "out" / "scored.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rc = main(["score", "--config", str(config_file), "--run-dir", str(run_dir), str(src), "--out", str(out)])
    return rc, [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()], out, expert, false


def test_one_output_line_per_input_line_in_order_and_exit_1_for_malformed_lines(scored):
    rc, rows, out, *_ = scored
    assert rc == 1
    assert [r["line"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert not list(out.parent.glob(".*tmp*"))  # written to a temp name, renamed


def test_malformed_lines_name_what_is_wrong_and_the_others_are_still_scored(scored):
    _, rows, *_ = scored
    assert rows[2] == {"line": 3, "error": "context[0].role is 'user', not system|agent|hotel"}
    assert rows[3]["line"] == 4 and rows[3]["error"].startswith("invalid JSON") and set(rows[3]) == {"line", "error"}
    assert rows[4] == {"line": 5, "error": "missing field 'response'"}
    for r in (rows[0], rows[1], rows[5]):
        assert "error" not in r and tuple(r) == KEYS


def test_every_source_answers_and_the_total_follows_the_enhancement_formula(scored):
    _, rows, *_ = scored
    for r in (rows[0], rows[1], rows[5]):
        assert set(r["sources"]) == {"rm", "judge", "rules"}
        for name, src in r["sources"].items():
            assert src["status"] == "ok" and isinstance(src["score"], float), (name, src)
            assert set(src) >= {"score", "status", "detail"}
        assert r["r_model"] == r["sources"]["rm"]["score"]
        assert r["e_judge"] == r["sources"]["judge"]["score"] and r["e_func"] == r["sources"]["rules"]["score"]
        assert r["e_enh"] == pytest.approx(max(-N, min(N, r["e_judge"] + r["e_func"])))
        assert not r["masked"] and r["reason"] == ""
        assert r["r_total"] == pytest.approx(r["r_model"] + abs(r["r_model"]) * r["e_enh"] / N)
        assert "scores" in r["sources"]["judge"]["verdict"]  # the judge's item scores, for inspection


def test_a_false_competitor_price_scores_lower_and_names_hallucinated_numbers(scored):
    _, rows, _, expert, false = scored
    good, bad = rows[0], rows[1]
    assert good["violations"] == []
    assert "hallucinated_numbers" in bad["violations"]
    assert bad["sources"]["rules"]["tags"]["hallucinated_numbers"]  # which number, for the user
    assert bad["e_func"] < good["e_func"]
    assert bad["e_judge"] < good["e_judge"]
    assert bad["e_enh"] < good["e_enh"]


def test_the_system_prompt_is_the_rollouts_one_unless_the_context_gives_its_own(scored):
    _, rows, *_ = scored
    for key in ("r_model", "e_judge", "e_func", "r_total"):
        assert rows[5][key] == pytest.approx(rows[0][key])


def test_rules_only_config_masks_nothing_and_has_no_judge(run_dir, domain_model_cfg, tmp_path, capsys):
    """reward.sources [rm, rules]: no judge server is started or asked; stdout carries the lines."""
    from repo_ray.domain.datagen import generate_scenario
    from repo_ray.domain.scenario import Persona

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": domain_model_cfg.model_dump(mode="json"),
                                   "reward": {"sources": ["rm", "rules"]}}))
    sc = generate_scenario(random.Random("s"), "s-1", 0.0, 1, Persona.HOSTILE)
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"scenario": sc.to_row(), "context": [], "response": "Hello, this is the OTA."}) + "\n")
    rc = main(["score", "--config", str(cfg), "--run-dir", str(run_dir), str(src)])
    captured = capsys.readouterr()
    (row,) = [json.loads(x) for x in captured.out.splitlines()]
    assert rc == 0 and set(row["sources"]) == {"rm", "rules"} and row["e_judge"] is None
    assert row["r_total"] == pytest.approx(row["r_model"] + abs(row["r_model"]) * row["e_enh"] / N)
    assert "scored 1 line(s): 0 masked" in captured.err


def test_a_missing_reward_model_is_a_one_line_error(tmp_path, config_file, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("{}\n")
    rc = main(["score", "--config", str(config_file), "--run-dir", str(tmp_path), str(src)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("repo-ray score: error: ") and "rm/model: no trained reward model" in err


def test_a_missing_input_file_is_a_one_line_error(run_dir, config_file, tmp_path, capsys):
    rc = main(["score", "--config", str(config_file), "--run-dir", str(run_dir), str(tmp_path / "nope.jsonl")])
    assert rc == 2 and "nope.jsonl: file not found" in capsys.readouterr().err


def test_a_failing_judge_masks_the_line_with_r_total_null(run_dir, domain_model_cfg, tmp_path):
    """The training failure policy (mask): a judge answering 5xx masks the sample, its reason
    names the judge, r_total is null and the other sources still report."""
    from repo_ray.domain.datagen import generate_scenario
    from repo_ray.domain.scenario import Persona

    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": domain_model_cfg.model_dump(mode="json"),
        "judge": {"api_key_env": None, "max_retries": 0, "local_server": {"enabled": True, "error_rate": 1.0}},
    }))
    sc = generate_scenario(random.Random("m"), "m-1", 0.0, 1, Persona.COOPERATIVE)
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    src.write_text(json.dumps({"scenario": sc.to_row(), "context": [], "response": "Hello, this is the OTA."}) + "\n")
    rc = main(["score", "--config", str(cfg), "--run-dir", str(run_dir), str(src), "--out", str(out)])
    (row,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert rc == 0 and tuple(row) == KEYS
    assert row["masked"] is True and row["r_total"] is None and row["e_enh"] is None
    assert row["sources"]["judge"]["status"] == "http_error" and row["sources"]["judge"]["score"] is None
    assert row["reason"].startswith("judge http_error")
    assert row["sources"]["rm"]["status"] == "ok" and row["r_model"] is not None and row["violations"] == []


@pytest.mark.parametrize("record, reason", [
    ({"context": [], "response": "x"}, "missing field 'scenario'"),
    ({"scenario": [], "context": [], "response": "x"}, "scenario: expected an object"),
    ({"scenario": "DROP:room_types", "context": [], "response": "x"}, "scenario: missing field 'room_types'"),
    ({"scenario": "FLOOR_ABOVE_CURRENT", "context": [], "response": "x"}, "scenario: room type"),
    ({"scenario": "OK", "context": {"role": "hotel"}, "response": "x"}, "context: expected a list"),
    ({"scenario": "OK", "context": [{"role": "hotel"}], "response": "x"}, "context[0]: missing field 'text'"),
    ({"scenario": "OK", "context": [{"role": "hotel", "text": "hi"}, {"role": "system", "text": "s"}], "response": "x"},
     "context[1]: a system message may only come first"),
    ({"scenario": "OK", "context": [], "response": 3}, "response: expected a string, got int"),
    ({"scenario": "OK", "context": [], "response": "x", "truncated": "yes"}, "truncated: expected true or false"),
])
def test_parse_line_names_what_is_wrong(record, reason):
    from repo_ray.domain.datagen import generate_scenario
    from repo_ray.domain.scenario import Persona
    from repo_ray.pipeline.score import parse_line

    row = generate_scenario(random.Random("p"), "p-1", 0.0, 1, Persona.COOPERATIVE).to_row()
    if record.get("scenario") == "OK":
        record["scenario"] = row
    elif record.get("scenario") == "FLOOR_ABOVE_CURRENT":
        record["scenario"] = row | {"room_types": [row["room_types"][0] | {"floor_price": 1e6}]}
    elif isinstance(record.get("scenario"), str):
        record["scenario"] = {k: v for k, v in row.items() if k != record["scenario"].split(":")[1]}
    with pytest.raises(ValueError) as err:
        parse_line(json.dumps(record), 1)
    assert str(err.value).startswith(reason) and "\n" not in str(err.value)


def test_parse_line_prepends_the_rollouts_system_prompt_only_when_the_context_has_none():
    from repo_ray.domain.datagen import generate_scenario
    from repo_ray.domain.scenario import Persona, render_system_prompt
    from repo_ray.pipeline.score import parse_line

    sc = generate_scenario(random.Random("p"), "p-1", 0.0, 1, Persona.COOPERATIVE)
    hotel = {"role": "hotel", "text": "Hello?"}
    req = parse_line(json.dumps({"scenario": sc.to_row(), "context": [hotel], "response": "Hi"}), 7)
    assert [m.role.value for m in req.messages] == ["system", "hotel"]
    assert req.messages[0].text == render_system_prompt(sc) and req.line == 7 and req.truncated is False
    own = parse_line(json.dumps({"scenario": sc.to_row(), "context": [{"role": "system", "text": "mine"}, hotel],
                                 "response": "Hi", "truncated": True}), 1)
    assert own.messages[0].text == "mine" and len(own.messages) == 2 and own.truncated is True
