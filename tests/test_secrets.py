"""Untrusted bytes in (issue 15 item 5, the parts that need no Ray; the run-level checks are in
tests/pipeline/test_secrets.py): a judge answer is read only up to its cap and never parsed
past it; weights and adapters load only from safetensors, a pickle checkpoint is refused in
one line before anything unpickles it."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import torch

from repo_ray.domain.rubric import DEFAULT_JUDGE_WEIGHTS
from repo_ray.errors import ModelLoadError
from repo_ray.types import SourceStatus
from reward_actors.judge import client as judge_client
from reward_actors.judge.client import MAX_ANSWER_BYTES, JudgeClient
from tests.reward_actors.judge_tests.judge_helpers import context, judge_cfg

CHUNK = 64 * 1024


class EndlessAnswer(httpx.AsyncByteStream):
    """A 200 answer that would go on for `total` bytes; counts what the client pulled."""

    def __init__(self, total: int) -> None:
        self.total, self.sent = total, 0

    async def __aiter__(self):
        yield b'{"choices": [{"message": {"content": "'
        while self.sent < self.total:
            self.sent += CHUNK
            yield b"x" * CHUNK

    async def aclose(self) -> None:
        pass


def score_with(handler):
    async def go():
        async with JudgeClient(judge_cfg("http://judge.test/v1", max_retries=3), DEFAULT_JUDGE_WEIGHTS,
                               transport=httpx.MockTransport(handler)) as judge:
            return await judge.score(context("Could you adjust the Deluxe King to ¥800?"))
    return asyncio.run(go())


def test_a_huge_judge_answer_is_cut_at_the_cap_and_never_parsed(monkeypatch):
    stream = EndlessAnswer(100 << 20)  # 100 MB
    calls, parsed = [], []
    monkeypatch.setattr(judge_client, "parse_judge_answer", lambda *a, **k: parsed.append(a))

    def handler(request):
        calls.append(request)
        return httpx.Response(200, stream=stream, headers={"content-type": "application/json"})

    r = score_with(handler)
    assert r.status is SourceStatus.INVALID_OUTPUT and r.score is None
    assert f"longer than {MAX_ANSWER_BYTES:,} bytes" in r.detail
    assert stream.sent <= MAX_ANSWER_BYTES + 2 * CHUNK  # reading stopped at the cap, not at 100 MB
    assert parsed == [] and len(calls) == 1  # not parsed, and an invalid answer is not retried


def test_a_declared_oversize_body_is_refused_before_reading():
    stream = EndlessAnswer(10 << 20)
    r = score_with(lambda request: httpx.Response(
        200, stream=stream, headers={"content-length": str(10 << 20), "content-type": "application/json"}))
    assert r.status is SourceStatus.INVALID_OUTPUT and stream.sent == 0


def test_an_answer_under_the_cap_is_parsed(monkeypatch):
    parsed = []

    def parse(content, *args, **kwargs):
        parsed.append(content)
        raise judge_client.InvalidJudgeOutput("stub")

    monkeypatch.setattr(judge_client, "parse_judge_answer", parse)
    content = "y" * (MAX_ANSWER_BYTES // 2)
    body = {"choices": [{"message": {"content": content}}], "usage": {"total_tokens": 10}}
    r = score_with(lambda request: httpx.Response(200, json=body))
    assert parsed == [content] and r.detail == "stub"


# ---------------------------------------------------------------------------- safetensors only
@pytest.fixture
def pickle_model_dir(tmp_path):
    """A tiny causal LM saved normally, then with its safetensors replaced by a pickle."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    cfg = Qwen3Config(vocab_size=300, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                      num_key_value_heads=1, head_dim=16, intermediate_size=64)
    model = Qwen3ForCausalLM(cfg)
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    return tmp_path


def test_a_pickle_only_model_directory_is_refused_in_one_line(pickle_model_dir, monkeypatch):
    from repo_ray.model import loading

    unpickled = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: unpickled.append(a))
    for load in (loading.load_policy, loading.load_reward_model):
        with pytest.raises(ModelLoadError) as err:
            load(pickle_model_dir)
        msg = str(err.value)
        assert "\n" not in msg and str(pickle_model_dir) in msg
        assert "pytorch_model.bin" in msg and "safetensors only" in msg
    assert unpickled == []


def test_a_pickle_adapter_is_refused_before_peft_loads_it(tmp_path, pickle_model_dir):
    from repo_ray.model.export import merge_adapter

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "task_type": "CAUSAL_LM",
                                                              "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"]}))
    torch.save({}, adapter / "adapter_model.bin")
    with pytest.raises(ModelLoadError, match="adapter_model.bin.*safetensors only"):
        merge_adapter(pickle_model_dir, adapter, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_transformers_is_told_safetensors_for_hub_ids_too(monkeypatch):
    from repo_ray.model import loading

    seen = {}

    def fake(loc, **kwargs):
        seen.update(kwargs)
        raise OSError("offline")

    monkeypatch.setattr(loading.AutoModelForCausalLM, "from_pretrained", fake)
    with pytest.raises(ModelLoadError):
        loading.load_policy("some-org/some-model")
    assert seen.get("use_safetensors") is True
