"""LoRA adapters as `AdapterUpdate`s: serialise on the learner, load and verify on workers.

Both sides compute the probe logprob with `probe_logprob`, so a worker whose loaded
weights differ from the learner's (stale, corrupted, wrong base) is caught by value, not
just by checksum. Tensors travel as safetensors bytes only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel, get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from repo_ray.atomic import atomic_write_bytes, atomic_write_text
from repo_ray.types import AdapterAck, AdapterUpdate, AdapterVerificationError

ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset, tuple, list)):
        return [_jsonable(v) for v in (sorted(value) if isinstance(value, (set, frozenset)) else value)]
    if hasattr(value, "value") and not isinstance(value, (str, int, float, bool)):  # enums
        return value.value
    return value


def peft_config_dict(model: PeftModel, adapter_name: str = "default") -> dict[str, Any]:
    """adapter_config.json content of an adapter (what vLLM's LoRARequest reads)."""
    return _jsonable(model.peft_config[adapter_name].to_dict())


def adapter_bytes(model: PeftModel, adapter_name: str = "default") -> bytes:
    state = get_peft_model_state_dict(model, adapter_name=adapter_name)
    return st_save({k: v.detach().to("cpu").contiguous() for k, v in state.items()})


@torch.no_grad()
def probe_logprob(model: torch.nn.Module, probe_token_ids: list[int] | tuple[int, ...]) -> float:
    """Sum of log p(t_i | t_<i) for i >= 1 under the model, in float64."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        ids = torch.tensor([list(probe_token_ids)], device=device)
        logits = model(input_ids=ids).logits[:, :-1].double()
        logp = torch.log_softmax(logits, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        return float(logp.sum())
    finally:
        model.train(was_training)


def build_adapter_update(model: PeftModel, version: int, probe_token_ids: list[int]) -> AdapterUpdate:
    """The learner side: one AdapterUpdate for the model's current adapter weights."""
    return AdapterUpdate.build(
        version=version,
        tensors=adapter_bytes(model),
        peft_config=peft_config_dict(model),
        probe_token_ids=probe_token_ids,
        probe_logprob=probe_logprob(model, probe_token_ids),
    )


def load_adapter_update(model: PeftModel, update: AdapterUpdate, worker_id: str) -> AdapterAck:
    """The worker side: load the tensors into the model's adapter and answer what it holds.

    The checksum is recomputed over the bytes actually received (an object deserialised by
    Ray skips the dataclass's own validation)."""
    received = hashlib.sha256(update.tensors).hexdigest()
    try:
        state = st_load(update.tensors)
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise AdapterVerificationError(
            f"worker {worker_id}: adapter v{update.version} is not valid safetensors ({err})"
        ) from err
    result = set_peft_model_state_dict(model, state)
    unexpected = getattr(result, "unexpected_keys", None) or []
    if unexpected:
        raise AdapterVerificationError(
            f"worker {worker_id}: adapter v{update.version} has {len(unexpected)} tensors the model lacks "
            f"(e.g. {unexpected[0]})"
        )
    return AdapterAck(worker_id, update.version, received, probe_logprob(model, update.probe_token_ids))


def write_adapter_dir(update: AdapterUpdate, directory: Path) -> Path:
    """An adapter directory (safetensors + adapter_config.json) for vLLM or peft to load."""
    directory.mkdir(parents=True, exist_ok=True)
    # weights first, config last: a directory with adapter_config.json holds whole weights
    atomic_write_bytes(directory / ADAPTER_WEIGHTS, update.tensors)
    atomic_write_text(directory / ADAPTER_CONFIG, json.dumps(update.peft_config, indent=2))
    return directory
