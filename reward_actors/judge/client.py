"""Async client of an OpenAI-compatible judge (`POST {base_url}/chat/completions`) that turns
one dialogue context into one `SourceResult` (score = E_judge, or a failure status).

Per call: wait for the rate limiter's permit, POST with a per-call timeout, validate the
answer. Retries (timeouts, 429, 5xx, connection errors) wait with exponential backoff and
full jitter, at least a 429's `Retry-After`; a `Retry-After` longer than `backoff_max_s`
ends the sample as rate_limited instead of retrying early. Never retried: other 4xx (the
request or the key is wrong) and invalid answers (a temperature-0 judge would repeat
them; retrying would only spend budget). One overall deadline bounds a sample, retries
and limiter waits included.

The answer format asked for is judge.response_format: a JSON Schema built from the rubric
(structured output: a server that has it can only answer a valid verdict), or json_object;
auto asks the schema until the server refuses it (a 400/422 naming it), then json_object
from that call on, once per client (the refused call is asked again at once).

Final statuses: ok, timeout, http_error (5xx after retries, any other 4xx), rate_limited
(429 after retries, or the limiter's queue is longer than the deadline), invalid_output,
budget_exhausted, error (connection failures and anything unexpected).

The API key is read from `os.environ[cfg.api_key_env]` at each call and only ever placed
in the Authorization header of that request. Every text this module produces (details,
log lines) is scrubbed of it, in case an API or a transport error echoes it back.
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import hashlib
import json
import logging
import math
import os
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from repo_ray.config import JudgeConfig
from repo_ray.domain.rubric import rubric_items
from repo_ray.telemetry import record
from repo_ray.types import JudgeCalls, JudgeVerdict, SourceResult, SourceStatus
from reward_actors.judge.limiter import LATE_PERMIT_S, MAX_PERMIT_RETRIES, CallOutcome, JudgeRateLimiter, Permit
from reward_actors.judge.prompt import JudgeContext, build_judge_messages, prompt_text
from reward_actors.judge.schema import InvalidJudgeOutput, answer_json_schema, parse_judge_answer

log = logging.getLogger(__name__)

CACHE_SIZE = 10_000
# Characters per token for the limiter's estimate before the API reports usage (CJK is denser
# than English; erring high only slows the limiter a little).
CHARS_PER_TOKEN = 3.0
MAX_BODY_SNIPPET = 160
# Longest judge answer read: a verdict of judge.max_tokens tokens is a few kilobytes; the
# answer is untrusted input, so a body past this is invalid_output, read no further and never
# parsed (a broken or hostile endpoint cannot make a replica hold or parse megabytes).
MAX_ANSWER_BYTES = 256 * 1024
ACTOR_RETRY_S = 0.5  # pause before asking a restarting limiter actor again


class RateGate(Protocol):
    """What the client needs from a rate limiter (in-process or the run's Ray actor)."""

    async def acquire(self, est_tokens: int, max_wait_s: float) -> Permit: ...

    async def report(self, outcome: CallOutcome) -> None: ...

    async def release(self, est_tokens: int) -> None: ...


class LocalGate:
    """A JudgeRateLimiter in this process (tests, single-process use)."""

    def __init__(self, limiter: JudgeRateLimiter) -> None:
        self.limiter = limiter

    async def acquire(self, est_tokens: int, max_wait_s: float) -> Permit:
        permit = self.limiter.acquire(est_tokens, max_wait_s)
        if permit.granted:
            permit = dataclasses.replace(permit, not_before_epoch=time.time() + permit.wait_s)
        return permit

    async def report(self, outcome: CallOutcome) -> None:
        self.limiter.report(outcome)

    async def release(self, est_tokens: int) -> None:
        self.limiter.release(est_tokens)


class ActorGate:
    """The run's JudgeLimiterActor (created by repo_ray/pipeline/placement.get_or_create_limiter)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    async def acquire(self, est_tokens: int, max_wait_s: float) -> Permit:
        import ray

        # A limiter being restarted by Ray (it keeps its spend) is asked again within the wait
        # the caller allows; one that stays dead fails closed (the sample's judge status: error).
        deadline = time.monotonic() + max_wait_s
        while True:
            try:
                return await self.actor.acquire.remote(est_tokens, max(0.0, deadline - time.monotonic()))
            except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError):
                if time.monotonic() + ACTOR_RETRY_S >= deadline:
                    raise
                await asyncio.sleep(ACTOR_RETRY_S)

    async def report(self, outcome: CallOutcome) -> None:
        self.actor.report.remote(outcome)  # fire and forget: nobody waits on bookkeeping

    async def release(self, est_tokens: int) -> None:
        self.actor.release.remote(est_tokens)

    def __repr__(self) -> str:
        return "ActorGate()"


@dataclass(slots=True)
class _Attempt:
    """One HTTP call's result inside the retry loop."""

    outcome: str  # ok | invalid_output | rate_limited | server_error | client_error | timeout | error
    reason: str = ""
    verdict: JudgeVerdict | None = None
    retry_after_s: float | None = None
    usage: dict[str, int] = field(default_factory=dict)
    http_status: int | None = None

    @property
    def retryable(self) -> bool:
        return self.outcome in ("rate_limited", "server_error", "timeout", "error", "format_refused")

    @property
    def status(self) -> SourceStatus:
        return {
            "ok": SourceStatus.OK,
            "invalid_output": SourceStatus.INVALID_OUTPUT,
            "rate_limited": SourceStatus.RATE_LIMITED,
            "server_error": SourceStatus.HTTP_ERROR,
            "client_error": SourceStatus.HTTP_ERROR,
            "format_refused": SourceStatus.HTTP_ERROR,
            "timeout": SourceStatus.TIMEOUT,
        }.get(self.outcome, SourceStatus.ERROR)


@dataclass(slots=True)
class _LimiterWaits:
    wait_s: float = 0.0
    late_permits: int = 0

    def calls(self, attempts: list[str], usage: dict[str, int] | None = None) -> JudgeCalls:
        return JudgeCalls(tuple(attempts), False, dict(usage or {}), round(self.wait_s, 4), self.late_permits)


async def _read_capped(resp: httpx.Response, cap: int) -> bytes | None:
    """The body, or None as soon as it passes `cap` bytes (the rest is never read)."""
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        return None
    chunks, size = [], 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def parse_retry_after(value: str | None, now_epoch: float | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent/unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        secs = float(value)
        return secs if math.isfinite(secs) and secs >= 0 else None
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    now_epoch = time.time() if now_epoch is None else now_epoch
    return max(0.0, when.timestamp() - now_epoch)


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random,
                  retry_after_s: float | None = None) -> float:
    """Full jitter: uniform(0, min(max, base * 2**attempt)), and never less than Retry-After."""
    jitter = rng.uniform(0.0, min(max_s, base_s * (2.0 ** attempt)))
    return max(jitter, retry_after_s or 0.0)


def verdict_line(verdict: JudgeVerdict, calls: JudgeCalls | None) -> str:
    """One short line about an ok answer, e.g. "8/9 items scored, 2 calls"."""
    scored = sum(v is not None for v in verdict.scores.values())
    parts = [f"{scored}/{len(verdict.scores)} items scored"]
    if calls is not None and calls.cached:
        parts.append("cached")
    elif calls is not None and len(calls.attempts) > 1:
        parts.append(f"{len(calls.attempts)} calls")
    if verdict.ignored_items:
        parts.append(f"{len(verdict.ignored_items)} unknown item(s) ignored")
    return ", ".join(parts)


def cache_key(messages: list[dict[str, str]], rubric_version: str, model: str) -> str:
    blob = json.dumps([messages, rubric_version, model], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeClient:
    """Scores one JudgeContext at a time; safe to share between many concurrent coroutines.

    `weights` are reward.judge_weights; `deadline_s` is the per-sample budget
    (reward.timeouts.judge_s), retries and limiter waits included. Use as
    `async with JudgeClient(...) as judge: result = await judge.score(ctx)`."""

    def __init__(
        self,
        cfg: JudgeConfig,
        weights: Mapping[str, float],
        *,
        gate: RateGate | None = None,
        deadline_s: float = 120.0,
        transport: httpx.AsyncBaseTransport | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cfg = cfg
        # the rubric: built-in items plus judge.extra_items, whose weights come with them
        # (reward.judge_weights names built-in items only)
        self.items = rubric_items(cfg.extra_items)
        self.weights = {**{i.name: i.weight for i in cfg.extra_items}, **weights}
        self.gate = gate
        self.deadline_s = float(deadline_s)
        self._transport = transport
        self._rng = rng or random.Random()
        self._clock = clock
        self._http: httpx.AsyncClient | None = None
        self._cache: OrderedDict[str, JudgeVerdict] = OrderedDict()
        self.url = cfg.base_url.rstrip("/") + "/chat/completions"
        # what the next call asks for (auto starts with the schema; _read may fall back once)
        self.answer_format = "json_object" if cfg.response_format == "json_object" else "json_schema"
        self._schema = answer_json_schema(self.items)

    def _response_format(self) -> dict[str, Any]:
        if self.answer_format == "json_schema":
            return {"type": "json_schema", "json_schema": {"name": "judge_verdict", "schema": self._schema,
                                                           "strict": True}}
        return {"type": "json_object"}

    def __repr__(self) -> str:  # no key, no headers: only where it points
        return f"JudgeClient(url={self.url!r}, model={self.cfg.model!r}, rubric={self.cfg.rubric_version!r})"

    async def __aenter__(self) -> JudgeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # Per-call timeouts are set on each request; the pool must hold every concurrent call.
            self._http = httpx.AsyncClient(
                transport=self._transport, limits=httpx.Limits(max_connections=256, max_keepalive_connections=64),
                follow_redirects=False,
            )
        return self._http

    def _api_key(self) -> str | None:
        env = self.cfg.api_key_env
        return os.environ.get(env) or None if env else None

    def _scrub(self, text: str) -> str:
        key = self._api_key()
        return text.replace(key, "***") if key and key in text else text

    # ------------------------------------------------------------------ scoring
    async def score(self, ctx: JudgeContext, deadline_s: float | None = None) -> SourceResult:
        """E_judge of one reply in its context, or a failure status with score None."""
        return await self.score_messages(build_judge_messages(ctx, self.cfg.rubric_version, self.items), deadline_s)

    async def score_messages(self, messages: list[dict[str, str]], deadline_s: float | None = None) -> SourceResult:
        """The same for prebuilt chat messages (the prompt builder is `prompt.build_judge_messages`)."""
        t0 = self._clock()
        try:
            return await self._score(messages, t0, self.deadline_s if deadline_s is None else float(deadline_s))
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - a bug in one sample must mask it, not kill the replica
            log.error("judge: unexpected %s while scoring", type(err).__name__)
            return self._result(SourceStatus.ERROR, t0, f"unexpected {type(err).__name__}")

    async def _score(self, messages: list[dict[str, str]], t0: float, deadline_s: float) -> SourceResult:
        key = cache_key(messages, self.cfg.rubric_version, self.cfg.model) if self.cfg.cache else None
        if key is not None and key in self._cache:
            self._cache.move_to_end(key)
            verdict = self._cache[key]
            return self._result(SourceStatus.OK, t0, calls=JudgeCalls(cached=True), verdict=verdict)
        deadline = t0 + deadline_s
        est_tokens = int(len(prompt_text(messages)) / CHARS_PER_TOKEN) + self.cfg.max_tokens
        attempts: list[str] = []
        waits = _LimiterWaits()
        last: _Attempt | None = None
        for attempt in range(self.cfg.max_retries + 1):
            if attempt > 0:
                assert last is not None
                if last.retry_after_s is not None and last.retry_after_s > self.cfg.backoff_max_s:
                    last.reason += f"; Retry-After {last.retry_after_s:g}s exceeds judge.backoff_max_s"
                    break
                delay = 0.0 if last.outcome == "format_refused" else backoff_delay(  # ask again at once
                    attempt - 1, self.cfg.backoff_base_s, self.cfg.backoff_max_s, self._rng, last.retry_after_s)
                if self._clock() + delay >= deadline:
                    last.reason += f"; per-sample deadline {deadline_s:g}s reached"
                    break
                record("repo_ray_judge_retries_total")
                await asyncio.sleep(delay)
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            if self.gate is not None:
                status = await self._wait_for_permit(est_tokens, deadline, waits)
                if status is SourceStatus.BUDGET_EXHAUSTED:
                    return self._result(SourceStatus.BUDGET_EXHAUSTED, t0, "judge budget exhausted",
                                        waits.calls(attempts))
                if status is not SourceStatus.OK:
                    last = _Attempt("rate_limited", "the limiter's queue is longer than the per-sample deadline")
                    break
                remaining = deadline - self._clock()
            last = await self._call(messages, min(self.cfg.timeout_s, max(remaining, 0.001)))
            attempts.append(last.outcome)
            if self.gate is not None:
                await self.gate.report(CallOutcome(est_tokens, last.http_status, last.usage.get("total_tokens"),
                                                   last.retry_after_s))
            if last.outcome == "ok":
                assert last.verdict is not None
                if key is not None:
                    self._cache[key] = last.verdict
                    if len(self._cache) > CACHE_SIZE:
                        self._cache.popitem(last=False)
                return self._result(SourceStatus.OK, t0, calls=waits.calls(attempts, last.usage), verdict=last.verdict)
            if not last.retryable:
                break
        if last is None:
            last = _Attempt("timeout", f"per-sample deadline {deadline_s:g}s reached before any call")
        return self._result(last.status, t0, last.reason, waits.calls(attempts))

    async def _wait_for_permit(self, est_tokens: int, deadline: float, waits: _LimiterWaits) -> SourceStatus:
        """Sleep until the limiter's slot; OK, RATE_LIMITED (queue past the deadline) or BUDGET_EXHAUSTED."""
        assert self.gate is not None
        t0 = self._clock()
        try:
            for retry in range(MAX_PERMIT_RETRIES + 1):
                permit = await self.gate.acquire(est_tokens, deadline - self._clock())
                if permit.status == "budget_exhausted":
                    return SourceStatus.BUDGET_EXHAUSTED
                if not permit.granted:
                    return SourceStatus.RATE_LIMITED
                wait = permit.sleep_s()
                if wait > 0:
                    await asyncio.sleep(wait)
                if -permit.sleep_s() <= LATE_PERMIT_S or retry == MAX_PERMIT_RETRIES:
                    return SourceStatus.OK
                waits.late_permits += 1
                await self.gate.release(est_tokens)  # too late for its slot: sending now would bunch
            return SourceStatus.OK
        finally:
            waits.wait_s += self._clock() - t0

    def _result(self, status: SourceStatus, t0: float, reason: str = "", calls: JudgeCalls | None = None,
                verdict: JudgeVerdict | None = None) -> SourceResult:
        """The sample's SourceResult: the typed verdict and call record, a short scrubbed line."""
        if verdict is not None:
            verdict = self._scrub_verdict(verdict)
            reason = verdict_line(verdict, calls)
        return SourceResult(score=None if verdict is None else verdict.e_judge, status=status,
                            latency_s=max(0.0, self._clock() - t0), detail=self._scrub(reason), verdict=verdict,
                            calls=calls)

    def _scrub_verdict(self, verdict: JudgeVerdict) -> JudgeVerdict:
        """The judge's own words are untrusted and may echo the key: reasons and extra item names too."""
        key = self._api_key()
        texts = [*verdict.reasons.values(), *verdict.ignored_items]
        if not key or not any(key in t for t in texts):
            return verdict
        return dataclasses.replace(verdict, reasons={k: self._scrub(r) for k, r in verdict.reasons.items()},
                                   ignored_items=tuple(self._scrub(i) for i in verdict.ignored_items))

    # ------------------------------------------------------------------ one HTTP call
    async def _call(self, messages: list[dict[str, str]], timeout_s: float) -> _Attempt:
        body = {
            "model": self.cfg.model,
            "messages": messages,
            "temperature": self.cfg.temperature,
            "max_tokens": self.cfg.max_tokens,
            "response_format": self._response_format(),
        }
        asked = self.answer_format
        headers = {"Content-Type": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        t0 = self._clock()
        try:
            async with asyncio.timeout(timeout_s):
                client = self._client()
                request = client.build_request("POST", self.url, json=body, headers=headers,
                                               timeout=httpx.Timeout(timeout_s))
                resp = await client.send(request, stream=True)
                try:
                    raw = await _read_capped(resp, MAX_ANSWER_BYTES)
                finally:
                    await resp.aclose()
        except (TimeoutError, httpx.TimeoutException):
            att = _Attempt("timeout", f"no answer within judge.timeout_s={timeout_s:.3g}s")
        except httpx.HTTPError as err:
            att = _Attempt("error", self._scrub(f"{type(err).__name__}: {err}"[:MAX_BODY_SNIPPET]))
        else:
            att = self._read(resp, raw)
            att.http_status = resp.status_code
            if asked == "json_schema" and self._schema_refused(att, raw):
                att = _Attempt("format_refused", f"HTTP {resp.status_code}: the server refused response_format "
                               "json_schema; asking json_object from now on", http_status=resp.status_code)
        outcome = att.outcome if att.outcome not in ("server_error", "client_error") else "http_error"
        record("repo_ray_judge_requests_total", status=outcome)
        record("repo_ray_judge_latency_seconds", self._clock() - t0)
        if outcome == "rate_limited":
            record("repo_ray_judge_rate_limited_total")
        if att.outcome != "ok":
            log.debug("judge call failed: %s", att.reason)
        return att

    def _schema_refused(self, att: _Attempt, raw: bytes | None) -> bool:
        """judge.response_format auto and a 400/422 that names the schema or the response format:
        this server has no structured output. Switch this caller to json_object (once, logged)."""
        if self.cfg.response_format != "auto" or att.outcome != "client_error" or att.http_status not in (400, 422):
            return False
        body = (raw or b"").decode("utf-8", "replace").lower()  # raw is already capped (_read_capped)
        if not any(word in body for word in ("response_format", "schema", "structured")):
            return False
        if self.answer_format != "json_object":  # concurrent calls may all be refused: one line
            self.answer_format = "json_object"
            log.warning("judge: %s refused response_format json_schema (HTTP %s); asking json_object from now on",
                        self.url, att.http_status)
        return True

    def _read(self, resp: httpx.Response, raw: bytes | None) -> _Attempt:
        """The attempt's outcome from the status, headers and body (`raw` None: over the cap)."""
        code = resp.status_code
        if code == 429:
            ra = parse_retry_after(resp.headers.get("retry-after"))
            return _Attempt("rate_limited", "HTTP 429", retry_after_s=ra)
        if code >= 500:
            return _Attempt("server_error", f"HTTP {code}")
        if code != 200:
            hint = f" (is ${self.cfg.api_key_env} set?)" if code in (401, 403) and self.cfg.api_key_env else ""
            snippet = self._scrub((raw or b"")[:MAX_BODY_SNIPPET].decode("utf-8", "replace"))
            return _Attempt("client_error", f"HTTP {code}{hint}: {snippet}")
        if raw is None:
            return _Attempt("invalid_output", f"answer longer than {MAX_ANSWER_BYTES:,} bytes; not parsed")
        try:
            payload = json.loads(raw)
            choice = payload["choices"][0]["message"]
            content = choice["content"]
            usage = payload.get("usage") or {}
            usage = {k: int(usage[k]) for k in ("prompt_tokens", "completion_tokens", "total_tokens")
                     if isinstance(usage.get(k), int) and not isinstance(usage.get(k), bool)}
        except (ValueError, KeyError, IndexError, TypeError):
            return _Attempt("invalid_output", "response is not an OpenAI chat completion")
        try:
            verdict = parse_judge_answer(content, self.weights, self.items)
        except InvalidJudgeOutput as err:
            return _Attempt("invalid_output", str(err), usage=usage)
        return _Attempt("ok", verdict=verdict, usage=usage)
