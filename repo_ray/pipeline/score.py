"""`repo-ray score`: the reward inspector. Scores replies the user writes (JSONL) with the
same reward sources, failure policy and enhancement as training, in this process (no Ray).

Input line: {"scenario": <the scenario struct of the data files>, "context": [{"role":
system|agent|hotel, "text"}, ...], "response": str, "truncated": bool (optional, default
false)}. The policy's system prompt (`render_system_prompt`, as rollouts build it) is put in
front of the context unless the context already starts with a system message, which is then
used as given. Output line, in input order: {"line", "r_model", "e_judge", "e_func",
"e_enh", "r_total", "masked", "reason", "sources": {name: {"score", "status", "detail",
"latency_s", ...}}, "violations"}; a malformed line gives {"line": N, "error": reason}
and the other lines are still scored. N counts from 1.

Sources are those of `reward.sources`: the run's reward model (`RUN/rm/model`, scored with
`RewardModelScorer`), the training judge (`JudgeClient` on `judge.base_url`, or on a local
judge server started for the command when `judge.local_server.enabled`) and the rules
(`rule_source_result`, what a RuleChecker runs); `combine_sources` combines them. Every
source re-reads the text: the `Trajectory`'s token ids are only filled in (the RM's
tokenizer on the full context) because the contract requires them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from repo_ray.config import RepoRayConfig
from repo_ray.domain.scenario import Scenario, render_system_prompt
from repo_ray.errors import UserError
from repo_ray.types import (
    SOURCE_JUDGE,
    SOURCE_RM,
    SOURCE_RULES,
    Message,
    RewardResult,
    Role,
    SourceResult,
    SourceStatus,
    Trajectory,
)

CHUNK_LINES = 64  # lines scored together: one RM batch and concurrent judge calls per chunk
_ROLES = "|".join(r.value for r in Role)


class ScoreInputError(UserError):
    """The run directory, its reward model or the input file cannot be used."""


@dataclass(frozen=True, slots=True)
class ScoreRequest:
    """One well-formed input line: the context as the policy sees it (system prompt first)."""

    line: int
    scenario: Scenario
    messages: tuple[Message, ...]
    response: str
    truncated: bool = False

    @property
    def sample_id(self) -> str:
        return f"line-{self.line}"


@dataclass(slots=True)
class ScoreSummary:
    lines: int = 0
    malformed: list[int] = field(default_factory=list)  # line numbers
    masked: int = 0


# ---------------------------------------------------------------------------- parsing (pure)
def _context(value: Any) -> list[Message]:
    if not isinstance(value, list):
        raise ValueError(f"context: expected a list of {{role, text}}, got {type(value).__name__}")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise ValueError(f"context[{i}]: expected an object {{role, text}}, got {type(m).__name__}")
        for key in ("role", "text"):
            if key not in m:
                raise ValueError(f"context[{i}]: missing field {key!r}")
        if m["role"] not in {r.value for r in Role}:
            raise ValueError(f"context[{i}].role is {m['role']!r}, not {_ROLES}")
        if not isinstance(m["text"], str):
            raise ValueError(f"context[{i}].text: expected a string, got {type(m['text']).__name__}")
        if m["role"] == Role.SYSTEM.value and i > 0:
            raise ValueError(f"context[{i}]: a system message may only come first")
        out.append(Message(Role(m["role"]), m["text"]))
    return out


def _scenario(value: Any) -> Scenario:
    if not isinstance(value, dict):
        raise ValueError(f"scenario: expected an object (the data files' scenario struct), got {type(value).__name__}")
    try:
        return Scenario.from_row(value)
    except KeyError as err:
        raise ValueError(f"scenario: missing field {err.args[0]!r}") from None
    except (ValueError, TypeError) as err:
        raise ValueError(f"scenario: {str(err).splitlines()[0] if str(err) else type(err).__name__}") from None


def parse_line(text: str, line: int) -> ScoreRequest:
    """The request of one input line; raises ValueError with a one-line reason when malformed."""
    from reward_actors.rules.check import json_object_line

    record = json_object_line(text)  # untrusted: bounded before JSON, tokenizer and regex rules see it
    for key in ("scenario", "context", "response"):
        if key not in record:
            raise ValueError(f"missing field {key!r}")
    scenario = _scenario(record["scenario"])
    messages = _context(record["context"])
    response = record["response"]
    if not isinstance(response, str):
        raise ValueError(f"response: expected a string, got {type(response).__name__}")
    truncated = record.get("truncated", False)
    if not isinstance(truncated, bool):
        raise ValueError(f"truncated: expected true or false, got {truncated!r}")
    if not messages or messages[0].role is not Role.SYSTEM:
        messages.insert(0, Message(Role.SYSTEM, render_system_prompt(scenario)))
    return ScoreRequest(line, scenario, tuple(messages), response, truncated)


def build_trajectory(req: ScoreRequest, tokenizer) -> Trajectory:
    """The Trajectory the sources score. Its token ids come from `tokenizer` (the RM's) and
    its log-probs are placeholders: no source reads them, each re-reads the text."""
    from repo_ray.domain.sop import classify_stage
    from repo_ray.model.chat import encode_prompt, encode_response

    response_ids = encode_response(tokenizer, req.response)
    return Trajectory(
        sample_id=req.sample_id, scenario_id=req.scenario.scenario_id, turn_index=0, messages=list(req.messages),
        response_text=req.response, prompt_token_ids=encode_prompt(tokenizer, req.messages),
        response_token_ids=response_ids, response_logprobs=[0.0] * len(response_ids),
        response_mask=[1] * len(response_ids), sop_stage=classify_stage(req.response).value, adapter_version=0,
        truncated=req.truncated,
    )


def _failure(t0: float, err: BaseException) -> SourceResult:
    """A source that raised, as the pool records it: status error, the exception's first line."""
    msg = str(err).splitlines()[0][:200] if str(err) else ""
    detail = f"{type(err).__name__}: {msg}" if msg else type(err).__name__
    return SourceResult(None, SourceStatus.ERROR, time.perf_counter() - t0, detail)


def source_entry(src: SourceResult) -> dict[str, Any]:
    """One source's answer as output JSON: score, status, detail, latency, and the judge's
    item scores and reasons when it gave a verdict."""
    out: dict[str, Any] = {"score": src.score, "status": src.status.value, "detail": src.detail,
                           "latency_s": round(src.latency_s, 4)}
    verdict = getattr(src, "verdict", None)
    if verdict is not None:
        out["verdict"] = verdict.to_dict()
    return out


def result_line(line: int, result: RewardResult, rule_tags: Mapping[str, list[str]] | None = None) -> dict[str, Any]:
    """The output object of one scored line. `violations` is the rules that fired (from the
    rules source's detail), None when the rules are not enabled or did not answer."""
    rules = result.sources.get(SOURCE_RULES)
    violations = [v for v in rules.detail.split(",") if v] if rules is not None and rules.ok else None
    sources = {name: source_entry(src) for name, src in result.sources.items()}
    if rule_tags is not None and SOURCE_RULES in sources:
        sources[SOURCE_RULES]["tags"] = dict(rule_tags)
    return {"line": line, "r_model": result.r_model, "e_judge": result.e_judge, "e_func": result.e_func,
            "e_enh": result.e_enh, "r_total": result.r_total, "masked": result.masked, "reason": result.reason,
            "sources": sources, "violations": violations}


def error_line(line: int, reason: str) -> dict[str, Any]:
    return {"line": line, "error": reason}


# ---------------------------------------------------------------------------- the run's RM
def rm_model_dir(run_dir: str) -> Path:
    """`RUN/rm/model` as a local directory; a pyarrow.fs URI is copied to a local scratch dir
    (removed at exit). Raises ScoreInputError naming what is missing."""
    from reward_actors.rm.stats import STATS_FILE

    if "://" not in run_dir:
        root = Path(run_dir).expanduser()
        if not root.is_dir():
            raise ScoreInputError(f"{root}: run directory not found")
        rm = root / "rm" / "model"
        if not (rm / STATS_FILE).is_file():
            raise ScoreInputError(f"{rm}: no trained reward model (no {STATS_FILE}); run `repo-ray train` first")
        return rm
    import atexit

    import pyarrow.fs as pafs

    try:
        fs, root = pafs.FileSystem.from_uri(run_dir)
    except Exception as err:  # pyarrow raises several types for unsupported schemes
        raise ScoreInputError(f"--run-dir {run_dir}: {err}") from None
    src = root.rstrip("/") + "/rm/model"
    if fs.get_file_info(src + "/" + STATS_FILE).type == pafs.FileType.NotFound:
        raise ScoreInputError(
            f"{run_dir}/rm/model: no trained reward model (no {STATS_FILE}); run `repo-ray train` first")
    local = Path(tempfile.mkdtemp(prefix="repo-ray-score-rm-"))
    atexit.register(shutil.rmtree, local, ignore_errors=True)
    pafs.copy_files(src, str(local), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem())
    return local


# ---------------------------------------------------------------------------- scoring
class RewardInspector:
    """The reward sources of a config, in this process: the RM loaded once, a JudgeClient with
    an in-process rate limiter (the config's rates and budget), the pure rules."""

    def __init__(self, cfg: RepoRayConfig, rm_dir: str | os.PathLike, judge_base_url: str | None = None) -> None:
        import torch

        from reward_actors.rm.scorer import RewardModelScorer

        self.cfg = cfg
        device = "cuda" if torch.cuda.is_available() else "cpu"
        # as RMScorer: CPU scoring stays float32 (half precision there is slow and shifts scores off the stats)
        self.rm = RewardModelScorer(rm_dir, cfg.reward.rm_normalization, cfg.reward.model.batch_size, device,
                                    cfg.model.dtype if device == "cuda" else "float32")
        self.judge_cfg = (cfg.judge if judge_base_url is None
                          else cfg.judge.model_copy(update={"base_url": judge_base_url}))

    @property
    def tokenizer(self):
        return self.rm.tokenizer

    def _rm_scores(self, trajectories: list[Trajectory]) -> list[SourceResult]:
        """One batch; if it fails, one call per trajectory so a failure names its own line."""
        t0 = time.perf_counter()
        try:
            scores = self.rm.score(trajectories)
            per = (time.perf_counter() - t0) / max(1, len(trajectories))
            return [SourceResult(float(s), SourceStatus.OK, per) for s in scores]
        except Exception:  # noqa: BLE001 - isolate the culprit below; each line gets its own status
            out = []
            for t in trajectories:
                t1 = time.perf_counter()
                try:
                    out.append(SourceResult(float(self.rm.score([t])[0]), SourceStatus.OK, time.perf_counter() - t1))
                except Exception as err:  # noqa: BLE001 - an RM failure masks the sample, as in training
                    out.append(_failure(t1, err))
            return out

    def _rules(self, trajectory: Trajectory, scenario: Scenario) -> tuple[SourceResult, dict[str, list[str]] | None]:
        """The rules source as a RuleChecker computes it, plus each fired rule's tags (why)."""
        from reward_actors.pool import rule_source_result
        from reward_actors.rules import RuleContext, e_func

        t0 = time.perf_counter()
        try:
            src = rule_source_result(trajectory, scenario, self.cfg.reward)
        except Exception as err:  # noqa: BLE001 - a rule failure is a status, as in the pool
            return _failure(t0, err), None
        try:
            ctx = RuleContext.from_scenario(scenario, trajectory.messages,
                                            overlength_chars=self.cfg.reward.overlength_chars,
                                            truncated=trajectory.truncated)
            res = e_func(trajectory.response_text, ctx, self.cfg.reward.rule_weights)
            tags = {rule: list(res.tags.get(rule, ())) for rule in res.violations}
        except Exception:  # noqa: BLE001 - the tags only explain; the source above is what counts
            tags = None
        return src, tags

    async def score_chunk(self, reqs: list[ScoreRequest], judge) -> list[tuple[RewardResult, dict | None]]:
        """RewardResults of well-formed requests, in order. `judge` is an open JudgeClient or
        None (the judge not enabled). The RM runs in a thread so judge calls proceed meanwhile."""
        from reward_actors.combine import combine_sources
        from reward_actors.judge.prompt import JudgeContext

        try:
            trajs = [build_trajectory(r, self.tokenizer) for r in reqs]
        except ValueError as err:  # the RM's tokenizer cannot encode a ChatML turn: no line can be scored
            raise ScoreInputError(f"{self.rm.rm_dir}: {str(err).splitlines()[0]}") from None
        judge_tasks = []
        if judge is not None:  # the context the pool builds (the judge reads the scenario struct, not the system text)
            judge_tasks = [asyncio.ensure_future(judge.score(JudgeContext.from_trajectory(t, r.scenario)))
                           for r, t in zip(reqs, trajs)]
        rm_results = await asyncio.to_thread(self._rm_scores, trajs) if trajs else []
        judge_results = await asyncio.gather(*judge_tasks)
        out = []
        for i, (r, t) in enumerate(zip(reqs, trajs)):
            sources: dict[str, SourceResult] = {SOURCE_RM: rm_results[i]}
            tags = None
            if SOURCE_RULES in self.cfg.reward.sources:
                sources[SOURCE_RULES], tags = self._rules(t, r.scenario)
            if judge is not None:
                sources[SOURCE_JUDGE] = judge_results[i]
            out.append((combine_sources(r.sample_id, sources, self.cfg.reward), tags))
        return out


@contextmanager
def judge_endpoint(cfg: RepoRayConfig) -> Iterator[str | None]:
    """The judge's base URL for this command: None when the judge is not a source; the local
    judge server's (started here, stopped on exit) when judge.local_server.enabled; else the
    configured judge.base_url. Started as repo_ray/pipeline/train.py `start_reward_side` does."""
    if SOURCE_JUDGE not in cfg.reward.sources:
        yield None
        return
    if not cfg.judge.local_server.enabled:
        yield cfg.judge.base_url
        return
    from reward_actors.judge.server import JudgeServerOptions, JudgeServerProcess

    srv = JudgeServerProcess.start(JudgeServerOptions.from_config(cfg.judge.local_server, seed=cfg.seed,
                                                                  model=cfg.judge.model,
                                                                  extra_items=cfg.judge.extra_items))
    try:
        yield srv.base_url
    finally:
        srv.stop()


def _chunks(lines: Iterable[str], size: int) -> Iterator[list[tuple[int, str]]]:
    chunk: list[tuple[int, str]] = []
    for n, text in enumerate(lines, start=1):
        chunk.append((n, text))
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _decode(raw: bytes) -> str | None:
    try:
        return raw.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        return None


async def score_lines(inspector: RewardInspector, lines: Iterable[str | None], out: TextIO,
                      chunk_lines: int = CHUNK_LINES) -> ScoreSummary:
    """Score every line, writing one JSON line per input line, in order (None: not UTF-8)."""
    from reward_actors.judge.client import JudgeClient, LocalGate
    from reward_actors.judge.limiter import JudgeRateLimiter

    summary = ScoreSummary()
    judge = None
    if SOURCE_JUDGE in inspector.cfg.reward.sources:
        jc = inspector.judge_cfg
        # in-process limiter with the config's rates and budget; the deadline is the one the
        # training pool gives its judge replicas (start_reward_side)
        gate = LocalGate(JudgeRateLimiter(jc.rate_limit, jc.budget))
        judge = JudgeClient(jc, inspector.cfg.reward.judge_weights, gate=gate,
                            deadline_s=max(1.0, inspector.cfg.reward.timeouts.judge_s - 1.0))
    try:
        for chunk in _chunks(lines, chunk_lines):
            objs: dict[int, dict[str, Any]] = {}
            good: list[ScoreRequest] = []
            for n, text in chunk:
                try:
                    if text is None:
                        raise ValueError("not UTF-8 text")
                    good.append(parse_line(text, n))
                except ValueError as err:
                    objs[n] = error_line(n, str(err))
                    summary.malformed.append(n)
            for req, (res, tags) in zip(good, await inspector.score_chunk(good, judge)):
                objs[req.line] = result_line(req.line, res, tags)
                summary.masked += res.masked
            for n, _ in chunk:
                out.write(json.dumps(objs[n], ensure_ascii=False) + "\n")
                summary.lines += 1
            out.flush()
    finally:
        if judge is not None:
            await judge.aclose()
    return summary


def score_file(cfg: RepoRayConfig, run_dir: str, path: str | os.PathLike, out_path: str | os.PathLike | None = None,
               stdout: TextIO | None = None) -> ScoreSummary:
    """`repo-ray score`: score every line of `path` with the run's reward sources. Lines go to
    `out_path` (written to a temporary name, renamed when complete) or else to `stdout`."""
    path = Path(path)
    if not path.is_file():
        raise ScoreInputError(f"{path}: file not found")
    try:
        f = path.open("rb")
    except OSError as err:
        raise ScoreInputError(f"{path}: cannot read ({err.strerror or err})") from None
    rm_dir = rm_model_dir(run_dir)
    with f, judge_endpoint(cfg) as base_url:
        inspector = RewardInspector(cfg, rm_dir, base_url)
        lines = (_decode(raw) for raw in f)
        if out_path is None:
            return asyncio.run(score_lines(inspector, lines, sys.stdout if stdout is None else stdout))
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}")
        try:
            with tmp.open("w", encoding="utf-8") as out:
                summary = asyncio.run(score_lines(inspector, lines, out))
            os.replace(tmp, out_path)
        finally:
            tmp.unlink(missing_ok=True)
        return summary
