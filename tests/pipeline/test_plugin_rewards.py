"""Plug-in rewards end to end: the example rule and rubric item change `repo-ray score`'s output,
and a plug-in rule and item loaded by import path in the rule-checker actors and the local
judge server change an RL run's rewards (the shared sync run, which reuses the async run's data,
SFT model and reward model and whose config loads them)."""

from __future__ import annotations

import json
import random

import pytest
import yaml

from repo_ray.cli import main
from tests.pipeline.conftest import SYNC_CALM_STEPS

pytestmark = pytest.mark.timeout(900)  # the shared run is built on first use

EXAMPLE = "examples.custom_rules.no_discount_codes"
CODE_REPLY = "Thanks for your time. Use the promo code SAVE20 and we will sort out the rest."
PLAIN_REPLY = "Thanks for your time. We will sort out the rest."


def _score(run_dir, cfg: dict, tmp_path, name: str) -> list[dict]:
    from repo_ray.domain.datagen import generate_scenario
    from repo_ray.domain.scenario import Persona

    sc = generate_scenario(random.Random("plug-in"), "plug-1", 0.0, 1, Persona.COOPERATIVE)
    src, out, c = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.out.jsonl", tmp_path / f"{name}.yaml"
    src.write_text("".join(json.dumps({"scenario": sc.to_row(), "context": [], "response": r}) + "\n"
                           for r in (CODE_REPLY, PLAIN_REPLY)))
    c.write_text(yaml.safe_dump(cfg))
    assert main(["score", "--config", str(c), "--run-dir", str(run_dir), str(src), "--out", str(out)]) == 0
    return [json.loads(x) for x in out.read_text().splitlines()]


def test_the_example_plug_in_changes_repo_ray_score_output(pipeline_run, tmp_path):
    base = {"model": pipeline_run.cfg.model.model_dump(mode="json"),
            "judge": {"api_key_env": None, "timeout_s": 5.0, "local_server": {"enabled": True}}}
    plugged = yaml.safe_load(yaml.safe_dump(base))
    plugged["reward"] = {"extra_rules": [f"{EXAMPLE}:no_discount_codes"]}
    plugged["judge"]["extra_items"] = [{"name": "no_code_offers", "prompt": "offers no discount codes", "weight": 1.0,
                                        "heuristic": f"{EXAMPLE}:code_offer_item"}]
    before = _score(pipeline_run.run_dir, base, tmp_path, "before")
    after = _score(pipeline_run.run_dir, plugged, tmp_path, "after")
    code_b, code_a, plain_a = before[0], after[0], after[1]
    assert "no_discount_codes" not in code_b["violations"]
    assert "no_discount_codes" in code_a["violations"] and "no_discount_codes" not in plain_a["violations"]
    assert code_a["sources"]["rules"]["tags"]["no_discount_codes"]
    assert code_a["e_func"] == pytest.approx(code_b["e_func"] - 20.0)  # the default plug-in weight
    verdict = code_a["sources"]["judge"]["verdict"]
    assert verdict["scores"]["no_code_offers"] == -10.0
    assert code_a["e_judge"] == pytest.approx(code_b["e_judge"] - 10.0)
    assert plain_a["sources"]["judge"]["verdict"]["scores"]["no_code_offers"] is None
    assert code_a["r_model"] == pytest.approx(code_b["r_model"]) and code_a["e_enh"] < code_b["e_enh"]


@pytest.fixture(scope="module")
def plugin_run(sync_run):
    """The shared sync run: its config loads a plug-in rule and rubric item (conftest.sync_config);
    the rows of its calm steps (the judge misbehaves in the later ones)."""
    from repo_ray.pipeline.rundir import RunDir

    rows = RunDir(str(sync_run.run_dir)).read_parquet_dir("rl", "trajectories").to_pylist()
    return sync_run, [r for r in rows if r["step"] < SYNC_CALM_STEPS]


def test_a_plug_in_rule_and_item_run_in_the_actors_and_change_a_runs_rewards(plugin_run, pipeline_run):
    from repo_ray.pipeline.rundir import RunDir

    run, rows = plugin_run
    assert run.summary["rl_steps"] > SYNC_CALM_STEPS and rows
    scored = [r for r in rows if r["rules_status"] == "ok" and r["judge_status"] == "ok"]
    assert scored and len(scored) >= len(rows) // 2
    for r in scored:
        assert "flags_every_reply" in r["rules_detail"].split(",")
        assert r["e_func"] <= -20.0  # the plug-in's -1 at the default weight 20, plus the built-ins (<= 0)
        verdict = json.loads(r["judge_detail"])
        assert verdict["scores"]["plugin_item"] == -5.0
    # the shared run (no plug-ins) has neither
    base = RunDir(str(pipeline_run.run_dir)).read_parquet_dir("rl", "trajectories").to_pylist()
    base = [r for r in base if r["rules_status"] == "ok"]
    assert base and all("flags_every_reply" not in (r["rules_detail"] or "") for r in base)
