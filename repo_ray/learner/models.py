"""The learner's trainable models: policy = base + LoRA; value = base body + its own LoRA + a scalar head.

The reference for KL (logged in every RL mode, penalised in ppo) and for DPO is the
policy with its adapter disabled: the base the learner loads IS the SFT-merged model
(DESIGN.md §6), so no second copy of it is kept. The value model is a separate module
(its own copy of the base body, its own LoRA, its own optimizer and learning rate),
like OpenRLHF's critic, so its gradients never share a clipping norm with the policy's.
"""

from __future__ import annotations

import os

import torch
from peft import PeftModel, TaskType
from torch import nn

from repo_ray.config import LoraSettings
from repo_ray.model.export import add_lora
from repo_ray.model.loading import Dtype, checkpointed, load_policy


def _seeded_lora(model: nn.Module, lora: LoraSettings, task: TaskType, seed: int) -> PeftModel:
    # Every rank must start from the same LoRA A matrices; the seed makes that so without
    # relying on a broadcast (and keeps the caller's RNG stream untouched).
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return add_lora(model, lora, task)


def build_policy(base_path: str | os.PathLike, lora: LoraSettings, dtype: Dtype = "float32",
                 device: str = "cpu", seed: int = 0, gradient_checkpointing: bool = False) -> PeftModel:
    """Base causal LM + fresh LoRA (B = 0, so it starts equal to the base). peft keeps the
    adapter in float32 even on a bf16 base (autocast_adapter_dtype)."""
    base = checkpointed(load_policy(base_path, dtype=dtype, device=device), gradient_checkpointing)
    model = _seeded_lora(base, lora, TaskType.CAUSAL_LM, seed)
    model.train()
    return model


class ValueModel(nn.Module):
    """V(s_t) for every position: the base transformer body with LoRA, then Linear(hidden, 1).

    The head starts at zero (weight and bias), so V = 0 everywhere at init: the first
    advantages are the plain discounted rewards, and the body's LoRA only starts moving
    once the head has learnt a direction (a random head would inject noise into the
    first advantages instead; bench/credit_assignment.py measured no gain from a small
    random head, so the deterministic zero start stays)."""

    def __init__(self, body: PeftModel, hidden_size: int):
        super().__init__()
        self.body = body
        self.head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                position_ids: torch.Tensor | None = None) -> torch.Tensor:
        """[B, L] token ids -> [B, L] values (float32)."""
        hidden = self.body(input_ids=input_ids, attention_mask=attention_mask,
                           position_ids=position_ids).last_hidden_state
        return self.head(hidden.to(self.head.weight.dtype)).squeeze(-1)


def build_value_model(base_path: str | os.PathLike, lora: LoraSettings, dtype: Dtype = "float32",
                      device: str = "cpu", seed: int = 0, gradient_checkpointing: bool = False) -> ValueModel:
    causal = load_policy(base_path, dtype=dtype, device=device)
    # the transformer without its LM head (Qwen3Model, LlamaModel, ...)
    body = checkpointed(causal.base_model, gradient_checkpointing)
    hidden = causal.config.get_text_config().hidden_size
    model = ValueModel(_seeded_lora(body, lora, TaskType.FEATURE_EXTRACTION, seed + 1), hidden)
    model.head.to(device)
    model.train()
    return model


def trainable_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters() if p.requires_grad]


def trainable_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """Name -> detached CPU copy of every trainable tensor (LoRA weights, value head)."""
    return {n: p.detach().to("cpu").clone() for n, p in module.named_parameters() if p.requires_grad}


def load_trainable_state(module: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy `trainable_state` tensors back in; every trainable tensor must be present."""
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    missing = sorted(set(params) - set(state))
    unexpected = sorted(set(state) - set(params))
    if missing or unexpected:
        raise ValueError(f"trainable state mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(state[name].to(p.device, p.dtype))
