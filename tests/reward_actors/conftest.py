"""One reward model trained on the `data_dir` pairs, shared by the RM and reward-pool tests
(built once per test run: a fixture imported into a test module would be built again there)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


@dataclass
class TrainedRM:
    """The shared test RM, trained once through `repo-ray train-rm` (the CLI's own path, so
    tests/reward_actors/rm_tests/test_rm_cli.py reads what it printed instead of training
    again): the RMTrainResult train_reward_model returned under the CLI, and the CLI's output."""

    result: Any
    rc: int
    printed: str

    def __getattr__(self, name: str) -> Any:  # the RMTrainResult's fields (out_dir, stats, held_out, ...)
        return getattr(self.result, name)


@pytest.fixture(scope="session")
def trained_rm(rm_cfg, data_dir, domain_models, tmp_path_factory) -> TrainedRM:
    """RMTrainResult of the test setting (TEST_RM), trained by `repo-ray train-rm`."""
    import contextlib
    import io
    from unittest import mock

    import yaml

    from repo_ray.cli import main
    from reward_actors.rm import train as rm_train

    tmp = tmp_path_factory.mktemp("rm")
    config = tmp / "rm.yaml"
    model = rm_cfg.model.model_dump(mode="json") | {"tokenizer_path": str(domain_models.tokenizer_dir)}
    config.write_text(yaml.safe_dump({"seed": rm_cfg.seed, "model": model,
                                      "reward": {"model": TEST_RM.model_dump(mode="json")}}))
    results = []
    real = rm_train.train_reward_model

    def spy(*args, **kwargs):  # the real training; only its return value is kept for the other tests
        results.append(real(*args, **kwargs))
        return results[-1]

    out = io.StringIO()
    with mock.patch.object(rm_train, "train_reward_model", spy), contextlib.redirect_stdout(out):
        rc = main(["train-rm", "--config", str(config), "--data", str(data_dir), "--out", str(tmp / "model"),
                   "--base", str(domain_models.reward_dir)])
    assert rc == 0 and len(results) == 1, out.getvalue()
    return TrainedRM(results[0], rc, out.getvalue())


@pytest.fixture(scope="session")
def rm_scorer_actor(ray_local, trained_rm, rm_cfg):
    """One RMScorer actor of the shared RM (no restarts), for the scorer and the pool tests:
    each actor start imports torch + transformers (~6 s of CPU)."""
    from repo_ray.pipeline.placement import start_rm_scorer

    actor = start_rm_scorer(rm_cfg, trained_rm.out_dir, num_cpus=0.1, max_restarts=0)
    yield actor
    ray_local.kill(actor)
