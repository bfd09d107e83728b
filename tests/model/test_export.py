"""LoRA wrapping and merging a trained adapter into its base."""

from __future__ import annotations

import pytest
import torch

from repo_ray.config import LoraSettings
from repo_ray.model import (
    LoraTargetError,
    ModelLoadError,
    add_lora,
    load_policy,
    load_reward_model,
    load_tokenizer,
    merge_adapter,
)

from .test_cache import _weight_files

LORA = LoraSettings(r=4, alpha=8)


def _batch(tokenizer):
    texts = ["Could you consider 420 for the deluxe king?", "好的，那就每晚420元。"]
    return tokenizer(texts, return_tensors="pt", padding=True)


def _train_a_few_steps(model, batch, steps=3):
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for _ in range(steps):
        out = model(**batch)
        loss = out.logits.float().pow(2).mean() if out.loss is None else out.loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()


def test_lora_wraps_configured_targets_only(policy):
    model = add_lora(policy, LORA, "CAUSAL_LM")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    wrapped = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable}
    assert wrapped == set(LORA.target_modules)
    assert model.peft_config["default"].r == 4 and model.peft_config["default"].lora_alpha == 8


def test_lora_rejects_targets_that_match_nothing(policy):
    with pytest.raises(LoraTargetError, match=r"\['c_attn'\] match no module of Qwen3ForCausalLM.*q_proj"):
        add_lora(policy, LoraSettings(target_modules=["c_attn"]), "CAUSAL_LM")


def test_lora_skips_targets_absent_from_the_architecture(policy):
    model = add_lora(policy, LoraSettings(r=2, alpha=2, target_modules=["q_proj", "c_attn"]), "CAUSAL_LM")
    assert set(model.peft_config["default"].target_modules) == {"q_proj"}


def test_merged_policy_equals_the_adapted_model(tiny_paths, tokenizer, policy, tmp_path):
    batch = _batch(tokenizer)
    peft_model = add_lora(policy, LORA, "CAUSAL_LM")
    _train_a_few_steps(peft_model, {**batch, "labels": batch["input_ids"]})
    peft_model.save_pretrained(tmp_path / "adapter")
    with torch.no_grad():
        adapted = peft_model(**batch).logits

    out = merge_adapter(tiny_paths.policy_dir, tmp_path / "adapter", tmp_path / "sft" / "model")
    assert out == (tmp_path / "sft" / "model").resolve()
    merged = load_policy(out)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    with torch.no_grad():
        merged_logits = merged(**batch).logits
        base_logits = load_policy(tiny_paths.policy_dir)(**batch).logits
    torch.testing.assert_close(merged_logits, adapted, atol=1e-5, rtol=0)
    assert (merged_logits - base_logits).abs().max() > 1e-3

    assert sorted(p.name for p in _weight_files(tmp_path)) == ["adapter_model.safetensors", "model.safetensors"]
    assert load_tokenizer(out).encode("豪华大床房") == tokenizer.encode("豪华大床房")  # copied from the base
    assert sorted(p.name for p in (tmp_path / "sft").iterdir()) == ["model"]  # no temp dir left


def test_merge_replaces_an_older_output(tiny_paths, tokenizer, policy, tmp_path):
    peft_model = add_lora(policy, LORA, "CAUSAL_LM")
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    peft_model.save_pretrained(tmp_path / "adapter")
    out = tmp_path / "merged"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    merge_adapter(tiny_paths.policy_dir, tmp_path / "adapter", out)
    assert not (out / "stale.txt").exists() and (out / "model.safetensors").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "merged"]


def test_merged_reward_model_keeps_the_trained_score_head(tiny_paths, tokenizer, reward_model, tmp_path):
    batch = _batch(tokenizer)
    peft_model = add_lora(reward_model, LORA, "SEQ_CLS")
    _train_a_few_steps(peft_model, batch)
    peft_model.save_pretrained(tmp_path / "rm-adapter")
    with torch.no_grad():
        adapted = peft_model(**batch).logits
    merged = load_reward_model(merge_adapter(tiny_paths.reward_dir, tmp_path / "rm-adapter", tmp_path / "rm"))
    with torch.no_grad():
        scores = merged(**batch).logits
        base = load_reward_model(tiny_paths.reward_dir)(**batch).logits
    torch.testing.assert_close(scores, adapted, atol=1e-5, rtol=0)
    assert (scores - base).abs().max() > 1e-3


def test_merge_needs_an_adapter_dir(tiny_paths, tmp_path):
    with pytest.raises(ModelLoadError, match="adapter_config.json"):
        merge_adapter(tiny_paths.policy_dir, tmp_path, tmp_path / "out")


def test_model_card_names_base_method_data_steps_and_the_evaluation_table(tmp_path):
    import json

    from repo_ray.model.export import model_card

    (tmp_path / "manifest.json").write_text(json.dumps({"git_sha": "abcdef0123456789", "config": {
        "name": "demo", "model": {"path": "Qwen/Qwen3-32B"}, "data": {"seed": 3, "rl_scenarios": 256},
        "learner": {"algorithm": "grpo", "lora": {"r": 8, "alpha": 16}, "batch_size": 32}}}))
    est = {"rating": {"value": 3.9}, "task_success": {"value": 0.25}, "judge_score": {"value": None}}
    (tmp_path / "eval.json").write_text(json.dumps({"sft": {"metrics": {"estimates": est}}}))
    card = model_card(tmp_path, "adapter", 12, tmp_path / "rl" / "final_adapter")
    assert "# demo policy (grpo, adapter)" in card and "Qwen/Qwen3-32B" in card
    assert "grpo with LoRA r=8, alpha=16" in card and "generated (seed 3): rl_scenarios 256" in card
    assert "**RL steps**: 12" in card and "adapter `rl/final_adapter`" in card and "git abcdef012345" in card
    row = next(line for line in card.splitlines() if line.startswith("| sft |"))
    assert row.split(" | ")[1:3] == ["3.90", "–"] and "0.25" in row  # rating, ≥1 excellent (absent), task success
    (tmp_path / "eval.json").unlink()
    assert "No evaluation found" in model_card(tmp_path, "merged", None, tmp_path / "x")
