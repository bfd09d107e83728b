"""The one context policy: oldest exchanges out in pairs, system prompt (scenario facts)
always in, responses whole unless even the smallest context leaves no room, drops counted."""

import pytest

from repo_ray.domain.scenario import render_system_prompt
from repo_ray.model import encode_prompt, encode_response, load_tokenizer
from repo_ray.model.context import (
    ContextBudgetError,
    ContextTally,
    encode_dialogue,
    fit_context,
    fit_dialogue,
    fit_prompt,
)
from repo_ray.types import Message, Role


@pytest.fixture(scope="module")
def tokenizer(domain_models):
    return load_tokenizer(domain_models.tokenizer_dir)


@pytest.fixture(scope="module")
def scenario(data_dir):
    from repo_ray.domain.schemas import load_rows

    return load_rows("eval", data_dir).rows[2]


@pytest.fixture(scope="module")
def dialogue(scenario):
    """System prompt + 4 exchanges, each distinguishable by its number."""
    msgs = [Message(Role.SYSTEM, render_system_prompt(scenario))]
    for i in range(4):
        msgs.append(Message(Role.AGENT, f"Agent turn {i}: could you adjust the price a little for our guests?"))
        msgs.append(Message(Role.HOTEL, f"Hotel turn {i}: we need to think about it."))
    return msgs


def prompt_len(tokenizer, messages):
    return len(encode_prompt(tokenizer, messages))


def test_fitting_dialogue_is_returned_whole(tokenizer, dialogue):
    fitted = fit_prompt(dialogue, tokenizer, prompt_len(tokenizer, dialogue))
    assert list(fitted.messages) == dialogue and fitted.complete and fitted.dropped_turns == 0
    assert fitted.prompt_ids == encode_prompt(tokenizer, dialogue)


def test_drops_oldest_exchanges_in_pairs_keeps_system_and_counts_the_drops(tokenizer, dialogue):
    # budget: exactly system + the last two exchanges
    budget = prompt_len(tokenizer, dialogue[:1] + dialogue[5:])
    fitted = fit_prompt(dialogue, tokenizer, budget)
    assert list(fitted.messages) == dialogue[:1] + dialogue[5:] and fitted.dropped_turns == 4
    assert fitted.messages[1].text.startswith("Agent turn 2") and fitted.messages[1].role is Role.AGENT
    # one token less: the next exchange goes too
    fitted = fit_prompt(dialogue, tokenizer, budget - 1)
    assert list(fitted.messages) == dialogue[:1] + dialogue[7:] and fitted.dropped_turns == 6
    assert len(fitted.prompt_ids) <= budget - 1 and not fitted.complete and fitted.fits


def test_smallest_context_is_system_plus_last_hotel_reply(tokenizer, dialogue):
    minimal = dialogue[:1] + dialogue[-1:]
    fitted = fit_prompt(dialogue, tokenizer, prompt_len(tokenizer, minimal))
    assert list(fitted.messages) == minimal and fitted.dropped_turns == 7
    assert fitted.messages[0].text == dialogue[0].text  # never truncated


def test_budget_below_system_prompt_is_a_one_line_error_naming_the_key(tokenizer, dialogue):
    need = prompt_len(tokenizer, dialogue[:1] + dialogue[-1:])
    with pytest.raises(ContextBudgetError, match=rf"rollout.max_prompt_tokens={need - 1} is below the {need} tokens"):
        fit_prompt(dialogue, tokenizer, need - 1)
    with pytest.raises(ContextBudgetError, match=r"reward.model.max_tokens=") as err:
        fit_context(dialogue, tokenizer, need - 1, [[5, 6]], what="reward.model.max_tokens")
    assert "\n" not in str(err.value)


def test_context_must_start_with_system(tokenizer, dialogue):
    with pytest.raises(ValueError, match="starts with the system message"):
        fit_prompt(dialogue[1:], tokenizer, 10_000)


def test_response_is_kept_whole_and_old_turns_make_room_for_it(tokenizer, dialogue):
    reply = encode_response(tokenizer, "Could you do ¥880 for the room? It keeps you competitive.")
    budget = prompt_len(tokenizer, dialogue[:1] + dialogue[5:]) + len(reply)
    fitted = fit_context(dialogue, tokenizer, budget, [reply])
    assert list(fitted.messages) == dialogue[:1] + dialogue[5:] and fitted.responses == (reply,)
    assert fitted.input_ids() == encode_prompt(tokenizer, dialogue[:1] + dialogue[5:]) + reply
    assert fitted.fits and fitted.dropped_turns == 4


def test_responses_share_one_context_fitted_to_the_longest(tokenizer, dialogue):
    short, long = encode_response(tokenizer, "OK."), encode_response(tokenizer, "Could you adjust it? " * 6)
    budget = prompt_len(tokenizer, dialogue[:1] + dialogue[5:]) + len(short)
    fitted = fit_context(dialogue, tokenizer, budget, [short, long])
    assert all(len(fitted.prompt_ids) + len(r) <= budget for r in fitted.responses)
    assert fitted.responses == (short, long) and fitted.dropped_turns > 4  # the long one set the context


def test_response_tail_is_cut_and_counted_only_when_the_smallest_context_is_too_long(tokenizer, dialogue):
    reply = encode_response(tokenizer, "Could you adjust the price? " * 20)
    smallest = prompt_len(tokenizer, dialogue[:1] + dialogue[-1:])
    fitted = fit_context(dialogue, tokenizer, smallest + 10, [reply])
    assert list(fitted.messages) == dialogue[:1] + dialogue[-1:]
    assert fitted.responses[0] == reply[:10] and fitted.response_cut == len(reply) - 10 and not fitted.fits
    tally = ContextTally()
    tally.add(fitted)
    tally.add(fit_prompt(dialogue, tokenizer, 10_000))
    assert (tally.rows, tally.rows_with_drops, tally.dropped_turns, tally.rows_cut) == (2, 1, 7, 1)
    assert "2 contexts" in tally.line(smallest + 10) and "1 had their response tail cut" in tally.line(0)


def test_sft_dialogue_drops_oldest_exchanges_and_masks_the_kept_agent_turns(tokenizer, dialogue):
    whole_ids, whole_mask = encode_dialogue(tokenizer, dialogue)
    fitted = fit_dialogue(dialogue, tokenizer, len(whole_ids))
    assert (fitted.ids, fitted.mask, fitted.dropped_turns) == (whole_ids, whole_mask, 0)
    # the trailing hotel reply is never a target, so the budget of system + last 2 exchanges
    # counts up to the last agent reply
    tail_ids, tail_mask = encode_dialogue(tokenizer, dialogue[:1] + dialogue[5:])
    fitted = fit_dialogue(dialogue, tokenizer, len(tail_ids))
    assert (fitted.ids, fitted.mask, fitted.dropped_turns) == (tail_ids, tail_mask, 4) and fitted.fits
    system = encode_prompt(tokenizer, dialogue[:1])[:-3]  # without the generation prompt
    assert fitted.ids[: len(system)] == system
    assert sum(fitted.mask) == 2 * len(encode_response(tokenizer, dialogue[7].text))  # two agent turns kept
