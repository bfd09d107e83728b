"""Adapter round trip learner -> worker through AdapterUpdate, with verification."""

import dataclasses

import pytest
import torch
from peft import TaskType

from repo_ray.config import LoraSettings
from repo_ray.model import add_lora, load_policy
from repo_ray.model.adapters import build_adapter_update, load_adapter_update, probe_logprob, write_adapter_dir
from repo_ray.types import AdapterVerificationError

LORA = LoraSettings(r=4, alpha=8)


def lora_policy(tiny_paths, seed):
    model = add_lora(load_policy(tiny_paths.policy_dir), LORA, TaskType.CAUSAL_LM)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


def test_round_trip_matches_probe_and_checksum(tiny_paths, tmp_path):
    learner = lora_policy(tiny_paths, seed=1)
    worker = lora_policy(tiny_paths, seed=2)
    probe = [5, 17, 42, 99, 7, 3]
    update = build_adapter_update(learner, version=3, probe_token_ids=probe)
    assert probe_logprob(worker, probe) != pytest.approx(update.probe_logprob, abs=1e-4)
    ack = load_adapter_update(worker, update, "w0")
    update.verify_ack(ack, logprob_tolerance=1e-6)
    assert ack.probe_logprob == pytest.approx(update.probe_logprob, abs=1e-9)
    d = write_adapter_dir(update, tmp_path / "v3")
    assert sorted(p.name for p in d.iterdir()) == ["adapter_config.json", "adapter_model.safetensors"]


def test_corrupted_bytes_are_caught_and_name_the_worker(tiny_paths):
    learner = lora_policy(tiny_paths, seed=1)
    worker = lora_policy(tiny_paths, seed=2)
    update = build_adapter_update(learner, version=1, probe_token_ids=[5, 6, 7, 8])
    blob = bytearray(update.tensors)
    blob[-3] ^= 0xFF  # flips bits inside the last tensor's data
    corrupted = object.__new__(type(update))  # as if deserialised: no __post_init__
    for f in dataclasses.fields(update):
        object.__setattr__(corrupted, f.name, getattr(update, f.name))
    object.__setattr__(corrupted, "tensors", bytes(blob))
    ack = load_adapter_update(worker, corrupted, "rollout-7")
    with pytest.raises(AdapterVerificationError, match="worker rollout-7: adapter v1 checksum"):
        update.verify_ack(ack, 1e-6)
