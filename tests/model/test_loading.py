"""Loading from a local directory or hub id, with one-line errors naming the location."""

from __future__ import annotations

import pytest
import torch

from repo_ray.config import ModelConfig
from repo_ray.model import ModelLoadError, load_policy, load_reward_model, load_tokenizer, resolve_base


def test_load_policy_from_cache_in_each_dtype(tiny_paths, tokenizer):
    ids = torch.tensor([tokenizer.encode("Could you consider 420?")])
    fp32 = load_policy(tiny_paths.policy_dir)
    bf16 = load_policy(str(tiny_paths.policy_dir), dtype="bfloat16")
    assert {p.dtype for p in fp32.parameters()} == {torch.float32}
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert not fp32.training
    with torch.no_grad():
        a, b = fp32(input_ids=ids).logits, bf16(input_ids=ids).logits.float()
    assert a.shape == (1, ids.shape[1], len(tokenizer))
    torch.testing.assert_close(a, b, atol=0.1, rtol=0.05)


def test_load_reward_model_from_reward_and_from_policy_dir(tiny_paths, tokenizer):
    rm = load_reward_model(tiny_paths.reward_dir)
    from_lm = load_reward_model(tiny_paths.policy_dir, pad_token_id=tokenizer.pad_token_id)
    for model in (rm, from_lm):
        assert model.config.num_labels == 1 and model.config.pad_token_id == tokenizer.pad_token_id
        batch = tokenizer(["好的", "Could you do 420?"], return_tensors="pt", padding=True)
        with torch.no_grad():
            assert model(**batch).logits.shape == (2, 1)


@pytest.mark.parametrize("loader", [load_policy, load_reward_model, load_tokenizer])
def test_missing_local_path_is_a_one_line_error_naming_it(tmp_path, loader):
    missing = tmp_path / "sft" / "model"
    with pytest.raises(ModelLoadError) as err:
        loader(missing)
    assert str(missing) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ModelLoadError, match=r"\./runs/nothing-here: no such model directory"):
        loader("./runs/nothing-here")


def test_directory_without_a_model_names_the_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError) as err:
        load_policy(tmp_path / "empty")
    assert str(tmp_path / "empty") in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ModelLoadError, match="not a directory"):
        load_policy(tmp_path / "file")


def test_unknown_dtype_is_rejected(tiny_paths):
    with pytest.raises(ValueError, match="float8"):
        load_policy(tiny_paths.policy_dir, dtype="float8")


def test_resolve_base_prefers_the_configured_model(tiny_paths):
    assert resolve_base(ModelConfig(path="Qwen/Qwen3-32B"), tiny_paths) == ("Qwen/Qwen3-32B", "Qwen/Qwen3-32B")
    cfg = ModelConfig(path="/models/qwen3", tokenizer_path="/models/tok")
    assert resolve_base(cfg, None) == ("/models/tok", "/models/qwen3")
    assert resolve_base(ModelConfig(), tiny_paths) == (str(tiny_paths.tokenizer_dir), str(tiny_paths.policy_dir))
    with pytest.raises(ValueError, match="ensure_tiny_models"):
        resolve_base(ModelConfig(), None)
