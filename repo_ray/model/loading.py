"""Load tokenizers, policies and reward models from a local directory or a hub id.

The same calls load the tiny cached models and a real model (e.g. Qwen/Qwen3-32B). A
location that cannot be loaded is a `ModelLoadError` whose message is one line naming it,
instead of a hub 404 traceback for what was meant to be a local path.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

from repo_ray.config import ModelConfig
from repo_ray.model.cache import TinyModelPaths
from repo_ray.errors import ModelLoadError

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


def _load(what: str, location: str | os.PathLike, load):
    loc = _check_location(location)
    try:
        return load(loc)
    except (OSError, ValueError, KeyError) as err:  # missing files, unknown hub repo, offline, bad config
        where = "directory" if Path(loc).exists() else "hub id (not a local directory)"
        raise ModelLoadError(f"{loc}: cannot load {what} from this {where}: {_first_line(err)}") from err


def torch_dtype(dtype: Dtype | str) -> torch.dtype:
    try:
        return _DTYPES[dtype]
    except KeyError:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {sorted(_DTYPES)}") from None


def load_tokenizer(path_or_id: str | os.PathLike, trust_remote_code: bool = False):
    """The tokenizer at a local directory or hub id (fast tokenizer, chat template included)."""
    return _load(
        "a tokenizer", path_or_id, lambda loc: AutoTokenizer.from_pretrained(loc, trust_remote_code=trust_remote_code)
    )


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
            loc, dtype=dt, device_map=device, trust_remote_code=trust_remote_code
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
            loc, num_labels=1, dtype=dt, device_map=device, trust_remote_code=trust_remote_code, **kwargs
        ).eval()

    return _load("a reward model", path_or_id, load)


def resolve_base(model_cfg: ModelConfig, tiny_paths: TinyModelPaths | None) -> tuple[str, str]:
    """(tokenizer location, policy location) the run starts from: `model.path` (and
    `model.tokenizer_path`) when set, else the tiny models built by `ensure_tiny_models`."""
    if model_cfg.path is not None:
        return model_cfg.tokenizer_path or model_cfg.path, model_cfg.path
    if tiny_paths is None:
        raise ValueError("model.path is null, so the tiny models must be built first (ensure_tiny_models)")
    tokenizer = model_cfg.tokenizer_path or str(tiny_paths.tokenizer_dir)
    return tokenizer, str(tiny_paths.policy_dir)
