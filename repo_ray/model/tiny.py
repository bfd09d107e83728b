"""Build the tiny Qwen3-architecture policy and reward model from config (no hub access).

Weights are random (seeded): the pipeline's SFT stage teaches the policy the domain.
The reward model shares the policy's backbone architecture with a scalar `score` head.
"""

from __future__ import annotations

import torch
from transformers import GenerationConfig, Qwen3Config, Qwen3ForCausalLM, Qwen3ForSequenceClassification

from repo_ray.config import TinyModelConfig
from repo_ray.model.chat import ENDOFTEXT, IM_END


def _special_ids(tokenizer) -> tuple[int, int, int]:
    """(pad, eos, bos) ids. ChatML tokenizers have no BOS; like Qwen3 we use <|endoftext|>."""
    pad = tokenizer.pad_token_id
    eos = tokenizer.convert_tokens_to_ids(IM_END)
    endoftext = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    if pad is None or eos is None or endoftext is None:
        raise ValueError(f"tokenizer lacks {ENDOFTEXT}/{IM_END} or a pad token; train it with train_tokenizer")
    bos = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else endoftext
    return int(pad), int(eos), int(bos)


def tiny_qwen3_config(cfg: TinyModelConfig, tokenizer, **extra) -> Qwen3Config:
    pad, eos, bos = _special_ids(tokenizer)
    return Qwen3Config(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_hidden_layers,
        num_attention_heads=cfg.num_attention_heads,
        num_key_value_heads=cfg.num_key_value_heads,
        head_dim=cfg.head_dim,
        max_position_embeddings=cfg.max_position_embeddings,
        tie_word_embeddings=True,
        pad_token_id=pad,
        eos_token_id=eos,
        bos_token_id=bos,
        dtype="float32",
        **extra,
    )


def _seeded(seed: int, build):
    # fork_rng: building a model must not move the caller's global RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build()


def build_tiny_policy(cfg: TinyModelConfig, tokenizer, seed: int) -> Qwen3ForCausalLM:
    """A randomly initialised float32 Qwen3 causal LM sized by `cfg`, vocabulary = tokenizer's."""
    config = tiny_qwen3_config(cfg, tokenizer)
    model = _seeded(seed, lambda: Qwen3ForCausalLM(config).to(torch.float32))
    pad, eos, bos = _special_ids(tokenizer)
    endoftext = tokenizer.convert_tokens_to_ids(ENDOFTEXT)
    model.generation_config = GenerationConfig(
        bos_token_id=bos, pad_token_id=pad, eos_token_id=sorted({eos, endoftext})
    )
    return model.eval()


def build_tiny_reward_model(cfg: TinyModelConfig, tokenizer, seed: int) -> Qwen3ForSequenceClassification:
    """A randomly initialised float32 Qwen3 with a scalar head. `pad_token_id` is set, so each
    row is scored at its last non-pad token whichever side it is padded on."""
    config = tiny_qwen3_config(cfg, tokenizer, num_labels=1)
    return _seeded(seed, lambda: Qwen3ForSequenceClassification(config).to(torch.float32)).eval()


def pretrain_tiny_policy(model, tokenizer, texts: list[str], steps: int, lr: float, seed: int,
                         block: int = 256, batch: int = 16) -> tuple[float, float] | None:
    """Stand-in for a pretrained base: `steps` full-parameter next-token steps over the corpus,
    each text wrapped as a ChatML assistant turn and packed into `block`-token rows.
    Returns (first, last) mean loss, or None when steps is 0."""
    if steps <= 0:
        return None
    import random

    from repo_ray.model.chat import IM_END, IM_START

    stream: list[int] = []
    for t in texts:
        stream += tokenizer.encode(f"{IM_START}assistant\n{t}{IM_END}\n", add_special_tokens=False)
    rows = [stream[i : i + block] for i in range(0, len(stream) - block, block)]
    if not rows:
        raise ValueError("pretraining corpus is shorter than one block")
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    losses = []
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        for step in range(steps):
            ids = torch.tensor(rng.sample(rows, min(batch, len(rows))))
            for g in opt.param_groups:  # short linear warmup
                g["lr"] = lr * min(1.0, (step + 1) / 10)
            loss = model(input_ids=ids, labels=ids).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            losses.append(float(loss))
    model.eval()
    return losses[0], sum(losses[-10:]) / len(losses[-10:])
