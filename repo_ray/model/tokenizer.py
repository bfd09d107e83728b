"""Train the byte-level BPE tokenizer of the tiny models locally (no hub access needed).

Byte-level BPE over all 256 bytes encodes any UTF-8 text (English, Chinese, emoji)
losslessly; the ChatML special tokens and template come from `repo_ray.model.chat`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from repo_ray.model.chat import CHATML_TEMPLATE, ENDOFTEXT, IM_END, SPECIAL_TOKENS

_MIN_VOCAB = 256 + len(SPECIAL_TOKENS)


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: Path | None = None) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with ChatML special tokens (ids 0, 1, 2).

    Newlines are pre-tokenized on their own so that the `\\n` closing a ChatML header
    never merges with the text after it: `encode_prompt + encode_response` then equals
    the tokenization of the whole chat for every reply text.
    """
    if vocab_size < _MIN_VOCAB:
        raise ValueError(f"vocab_size {vocab_size} < {_MIN_VOCAB} (256 bytes + {len(SPECIAL_TOKENS)} special tokens)")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex("\n"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)

    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        # ChatML has no BOS: a dialogue starts with <|im_start|> (as in Qwen's tokenizers).
        bos_token=None,
        unk_token=None,
        padding_side="left",  # generation appends to the right end of every row
        clean_up_tokenization_spaces=False,  # decode must give back the exact text
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    if out_dir is not None:
        save_tokenizer(tokenizer, out_dir)
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: Path) -> None:
    """save_pretrained, declaring the class as `PreTrainedTokenizerFast`: transformers 5
    writes `TokenizersBackend`, a name transformers 4 (e.g. a vLLM pinned to it) cannot load,
    while both read `PreTrainedTokenizerFast` as "build from tokenizer.json as is"."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(out))
    config_file = out / "tokenizer_config.json"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_file.write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
