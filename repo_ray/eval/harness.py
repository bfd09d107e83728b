"""The evaluation harness: play a policy through the held-out scenarios against the hotel
simulator and answer every bad case, score each reply with the evaluation judge and the RF
rules, and compute the metrics (`metrics.py`) into a JSON-serialisable `PolicyEval`.

How a policy is run: an in-process `HFBackend` (base or merged model + optional LoRA
adapter), or any other RolloutBackend (the scripted reference policies of
reference_policies.py: the expert row). Decoding is `eval.decoding`: greedy (top-k 1, the
default) or sampled at `eval.temperature` with rollout's top_p / top_k, always with a fixed
seed, so every policy meets the same hotel (the simulator's seed depends on the evaluation
seed and the scenario id only) and a rerun gives the same numbers. Dialogues play the
horizon RL trains on: `rollout.max_turns` agent turns and `rollout.stop_when_settled`, one
setting for both, so no evaluated turn is a turn training never plays. Every reply is
checked by the evaluation's own guardrails (guardrails.py: the scenario's true figures, not
the training rules), whatever `reward.rule_weights` says; `reward.overlength_chars` sets the
overlength budget and a reply cut at `rollout.max_new_tokens` counts as truncated.

Torch, transformers and the rollout code are imported inside the functions that need them:
reading and writing results (results.py, report.py) stays light.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repo_ray.config import LoraSettings, RepoRayConfig
from repo_ray.domain.scenario import Scenario, render_system_prompt
from repo_ray.domain.schemas import BadCase
from repo_ray.errors import ModelLoadError, UserError
from repo_ray.eval.eval_judge import EvalJudge, JudgeRequest
from repo_ray.eval.guardrails import check_reply
from repo_ray.eval.metrics import (
    BadCaseRecord,
    DialogueRecord,
    ResponseFindings,
    bad_case_verdict,
    capabilities,
    compute_metrics,
    dialogue_rating,
    has_excellent,
)
from repo_ray.eval.results import BadCaseResult, DialogueResult, PolicyEval, write_evals
from repo_ray.types import AdapterUpdate, Message, Role

if TYPE_CHECKING:
    from repo_ray.rollout.backend import RolloutBackend

log = logging.getLogger(__name__)

ADAPTER_WEIGHTS = "adapter_model.safetensors"  # as repo_ray.model.adapters / peft write them
ADAPTER_CONFIG = "adapter_config.json"


class PolicySpecError(UserError, ValueError):
    """A `--policies NAME=MODEL_DIR[:ADAPTER_DIR]` argument cannot be used."""


# ---------------------------------------------------------------------------- scoring (pure)
def score_replies(judge: EvalJudge, requests: Sequence[JudgeRequest], turns: Sequence[int],
                  overlength_chars: int, truncated: Sequence[bool] | None = None) -> list[ResponseFindings]:
    """Findings of every reply: evaluation-judge items and every evaluation guardrail."""
    judgements = judge.score_many(requests)
    cut = list(truncated) if truncated is not None else [False] * len(requests)
    out = []
    for q, turn, j, t in zip(requests, turns, judgements, cut, strict=True):
        fired = check_reply(q.response, q.scenario, q.history, overlength_chars, truncated=t)
        out.append(ResponseFindings(turn, q.response, j.normalised, j.scores, j.reasons, fired))
    return out


def eval_sampling(cfg: RepoRayConfig):
    """The decoding of `eval.decoding`: greedy is top-k 1 (argmax; logprobs at temperature 1)."""
    from repo_ray.rollout import SamplingSettings

    r, ev = cfg.rollout, cfg.eval
    if ev.decoding == "greedy":
        return SamplingSettings(max_new_tokens=r.max_new_tokens, temperature=1.0, top_p=1.0, top_k=1)
    return SamplingSettings(max_new_tokens=r.max_new_tokens, temperature=ev.temperature, top_p=r.top_p, top_k=r.top_k)


def replay_deal_turns(scenario: Scenario, transcript: Sequence[Message], hotel_seed: int) -> dict[str, int] | None:
    """Room -> agent turn (from 1) at which the hotel agreed it, by replaying the (deterministic)
    simulator on the agent's messages; None when the replay does not reproduce the transcript."""
    from repo_ray.domain.simulator import HotelSimulator

    sim = HotelSimulator(scenario, seed=hotel_seed)
    msgs = [m for m in transcript if m.role is not Role.SYSTEM]
    turns: dict[str, int] = {}
    k = 0
    for i, m in enumerate(msgs):
        if m.role is not Role.AGENT:
            continue
        k += 1
        try:
            h = sim.reply(m.text)
        except RuntimeError:
            return None
        if i + 1 < len(msgs) and msgs[i + 1].text != h.text:
            return None
        for room in h.agreed:
            turns.setdefault(room, k)
    return turns


def _with_system(scenario: Scenario, context: Sequence[Message]) -> list[Message]:
    msgs = list(context)
    if not msgs or msgs[0].role is not Role.SYSTEM:
        msgs.insert(0, Message(Role.SYSTEM, render_system_prompt(scenario)))
    return msgs


def episode_id(seed: int, scenario_id: str) -> str:
    """Independent of the policy: every policy meets the same simulated hotel."""
    return f"eval{seed}:{scenario_id}"


# ---------------------------------------------------------------------------- the policy
def parse_policy_spec(spec: str) -> tuple[str, str, str | None]:
    """`NAME=MODEL_DIR` or `NAME=MODEL_DIR:ADAPTER_DIR` -> (name, model, adapter or None)."""
    name, sep, rest = spec.partition("=")
    if not sep or not name.strip() or not rest.strip():
        raise PolicySpecError(f"--policies {spec!r}: expected NAME=MODEL_DIR or NAME=MODEL_DIR:ADAPTER_DIR")
    model, _, adapter = rest.partition(":")
    if not model:
        raise PolicySpecError(f"--policies {spec!r}: empty MODEL_DIR")
    return name.strip(), model, adapter or None


def read_adapter_dir(directory: Path) -> AdapterUpdate:
    """An adapter directory (adapter_model.safetensors + adapter_config.json) as an
    AdapterUpdate. Its probe is a placeholder: there is no learner value to verify against."""
    directory = Path(directory)
    weights, config = directory / ADAPTER_WEIGHTS, directory / ADAPTER_CONFIG
    for f in (weights, config):
        if not f.is_file():
            raise ModelLoadError(f"{directory}: not a LoRA adapter directory (no {f.name})")
    try:
        peft_config = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelLoadError(f"{config}: not a JSON adapter config ({err})") from None
    return AdapterUpdate.build(version=1, tensors=weights.read_bytes(), peft_config=peft_config,
                               probe_token_ids=(0, 1), probe_logprob=0.0)


def lora_of(peft_config: dict[str, Any], default: LoraSettings) -> LoraSettings:
    """The LoRA settings an adapter was trained with (so any rank loads), else `default`."""
    if "r" not in peft_config:
        return default
    targets = peft_config.get("target_modules") or default.target_modules
    return LoraSettings(r=int(peft_config["r"]), alpha=int(peft_config.get("lora_alpha", peft_config["r"])),
                        dropout=0.0,
                        target_modules=sorted(targets) if isinstance(targets, list) else default.target_modules)


def load_eval_backend(cfg: RepoRayConfig, policy_path: str | Path, tokenizer_path: str | Path | None,
                      adapter: AdapterUpdate | str | Path | None,
                      device: str = "auto") -> tuple[RolloutBackend, str | None]:
    """An in-process HFBackend with the adapter loaded; also says what adapter it holds."""
    from repo_ray.rollout.hf import HFBackend
    from repo_ray.types import AdapterVerificationError

    update, label = None, None
    if isinstance(adapter, AdapterUpdate):
        update, label = adapter, f"AdapterUpdate v{adapter.version}"
    elif adapter is not None:
        update, label = read_adapter_dir(Path(adapter)), str(adapter)
    lora = lora_of(update.peft_config, cfg.learner.lora) if update is not None else cfg.learner.lora
    backend = HFBackend(policy_path, tokenizer_path, lora=lora, dtype=cfg.model.dtype, device=device,
                        trust_remote_code=cfg.model.trust_remote_code)
    if update is not None:
        try:
            backend.load_adapter(update, worker_id="eval")
        except AdapterVerificationError as err:
            raise ModelLoadError(f"{label}: cannot load into {policy_path}: {err}") from None
    return backend, label


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def evaluate_backend(name: str, cfg: RepoRayConfig, backend: RolloutBackend, scenarios: Sequence[Scenario],
                     bad_cases: Sequence[BadCase], seed: int, *, policy_path: str = "",
                     adapter_label: str | None = None, n_examples: int = 3) -> PolicyEval:
    """Play, answer, score and measure with any RolloutBackend (see the module docstring)."""
    from repo_ray.model.context import fit_prompt
    from repo_ray.rollout import play_negotiations, stable_seed

    started = time.perf_counter()
    sampling = eval_sampling(cfg)
    batch = cfg.rollout.scenarios_per_batch
    horizon = (cfg.rollout.max_turns, cfg.rollout.stop_when_settled)  # the one horizon RL plays too
    episodes = []
    cut: dict[tuple[str, int], bool] = {}  # (scenario id, agent turn) -> reply hit max_new_tokens
    for i, chunk in enumerate(_chunks(list(scenarios), batch)):
        res = play_negotiations(backend, chunk, [episode_id(seed, s.scenario_id) for s in chunk],
                                sampling.with_seed(stable_seed("eval-dialogues", seed, i)), horizon[0],
                                cfg.rollout.max_prompt_tokens, stop_when_settled=horizon[1])
        episodes.extend(res.episodes)
        cut.update({(t.scenario_id, t.turn_index): t.truncated for t in res.trajectories})
    by_id = {s.scenario_id: s for s in scenarios}

    replies: list[str] = []
    replies_cut: list[bool] = []
    for i, chunk in enumerate(_chunks(list(bad_cases), batch)):
        contexts = [list(fit_prompt(_with_system(c.scenario, c.context), backend.tokenizer,
                                    cfg.rollout.max_prompt_tokens).messages)
                    for c in chunk]
        gens = backend.generate(contexts, sampling.with_seed(stable_seed("eval-bad-cases", seed, i)), n=1)
        replies.extend(g[0].text for g in gens)
        replies_cut.extend(g[0].truncated for g in gens)

    # one judge pass over every reply (one batch of concurrent calls for an endpoint judge)
    requests: list[JudgeRequest] = []
    turns: list[int] = []
    truncated: list[bool] = []
    for ep in episodes:
        sc = by_id[ep.scenario_id]
        for k in range(ep.agent_turns):
            requests.append(JudgeRequest(sc, tuple(ep.transcript[: 1 + 2 * k]), ep.transcript[1 + 2 * k].text))
            turns.append(k)
            truncated.append(cut.get((ep.scenario_id, k), False))
    for c, reply, was_cut in zip(bad_cases, replies, replies_cut, strict=True):
        requests.append(JudgeRequest(c.scenario, tuple(_with_system(c.scenario, c.context)), reply))
        turns.append(sum(m.role is Role.AGENT for m in c.context))
        truncated.append(was_cut)
    judge = EvalJudge(cfg.eval.judge)
    findings = score_replies(judge, requests, turns, cfg.reward.overlength_chars, truncated)

    dialogues: list[DialogueResult] = []
    records: list[DialogueRecord] = []
    pos = 0
    for ep in episodes:
        sc = by_id[ep.scenario_id]
        rs = findings[pos:pos + ep.agent_turns]
        pos += ep.agent_turns
        deal = replay_deal_turns(sc, ep.transcript, stable_seed("hotel", ep.episode_id))
        if deal is None:
            log.warning("eval %s: could not replay %s to time its deals", name, ep.scenario_id)
        rec = DialogueRecord(sc.scenario_id, sc, list(ep.transcript), rs, dict(ep.agreed), deal)
        records.append(rec)
        dialogues.append(DialogueResult(
            sc.scenario_id, sc.to_row(), [m.to_dict() for m in ep.transcript if m.role is not Role.SYSTEM], rs,
            dict(ep.agreed), deal, ep.end_reason.value, dialogue_rating(rs),
            has_excellent(rs, cfg.eval.excellent_threshold), capabilities(rec),
        ))
    case_records = [BadCaseRecord(c.case_id, c.defect, c.severity, f)
                    for c, f in zip(bad_cases, findings[pos:], strict=True)]
    case_results = []
    for c, rec in zip(bad_cases, case_records, strict=True):
        v = bad_case_verdict(rec)
        last = next((m.text for m in reversed(c.context) if m.role is Role.HOTEL), "")
        case_results.append(BadCaseResult(c.case_id, c.defect, rec.severity.value, last, c.bad_response, rec.response,
                                          v.outcome.value, v.severe_unresolved,
                                          {k: s.value for k, s in v.new_problems.items()}))
    ev = cfg.eval
    metrics = compute_metrics(records, case_records, excellent_threshold=ev.excellent_threshold,
                              bootstrap_samples=ev.bootstrap_samples, confidence=ev.confidence, seed=seed)
    settings = {
        "judge": judge.kind, "judge_rubric_version": ev.judge.rubric_version, "judge_weights": judge.weights,
        "sampling": {"temperature": sampling.temperature, "top_p": sampling.top_p, "top_k": sampling.top_k,
                     "max_new_tokens": sampling.max_new_tokens,
                     "mode": "greedy" if ev.decoding == "greedy" else "sampled, fixed seed"},
        "decoding": ev.decoding, "guardrails": "repo_ray.eval.guardrails",
        "seed": seed, "max_turns": horizon[0], "stop_when_settled": horizon[1],
        "dialogues": len(episodes),
        "bootstrap_samples": ev.bootstrap_samples, "confidence": ev.confidence,
        "excellent_threshold": ev.excellent_threshold, "overlength_chars": cfg.reward.overlength_chars,
    }
    return PolicyEval(name, str(policy_path), adapter_label, metrics, dialogues, case_results,
                      [d.dialogue_id for d in dialogues[:n_examples]], settings,
                      round(time.perf_counter() - started, 2))


def reference_backend(kind: str, scenarios: Sequence[Scenario], bad_cases: Sequence[BadCase], seed: int,
                      data_seed: int = 0):
    """A scripted reference policy (reference_policies.REFERENCE_POLICIES) set up to replay the
    harness's own hotels: the evaluation episode seed per scenario, the data seed for the bad
    cases' contexts (they were generated against it)."""
    from repo_ray.eval.reference_policies import REFERENCE_POLICIES
    from repo_ray.rollout import stable_seed

    seeds = {s.scenario_id: stable_seed("hotel", episode_id(seed, s.scenario_id)) for s in scenarios}
    return REFERENCE_POLICIES[kind]([*scenarios, *(c.scenario for c in bad_cases)], seeds, data_seed)


def evaluate_reference(cfg: RepoRayConfig, scenarios: Sequence[Scenario], bad_cases: Sequence[BadCase], seed: int,
                       kind: str = "expert", name: str | None = None, n_examples: int = 3) -> PolicyEval:
    """A reference policy (default: the scripted expert, the ceiling row) through this harness."""
    backend = reference_backend(kind, scenarios, bad_cases, seed, cfg.data.seed)
    return evaluate_backend(name or kind, cfg, backend, scenarios, bad_cases, seed,
                            policy_path=f"scripted:{kind}", n_examples=n_examples)


def expert_row(cfg: RepoRayConfig, scenarios: Sequence[Scenario], bad_cases: Sequence[BadCase], seed: int,
               taken: Sequence[str] = ()) -> dict[str, PolicyEval]:
    """{EXPERT_ROW: the scripted expert's evaluation}: the ceiling row every report carries."""
    from repo_ray.eval.reference_policies import EXPERT_ROW

    if EXPERT_ROW in taken:
        raise PolicySpecError(f"--policies: {EXPERT_ROW!r} names the scripted expert's reference row; rename it")
    return {EXPERT_ROW: evaluate_reference(cfg, scenarios, bad_cases, seed, "expert", EXPERT_ROW)}


def evaluate_policy(name: str, cfg: RepoRayConfig, policy_path: str | Path, tokenizer_path: str | Path | None,
                    adapter: AdapterUpdate | str | Path | None, scenarios: Sequence[Scenario],
                    bad_cases: Sequence[BadCase], seed: int, *, device: str = "auto",
                    n_examples: int = 3) -> PolicyEval:
    """Evaluate one policy (a model directory or hub id, plus an optional LoRA adapter given as
    an AdapterUpdate or an adapter directory) on the evaluation scenarios and bad cases."""
    backend, label = load_eval_backend(cfg, policy_path, tokenizer_path, adapter, device)
    try:
        return evaluate_backend(name, cfg, backend, scenarios, bad_cases, seed, policy_path=str(policy_path),
                                adapter_label=label, n_examples=n_examples)
    finally:
        del backend


# ---------------------------------------------------------------------------- `repo-ray eval`
def _tokenizer_for(model: str, cfg: RepoRayConfig) -> str:
    p = Path(model).expanduser()
    if (p / "tokenizer_config.json").is_file() or (p / "tokenizer.json").is_file() or not p.exists():
        return model  # a directory with its tokenizer, or a hub id (which carries one)
    if cfg.model.tokenizer_path:
        return cfg.model.tokenizer_path
    raise ModelLoadError(f"{model}: holds no tokenizer; set model.tokenizer_path")


def run_eval(cfg: RepoRayConfig, policies: Sequence[str], data_dir: str | Path, out_dir: str | Path,
             seed: int | None = None, device: str = "auto") -> tuple[Path, Path]:
    """`repo-ray eval`: evaluate every NAME=MODEL_DIR[:ADAPTER_DIR] on the data directory's
    evaluation scenarios and bad cases; write OUT/eval.json and OUT/eval.md."""
    from repo_ray.domain.schemas import load_rows
    from repo_ray.eval.report import write_eval_markdown

    specs = [parse_policy_spec(p) for p in policies]
    names = [s[0] for s in specs]
    if len(set(names)) != len(names):
        raise PolicySpecError(f"--policies: names repeat ({', '.join(names)})")
    scenarios = load_rows("eval", data_dir)
    cases = load_rows("bad_cases", data_dir)
    for loaded, what in ((scenarios, "eval"), (cases, "bad_cases")):
        if loaded.problems:
            log.warning("%s: dropped %d bad row(s) (see `repo-ray validate-data`)", what, loaded.dropped)
    if not scenarios.rows:
        raise UserError(f"{data_dir}: no usable evaluation scenarios")
    seed = cfg.seed if seed is None else seed
    evals: dict[str, PolicyEval] = {}
    for name, model, adapter in specs:
        log.info("evaluating %s (%s%s)", name, model, f" + {adapter}" if adapter else "")
        evals[name] = evaluate_policy(name, cfg, model, _tokenizer_for(model, cfg), adapter, scenarios.rows,
                                      cases.rows, seed, device=device)
    if cfg.eval.expert_row:
        evals.update(expert_row(cfg, scenarios.rows, cases.rows, seed, taken=names))
    out = Path(out_dir)
    return write_evals(evals, out / "eval.json"), write_eval_markdown(evals, out / "eval.md")
