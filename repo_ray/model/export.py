"""LoRA on a model, and merging a trained adapter into its base (e.g. SFT -> RUN/sft/model).

Everything written is safetensors; a merged model is written into a temporary directory
and renamed into place, so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from peft import LoraConfig, PeftConfig, PeftModel, TaskType, get_peft_model
from torch import nn

from repo_ray.config import LoraSettings
from repo_ray.model.loading import (
    Dtype,
    ModelLoadError,
    load_policy,
    load_reward_model,
    load_tokenizer,
    require_safetensors,
)
from repo_ray.errors import LoraTargetError

log = logging.getLogger(__name__)

# What a tokenizer directory may hold (transformers 4 and 5 layouts).
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
)


def _leaf_matches(module_name: str, target: str) -> bool:
    return module_name == target or module_name.endswith("." + target)


def add_lora(model: nn.Module, lora: LoraSettings, task_type: TaskType | str) -> PeftModel:
    """Wrap `model` with fresh LoRA adapters on the configured target modules.

    Targets missing from this architecture are skipped (logged); none matching is a
    `LoraTargetError` listing the linear layers the model does have.
    """
    names = [name for name, _ in model.named_modules()]
    matched = [t for t in lora.target_modules if any(_leaf_matches(n, t) for n in names)]
    if not matched:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise LoraTargetError(
            f"learner.lora.target_modules {lora.target_modules} match no module of {type(model).__name__}; "
            f"its linear layers are {linear}"
        )
    missing = [t for t in lora.target_modules if t not in matched]
    if missing:
        log.warning("LoRA targets %s not in %s; adapting %s", missing, type(model).__name__, matched)
    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=matched,
        task_type=TaskType(task_type),
    )
    return get_peft_model(model, config)


def _has_tokenizer(directory: Path) -> bool:
    return (directory / "tokenizer_config.json").is_file() or (directory / "tokenizer.json").is_file()


def _copy_tokenizer(adapter_dir: Path, base: str, out: Path) -> None:
    for directory in (adapter_dir, Path(base).expanduser()):
        if directory.is_dir() and _has_tokenizer(directory):
            for name in TOKENIZER_FILES:
                if (directory / name).is_file():
                    shutil.copy2(directory / name, out / name)
            return
    if not Path(base).expanduser().exists():  # a hub id: save its tokenizer, if it has one
        try:
            load_tokenizer(base).save_pretrained(str(out))
        except ModelLoadError as err:
            log.warning("no tokenizer copied into %s: %s", out, err)


def _replace_dir(tmp: Path, out: Path) -> None:
    """Move the finished `tmp` to `out`, replacing an older `out` (never a partial one)."""
    if not out.exists():
        os.rename(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.rename(out, old / out.name)
    os.rename(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def merge_adapter(
    base_path: str | os.PathLike, adapter_path: str | os.PathLike, out_dir: str | os.PathLike, dtype: Dtype = "float32"
) -> Path:
    """Load base + peft adapter, fold the adapter into the weights and save a plain model.

    The model class follows the adapter's task type (CAUSAL_LM: causal LM, SEQ_CLS: a
    one-label reward model). The tokenizer is copied from the adapter directory if it has
    one, else from the base. Returns `out_dir`.
    """
    adapter_dir = Path(adapter_path).expanduser()
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ModelLoadError(f"{adapter_path}: no adapter_config.json (not a peft adapter directory)")
    # peft falls back to torch.load on adapter_model.bin when the safetensors file is absent
    require_safetensors(adapter_dir, "adapter", required="adapter_model.safetensors")
    task_type = PeftConfig.from_pretrained(str(adapter_dir)).task_type
    if task_type == TaskType.SEQ_CLS:
        base = load_reward_model(base_path, dtype=dtype)
    elif task_type in (TaskType.CAUSAL_LM, None):
        base = load_policy(base_path, dtype=dtype)
    else:
        raise ModelLoadError(f"{adapter_path}: adapter task type {task_type} is neither CAUSAL_LM nor SEQ_CLS")
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()

    out = Path(out_dir).expanduser().resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        merged.save_pretrained(str(tmp))  # transformers 5 writes safetensors only
        _copy_tokenizer(adapter_dir, os.fspath(base_path), tmp)
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
