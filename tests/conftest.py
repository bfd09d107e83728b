"""Session-wide fixtures shared by every test package: a small generated data directory,
tiny models whose tokenizer is trained on it, and one local Ray cluster for the run.

Each is built once per test run (ENVIRONMENT.md: `ray.init` costs ~4 s, model builds are
cached). Packages with narrower needs keep their own conftest (tests/model/).
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# metrics reach the export endpoint sooner, so the e2e metric checks see them within a short run
os.environ.setdefault("RAY_metrics_report_interval_ms", "2000")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from repo_ray.config import DataConfig, ModelConfig, TinyModelConfig  # noqa: E402

TEST_DATA = DataConfig(
    seed=0, zh_fraction=0.2, max_room_types=2,
    sft_dialogues=48, preference_pairs=480, rl_scenarios=24, eval_dialogues=12, bad_cases=17,
)
TEST_TINY = TinyModelConfig(
    vocab_size=512, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
    head_dim=16, intermediate_size=128, max_position_embeddings=1024, tokenizer_corpus_limit=6000,
)
TEST_SEED = 0


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A generated data directory (all five Parquet files, small sizes)."""
    from repo_ray.domain.datagen import write_dataset

    out = tmp_path_factory.mktemp("data")
    write_dataset(TEST_DATA, out)
    return out


@pytest.fixture(scope="session")
def domain_model_cfg(tmp_path_factory) -> ModelConfig:
    return ModelConfig(cache_dir=str(tmp_path_factory.mktemp("model-cache")), tiny=TEST_TINY, dtype="float32")


@pytest.fixture(scope="session")
def domain_models(domain_model_cfg, data_dir):
    """TinyModelPaths (tokenizer, policy, reward) with a tokenizer trained on `data_dir`."""
    from repo_ray.domain.datagen import corpus_texts
    from repo_ray.model import ensure_tiny_models

    return ensure_tiny_models(
        domain_model_cfg, lambda: corpus_texts(data_dir, TEST_TINY.tokenizer_corpus_limit), "tests-domain-v1", TEST_SEED
    )


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray head on 127.0.0.1 for the whole test run (4 logical CPUs on 2 cores:
    actors in tests ask for fractions)."""
    import ray

    from repo_ray.pipeline.ray_setup import init_ray

    init_ray(num_cpus=4, include_dashboard=True)  # the dashboard serves `ray job submit`
    yield ray
    ray.shutdown()
