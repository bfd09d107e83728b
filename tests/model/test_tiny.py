"""Tiny Qwen3 policy and reward model built from config."""

from __future__ import annotations

import torch

from repo_ray.model import ENDOFTEXT, IM_END, build_tiny_policy, build_tiny_reward_model, encode_prompt
from repo_ray.types import Message, Role

from .conftest import TINY


def test_policy_matches_config_and_tokenizer(tokenizer):
    model = build_tiny_policy(TINY, tokenizer, seed=0)
    cfg = model.config
    assert cfg.vocab_size == len(tokenizer)
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads) == (64, 2, 4)
    assert (cfg.num_key_value_heads, cfg.head_dim, cfg.intermediate_size) == (2, 16, 128)
    assert model.lm_head.weight is model.model.embed_tokens.weight  # tied
    assert cfg.pad_token_id == tokenizer.pad_token_id == tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    assert cfg.eos_token_id == tokenizer.convert_tokens_to_ids(IM_END)
    assert cfg.bos_token_id == tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    assert IM_END in tokenizer.convert_ids_to_tokens(model.generation_config.eos_token_id)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_same_seed_same_weights_other_seed_other_weights(tokenizer):
    a, b, c = (build_tiny_policy(TINY, tokenizer, seed=s).state_dict() for s in (3, 3, 4))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["model.embed_tokens.weight"], c["model.embed_tokens.weight"])


def test_building_does_not_move_the_global_rng(tokenizer):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_tiny_policy(TINY, tokenizer, seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_policy_forward_and_generate_shapes(tokenizer, policy):
    prompts = [
        encode_prompt(tokenizer, [Message(Role.SYSTEM, "Hotel: Grand Plaza.")]),
        encode_prompt(
            tokenizer, [Message(Role.SYSTEM, "酒店：君悦。"), Message(Role.AGENT, "您好"), Message(Role.HOTEL, "")]
        ),
    ]
    batch = tokenizer.pad({"input_ids": prompts}, return_tensors="pt")
    assert batch["attention_mask"][0, 0] == 0  # left padded: the short prompt starts with padding
    with torch.no_grad():
        logits = policy(**batch).logits
    assert logits.shape == (2, batch["input_ids"].shape[1], len(tokenizer))
    assert torch.isfinite(logits).all()
    torch.manual_seed(0)
    out = policy.generate(**batch, max_new_tokens=6, do_sample=True, pad_token_id=tokenizer.pad_token_id)
    assert out.shape[0] == 2 and batch["input_ids"].shape[1] < out.shape[1] <= batch["input_ids"].shape[1] + 6
    assert torch.equal(out[:, : batch["input_ids"].shape[1]], batch["input_ids"])


def test_reward_model_gives_one_score_per_sequence(tokenizer):
    rm = build_tiny_reward_model(TINY, tokenizer, seed=0)
    assert rm.config.num_labels == 1 and rm.config.pad_token_id == tokenizer.pad_token_id
    texts = ["Could you do 420?", "好的", "We cannot go below 500, sorry."]
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    with torch.no_grad():
        scores = rm(**batch).logits
    assert scores.shape == (3, 1)
    assert len(set(scores.squeeze(-1).tolist())) == 3


def test_reward_model_scores_the_last_real_token_whatever_the_padding(tokenizer, reward_model):
    texts = ["Could you consider 420 for the deluxe king?", "好的", "We cannot go below 500."]
    left = tokenizer(texts, return_tensors="pt", padding=True, padding_side="left")
    right = tokenizer(texts, return_tensors="pt", padding=True, padding_side="right")
    assert not torch.equal(left["input_ids"], right["input_ids"])
    with torch.no_grad():
        s_left = reward_model(**left).logits.squeeze(-1)
        s_right = reward_model(**right).logits.squeeze(-1)
        alone = torch.cat([reward_model(**tokenizer([t], return_tensors="pt")).logits.squeeze(-1) for t in texts])
    torch.testing.assert_close(s_left, s_right, atol=1e-5, rtol=0)
    torch.testing.assert_close(s_left, alone, atol=1e-5, rtol=0)


def test_pretraining_makes_the_tiny_base_a_language_model_of_the_corpus(tokenizer, corpus):
    from repo_ray.model.tiny import pretrain_tiny_policy

    model = build_tiny_policy(TINY, tokenizer, seed=0)
    assert pretrain_tiny_policy(model, tokenizer, corpus, steps=0, lr=3e-3, seed=0) is None
    first, last = pretrain_tiny_policy(model, tokenizer, corpus, steps=40, lr=3e-3, seed=0, block=64, batch=8)
    assert last < 0.7 * first
    assert not model.training
