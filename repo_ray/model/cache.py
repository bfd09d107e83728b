"""Build the tiny tokenizer + policy + reward model once per set of inputs and reuse them.

An entry lives in `model.cache_dir/<key>/`, key = hash of (tiny config, corpus key, seed,
format version). It is built in a private temporary directory and renamed into place, so
a reader sees either nothing or a complete entry; when two processes race, the loser's
rename fails and it discards its copy and uses the winner's.

Built from a data directory (`ensure_tiny_models_for_data`, what `repo-ray train` and
`repo-ray build-model` both call), the corpus key is the content hash of the files the
tokenizer's texts come from, so one data set gets one entry whichever command built it.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import tokenizers
import torch
import transformers

from repo_ray.config import ModelConfig, TinyModelConfig
from repo_ray.hashing import content_hash
from repo_ray.model.tiny import build_tiny_policy, build_tiny_reward_model, pretrain_tiny_policy
from repo_ray.model.tokenizer import save_tokenizer, train_tokenizer

# Bump when what is built for the same inputs changes (tokenizer recipe, model layout).
FORMAT_VERSION = 1
MANIFEST = "manifest.json"


class TinyModelPaths(NamedTuple):
    tokenizer_dir: Path
    policy_dir: Path
    reward_dir: Path


def tiny_cache_key(tiny: TinyModelConfig, corpus_key: str, seed: int) -> str:
    return content_hash({"tiny": tiny.model_dump(mode="json"), "corpus_key": corpus_key, "seed": seed,
                         "format": FORMAT_VERSION})


def corpus_key(data_dir: Path) -> str:
    """Content key of a data directory's tokenizer corpus (the files `corpus_texts` reads):
    a copied or regenerated directory with the same rows has the same key, unlike size + mtime."""
    from repo_ray.domain.datagen import CORPUS_COLUMNS
    from repo_ray.domain.schemas import FILES

    return content_hash("corpus", *((kind, (Path(data_dir) / FILES[kind].filename).read_bytes())
                                    for kind in CORPUS_COLUMNS))


def ensure_tiny_models_for_data(model_cfg: ModelConfig, data_dir: Path, seed: int) -> TinyModelPaths:
    """`ensure_tiny_models` with the texts of a data directory, keyed by `corpus_key`."""
    from repo_ray.domain.datagen import corpus_texts

    return ensure_tiny_models(model_cfg, lambda: corpus_texts(data_dir, model_cfg.tiny.tokenizer_corpus_limit),
                              corpus_key(data_dir), seed)


def _paths(entry: Path) -> TinyModelPaths:
    return TinyModelPaths(entry / "tokenizer", entry / "policy", entry / "reward")


def ensure_tiny_models(
    model_cfg: ModelConfig, corpus: Callable[[], Iterable[str]], corpus_key: str, seed: int
) -> TinyModelPaths:
    """Paths of the tiny tokenizer, policy and reward model for these inputs, built on a miss.

    `corpus` yields the tokenizer's training texts (at most `tiny.tokenizer_corpus_limit`
    are used) and is called only on a miss; `corpus_key` must change whenever its texts do.
    The policy is initialised from `seed`, the reward model from `seed + 1`.
    """
    tiny = model_cfg.tiny
    root = Path(model_cfg.cache_dir).expanduser().resolve()
    key = tiny_cache_key(tiny, corpus_key, seed)
    entry = root / key
    if (entry / MANIFEST).is_file():
        return _paths(entry)
    if entry.exists():  # not ours: complete entries always carry a manifest (renamed in last)
        shutil.rmtree(entry)

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}.tmp-", dir=root))
    try:
        _build_entry(tmp, tiny, corpus, corpus_key, seed, key)
        os.chmod(tmp, 0o755)  # mkdtemp makes it owner-only; the cache may be shared
        try:
            os.rename(tmp, entry)
        except OSError:
            if not (entry / MANIFEST).is_file():
                raise
            # Another process finished first; its entry is equivalent to ours.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _paths(entry)


def _build_entry(
    out: Path, tiny: TinyModelConfig, corpus: Callable[[], Iterable[str]], corpus_key: str, seed: int, key: str
) -> None:
    started = time.time()
    texts = list(itertools.islice(corpus(), tiny.tokenizer_corpus_limit))
    if not texts:
        raise ValueError(f"tiny model corpus {corpus_key!r} yielded no texts")
    paths = _paths(out)
    tokenizer = train_tokenizer(texts, tiny.vocab_size, out_dir=paths.tokenizer_dir)
    policy = build_tiny_policy(tiny, tokenizer, seed)
    pretrain_loss = pretrain_tiny_policy(policy, tokenizer, texts, tiny.pretrain_steps, tiny.pretrain_lr, seed)
    policy.save_pretrained(paths.policy_dir)
    build_tiny_reward_model(tiny, tokenizer, seed + 1).save_pretrained(paths.reward_dir)
    for model_dir in (paths.policy_dir, paths.reward_dir):  # self-contained model dirs (vLLM, merges)
        save_tokenizer(tokenizer, model_dir)
    manifest = {
        "format_version": FORMAT_VERSION,
        "key": key,
        "tiny": tiny.model_dump(mode="json"),
        "corpus_key": corpus_key,
        "corpus_texts": len(texts),
        "seed": seed,
        "reward_seed": seed + 1,
        "pretrain_loss": pretrain_loss,
        "vocab_size": len(tokenizer),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "build_s": round(time.time() - started, 3),
        "versions": {
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "tokenizers": tokenizers.__version__,
        },
        "dirs": {name: p.name for name, p in zip(TinyModelPaths._fields, paths, strict=True)},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
