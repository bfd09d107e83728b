"""Trajectories built from preference pairs, as a rollout would hand them to the RM."""

from __future__ import annotations

from repo_ray.domain.schemas import PreferencePair
from repo_ray.model import encode_prompt, encode_response
from repo_ray.types import Trajectory


def trajectory(tokenizer, pair: PreferencePair, reply: str, tag: str) -> Trajectory:
    prompt, response = encode_prompt(tokenizer, pair.context), encode_response(tokenizer, reply)
    return Trajectory(
        sample_id=f"{pair.pair_id}:{tag}", scenario_id=pair.scenario.scenario_id, turn_index=len(pair.context) // 2,
        messages=list(pair.context), response_text=reply, prompt_token_ids=prompt, response_token_ids=response,
        response_logprobs=[-1.0] * len(response), response_mask=[1] * len(response), sop_stage=pair.sop_stage,
        adapter_version=0,
    )
