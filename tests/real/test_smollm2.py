"""SmolLM2-135M-Instruct through repo-ray's model paths (opt-in, see conftest.py): the GGUF
import, and every piece that must come from the model rather than from the tiny one (chat
template, end-of-turn and pad ids, the RM head, LoRA targets, the context budget)."""

from __future__ import annotations

import json
import math

import pytest
import torch

pytestmark = pytest.mark.real

LLAMA_LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


@pytest.fixture(scope="module")
def english_data(tmp_path_factory):
    from repo_ray.config import DataConfig
    from repo_ray.domain.datagen import write_dataset

    out = tmp_path_factory.mktemp("data-en")
    write_dataset(DataConfig(seed=0, zh_fraction=0.0, max_room_types=2, sft_dialogues=8, preference_pairs=16,
                             rl_scenarios=4, eval_dialogues=4, bad_cases=4), out)
    return out


# ---------------------------------------------------------------------------- the import
def test_import_writes_a_plain_hf_dir_that_reloads_without_the_gguf_file(smollm2_dir, smollm2_policy):
    from repo_ray.model.import_gguf import import_gguf, smollm2_gguf

    config_text = (smollm2_dir / "config.json").read_text(encoding="utf-8")
    assert "quantization_config" not in config_text and "gguf" not in config_text.lower()
    assert (smollm2_dir / "model.safetensors").is_file() and not list(smollm2_dir.glob("*.gguf"))
    assert type(smollm2_policy).__name__ == "LlamaForCausalLM"
    assert sum(p.numel() for p in smollm2_policy.parameters()) == pytest.approx(134.5e6, rel=1e-3)
    assert smollm2_policy.get_output_embeddings().weight.data_ptr() == \
        smollm2_policy.get_input_embeddings().weight.data_ptr()  # tied, as in the GGUF
    again = import_gguf(smollm2_gguf(), smollm2_dir)
    recorded = json.loads((smollm2_dir / "import.json").read_text(encoding="utf-8"))
    assert again.reused and again.source_sha256 == recorded["source_sha256"]


def test_the_imported_model_answers_in_coherent_english(smollm2_policy, smollm2_tokenizer):
    from repo_ray.model.chat import end_of_turn_id

    chat = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "What is the capital of France?"}]
    ids = smollm2_tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                                return_dict=True)
    with torch.no_grad():
        out = smollm2_policy.generate(**ids, max_new_tokens=40, do_sample=False,
                                      eos_token_id=end_of_turn_id(smollm2_tokenizer))
    reply = smollm2_tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in reply, reply


def test_the_tokenizer_brings_its_chat_template_and_special_tokens(smollm2_dir, smollm2_tokenizer, smollm2_policy):
    from repo_ray.model.chat import end_of_turn_id, padding_id
    from repo_ray.rollout.backend import stop_token_ids

    tok = smollm2_tokenizer
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert im_end == 2 == end_of_turn_id(tok) == tok.eos_token_id
    assert stop_token_ids(tok, smollm2_policy.generation_config.eos_token_id) == [2]
    assert tok.pad_token_id == 2  # SmolLM2 pads with its EOS ...
    assert padding_id(tok) == tok.convert_tokens_to_ids("<|endoftext|>") == 0  # ... repo-ray pads with another id
    saved = json.loads((smollm2_dir / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert saved["tokenizer_class"] == "PreTrainedTokenizerFast"  # loadable by transformers 4 (vLLM) too
    assert "local_files_only" not in saved


def test_rollout_and_training_token_ids_match_the_chat_template(smollm2_tokenizer, english_data):
    from repo_ray.domain.schemas import load_rows
    from repo_ray.model.chat import to_chat_messages
    from repo_ray.model.context import encode_dialogue
    from repo_ray.types import Role

    tok = smollm2_tokenizer
    for d in load_rows("sft", english_data).rows[:4]:
        last_agent = max(i for i, m in enumerate(d.messages) if m.role is Role.AGENT)
        messages = d.messages[: last_agent + 1]
        ids, mask = encode_dialogue(tok, messages)  # raises if the template is not prefix-consistent
        full = tok.apply_chat_template(to_chat_messages(messages), tokenize=True, return_dict=False)
        assert ids == list(full[: len(ids)]) and tok.decode(full[len(ids):]) == "\n"
        assert ids[-1] == 2 and mask[-1] == 1


# ---------------------------------------------------------------------------- model-agnostic pieces
def test_the_rm_head_builds_on_the_real_base_and_reads_the_end_of_turn(smollm2_dir, smollm2_tokenizer):
    from repo_ray.model import load_reward_model
    from repo_ray.model.chat import padding_id
    from reward_actors.rm.scorer import score_batch

    tok = smollm2_tokenizer
    rm = load_reward_model(smollm2_dir, pad_token_id=padding_id(tok))
    assert type(rm).__name__ == "LlamaForSequenceClassification" and rm.score.out_features == 1
    assert rm.config.pad_token_id == 0
    prompt = tok.apply_chat_template([{"role": "system", "content": "Negotiate a room price."},
                                      {"role": "user", "content": "We can offer 900 per night."}],
                                     add_generation_prompt=True, tokenize=True, return_dict=False)
    reply = tok.encode("Could you do 850 for three nights?", add_special_tokens=False)
    ended, cut = list(prompt) + reply + [2], list(prompt) + reply
    alone = [score_batch(rm, tok, [s], 1)[0] for s in (ended, cut)]
    together = score_batch(rm, tok, [ended, cut, list(prompt)], 3)
    assert together[:2] == pytest.approx(alone, abs=1e-4)  # right padding: a row scores the same in any batch
    # the score is read AT the end-of-turn token: a reply that ended and one cut before its
    # end are different inputs (with SmolLM2's own pad id, 2, both would be scored at the same token)
    assert abs(alone[0] - alone[1]) > 1e-6


def test_lora_auto_finds_the_llama_linear_layers(smollm2_dir):
    from peft import TaskType

    from repo_ray.config import LoraSettings
    from repo_ray.model import add_lora, load_policy, load_reward_model
    from repo_ray.model.export import linear_targets

    lora = LoraSettings(r=4, alpha=8, target_modules="auto")
    policy = add_lora(load_policy(smollm2_dir), lora, TaskType.CAUSAL_LM)
    assert set(policy.peft_config["default"].target_modules) == LLAMA_LINEAR
    assert not any("lm_head" in n and p.requires_grad for n, p in policy.named_parameters())
    rm = load_reward_model(smollm2_dir, pad_token_id=0)
    assert set(linear_targets(rm)) == LLAMA_LINEAR
    rm = add_lora(rm, lora, TaskType.SEQ_CLS)
    trainable = [n for n, p in rm.named_parameters() if p.requires_grad]
    assert any(".score." in f".{n}" for n in trainable) and not any("score.lora" in n for n in trainable)


def test_context_budgets_clamp_to_max_position_embeddings(smollm2_dir):
    from repo_ray.config import RepoRayConfig, load_config
    from repo_ray.model.context import fit_budgets_to_model
    from repo_ray.model.loading import max_positions

    limit = max_positions(smollm2_dir)
    assert limit == 8192
    long = RepoRayConfig.model_validate({"rollout": {"max_prompt_tokens": 16384, "max_new_tokens": 512},
                                         "learner": {"sft": {"max_tokens": 32768}}})
    cfg, notes = fit_budgets_to_model(long, limit)
    assert (cfg.rollout.max_prompt_tokens, cfg.learner.sft.max_tokens) == (8192 - 512, 8192) and notes
    ours = load_config("configs/smollm2.yaml")
    assert fit_budgets_to_model(ours, limit) == (ours, [])  # the shipped config fits the model as written


def test_hf_backend_samples_real_replies_whose_logprobs_the_learner_recomputes(smollm2_dir, english_data):
    from repo_ray.config import LoraSettings
    from repo_ray.domain.schemas import load_rows
    from repo_ray.rollout.backend import SamplingSettings
    from repo_ray.rollout.hf import HFBackend

    backend = HFBackend(smollm2_dir, lora=LoraSettings(r=4, alpha=8, target_modules="auto"), device="cpu")
    dialogue = load_rows("sft", english_data).rows[0].messages
    history = list(dialogue[:2])  # system + the hotel's first words: the agent speaks next
    (gens,) = backend.generate([history], SamplingSettings(max_new_tokens=24, seed=0), n=2)
    for g in gens:
        assert g.finish_reason in ("stop", "length") and all(math.isfinite(x) for x in g.logprobs)
        assert (g.token_ids[-1] == 2) == (g.finish_reason == "stop")
        ids = torch.tensor([g.prompt_token_ids + g.token_ids])
        with torch.no_grad():
            logits = backend.model(input_ids=ids).logits[0, len(g.prompt_token_ids) - 1: -1].double()
        again = torch.log_softmax(logits, -1).gather(-1, torch.tensor(g.token_ids)[:, None]).squeeze(-1)
        assert again.tolist() == pytest.approx(g.logprobs, abs=2e-3)
    assert any(c.isalpha() for g in gens for c in g.text)
