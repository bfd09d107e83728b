"""`HFBackend`: agent replies from transformers `generate` on base + peft LoRA, batched with
left padding, on CPU or GPU. The laptop/CI backend and the reference the vLLM one is
checked against.

Logprobs come from `generate(output_logits=True)`: the model's raw next-token logits
(transformers 5 `_sample` stores them before the logits processors run), divided by the
temperature and log-softmaxed here. `output_scores` would give the processed scores, in
which top-k / top-p have already set the cut tokens to -inf and renormalised nothing.
Those raw logits are kept for every step of the batch (B x steps x vocab floats), which
is fine for tiny models on CPU; real models go through vLLM.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from peft import TaskType
from transformers import GenerationConfig

from repo_ray.config import LoraSettings
from repo_ray.model.adapters import load_adapter_update
from repo_ray.model.chat import encode_prompt
from repo_ray.model.export import add_lora
from repo_ray.model.loading import Dtype, load_policy, load_tokenizer
from repo_ray.rollout.backend import BackendState, Generation, SamplingSettings, decode_reply, stop_token_ids
from repo_ray.types import AdapterAck, AdapterUpdate, AdapterVerificationError, Message


def resolve_device(device: str = "auto") -> str:
    """"auto" picks the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class HFBackend(BackendState):
    """Base policy + a LoRA adapter (zero-initialised B: version 0 generates like the base)."""

    def __init__(
        self,
        policy_path: str | os.PathLike,
        tokenizer_path: str | os.PathLike | None = None,
        lora: LoraSettings | None = None,
        dtype: Dtype = "float32",
        device: str = "auto",
        trust_remote_code: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self._tokenizer = load_tokenizer(tokenizer_path or policy_path, trust_remote_code=trust_remote_code)
        base = load_policy(policy_path, dtype=dtype, device=self.device, trust_remote_code=trust_remote_code)
        self._stop_ids = stop_token_ids(self._tokenizer, base.generation_config.eos_token_id)
        pad = self._tokenizer.pad_token_id
        self._pad_id = int(pad if pad is not None else self._stop_ids[0])
        # A checkpoint's generation_config.json (Qwen3: top_k 20, top_p 0.95, ...) fills every
        # setting a call leaves unset; keep only the special ids so SamplingSettings rule.
        base.generation_config = GenerationConfig(
            bos_token_id=base.generation_config.bos_token_id, eos_token_id=self._stop_ids, pad_token_id=self._pad_id
        )
        self.lora = lora or LoraSettings()
        self.model = add_lora(base, self.lora, TaskType.CAUSAL_LM).eval()
        self._version = 0

    # ------------------------------------------------------------------ protocol
    @torch.no_grad()
    def generate(
        self, histories: Sequence[Sequence[Message]], sampling: SamplingSettings, n: int = 1
    ) -> list[list[Generation]]:
        if n < 1:
            raise ValueError(f"n = {n} < 1")
        if not histories:
            return []
        prompts = [encode_prompt(self._tokenizer, h) for h in histories]
        rows = [p for p in prompts for _ in range(n)]  # sample j of history i is row i * n + j
        width = max(len(p) for p in rows)
        input_ids = torch.full((len(rows), width), self._pad_id, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        for r, p in enumerate(rows):  # left padding: every row's next token is at column `width`
            input_ids[r, width - len(p):] = torch.tensor(p)
            attention[r, width - len(p):] = 1
        config = GenerationConfig(
            do_sample=True,
            temperature=sampling.temperature,
            top_k=sampling.top_k,  # 0 disables; None would mean transformers' default of 50
            top_p=sampling.top_p,
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=self._stop_ids,
            pad_token_id=self._pad_id,
            return_dict_in_generate=True,
            output_logits=True,
        )
        devices = [torch.device(self.device)] if self.device.startswith("cuda") else []
        with torch.random.fork_rng(devices=devices):  # a seeded call must not move the caller's RNG
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            out = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                generation_config=config,
            )
        new = out.sequences[:, width:].cpu()
        # one step at a time: never a second (B, steps, vocab) tensor
        logprobs = torch.stack(
            [
                torch.log_softmax(step.float() / sampling.temperature, dim=-1)
                .gather(-1, new[:, t : t + 1].to(step.device))
                .squeeze(-1)
                .cpu()
                for t, step in enumerate(out.logits)
            ],
            dim=1,
        ).double()
        results: list[list[Generation]] = [[] for _ in histories]
        stops = set(self._stop_ids)
        for r, prompt in enumerate(rows):
            ids = new[r].tolist()
            end = next((i for i, t in enumerate(ids) if t in stops), None)
            if end is None:
                tokens, reason, text_ids = ids, "length", ids
            else:
                tokens, reason, text_ids = ids[: end + 1], "stop", ids[:end]
            results[r // n].append(
                Generation(
                    text=decode_reply(self._tokenizer, text_ids, truncated=reason == "length"),
                    prompt_token_ids=list(prompt),
                    token_ids=[int(t) for t in tokens],
                    logprobs=[float(x) for x in logprobs[r, : len(tokens)]],
                    finish_reason=reason,
                )
            )
        return results

    def load_adapter(self, update: AdapterUpdate, worker_id: str) -> AdapterAck:
        self._check_shape(update, worker_id)
        ack = load_adapter_update(self.model, update, worker_id)
        self._version = update.version
        return ack

    # ------------------------------------------------------------------ helpers
    def _check_shape(self, update: AdapterUpdate, worker_id: str) -> None:
        """An adapter trained with other LoRA settings cannot load into ours: say which."""
        cfg = update.peft_config
        ours = {"r": self.lora.r, "lora_alpha": self.lora.alpha}
        for key, value in ours.items():
            if key in cfg and cfg[key] != value:
                raise AdapterVerificationError(
                    f"worker {worker_id}: adapter v{update.version} has {key}={cfg[key]}, the worker's LoRA has "
                    f"{value} (learner.lora must match on both sides)"
                )
        theirs = set(cfg.get("target_modules") or [])
        mine = set(self.model.peft_config["default"].target_modules or [])
        if theirs and theirs != mine:
            raise AdapterVerificationError(
                f"worker {worker_id}: adapter v{update.version} targets {sorted(theirs)}, the worker's LoRA "
                f"{sorted(mine)}"
            )
