"""LoRA on a model, merging a trained adapter into its base (e.g. SFT -> RUN/sft/model), and
exporting a run's policy (`repo-ray export`: merged model or adapter, tokenizer, model card).

Everything written is safetensors; a merged model is written into a temporary directory
and renamed into place, so a crash never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peft import LoraConfig, PeftConfig, PeftModel, TaskType, get_peft_model
from torch import nn

from repo_ray.config import LoraSettings
from repo_ray.errors import LoraTargetError
from repo_ray.model.loading import (
    Dtype,
    ModelLoadError,
    load_policy,
    load_reward_model,
    load_tokenizer,
    require_safetensors,
)

log = logging.getLogger(__name__)

ADAPTER_CONFIG_FILE = "adapter_config.json"  # peft's names (repo_ray/model/adapters.py writes them)
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"

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


# Heads that are not LoRA targets under "auto": the LM head, and the classifier heads peft
# trains whole (modules_to_save) for SEQ_CLS.
_HEAD_NAMES = frozenset({"lm_head", "score", "classifier", "v_head", "embed_out", "output"})


def linear_targets(model: nn.Module) -> list[str]:
    """Leaf names of the model's linear layers, its output and score heads left out: what
    `target_modules: auto` adapts (Qwen3 / Llama: q,k,v,o,gate,up,down_proj; GPT-2: c_attn,
    c_proj, c_fc are Conv1D and not covered, so name them)."""
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules()
                   if isinstance(m, nn.Linear) and m is not out_emb and name.rsplit(".", 1)[-1] not in _HEAD_NAMES})


def add_lora(model: nn.Module, lora: LoraSettings, task_type: TaskType | str) -> PeftModel:
    """Wrap `model` with fresh LoRA adapters on the configured target modules (`auto`: every
    linear layer of its blocks, `linear_targets`).

    Targets missing from this architecture are skipped (logged); none matching is a
    `LoraTargetError` listing the linear layers the model does have.
    """
    targets = linear_targets(model) if lora.target_modules == "auto" else list(lora.target_modules)
    names = [name for name, _ in model.named_modules()]
    matched = [t for t in targets if any(_leaf_matches(n, t) for n in names)]
    if not matched:
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise LoraTargetError(
            f"learner.lora.target_modules {lora.target_modules} match no module of {type(model).__name__}; "
            f"its linear layers are {linear}"
        )
    missing = [t for t in targets if t not in matched]
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


# ---------------------------------------------------------------------------- `repo-ray export`
class ExportError(ModelLoadError):
    """The run directory holds no policy to export (as asked)."""


# The evaluation table of the model card: eval.json metric -> column (DESIGN.md §4's headline figures).
CARD_METRICS = (("rating", "rating 1-5"), ("excellent_share", "≥1 excellent"), ("task_success", "task success"),
                ("response_rate", "response rate"), ("bad_case.clean_fix", "bad-case clean fix"),
                ("bad_case.severe_unresolved", "severe unresolved"), ("judge_score", "eval-judge score"))


@dataclass(frozen=True)
class ExportResult:
    """What `repo-ray export` wrote: `out` holds the model (merged: safetensors weights; adapter:
    a peft adapter directory), the tokenizer with its chat template, and the model card README.md."""

    out: Path
    kind: str  # "merged" or "adapter"
    step: int | None  # the RL step exported (None: unknown, e.g. a run without checkpoints)
    base: Path  # the SFT model the adapter sits on
    adapter: Path  # the adapter directory exported or merged


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def run_policy(run_dir: str | os.PathLike, step: int | None = None) -> tuple[Path, Path, int | None]:
    """(SFT model, policy adapter dir, RL step) of a run: the final adapter (RUN/rl/final_adapter),
    or the checkpoint of `step` (RUN/rl/checkpoints/step-NNNNNN/policy). Raises ExportError
    naming what is missing."""
    root = Path(run_dir).expanduser()
    if not root.is_dir():
        raise ExportError(f"{root}: run directory not found")
    base = root / "sft" / "model"
    if not (base / "config.json").is_file():
        raise ExportError(f"{base}: no SFT model (the RL policy's base); run `repo-ray train` first")
    checkpoints = root / "rl" / "checkpoints"
    if step is None:
        adapter = root / "rl" / "final_adapter"
        if not (adapter / ADAPTER_CONFIG_FILE).is_file():
            raise ExportError(f"{adapter}: no final adapter (the RL stage made no step); pick --step of a checkpoint")
        latest = _read_json(checkpoints / "latest.json") or {}
        return base, adapter, latest.get("step")
    adapter = checkpoints / f"step-{step:06d}" / "policy"
    if not (adapter / ADAPTER_CONFIG_FILE).is_file():
        have = sorted(int(p.name[5:]) for p in checkpoints.glob("step-*") if (p / "policy").is_dir()) \
            if checkpoints.is_dir() else []
        raise ExportError(f"{checkpoints}: no checkpoint of step {step}; checkpointed steps: {have or 'none'}")
    return base, adapter, step


def model_card(run_dir: Path, kind: str, step: int | None, adapter: Path) -> str:
    """README.md of an export: base model, method, data, steps, the evaluation table (RUN/eval.json)."""
    manifest = _read_json(run_dir / "manifest.json") or {}
    cfg = manifest.get("config", {})
    model, data, learner = cfg.get("model", {}), cfg.get("data", {}), cfg.get("learner", {})
    lora = learner.get("lora", {})
    algorithm = learner.get("algorithm", "repo")
    base = model.get("path") or "a tiny Qwen3 built locally from the run's data (model.tiny)"
    source = data["dir"] if data.get("dir") else f"generated (seed {data.get('seed', 0)})"
    where = adapter.relative_to(run_dir) if adapter.is_relative_to(run_dir) else adapter
    git = f", git {manifest['git_sha'][:12]}" if manifest.get("git_sha") else ""
    sizes = ", ".join(f"{k} {data[k]}" for k in ("sft_dialogues", "preference_pairs", "rl_scenarios",
                                                 "eval_dialogues", "bad_cases") if k in data)
    lines = [
        f"# {cfg.get('name', 'repo-ray')} policy ({algorithm}, {kind})", "",
        "A hotel price-negotiation agent trained with repo-ray (REPO: Reward-Enhanced Policy Optimization, "
        "arXiv 2510.04214).", "",
        f"- **Base model**: {base}, SFT on expert dialogues and merged (the RL base, `RUN/sft/model`)",
        f"- **Method**: {algorithm} with LoRA r={lora.get('r', '?')}, alpha={lora.get('alpha', '?')}"
        + ("; merged into the weights" if kind == "merged" else "; a peft adapter on the SFT model"),
        f"- **Data**: {source}" + (f": {sizes}" if sizes else ""),
        f"- **RL steps**: {step if step is not None else 'unknown'} "
        f"(batch {learner.get('batch_size', '?')} agent turns)",
        f"- **Source**: `{run_dir}` (adapter `{where}`){git}",
        "- **Chat template**: ChatML, in the tokenizer files (`tokenizer.apply_chat_template`)", "",
    ]
    evals = _read_json(run_dir / "eval.json")
    if isinstance(evals, dict) and evals:
        lines += ["## Evaluation (RUN/eval.json: held-out dialogues and bad cases, evaluation judge + rules)", "",
                  "| policy | " + " | ".join(c for _, c in CARD_METRICS) + " |",
                  "|---" * (len(CARD_METRICS) + 1) + "|"]
        for name, ev in evals.items():
            est = (ev.get("metrics") or {}).get("estimates", {})
            cells = []
            for key, _ in CARD_METRICS:
                v = (est.get(key) or {}).get("value")
                cells.append("–" if v is None else f"{v:.2f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    else:
        lines += ["No evaluation found (RUN/eval.json): `repo-ray train` without --no-eval writes it.", ""]
    if kind == "merged":
        lines += ["Load: `AutoModelForCausalLM.from_pretrained(DIR)`, `AutoTokenizer.from_pretrained(DIR)`.", ""]
    else:
        lines += ["Load: `PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), DIR)` with BASE "
                  "the SFT model named in adapter_config.json's base_model_name_or_path; vLLM: "
                  "`LoRARequest(name, 1, DIR)`.", ""]
    return "\n".join(lines)


def export_policy(run_dir: str | os.PathLike, out_dir: str | os.PathLike, kind: str = "merged",
                  step: int | None = None) -> ExportResult:
    """`repo-ray export`: the run's policy (final, or checkpoint `step`) as a merged HF model in
    safetensors or as a peft adapter directory, with the tokenizer (chat template) and a model
    card. Written to a temporary directory and renamed into place."""
    if kind not in ("merged", "adapter"):
        raise ValueError(f"kind {kind!r}: expected 'merged' or 'adapter'")
    root = Path(run_dir).expanduser().resolve()
    base, adapter, step = run_policy(root, step)
    out = Path(out_dir).expanduser().resolve()
    if out == root or out.is_relative_to(root / "rl") or out.is_relative_to(root / "sft"):
        raise ExportError(f"{out}: would overwrite the run's own files; export outside RUN/rl and RUN/sft")
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "merged":
        merge_adapter(base, adapter, out)
    else:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        try:
            for name in (ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE):
                shutil.copy2(adapter / name, tmp / name)
            config = json.loads((tmp / ADAPTER_CONFIG_FILE).read_text(encoding="utf-8"))
            config["base_model_name_or_path"] = str(base)  # where the adapter's base lives
            (tmp / ADAPTER_CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
            _copy_tokenizer(adapter, os.fspath(base), tmp)
            os.chmod(tmp, 0o755)
            _replace_dir(tmp, out)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    (out / "README.md").write_text(model_card(root, kind, step, adapter), encoding="utf-8")
    return ExportResult(out, kind, step, base, adapter)
