"""Load tokenizers, policies and reward models from a local directory or a hub id.

The same calls load the tiny cached models and a real model (e.g. Qwen/Qwen3-32B). A
location that cannot be loaded is a `ModelLoadError` whose message is one line naming it,
instead of a hub 404 traceback for what was meant to be a local path.

Weights load from safetensors only (DESIGN.md §5): a pickle checkpoint (`.bin`, `.pt`) can
run code when it is loaded, so a directory holding only those is refused with a one-line
error, and transformers is told `use_safetensors=True` (hub ids included).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from repo_ray.config import ModelConfig
from repo_ray.errors import ModelLoadError
from repo_ray.model.cache import TinyModelPaths

Dtype = Literal["float32", "bfloat16", "float16"]
_DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _looks_local(location: str) -> bool:
    """A hub id is `name` or `org/name`; anything else is meant as a filesystem path."""
    return (
        location.startswith((".", "~", os.sep))
        or (os.altsep is not None and os.altsep in location)
        or location.count("/") > 1
        or location.endswith("/")
    )


def _check_location(location: str | os.PathLike) -> str:
    loc = os.fspath(location)
    if not loc:
        raise ModelLoadError("empty model location")
    path = Path(loc).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{loc}: not a directory")
        return str(path)
    if isinstance(location, Path) or _looks_local(loc):
        raise ModelLoadError(f"{loc}: no such model directory")
    return loc  # a hub id


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _load(what: str, location: str | os.PathLike, load, weights: bool = True):
    loc = _check_location(location)
    if weights:
        require_safetensors(loc, what.removeprefix("a "))
    try:
        return load(loc)
    except (OSError, ValueError, KeyError) as err:  # missing files, unknown hub repo, offline, bad config
        where = "directory" if Path(loc).exists() else "hub id (not a local directory)"
        raise ModelLoadError(f"{loc}: cannot load {what} from this {where}: {_first_line(err)}") from err


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


def require_safetensors(directory: str | os.PathLike, what: str = "model", required: str | None = None) -> None:
    """Refuse a local directory whose weights are pickle files only, or that lacks the
    `required` safetensors file (a hub id is left to `use_safetensors=True`; a directory with
    no weights at all to the loader's own error)."""
    d = Path(directory).expanduser()
    if not d.is_dir() or ((d / required).is_file() if required else any(d.glob("*.safetensors"))):
        return
    pickles = sorted(p.name for p in d.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles or required:
        if not pickles:
            raise ModelLoadError(f"{d}: no {required} (the {what} weights must be safetensors)")
        raise ModelLoadError(
            f"{d}: the {what} weights are pickle files ({', '.join(pickles[:3])}), not safetensors; repo-ray loads "
            "safetensors only (a pickle runs code when loaded): re-save them with save_pretrained in a trusted "
            "environment")


def torch_dtype(dtype: Dtype | str) -> torch.dtype:
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}") from None


def load_tokenizer(path_or_id: str | os.PathLike, trust_remote_code: bool = False):
    """The tokenizer at a local directory or hub id (fast tokenizer, chat template included)."""
    return _load(
        "a tokenizer", path_or_id, lambda loc: AutoTokenizer.from_pretrained(loc, trust_remote_code=trust_remote_code),
        weights=False,
    )


def checkpointed(model: torch.nn.Module, on: bool) -> torch.nn.Module:
    """`model` (an HF PreTrainedModel) with gradient checkpointing when `on`: each block's
    activations are recomputed in the backward pass instead of kept (non-reentrant, so LoRA's
    trainable weights inside a frozen base get their gradients without input hooks)."""
    if on:  # transformers >= 5.23 (pyproject): activation_checkpointing_* replaced gradient_checkpointing_*
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model


def load_policy(
    path_or_id: str | os.PathLike,
    dtype: Dtype = "float32",
    device: str = "cpu",
    trust_remote_code: bool = False,
):
    """A causal LM in eval mode with weights in `dtype`, placed on `device`."""
    dt = torch_dtype(dtype)
    return _load(
        "a causal LM",
        path_or_id,
        lambda loc: AutoModelForCausalLM.from_pretrained(
            loc, dtype=dt, device_map=device, trust_remote_code=trust_remote_code, use_safetensors=True
        ).eval(),
    )


def load_reward_model(
    path_or_id: str | os.PathLike,
    dtype: Dtype = "float32",
    device: str = "cpu",
    trust_remote_code: bool = False,
    pad_token_id: int | None = None,
):
    """A sequence classifier with one label (a scalar score per sequence) in eval mode.

    From a causal-LM checkpoint (e.g. the SFT model) the `score` head is freshly
    initialised: that is the start of reward-model training. `pad_token_id` (default: the
    checkpoint's) lets the model find each row's last non-pad token in a padded batch.
    """
    dt = torch_dtype(dtype)

    def load(loc: str):
        kwargs = {"pad_token_id": pad_token_id} if pad_token_id is not None else {}
        return AutoModelForSequenceClassification.from_pretrained(
            loc, num_labels=1, dtype=dt, device_map=device, trust_remote_code=trust_remote_code,
            use_safetensors=True, **kwargs
        ).eval()

    return _load("a reward model", path_or_id, load)


def max_positions(path_or_id: str | os.PathLike, trust_remote_code: bool = False) -> int | None:
    """The model's `max_position_embeddings` (its text config's, for a multimodal one), or
    None when the config has no such figure or cannot be read here (then nothing is clamped)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(os.fspath(path_or_id), trust_remote_code=trust_remote_code)
    except (OSError, ValueError, KeyError):
        return None
    value = getattr(config.get_text_config(), "max_position_embeddings", None)
    return int(value) if isinstance(value, int) and value > 0 else None


def resolve_base(model_cfg: ModelConfig, tiny_paths: TinyModelPaths | None) -> tuple[str, str]:
    """(tokenizer location, policy location) the run starts from: `model.path` (and
    `model.tokenizer_path`) when set, else the tiny models built by `ensure_tiny_models`."""
    if model_cfg.path is not None:
        return model_cfg.tokenizer_path or model_cfg.path, model_cfg.path
    if tiny_paths is None:
        raise ValueError("model.path is null, so the tiny models must be built first (ensure_tiny_models)")
    tokenizer = model_cfg.tokenizer_path or str(tiny_paths.tokenizer_dir)
    return tokenizer, str(tiny_paths.policy_dir)
