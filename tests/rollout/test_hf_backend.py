"""HFBackend: unwarped logprobs that a separate forward pass reproduces, stop handling,
seeded reproducibility, and adapter loads that change generations and the version."""

import pytest
import torch

from repo_ray.config import LoraSettings
from repo_ray.domain.scenario import render_system_prompt
from repo_ray.model import IM_END
from repo_ray.rollout import RolloutBackend, SamplingSettings
from repo_ray.types import AdapterVerificationError, Message, Role

from .conftest import make_adapter_update

# top_k / top_p cut most of the vocabulary, so warped logprobs would differ visibly
WARPED = SamplingSettings(max_new_tokens=10, temperature=0.7, top_k=5, top_p=0.8, seed=11)


def histories(scenarios):
    """Three chat histories of clearly different prompt lengths (left padding matters)."""
    a = [Message(Role.SYSTEM, render_system_prompt(scenarios[0]))]
    b = [Message(Role.SYSTEM, "You negotiate room prices.")]
    c = [
        Message(Role.SYSTEM, render_system_prompt(scenarios[5])),
        Message(Role.AGENT, "Hello, this is Alex from the travel platform."),
        Message(Role.HOTEL, "Hi, I'm listening."),
    ]
    return [a, b, c]


def forward_logprobs(model, prompt, tokens, temperature):
    """(unwarped, top-k/top-p-warped) log_softmax(logits / T) at `tokens` from one unpadded forward pass."""
    ids = torch.tensor([prompt + tokens])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, len(prompt) - 1 : -1].double() / temperature
    target = torch.tensor(tokens)[:, None]
    unwarped = torch.log_softmax(logits, -1).gather(-1, target).squeeze(-1)
    # what transformers' top-k then top-p warpers would leave (HF order), renormalised
    kth = logits.topk(WARPED.top_k, dim=-1).values[:, -1:]
    warped = logits.masked_fill(logits < kth, float("-inf"))
    sorted_logits, idx = warped.sort(dim=-1, descending=False)
    cum = sorted_logits.softmax(-1).cumsum(-1)
    remove = cum <= 1 - WARPED.top_p
    remove[:, -1] = False
    warped = warped.scatter(-1, idx, sorted_logits.masked_fill(remove, float("-inf")))
    return unwarped, torch.log_softmax(warped, -1).gather(-1, target).squeeze(-1)


def test_backend_satisfies_protocol(make_hf_backend):
    assert isinstance(make_hf_backend(), RolloutBackend)


def test_batched_logprobs_match_a_separate_forward_pass(make_hf_backend, persona_scenarios):
    backend = make_hf_backend()
    hs = histories(persona_scenarios)
    out = backend.generate(hs, WARPED, n=2)
    lengths = {len(group[0].prompt_token_ids) for group in out}
    assert len(lengths) == 3 and max(lengths) - min(lengths) > 50  # really left-padded
    worst, warp_gap = 0.0, 0.0
    for group in out:
        assert len(group) == 2
        for g in group:
            assert len(g.token_ids) == len(g.logprobs) > 0
            unwarped, warped = forward_logprobs(backend.model, g.prompt_token_ids, g.token_ids, WARPED.temperature)
            worst = max(worst, (unwarped - torch.tensor(g.logprobs, dtype=torch.float64)).abs().max().item())
            warp_gap = max(warp_gap, (warped - unwarped).abs().max().item())
    assert worst < 1e-4
    assert warp_gap > 1e-2  # the test would catch processed (warped) logprobs


def test_stop_token_is_kept_in_tokens_and_left_out_of_text(make_hf_backend, persona_scenarios):
    backend = make_hf_backend()
    im_end = backend.tokenizer.convert_tokens_to_ids(IM_END)

    def favour_im_end(module, inputs, output):  # a policy that has learnt to stop
        output[..., im_end] += 6.0
        return output

    hook = backend.model.get_output_embeddings().register_forward_hook(favour_im_end)
    try:
        out = backend.generate(histories(persona_scenarios), WARPED.with_seed(3), n=4)
        stopped = [g for group in out for g in group if g.finish_reason == "stop"]
        assert len(stopped) >= 6
        for g in stopped:
            assert g.token_ids[-1] == im_end and im_end not in g.token_ids[:-1]
            assert g.text == backend.tokenizer.decode(g.token_ids[:-1])
            assert IM_END not in g.text
            unwarped, _ = forward_logprobs(backend.model, g.prompt_token_ids, g.token_ids, WARPED.temperature)
            assert torch.allclose(unwarped, torch.tensor(g.logprobs, dtype=torch.float64), atol=1e-4)
    finally:
        hook.remove()
    for g in (g for group in out for g in group if g.finish_reason == "length"):
        assert len(g.token_ids) == WARPED.max_new_tokens and im_end not in g.token_ids


def test_same_seed_same_replies_other_seed_other_replies(make_hf_backend, persona_scenarios):
    backend = make_hf_backend()
    hs = histories(persona_scenarios)
    ids = lambda out: [g.token_ids for group in out for g in group]  # noqa: E731
    first = ids(backend.generate(hs, WARPED))
    assert ids(backend.generate(hs, WARPED)) == first
    assert ids(backend.generate(hs, WARPED.with_seed(12))) != first


def test_new_adapter_changes_generations_and_version(make_hf_backend, domain_models, lora_settings, persona_scenarios):
    backend = make_hf_backend()
    hs = histories(persona_scenarios)
    assert backend.adapter_version == 0
    before = backend.generate(hs, WARPED)
    update = make_adapter_update(domain_models.policy_dir, lora_settings, version=1, seed=5)
    ack = backend.load_adapter(update, "hf-0")
    update.verify_ack(ack, logprob_tolerance=1e-6)
    assert (ack.worker_id, ack.version, backend.adapter_version) == ("hf-0", 1, 1)
    after = backend.generate(hs, WARPED)
    assert [g.token_ids for r in after for g in r] != [g.token_ids for r in before for g in r]
    # and the new logprobs are the adapted model's
    g = after[1][0]
    unwarped, _ = forward_logprobs(backend.model, g.prompt_token_ids, g.token_ids, WARPED.temperature)
    assert torch.allclose(unwarped, torch.tensor(g.logprobs, dtype=torch.float64), atol=1e-4)


def test_adapter_of_another_rank_is_refused_naming_the_worker(make_hf_backend, domain_models):
    backend = make_hf_backend()
    update = make_adapter_update(domain_models.policy_dir, LoraSettings(r=4, alpha=16), version=1, seed=5)
    with pytest.raises(AdapterVerificationError, match=r"worker hf-9: adapter v1 has r=4, the worker's LoRA has 8"):
        backend.load_adapter(update, "hf-9")
    assert backend.adapter_version == 0
