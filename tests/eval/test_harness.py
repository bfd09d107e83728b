"""The evaluation harness end to end on the tiny domain policy (CPU, a few dialogues)."""

from __future__ import annotations

import json

import pytest

from repo_ray.domain.simulator import HotelSimulator
from repo_ray.eval.harness import (
    PolicyEval,
    PolicySpecError,
    parse_policy_spec,
    replay_deal_turns,
)
from repo_ray.eval.metrics import METRICS, BadCaseOutcome
from repo_ray.eval.results import read_evals
from repo_ray.types import Message, Role

EVAL_SETTINGS = {
    "model": {"dtype": "float32"},
    "rollout": {"max_new_tokens": 16, "scenarios_per_batch": 16, "max_turns": 2},
    "learner": {"lora": {"r": 4, "alpha": 8}, "batch_size": 8, "micro_batch_size": 8},
    "eval": {"bootstrap_samples": 50},
}


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Generation with 2 intra-op threads on a busy 2-core machine spends most of its time in
    threads waiting for each other (measured 40x slower than 1 thread); these tests generate
    a few tokens, so one thread is both faster and steadier."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def eval_cfg():
    from repo_ray.config import RepoRayConfig

    return RepoRayConfig.model_validate(EVAL_SETTINGS)


@pytest.fixture(scope="module")
def base_eval(eval_cfg, domain_models, data_dir) -> PolicyEval:
    from repo_ray.domain.schemas import load_rows
    from repo_ray.eval.harness import evaluate_policy

    scenarios = load_rows("eval", data_dir).rows[:3]
    cases = load_rows("bad_cases", data_dir).rows[:3]
    return evaluate_policy("base", eval_cfg, domain_models.policy_dir, domain_models.tokenizer_dir, None, scenarios,
                           cases, seed=5, device="cpu", n_examples=2)


def test_evaluate_policy_plays_scores_and_measures_end_to_end(base_eval):
    ev = base_eval
    assert [d.dialogue_id for d in ev.dialogues] == ["eval-00000", "eval-00001", "eval-00002"]
    assert set(ev.metrics.estimates) == set(METRICS)
    assert ev.metrics.dialogues == 3 and ev.metrics.bad_cases == 3
    for d in ev.dialogues:
        agent = [m for m in d.transcript if m["role"] == "agent"]
        assert 1 <= len(agent) <= 2 and len(d.responses) == len(agent)  # one finding per agent turn
        assert [r.response for r in d.responses] == [m["text"] for m in agent]
        assert 1 <= d.rating <= 5 and set(d.capabilities) == {
            "dialogue_fluency", "workflow_compliance", "negotiation_effectiveness", "domain_understanding"}
    assert {b.outcome for b in ev.bad_cases} <= {o.value for o in BadCaseOutcome}
    assert ev.metrics.responses == sum(len(d.responses) for d in ev.dialogues)
    assert ev.example_ids == ["eval-00000", "eval-00001"]
    assert ev.settings["judge"] == "builtin-heuristic" and ev.settings["stop_when_settled"] is False
    back = PolicyEval.from_json(ev.to_json())
    assert back.metrics.estimates == ev.metrics.estimates and back.dialogues[0].transcript == ev.dialogues[0].transcript


def test_replay_times_each_ticket_and_refuses_a_transcript_it_cannot_reproduce(data_dir):
    from repo_ray.domain.schemas import load_rows

    sc = next(s for s in load_rows("eval", data_dir).rows if s.persona.value == "cooperative")
    room = sc.room_types[0]
    sim = HotelSimulator(sc, seed=11)
    transcript = [Message(Role.SYSTEM, "s")]
    for text in ("Hi, this is Alex from the travel platform, about your prices.",
                 f"Could you adjust the {room.name} to ¥{int(room.target_price)}?"):
        transcript += [Message(Role.AGENT, text), Message(Role.HOTEL, sim.reply(text).text)]
    assert replay_deal_turns(sc, transcript, 11) == {room.name: 2}
    transcript[-1] = Message(Role.HOTEL, "something the simulator never said")
    assert replay_deal_turns(sc, transcript, 11) is None


def test_policy_spec_parsing():
    assert parse_policy_spec("sft=/runs/a/sft/model") == ("sft", "/runs/a/sft/model", None)
    assert parse_policy_spec("repo=/m:/runs/a/adapter") == ("repo", "/m", "/runs/a/adapter")
    with pytest.raises(PolicySpecError, match="expected NAME=MODEL_DIR"):
        parse_policy_spec("/just/a/path")


def test_cli_eval_writes_json_and_markdown_for_a_model_and_a_model_plus_adapter(tmp_path, domain_models, data_dir):
    import torch
    import yaml
    from peft import TaskType

    from repo_ray.cli import main
    from repo_ray.config import LoraSettings
    from repo_ray.model import add_lora, load_policy
    from repo_ray.model.adapters import build_adapter_update, write_adapter_dir

    model = add_lora(load_policy(domain_models.policy_dir), LoraSettings(r=8, alpha=16), TaskType.CAUSAL_LM)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
    adapter = write_adapter_dir(build_adapter_update(model, 3, [1, 2, 3]), tmp_path / "adapter")
    cfg = tmp_path / "eval.yaml"
    cfg.write_text(yaml.safe_dump({**EVAL_SETTINGS, "rollout": {**EVAL_SETTINGS["rollout"], "max_turns": 1}}))
    policy = str(domain_models.policy_dir)  # the tiny policy directory holds its tokenizer
    out = tmp_path / "out"
    rc = main(["eval", "--config", str(cfg), "--data", str(data_dir), "--out", str(out), "--seed", "5",
               "--policies", f"base={policy}", f"tuned={policy}:{adapter}"])
    assert rc == 0
    evals = read_evals(out / "eval.json")
    assert list(evals) == ["base", "tuned", "expert"]  # the scripted expert's ceiling row comes with every eval
    assert evals["expert"].policy_path == "scripted:expert" and evals["expert"].metrics.dialogues == 12
    assert evals["tuned"].adapter == str(adapter) and evals["base"].adapter is None
    # the whole data dir: 12 dialogues, one bad case per defect
    assert evals["base"].metrics.dialogues == 12 and evals["base"].metrics.bad_cases == 17
    # the LoRA (rank 8, other than learner.lora's 4) loaded and changed what the policy says
    base_text = [d.responses[0].response for d in evals["base"].dialogues]
    tuned_text = [d.responses[0].response for d in evals["tuned"].dialogues]
    assert base_text != tuned_text
    md = (out / "eval.md").read_text()
    assert "| metric | base | tuned | expert |" in md and (out / "eval.png").is_file()
    assert md.index("task success per room-type ticket") < md.index("dialogue rating (1-5)")  # ground truth first
    json.loads((out / "eval.json").read_text())


def test_cli_eval_reports_a_missing_adapter_in_one_line(tmp_path, domain_models, data_dir, capsys):
    import yaml

    from repo_ray.cli import main

    cfg = tmp_path / "eval.yaml"
    cfg.write_text(yaml.safe_dump(EVAL_SETTINGS))
    rc = main(["eval", "--config", str(cfg), "--data", str(data_dir), "--out", str(tmp_path / "o"),
               "--policies", f"x={domain_models.policy_dir}:{tmp_path / 'nope'}"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not a LoRA adapter directory" in err
