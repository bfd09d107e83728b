"""The locally trained byte-level BPE tokenizer: lossless on any UTF-8, ChatML specials."""

from __future__ import annotations

import json

import pytest

from repo_ray.model import CHATML_TEMPLATE, ENDOFTEXT, IM_END, IM_START, load_tokenizer, train_tokenizer

TEXTS = [
    "Could you consider 420 for the deluxe king from May 3 to May 5?",
    "请问豪华大床房在5月3日到5月5日能否调整到420元？",
    "Mixed 中英文 text, emoji 🏨🎉, tabs\tand  double  spaces\n\nand newlines\r\n",
    "Never-seen characters: ÆØÅ Ωμέγα Привет नमस्ते 한국어 \x00\x7f",
    "   leading and trailing spaces   ",
]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trips_arbitrary_utf8(tokenizer, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert tokenizer.decode(ids) == text


def test_learns_merges_for_chinese_and_english(tokenizer):
    # Byte-level fallback alone would spend 3 tokens per Chinese character.
    zh = "豪华大床房"
    assert len(tokenizer.encode(zh, add_special_tokens=False)) < len(zh.encode("utf-8"))
    assert len(tokenizer.encode("the deluxe king", add_special_tokens=False)) < len("the deluxe king")


def test_special_tokens_are_single_ids_and_decode_back(tokenizer):
    ids = [tokenizer.convert_tokens_to_ids(t) for t in (ENDOFTEXT, IM_START, IM_END)]
    assert ids == [0, 1, 2]
    text = f"{IM_START}user\nhi{IM_END}{ENDOFTEXT}"
    encoded = tokenizer.encode(text, add_special_tokens=False)
    assert encoded[0] == 1 and encoded[-2:] == [2, 0]
    assert tokenizer.decode(encoded) == text
    assert tokenizer.decode(encoded, skip_special_tokens=True) == "user\nhi"


def test_eos_pad_bos_and_padding_side(tokenizer):
    assert tokenizer.eos_token == IM_END
    assert tokenizer.pad_token == ENDOFTEXT
    assert tokenizer.bos_token is None
    assert tokenizer.padding_side == "left"
    assert tokenizer.chat_template == CHATML_TEMPLATE
    # No BOS/EOS is added silently: prompts are built by the chat template alone.
    assert tokenizer("hello")["input_ids"] == tokenizer.encode("hello", add_special_tokens=False)


def test_vocab_size_is_capped_by_request(corpus):
    tok = train_tokenizer(corpus, vocab_size=300)
    assert 259 < len(tok) <= 300


def test_too_small_vocab_is_rejected(corpus):
    with pytest.raises(ValueError, match="vocab_size 100"):
        train_tokenizer(corpus, vocab_size=100)


def test_saved_tokenizer_reloads_identically(corpus, tmp_path):
    tok = train_tokenizer(corpus, vocab_size=350, out_dir=tmp_path / "tok")
    # Declared with the class name transformers 4 and 5 both load.
    config = json.loads((tmp_path / "tok" / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    again = load_tokenizer(tmp_path / "tok")
    for text in TEXTS:
        assert again.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False)
    assert again.chat_template == CHATML_TEMPLATE
    assert (again.eos_token, again.pad_token, again.padding_side) == (IM_END, ENDOFTEXT, "left")
