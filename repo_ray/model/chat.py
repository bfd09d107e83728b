"""ChatML: how role-tagged dialogue (system / agent / hotel) becomes model tokens.

The agent is the assistant and the hotel the user. Rollout (`encode_prompt`, then the
sampled reply + `<|im_end|>`) and training (`encode_prompt` + `encode_response`) must give
the very token ids the chat template gives for the whole dialogue; tests check it.
"""

from __future__ import annotations

from collections.abc import Sequence

from repo_ray.types import Message, Role

ENDOFTEXT = "<|endoftext|>"  # document separator, also the padding token
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"  # ends every message: the EOS of generation
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END)

CHATML_ROLES: dict[Role, str] = {Role.SYSTEM: "system", Role.AGENT: "assistant", Role.HOTEL: "user"}

CHATML_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)


def to_chat_messages(messages: Sequence[Message]) -> list[dict[str, str]]:
    """Role-tagged dialogue -> chat-template messages. The hotel's silence stays an empty
    user message: the policy must see that the hotel did not answer."""
    return [{"role": CHATML_ROLES[m.role], "content": m.text} for m in messages]


def encode_prompt(tokenizer, messages: Sequence[Message]) -> list[int]:
    """Token ids of the dialogue so far, ending with the opening of the agent's turn."""
    ids = tokenizer.apply_chat_template(
        to_chat_messages(messages), add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return [int(t) for t in ids]


def encode_response(tokenizer, text: str) -> list[int]:
    """Token ids of an agent reply as the policy emits it: the text, then `<|im_end|>`."""
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    if im_end is None or im_end == tokenizer.unk_token_id:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no {IM_END} token; it is not a ChatML tokenizer")
    return [int(t) for t in tokenizer.encode(text, add_special_tokens=False)] + [int(im_end)]
