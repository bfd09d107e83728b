"""ChatML rendering and the prompt/response token split used by rollout and training."""

from __future__ import annotations

import pytest

from repo_ray.model import IM_END, encode_prompt, encode_response, to_chat_messages
from repo_ray.types import Message, Role

DIALOGUE = [
    Message(Role.SYSTEM, "You are a BD agent. Hotel: Grand Plaza."),
    Message(Role.AGENT, "Hello, this is Lin from the partnership team."),
    Message(Role.HOTEL, "你好，有什么事？"),
    Message(Role.AGENT, "Could you consider 420 for the deluxe king?"),
    Message(Role.HOTEL, ""),  # the hotel stayed silent
]


def test_roles_map_to_chatml_and_silence_is_kept():
    assert to_chat_messages(DIALOGUE) == [
        {"role": "system", "content": "You are a BD agent. Hotel: Grand Plaza."},
        {"role": "assistant", "content": "Hello, this is Lin from the partnership team."},
        {"role": "user", "content": "你好，有什么事？"},
        {"role": "assistant", "content": "Could you consider 420 for the deluxe king?"},
        {"role": "user", "content": ""},
    ]


def test_template_renders_chatml(tokenizer):
    messages = to_chat_messages(DIALOGUE[:3])
    expected = (
        "<|im_start|>system\nYou are a BD agent. Hotel: Grand Plaza.<|im_end|>\n"
        "<|im_start|>assistant\nHello, this is Lin from the partnership team.<|im_end|>\n"
        "<|im_start|>user\n你好，有什么事？<|im_end|>\n"
    )
    assert tokenizer.apply_chat_template(messages, tokenize=False) == expected
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == expected + "<|im_start|>assistant\n"


def test_prompt_ends_with_the_agents_turn_opening(tokenizer):
    ids = encode_prompt(tokenizer, DIALOGUE)
    assert all(isinstance(t, int) for t in ids)
    assert tokenizer.decode(ids).endswith("<|im_end|>\n<|im_start|>user\n<|im_end|>\n<|im_start|>assistant\n")


def test_response_is_text_then_im_end(tokenizer):
    ids = encode_response(tokenizer, "好的，420元。")
    assert ids[-1] == tokenizer.convert_tokens_to_ids(IM_END)
    assert tokenizer.decode(ids[:-1]) == "好的，420元。"
    assert encode_response(tokenizer, "") == [tokenizer.convert_tokens_to_ids(IM_END)]


REPLIES = [
    "Thank you, so the deluxe king will be 420 per night, is that right?",
    "好的，那豪华大床房就是每晚420元，对吗？",
    "  two leading spaces",
    "\n\nleading newlines and a trailing one\n",
    " one leading space, then\ttab",
    "'s a contraction-looking start",
    "",
]


@pytest.mark.parametrize("reply", REPLIES)
@pytest.mark.parametrize("context_len", [1, 3, 5])
def test_prompt_plus_response_equals_tokens_of_whole_chat(tokenizer, reply, context_len):
    context = DIALOGUE[:context_len]
    full = tokenizer.apply_chat_template(
        to_chat_messages([*context, Message(Role.AGENT, reply)]), tokenize=True, return_dict=False
    )
    newline = tokenizer.encode("\n", add_special_tokens=False)
    assert full[-len(newline) :] == newline
    assert encode_prompt(tokenizer, context) + encode_response(tokenizer, reply) == full[: -len(newline)]
