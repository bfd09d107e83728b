"""What repo-ray reads from a model instead of assuming the tiny ChatML one: the end-of-turn
token (from the chat template), the padding id, LoRA targets (`auto`) and the context budget
(held to max_position_embeddings). CPU, tiny models; tests/real runs the same on SmolLM2."""

from __future__ import annotations

import copy

import pytest
from peft import TaskType

from repo_ray.config import LoraSettings, RepoRayConfig
from repo_ray.model import IM_END, add_lora
from repo_ray.model.chat import encode_response, end_of_turn_id, padding_id
from repo_ray.model.context import ContextBudgetError, fit_budgets_to_model
from repo_ray.model.export import linear_targets
from repo_ray.model.loading import max_positions
from repo_ray.rollout.backend import stop_token_ids

# A Llama-3-like template: the turn ends with <|eot_id|>, not <|im_end|>.
EOT_TEMPLATE = (
    "{%- for m in messages -%}{{- '<|start_header_id|>' + m['role'] + '<|end_header_id|>\\n\\n' + m['content'] "
    "+ '<|eot_id|>' -}}{%- endfor -%}{%- if add_generation_prompt -%}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}{%- endif -%}"
)


@pytest.fixture
def eot_tokenizer(tokenizer):
    """The tiny tokenizer with a non-ChatML template whose end of turn is a new special token;
    its pad token is that same end of turn (as Llama 3 and SmolLM2 ship theirs)."""
    tok = copy.deepcopy(tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    tok.chat_template = EOT_TEMPLATE
    tok.pad_token = "<|eot_id|>"
    return tok


def test_end_of_turn_is_read_from_the_chat_template(tokenizer, eot_tokenizer):
    assert end_of_turn_id(tokenizer) == tokenizer.convert_tokens_to_ids(IM_END)
    eot = eot_tokenizer.convert_tokens_to_ids("<|eot_id|>")
    assert end_of_turn_id(eot_tokenizer) == eot != eot_tokenizer.convert_tokens_to_ids(IM_END)
    assert encode_response(eot_tokenizer, "Deal.")[-1] == eot
    assert stop_token_ids(eot_tokenizer, None)[0] == eot


def test_a_tokenizer_without_chat_template_is_refused_in_one_line(tokenizer):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = None
    with pytest.raises(ValueError, match="no chat template"):
        end_of_turn_id(tok)


def test_padding_id_is_never_the_end_of_turn(tokenizer, eot_tokenizer):
    assert padding_id(tokenizer) == tokenizer.pad_token_id  # the tiny pad (<|endoftext|>) is not a stop id
    pad = padding_id(eot_tokenizer)
    assert pad != end_of_turn_id(eot_tokenizer) and pad != eot_tokenizer.eos_token_id
    assert pad in eot_tokenizer.all_special_ids


def test_lora_auto_targets_every_block_linear_but_not_the_heads(policy, reward_model):
    expected = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert set(linear_targets(policy)) == expected
    assert set(linear_targets(reward_model)) == expected  # `score` is trained whole, not LoRA'd
    wrapped = add_lora(policy, LoraSettings(r=4, alpha=8, target_modules="auto"), TaskType.CAUSAL_LM)
    assert set(wrapped.peft_config["default"].target_modules) == expected
    assert not any("lm_head.lora" in n for n, _ in wrapped.named_parameters())


def test_lora_target_modules_auto_is_a_valid_config_value():
    cfg = RepoRayConfig.model_validate({"learner": {"lora": {"target_modules": "auto"}}})
    assert cfg.learner.lora.target_modules == "auto"


def _cfg(**rollout) -> RepoRayConfig:
    return RepoRayConfig.model_validate({
        "rollout": {"max_prompt_tokens": 4096, "max_new_tokens": 512, **rollout},
        "learner": {"sft": {"max_tokens": 2048}, "dpo": {"max_tokens": 2048}},
        "reward": {"model": {"max_tokens": 1024}},
    })


def test_budgets_are_held_to_the_models_positions():
    cfg, notes = fit_budgets_to_model(_cfg(), 1024)
    assert cfg.rollout.max_prompt_tokens + cfg.rollout.max_new_tokens == 1024
    assert cfg.rollout.max_prompt_tokens == 512
    assert cfg.learner.sft.max_tokens == cfg.learner.dpo.max_tokens == 1024
    assert cfg.reward.model.max_tokens == 1024  # already within: unchanged, no note
    assert cfg.rollout.vllm.max_model_len == 1024
    assert any(n.startswith("rollout.max_prompt_tokens: 4096 -> 512") for n in notes)
    assert not any(n.startswith("reward.model") for n in notes)


def test_budgets_within_the_positions_or_unknown_positions_change_nothing():
    cfg = _cfg()
    assert fit_budgets_to_model(cfg, 100_000) == (cfg, [])
    assert fit_budgets_to_model(cfg, None) == (cfg, [])


def test_a_reply_budget_beyond_the_positions_is_a_budget_error():
    with pytest.raises(ContextBudgetError, match="rollout.max_new_tokens=512"):
        fit_budgets_to_model(_cfg(), 512)


def test_max_positions_is_read_from_the_model_dir(tiny_paths, tmp_path):
    assert max_positions(tiny_paths.policy_dir) == 512
    assert max_positions(tmp_path) is None  # no config.json: nothing to clamp to
