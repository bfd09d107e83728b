"""`repo-ray export` on the shared tiny run: the merged model (transformers) and the adapter (peft
on the SFT model) generate, greedily, exactly the tokens of the run's policy (SFT model + final
adapter); --step exports the kept checkpoint's adapter (runlog keeps one checkpoint, the
latest); the card and chat template come along."""

from __future__ import annotations

import json
import random

import pytest
import torch

from repo_ray.cli import main

pytestmark = pytest.mark.timeout(900)  # the shared run is built on first use


def _checkpointed_step(pipeline_run) -> int:
    return json.loads((pipeline_run.run_dir / "rl" / "checkpoints" / "latest.json").read_text())["step"]


@pytest.fixture(scope="module")
def exports(pipeline_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    run, step = str(pipeline_run.run_dir), str(_checkpointed_step(pipeline_run))
    assert main(["export", "--run-dir", run, "--out", str(out / "merged")]) == 0
    assert main(["export", "--run-dir", run, "--out", str(out / "adapter"), "--adapter"]) == 0
    assert main(["export", "--run-dir", run, "--out", str(out / "step"), "--adapter", "--step", step]) == 0
    return out


def _prompt(tokenizer):
    from repo_ray.domain.datagen import generate_scenario
    from repo_ray.domain.scenario import Persona, render_system_prompt
    from repo_ray.model.chat import encode_prompt
    from repo_ray.types import Message, Role

    sc = generate_scenario(random.Random("export"), "x-1", 0.0, 1, Persona.COOPERATIVE)
    ids = encode_prompt(tokenizer, [Message(Role.SYSTEM, render_system_prompt(sc)),
                                    Message(Role.HOTEL, "Hello, who is calling?")])
    return torch.tensor([ids])


def _greedy(model, ids):
    model.eval()
    with torch.no_grad():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False)
    return out[0, ids.shape[1]:].tolist()


def test_the_exports_generate_the_runs_policy_tokens(pipeline_run, exports):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run = pipeline_run.run_dir
    tok = AutoTokenizer.from_pretrained(exports / "merged")
    assert tok.chat_template and (exports / "adapter" / "tokenizer_config.json").is_file()
    ids = _prompt(tok)
    sft = run / "sft" / "model"
    policy = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(sft, dtype=torch.float32),
                                       run / "rl" / "final_adapter")
    want = _greedy(policy, ids)
    merged = AutoModelForCausalLM.from_pretrained(exports / "merged", dtype=torch.float32)
    assert list((exports / "merged").glob("*.safetensors")) and not list((exports / "merged").glob("*.bin"))
    assert _greedy(merged, ids) == want
    base = json.loads((exports / "adapter" / "adapter_config.json").read_text())["base_model_name_or_path"]
    assert base == str(sft.resolve())
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32),
                                        exports / "adapter")
    assert _greedy(adapted, ids) == want
    assert want  # the policy said something


def test_a_checkpoint_step_exports_its_own_adapter_and_the_card_says_what(pipeline_run, exports):
    from safetensors.torch import load_file

    step = _checkpointed_step(pipeline_run)
    exported = load_file(exports / "step" / "adapter_model.safetensors")
    ck = load_file(pipeline_run.run_dir / "rl" / "checkpoints" / f"step-{step:06d}" / "policy" /
                   "adapter_model.safetensors")
    assert exported.keys() == ck.keys() and all(torch.equal(exported[k], ck[k]) for k in ck)
    card = (exports / "merged" / "README.md").read_text()
    steps = pipeline_run.summary["rl_steps"]
    assert f"**RL steps**: {steps}" in card and "**Method**: repo" in card and "merged into the weights" in card
    assert "LoRA r=4, alpha=8" in card and "No evaluation found" in card  # the shared run is not evaluated
    assert f"**RL steps**: {step}" in (exports / "step" / "README.md").read_text()


def test_a_step_without_a_checkpoint_is_a_one_line_error(pipeline_run, tmp_path, capsys):
    step = _checkpointed_step(pipeline_run)
    rc = main(["export", "--run-dir", str(pipeline_run.run_dir), "--out", str(tmp_path / "x"), "--step", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and f"no checkpoint of step 1; checkpointed steps: [{step}]" in err
    assert not (tmp_path / "x").exists()
