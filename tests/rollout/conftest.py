"""Rollout test fixtures: the balanced-persona evaluation scenarios, HF backends on the tiny
domain policy, and learner-side LoRA adapters built the way the learner builds them.

Imports of torch/peft/ray stay inside the fixtures: the vllm tests load this conftest in
.venv-vllm, which has no Ray.
"""

from __future__ import annotations

import pytest

LORA_R, LORA_ALPHA = 8, 16  # 8: the smallest rank vLLM accepts besides 1


@pytest.fixture(scope="session")
def lora_settings():
    from repo_ray.config import LoraSettings

    return LoraSettings(r=LORA_R, alpha=LORA_ALPHA)


@pytest.fixture(scope="session")
def persona_scenarios(data_dir):
    """Six evaluation scenarios, one per persona (the eval file cycles through them)."""
    from repo_ray.domain.schemas import load_rows

    return load_rows("eval", data_dir).rows[:6]


@pytest.fixture
def make_hf_backend(domain_models, lora_settings):
    """A fresh HFBackend per call (loading the tiny policy takes well under a second)."""
    from repo_ray.rollout.hf import HFBackend

    def make():
        return HFBackend(domain_models.policy_dir, domain_models.tokenizer_dir, lora=lora_settings, device="cpu")

    return make


def make_adapter_update(policy_dir, lora_settings, version: int, seed: int, scale: float = 0.5):
    """What learner rank 0 publishes: base + LoRA with random (non-zero) B, as an AdapterUpdate."""
    import torch
    from peft import TaskType

    from repo_ray.model import add_lora, load_policy
    from repo_ray.model.adapters import build_adapter_update

    model = add_lora(load_policy(policy_dir), lora_settings, TaskType.CAUSAL_LM)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return build_adapter_update(model, version=version, probe_token_ids=[1, 40, 77, 120, 250, 31, 9, 2])
