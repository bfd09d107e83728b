"""How role-tagged dialogue (system / agent / hotel) becomes model tokens, through the
tokenizer's own chat template (ChatML for the tiny models and Qwen3/SmolLM2, whatever a
user's model brings otherwise).

The agent is the assistant and the hotel the user. Rollout (`encode_prompt`, then the
sampled reply + the end-of-turn token) and training (`encode_prompt` + `encode_response`)
must give the very token ids the chat template gives for the whole dialogue; tests check it.
The end-of-turn token is read from the template (`end_of_turn_id`), not assumed.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence

from repo_ray.types import Message, Role

# The tiny tokenizer's special tokens and template (repo_ray/model/tokenizer.py); any other
# model's come from its tokenizer.
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


_MARK = "\u2063repo-ray-reply\u2063"  # a reply text no template rewrites and no real reply contains
_END_OF_TURN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def end_of_turn_id(tokenizer) -> int:
    """The token that closes an assistant turn in the tokenizer's chat template (ChatML:
    `<|im_end|>`; Llama 3: `<|eot_id|>`; Mistral: `</s>`): the first special token the
    template writes after the reply's text. It ends every reply the policy emits, so it is
    the first stop id of generation. Falls back to the tokenizer's EOS for a template that
    writes no special token there."""
    try:
        return _END_OF_TURN[tokenizer]
    except (KeyError, TypeError):
        pass
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r} has no chat template; repo-ray builds prompts with it")
    chat = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"},
            {"role": "assistant", "content": _MARK}]
    rendered = tokenizer.apply_chat_template(chat, tokenize=False)
    found = None
    if _MARK in rendered:
        tail = tokenizer.encode(rendered.split(_MARK, 1)[1], add_special_tokens=False)
        special = set(tokenizer.all_special_ids) | {int(i) for i in getattr(tokenizer, "added_tokens_decoder", {})}
        found = next((int(t) for t in tail if int(t) in special), None)
    if found is None:
        found = tokenizer.eos_token_id
    if found is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r}: its chat template ends an assistant turn with no "
                         "special token and it has no EOS token; replies could not end")
    try:
        _END_OF_TURN[tokenizer] = int(found)
    except TypeError:  # not weak-referenceable: recomputed next time
        pass
    return int(found)


def encode_response(tokenizer, text: str) -> list[int]:
    """Token ids of an agent reply as the policy emits it: the text, then the end-of-turn token."""
    return [int(t) for t in tokenizer.encode(text, add_special_tokens=False)] + [end_of_turn_id(tokenizer)]


def padding_id(tokenizer) -> int:
    """The id that pads batches: the tokenizer's pad token unless it is an id replies end
    with. HF sequence classifiers (the RM) score each row at its last token that is not the
    pad id, so padding with the end-of-turn token (SmolLM2 and Llama 3 pad with their EOS)
    would score the token before it, blind to whether the reply ended or was cut. Then the
    first other special token (unk, bos, ...) pads; attention masks hide it everywhere else."""
    ends = {end_of_turn_id(tokenizer), tokenizer.eos_token_id}
    candidates = [tokenizer.pad_token_id, tokenizer.unk_token_id, tokenizer.bos_token_id,
                  *sorted(int(i) for i in tokenizer.all_special_ids)]
    pad = next((int(c) for c in candidates if c is not None and int(c) not in ends), None)
    if pad is None:
        raise ValueError(f"tokenizer {tokenizer.name_or_path!r}: no special token other than the end of turn to pad "
                         "with; add a pad token to it")
    return pad
