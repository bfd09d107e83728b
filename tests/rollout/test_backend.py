"""Sampling settings, the stop set, and which vLLM logprobs mode gives unwarped logprobs (no vllm needed)."""

import pytest

from repo_ray.config import RolloutConfig
from repo_ray.errors import ConfigError
from repo_ray.model import ENDOFTEXT, IM_END, load_tokenizer
from repo_ray.rollout import SamplingSettings, stop_token_ids
from repo_ray.rollout.vllm_backend import VLLM_LORA_RANKS, _lora_rank, logprobs_mode_for


def test_sampling_settings_come_from_the_rollout_config():
    s = SamplingSettings.from_config(RolloutConfig(max_new_tokens=40, temperature=0.8, top_p=0.9, top_k=7), seed=3)
    assert s == SamplingSettings(max_new_tokens=40, temperature=0.8, top_p=0.9, top_k=7, seed=3)
    assert s.with_seed(None).seed is None and s.with_seed(None).top_k == 7


@pytest.mark.parametrize("bad", [{"temperature": 0.0}, {"top_p": 0.0}, {"top_k": -1}, {"max_new_tokens": 0}])
def test_invalid_sampling_settings_are_refused(bad):
    with pytest.raises(ValueError):
        SamplingSettings(**bad)


def test_stop_set_is_im_end_plus_the_models_eos(domain_models):
    tok = load_tokenizer(domain_models.tokenizer_dir)
    im_end, eot = tok.convert_tokens_to_ids(IM_END), tok.convert_tokens_to_ids(ENDOFTEXT)
    assert stop_token_ids(tok, [im_end, eot]) == [im_end, eot]
    assert stop_token_ids(tok, None) == [im_end]


def test_vllm_logprobs_mode_is_the_one_equal_to_unwarped_tempered_logprobs():
    # raw_logprobs = log_softmax(logits): exact at T = 1 whatever top-k/top-p do to sampling
    assert logprobs_mode_for(SamplingSettings(temperature=1.0, top_k=20, top_p=0.9)) == "raw_logprobs"
    # processed_logprobs = after temperature and top-k/top-p: exact only without warping
    assert logprobs_mode_for(SamplingSettings(temperature=0.7)) == "processed_logprobs"
    with pytest.raises(ConfigError, match="temperature 0.7 together with top_k 20"):
        logprobs_mode_for(SamplingSettings(temperature=0.7, top_k=20))


def test_vllm_lora_rank_rounds_up_to_an_accepted_value():
    assert [_lora_rank(r) for r in (4, 8, 9, 64, 100)] == [8, 8, 16, 64, 128]
    assert set(_lora_rank(r) for r in range(1, 513)) <= set(VLLM_LORA_RANKS)
