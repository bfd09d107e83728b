"""The context policy: oldest exchanges out in pairs, system prompt (scenario facts) always in."""

import pytest

from repo_ray.domain.scenario import render_system_prompt
from repo_ray.model import encode_prompt, load_tokenizer
from repo_ray.rollout.context import ContextBudgetError, fit_context
from repo_ray.types import Message, Role


@pytest.fixture(scope="module")
def tokenizer(domain_models):
    return load_tokenizer(domain_models.tokenizer_dir)


@pytest.fixture(scope="module")
def dialogue(persona_scenarios):
    """System prompt + 4 exchanges, each distinguishable by its number."""
    msgs = [Message(Role.SYSTEM, render_system_prompt(persona_scenarios[2]))]
    for i in range(4):
        msgs.append(Message(Role.AGENT, f"Agent turn {i}: could you adjust the price a little for our guests?"))
        msgs.append(Message(Role.HOTEL, f"Hotel turn {i}: we need to think about it."))
    return msgs


def prompt_len(tokenizer, messages):
    return len(encode_prompt(tokenizer, messages))


def test_fitting_dialogue_is_returned_whole(tokenizer, dialogue):
    assert fit_context(dialogue, tokenizer, prompt_len(tokenizer, dialogue)) == dialogue


def test_drops_oldest_exchanges_in_pairs_and_keeps_system(tokenizer, dialogue):
    # budget: exactly system + the last two exchanges
    budget = prompt_len(tokenizer, dialogue[:1] + dialogue[5:])
    ctx = fit_context(dialogue, tokenizer, budget)
    assert ctx == dialogue[:1] + dialogue[5:]
    assert ctx[1].text.startswith("Agent turn 2") and ctx[1].role is Role.AGENT
    # one token less: the next exchange goes too
    ctx = fit_context(dialogue, tokenizer, budget - 1)
    assert ctx == dialogue[:1] + dialogue[7:]
    assert prompt_len(tokenizer, ctx) <= budget - 1


def test_smallest_context_is_system_plus_last_hotel_reply(tokenizer, dialogue):
    minimal = dialogue[:1] + dialogue[-1:]
    ctx = fit_context(dialogue, tokenizer, prompt_len(tokenizer, minimal))
    assert ctx == minimal
    assert ctx[0].text == dialogue[0].text  # never truncated


def test_budget_below_system_prompt_is_a_one_line_error(tokenizer, dialogue):
    need = prompt_len(tokenizer, dialogue[:1] + dialogue[-1:])
    with pytest.raises(ContextBudgetError, match=rf"max_prompt_tokens={need - 1} is below the {need} tokens") as err:
        fit_context(dialogue, tokenizer, need - 1)
    assert "\n" not in str(err.value)


def test_context_must_start_with_system(tokenizer, dialogue):
    with pytest.raises(ValueError, match="starts with the system message"):
        fit_context(dialogue[1:], tokenizer, 10_000)
