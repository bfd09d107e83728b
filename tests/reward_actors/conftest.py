"""One reward model trained on the `data_dir` pairs, shared by the RM and reward-pool tests
(built once per test run: a fixture imported into a test module would be built again there)."""

from __future__ import annotations

import pytest
import torch

from repo_ray.config import RepoRayConfig, RewardConfig, RewardModelTraining
from repo_ray.domain.schemas import load_rows

# The test setting: full fine-tune of the hidden-64 tiny RM, 5 epochs over 70% of 480 pairs.
# 512 tokens: the test tokenizer (vocab 512) writes system prompts of 230-380 tokens, kept
# whole with the reply and the latest turns (~half the pairs keep every turn). Inputs 3-4x
# longer than the old 128-token cut need 5 epochs, not 3, for > 0.8 held out (~60 s).
TEST_RM = RewardModelTraining(epochs=5, lr=1e-3, batch_size=16, max_tokens=512, holdout_fraction=0.3, finetune="full")


@pytest.fixture(scope="session")
def rm_cfg(domain_model_cfg) -> RepoRayConfig:
    return RepoRayConfig(seed=0, model=domain_model_cfg, reward=RewardConfig(model=TEST_RM))


@pytest.fixture(scope="session")
def pairs(data_dir):
    return load_rows("preference", data_dir).rows


@pytest.fixture(scope="session")
def tokenizer(domain_models):
    from repo_ray.model import load_tokenizer

    return load_tokenizer(domain_models.tokenizer_dir)


@pytest.fixture(scope="package", autouse=True)
def one_torch_thread():  # every reward_actors test
    """One torch thread for these tests: on 2 shared cores, intra-op threads of a tiny model
    mostly spin (measured 3-5x the CPU time for the same training run under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_rm(rm_cfg, pairs, domain_models, tmp_path_factory):
    """RMTrainResult of the test setting."""
    from reward_actors.rm.train import train_reward_model

    return train_reward_model(
        rm_cfg, pairs, domain_models.reward_dir, tmp_path_factory.mktemp("rm") / "model",
        tokenizer_path=domain_models.tokenizer_dir, device="cpu",
    )
