"""No silent truncation (DESIGN.md §7): a reply cut at max_new_tokens is marked truncated,
keeps its sampled tokens, and its text never ends in half a character; the demo's budget
fits the expert replies."""

from __future__ import annotations

import itertools
import sys
import types
from pathlib import Path

import pytest

from repo_ray.config import load_config
from repo_ray.domain.scenario import render_system_prompt
from repo_ray.model import IM_END
from repo_ray.rollout import SamplingSettings, play_negotiations
from repo_ray.rollout.backend import decode_reply
from repo_ray.types import Message, Role

DEMO_CONFIG = Path(__file__).resolve().parents[2] / "configs" / "demo.yaml"
ZH_REPLY = "您好，豪华大床房能否调整到¥870？周边同类酒店的价格是¥880、¥920，客人会放在一起比较。"


@pytest.fixture(scope="module")
def zh_scenarios(data_dir):
    from repo_ray.domain.schemas import load_rows

    rows = load_rows("rl", data_dir).rows + load_rows("eval", data_dir).rows
    zh = [s for s in rows if s.language == "zh"]
    assert len(zh) >= 3, "the test data should hold Chinese scenarios (zh_fraction 0.2)"
    return zh[:4]


@pytest.fixture(scope="module")
def backend(domain_models, lora_settings):
    from repo_ray.rollout.hf import HFBackend

    return HFBackend(domain_models.policy_dir, domain_models.tokenizer_dir, lora=lora_settings, device="cpu")


def zh_histories(scenarios):
    """Chinese contexts whose hotel turn is Chinese too, so the policy answers in Chinese."""
    return [
        [
            Message(Role.SYSTEM, render_system_prompt(s)),
            Message(Role.AGENT, "您好，我是旅行平台的小李，想和您聊聊房价。"),
            Message(Role.HOTEL, "你好，请说，你们想要多少钱？"),
        ]
        for s in scenarios
    ]


def naive_text(tokenizer, ids) -> str:
    return tokenizer.decode(ids, skip_special_tokens=False)


def raw_bytes(tokenizer, ids) -> bytes:
    """The UTF-8 bytes byte-level BPE tokens stand for (GPT-2's byte <-> unicode table)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    to_byte = {c: b for b, c in bytes_to_unicode().items()}
    return bytes(to_byte[c] for t in tokenizer.convert_ids_to_tokens(list(ids)) for c in t)


# ---------------------------------------------------------------------------- decode_reply (pure)
def test_a_cut_reply_decodes_to_its_last_whole_character(domain_models):
    from repo_ray.model.loading import load_tokenizer

    tok = load_tokenizer(domain_models.tokenizer_dir)
    ids = tok.encode(ZH_REPLY, add_special_tokens=False)
    broken = 0
    for cut in range(1, len(ids)):
        text = decode_reply(tok, ids[:cut], truncated=True)
        naive = naive_text(tok, ids[:cut])
        broken += naive.endswith("\ufffd")
        assert not text.endswith("\ufffd") and ZH_REPLY.startswith(text)
        # exactly the whole characters among the sampled bytes: only the incomplete tail goes
        assert text == raw_bytes(tok, ids[:cut]).decode("utf-8", errors="ignore")
    assert broken >= 3  # byte-level BPE really does cut Chinese characters in half


def test_a_reply_that_stopped_keeps_its_broken_tail_for_format_breakage(domain_models):
    from repo_ray.model.loading import load_tokenizer

    tok = load_tokenizer(domain_models.tokenizer_dir)
    ids = tok.encode(ZH_REPLY, add_special_tokens=False)
    cut = next(c for c in range(1, len(ids)) if naive_text(tok, ids[:c]).endswith("\ufffd"))
    # the policy itself emitted half a character and then <|im_end|>: its breakage, kept visible
    assert decode_reply(tok, ids[:cut], truncated=False).endswith("\ufffd")


# ---------------------------------------------------------------------------- HF backend
def test_hf_replies_cut_by_a_tiny_budget_on_chinese_contexts_never_end_mid_character(backend, zh_scenarios):
    hs = zh_histories(zh_scenarios)
    im_end = backend.tokenizer.convert_tokens_to_ids(IM_END)
    cut, broken_naive = 0, 0
    for budget in (2, 3, 5):
        out = backend.generate(hs, SamplingSettings(max_new_tokens=budget, seed=budget), n=4)
        for g in (g for group in out for g in group):
            assert not g.text.endswith("\ufffd"), (budget, g.text)
            if g.truncated:
                cut += 1
                assert g.finish_reason == "length" and len(g.token_ids) == len(g.logprobs) == budget
                assert im_end not in g.token_ids  # the sampled tokens are kept whole, for training
                naive = naive_text(backend.tokenizer, g.token_ids)
                broken_naive += naive.endswith("\ufffd")
                assert naive.rstrip("\ufffd") == g.text
            else:
                assert g.token_ids[-1] == im_end
    assert cut >= 36 and broken_naive >= 3  # many cuts, some of them inside a character


def test_play_marks_cut_replies_truncated_and_keeps_their_tokens(backend, zh_scenarios):
    sampling = SamplingSettings(max_new_tokens=5, seed=3)
    result = play_negotiations(backend, zh_scenarios, [f"z{i}" for i in range(len(zh_scenarios))], sampling,
                               max_turns=2, max_prompt_tokens=4096, group_size=2)
    im_end = backend.tokenizer.convert_tokens_to_ids(IM_END)
    assert result.truncated == sum(t.truncated for t in result.trajectories) >= 1
    for t in result.trajectories:
        assert t.truncated == (t.response_token_ids[-1] != im_end)
        assert not t.response_text.endswith("\ufffd")
        if t.truncated:
            assert len(t.response_token_ids) == len(t.response_logprobs) == sum(t.response_mask) == 5
    # the dialogue goes on with the trimmed text: the hotel never reads half a character
    for ep in result.episodes:
        assert not any(m.text.endswith("\ufffd") for m in ep.transcript if m.role is Role.AGENT)


# ---------------------------------------------------------------------------- vLLM mapping
class _FakeLLM:
    """What vLLM's LLM.generate returns for one prompt, n = 2: one reply stopped on <|im_end|>,
    one cut at max_tokens inside a Chinese character."""

    def __init__(self, stopped_ids, cut_ids):
        self.children = [(stopped_ids, "stop"), (cut_ids, "length")]

    def generate(self, prompts, params, use_tqdm, lora_request):
        outs = [types.SimpleNamespace(index=i, token_ids=ids, finish_reason=reason,
                                      logprobs=[{t: types.SimpleNamespace(logprob=-0.5)} for t in ids])
                for i, (ids, reason) in enumerate(self.children)]
        return [types.SimpleNamespace(outputs=outs) for _ in prompts]


def test_vllm_finish_reason_length_is_a_truncated_reply_decoded_to_whole_characters(domain_models, monkeypatch):
    from repo_ray.model.loading import load_tokenizer
    from repo_ray.rollout.backend import stop_token_ids
    from repo_ray.rollout.vllm_backend import VLLMBackend

    # vllm lives in .venv-vllm only: stand in the two names generate() imports
    fake = types.ModuleType("vllm")
    fake.SamplingParams = lambda **kw: kw
    inputs = types.ModuleType("vllm.inputs")
    inputs.TokensPrompt = lambda prompt_token_ids: prompt_token_ids
    monkeypatch.setitem(sys.modules, "vllm", fake)
    monkeypatch.setitem(sys.modules, "vllm.inputs", inputs)

    tok = load_tokenizer(domain_models.tokenizer_dir)
    ids = tok.encode(ZH_REPLY, add_special_tokens=False)
    cut = next(c for c in range(1, len(ids)) if naive_text(tok, ids[:c]).endswith("\ufffd"))
    im_end = tok.convert_tokens_to_ids(IM_END)
    backend = VLLMBackend.__new__(VLLMBackend)
    backend._tokenizer, backend._stop_ids, backend._version, backend._lora = tok, stop_token_ids(tok), 0, None
    backend.logprobs_mode = "raw_logprobs"
    backend.llm = _FakeLLM(ids + [im_end], ids[:cut])

    (row,) = backend.generate([[Message(Role.SYSTEM, "s"), Message(Role.HOTEL, "你好")]], SamplingSettings(), n=2)
    stopped, truncated = row
    assert (stopped.finish_reason, stopped.truncated, stopped.text) == ("stop", False, ZH_REPLY)
    assert (truncated.finish_reason, truncated.truncated) == ("length", True)
    assert truncated.token_ids == ids[:cut] and not truncated.text.endswith("\ufffd")
    assert ZH_REPLY.startswith(truncated.text) and truncated.text


# ---------------------------------------------------------------------------- the demo's budget
def test_the_demo_budget_fits_all_but_2_percent_of_expert_replies_in_each_language():
    """Expert reply + <|im_end|> in tokens, under a tokenizer built like the demo's (its vocab
    size, trained on the demo's SFT dialogues, within 1-2 tokens of the full corpus's at p98),
    over held-out expert dialogues (a prefix the data files never use)."""
    from repo_ray.domain.datagen import _dialogues, sft_rows
    from repo_ray.model.chat import encode_response
    from repo_ray.model.tokenizer import train_tokenizer

    cfg = load_config(DEMO_CONFIG)
    d = cfg.data
    texts = [m["text"] for r in sft_rows(d.sft_dialogues, d.seed, d.zh_fraction, d.max_room_types)
             for m in r["messages"] if m["text"]]
    tok = train_tokenizer(texts, cfg.model.tiny.vocab_size)
    budget = cfg.rollout.max_new_tokens
    for lang, zh_fraction in (("en", 0.0), ("zh", 1.0)):
        lengths = [len(encode_response(tok, m.text))
                   for dialogue in itertools.islice(_dialogues("budget-probe", 7, zh_fraction, d.max_room_types), 80)
                   for m in dialogue.messages if m.role is Role.AGENT]
        assert len(lengths) >= 300
        longer = sum(n > budget for n in lengths) / len(lengths)
        assert longer <= 0.02, f"{lang}: {longer:.1%} of expert replies are longer than max_new_tokens {budget}"
    # every learner-side window holds a whole reply, and the model's positions a whole turn
    assert cfg.reward.model.max_tokens > budget and cfg.learner.dpo.max_tokens > budget
    assert cfg.rollout.max_prompt_tokens + budget <= cfg.model.tiny.max_position_embeddings
