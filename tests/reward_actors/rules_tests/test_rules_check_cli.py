"""`repo-ray check-rules`: one output line per input line, in order; malformed lines reported."""

import json

from repo_ray.cli import main

ROOM = {"name": "Deluxe King", "current_price": 1000, "competitor_prices": [880, 920], "target_price": 900,
        "floor_price": 850}


def line(response, **kw):
    rec = {"response": response, "history": [{"role": "agent", "text": "Hi"}, {"role": "hotel", "text": "Hello"}],
           "language": "en", "room_types": [ROOM], **kw}
    return json.dumps(rec, ensure_ascii=False)


def test_check_rules_keeps_order_and_reports_malformed_lines(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join([
        line("Could you adjust the Deluxe King to ¥800?"),
        '{"response": "x", "history": [',
        line("Could you adjust the Deluxe King to ¥900?"),
        json.dumps({"response": "hi", "history": [], "room_types": [ROOM]}),
        line("We have 12 partner hotels nearby.", allowed_numbers=[12]),
    ]) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert main(["check-rules", str(src), "--out", str(out)]) == 1
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 5
    assert rows[0]["violations"] == ["price_constraints", "hallucinated_numbers"]
    assert rows[0]["e_func"] == -70.0 and rows[0]["scores"]["price_constraints"] == -1.0
    assert rows[1] == {"error": "invalid JSON: Expecting value at column 31"}
    assert rows[2] == {"e_func": 0.0, "violations": [], "scores": {k: 0.0 for k in rows[0]["scores"]}}
    assert rows[3] == {"error": "missing field 'language'"}
    assert rows[4]["violations"] == []
    err = capsys.readouterr().err.splitlines()
    assert err == ["line 2: invalid JSON: Expecting value at column 31", "line 4: missing field 'language'"]


def test_check_rules_all_good_exits_zero_and_uses_config_weights(tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_text(line("Could you adjust the Deluxe King to ¥800?") + "\n", encoding="utf-8")
    assert main(["check-rules", str(src)]) == 0
    assert json.loads(capsys.readouterr().out)["e_func"] == -70.0  # default weights: 40 + 30
    cfg = tmp_path / "c.yaml"
    cfg.write_text("reward:\n  rule_weights:\n    price_constraints: 10\n", encoding="utf-8")
    assert main(["check-rules", str(src), "--config", str(cfg)]) == 0
    assert json.loads(capsys.readouterr().out) == {"e_func": -10.0, "violations": ["price_constraints"],
                                                   "scores": {"price_constraints": -1.0}}


def test_check_rules_missing_file_is_a_one_line_error(tmp_path, capsys):
    assert main(["check-rules", str(tmp_path / "nope.jsonl")]) == 2
    assert capsys.readouterr().err.strip() == f"repo-ray check-rules: error: {tmp_path / 'nope.jsonl'}: file not found"
