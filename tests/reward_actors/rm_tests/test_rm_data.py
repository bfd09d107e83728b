"""RM inputs: the scenario split, left truncation, and train-time == score-time token ids."""

from __future__ import annotations

import dataclasses

from repo_ray.model import IM_END, encode_prompt, encode_response
from reward_actors.rm.data import (
    encode_pair,
    length_matched,
    rm_input_ids,
    split_by_scenario,
    trajectory_input_ids,
    truncate_left,
)

from .helpers import trajectory


def _grouped(pairs, n_scenarios):
    """The pairs re-assigned to a few scenarios, so several pairs share each one."""
    return [dataclasses.replace(p, scenario=dataclasses.replace(p.scenario, scenario_id=f"s{i % n_scenarios}"))
            for i, p in enumerate(pairs)]


def test_split_puts_each_scenario_on_one_side_only_and_is_deterministic(pairs):
    grouped = _grouped(pairs[:200], 20)
    split = split_by_scenario(grouped, 0.25, seed=0)
    train_ids = {p.scenario.scenario_id for p in split.train}
    held_ids = {p.scenario.scenario_id for p in split.held_out}
    assert not train_ids & held_ids
    assert len(held_ids) == 5 and len(train_ids) == 15  # round(0.25 * 20) scenarios held out
    assert len(split.train) + len(split.held_out) == 200
    again = split_by_scenario(list(reversed(grouped)), 0.25, seed=0)
    assert {p.pair_id for p in again.held_out} == {p.pair_id for p in split.held_out}  # order does not matter
    other = split_by_scenario(grouped, 0.25, seed=1)
    assert {p.scenario.scenario_id for p in other.held_out} != held_ids  # the seed does


def test_split_never_empties_a_side(pairs):
    assert split_by_scenario([], 0.2, 0) == ([], [])
    split = split_by_scenario(_grouped(pairs[:2], 2), 0.9, 0)
    assert len(split.train) == 1 and len(split.held_out) == 1
    split = split_by_scenario(_grouped(pairs[:3], 1), 0.5, 0)
    assert len(split.train) == 3 and split.held_out == []  # one scenario: nothing to hold out


def test_truncate_left_drops_oldest_dialogue_then_system_prompt_and_keeps_the_reply_end():
    prompt, reply = list(range(10)), [100, 101, 102]  # prompt ids 0-3 are the system prompt
    assert truncate_left(prompt, reply, 4, 20) == prompt + reply
    assert truncate_left(prompt, reply, 4, 9) == [0, 1, 2, 3, 8, 9, 100, 101, 102]
    assert truncate_left(prompt, reply, 4, 7) == [0, 1, 2, 3, 100, 101, 102]
    assert truncate_left(prompt, reply, 4, 5) == [8, 9, 100, 101, 102]  # system prompt no longer fits
    assert truncate_left(prompt, reply, 4, 2) == [101, 102]


def test_untruncated_input_is_the_chat_template_of_the_whole_dialogue(tokenizer, pairs):
    pair = next(p for p in pairs if len(p.context) >= 3)
    ids = rm_input_ids(tokenizer, pair.context, pair.chosen, max_tokens=100_000)
    full = tokenizer.apply_chat_template(
        [*({"role": {"system": "system", "agent": "assistant", "hotel": "user"}[m.role.value], "content": m.text}
           for m in pair.context), {"role": "assistant", "content": pair.chosen}],
        tokenize=True, return_dict=False,
    )
    assert ids == [int(t) for t in full][: len(ids)] and ids[-1] == tokenizer.convert_tokens_to_ids(IM_END)


def test_training_and_scoring_inputs_of_the_same_context_and_reply_are_identical(tokenizer, pairs):
    for pair in pairs[:40]:
        for max_tokens in (64, 128, 100_000):
            encoded = encode_pair(tokenizer, pair, max_tokens)
            chosen = trajectory_input_ids(tokenizer, trajectory(tokenizer, pair, pair.chosen, "c"), max_tokens)
            rejected = trajectory_input_ids(tokenizer, trajectory(tokenizer, pair, pair.rejected, "r"), max_tokens)
            assert chosen == encoded.chosen_ids and rejected == encoded.rejected_ids
            assert len(chosen) <= max_tokens


def test_system_prompt_is_kept_when_it_fits_beside_the_reply(tokenizer, pairs):
    pair = max(pairs, key=lambda p: len(encode_prompt(tokenizer, p.context)))
    prompt, reply = encode_prompt(tokenizer, pair.context), encode_response(tokenizer, pair.chosen)
    system = tokenizer.apply_chat_template([{"role": "system", "content": pair.context[0].text}], tokenize=True,
                                           return_dict=False)
    budget = len(system) + len(reply) + 10
    assert budget < len(prompt) + len(reply)
    ids = rm_input_ids(tokenizer, pair.context, pair.chosen, budget)
    assert len(ids) == budget and ids[: len(system)] == list(system) and ids[-len(reply):] == reply


def test_length_matched_means_within_15_percent_of_the_longer_reply():
    assert length_matched(100, 85) and length_matched(85, 100)
    assert not length_matched(100, 84)

