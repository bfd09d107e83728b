"""RM inputs: the scenario split, the context policy (system prompt always whole), and
train-time == score-time token ids."""

from __future__ import annotations

import dataclasses

from repo_ray.model import IM_END, encode_prompt, encode_response
from repo_ray.model.context import ContextTally
from reward_actors.rm.data import (
    encode_pair,
    encode_pairs,
    length_matched,
    rm_input_ids,
    split_by_scenario,
    trajectory_input_ids,
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


def _system_ids(tokenizer, pair):
    return [int(t) for t in tokenizer.apply_chat_template(
        [{"role": "system", "content": pair.context[0].text}], tokenize=True, return_dict=False)]


def test_system_prompt_survives_in_every_rm_input_of_a_generated_set_and_drops_are_counted(tokenizer, pairs):
    # 512 drops old turns in about half of these pairs (test tokenizer), never the facts
    tally = ContextTally()
    encoded = encode_pairs(tokenizer, pairs, 512, tally)
    for pair, e in zip(pairs, encoded, strict=True):
        system = _system_ids(tokenizer, pair)
        assert e.chosen_ids[: len(system)] == system and e.rejected_ids[: len(system)] == system, pair.pair_id
        assert len(e.chosen_ids) <= 512 and len(e.rejected_ids) <= 512
    assert tally.rows == len(pairs) and 0 < tally.rows_with_drops < len(pairs)
    assert tally.dropped_turns == sum(e.dropped_turns for e in encoded) > 0
    assert sum(e.dropped_turns > 0 for e in encoded) == tally.rows_with_drops


def test_rm_input_drops_the_oldest_turns_first_and_keeps_the_reply_whole(tokenizer, pairs):
    pair = max(pairs, key=lambda p: len(p.context))
    reply = encode_response(tokenizer, pair.chosen)
    whole = rm_input_ids(tokenizer, pair.context, pair.chosen, 100_000)
    kept = list(pair.context[:1]) + list(pair.context[3:])  # the oldest exchange out
    budget = len(encode_prompt(tokenizer, kept)) + len(reply)
    assert budget < len(whole)
    ids = rm_input_ids(tokenizer, pair.context, pair.chosen, budget)
    assert ids == encode_prompt(tokenizer, kept) + reply


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
        for max_tokens in (512, 640, 100_000):
            encoded = encode_pair(tokenizer, pair, max_tokens)
            chosen = trajectory_input_ids(tokenizer, trajectory(tokenizer, pair, pair.chosen, "c"), max_tokens)
            rejected = trajectory_input_ids(tokenizer, trajectory(tokenizer, pair, pair.rejected, "r"), max_tokens)
            assert chosen == encoded.chosen_ids and rejected == encoded.rejected_ids
            assert len(chosen) <= max_tokens


def test_system_prompt_is_kept_when_only_it_and_the_reply_fit(tokenizer, pairs):
    pair = max(pairs, key=lambda p: len(encode_prompt(tokenizer, p.context)))
    prompt, reply = encode_prompt(tokenizer, pair.context), encode_response(tokenizer, pair.chosen)
    system = _system_ids(tokenizer, pair)
    smallest = encode_prompt(tokenizer, [pair.context[0], pair.context[-1]])  # system + the hotel's last reply
    budget = len(smallest) + len(reply)
    assert budget < len(prompt) + len(reply)
    ids = rm_input_ids(tokenizer, pair.context, pair.chosen, budget)
    assert ids == smallest + reply and ids[: len(system)] == system


def test_length_matched_means_within_15_percent_of_the_longer_reply():
    assert length_matched(100, 85) and length_matched(85, 100)
    assert not length_matched(100, 84)

