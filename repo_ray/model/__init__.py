"""Tokenizer and tiny model builders, model/adapter loading and export (DESIGN.md §5, §6)."""

from repo_ray.model.cache import FORMAT_VERSION, TinyModelPaths, ensure_tiny_models, tiny_cache_key
from repo_ray.model.chat import (
    CHATML_ROLES,
    CHATML_TEMPLATE,
    ENDOFTEXT,
    IM_END,
    IM_START,
    SPECIAL_TOKENS,
    encode_prompt,
    encode_response,
    to_chat_messages,
)
from repo_ray.model.export import LoraTargetError, add_lora, merge_adapter
from repo_ray.model.loading import (
    ModelLoadError,
    load_policy,
    load_reward_model,
    load_tokenizer,
    resolve_base,
    torch_dtype,
)
from repo_ray.model.tiny import build_tiny_policy, build_tiny_reward_model, tiny_qwen3_config
from repo_ray.model.tokenizer import save_tokenizer, train_tokenizer

__all__ = [
    "CHATML_ROLES",
    "CHATML_TEMPLATE",
    "ENDOFTEXT",
    "FORMAT_VERSION",
    "IM_END",
    "IM_START",
    "SPECIAL_TOKENS",
    "LoraTargetError",
    "ModelLoadError",
    "TinyModelPaths",
    "add_lora",
    "build_tiny_policy",
    "build_tiny_reward_model",
    "encode_prompt",
    "encode_response",
    "ensure_tiny_models",
    "load_policy",
    "load_reward_model",
    "load_tokenizer",
    "merge_adapter",
    "resolve_base",
    "save_tokenizer",
    "tiny_cache_key",
    "tiny_qwen3_config",
    "to_chat_messages",
    "torch_dtype",
    "train_tokenizer",
]
