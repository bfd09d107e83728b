"""JudgeClient against the real local judge server over loopback HTTP: 429 + Retry-After,
5xx, 4xx, hangs, malformed JSON, deadlines, cache, budget — and a mixed-fault batch whose
per-sample outcomes add up to the server's own counters."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

from repo_ray.config import JudgeBudget, JudgeRateLimit
from repo_ray.domain.rubric import DEFAULT_JUDGE_WEIGHTS
from repo_ray.types import SourceStatus
from reward_actors.judge.client import JudgeClient, LocalGate, backoff_delay, parse_retry_after
from reward_actors.judge.limiter import JudgeRateLimiter
from reward_actors.judge.prompt import build_judge_messages

from .judge_helpers import context, distinct_contexts, judge_cfg

W = DEFAULT_JUDGE_WEIGHTS


def score_all(cfg, ctxs, gate=None, deadline_s=30.0):
    async def run():
        async with JudgeClient(cfg, W, gate=gate, deadline_s=deadline_s, rng=random.Random(0)) as judge:
            return await asyncio.gather(*(judge.score(c) for c in ctxs))
    return asyncio.run(run())


def attempts(result) -> list[str]:
    return list(result.calls.attempts)


def test_clean_answer_gives_ok_with_e_judge_and_item_scores_in_the_detail(server):
    [r] = score_all(judge_cfg(server.base_url), [context("I understand your concern. Similar hotels nearby sell "
                                                          "the Deluxe King at ¥820 and ¥860.")])
    scores = r.verdict.scores
    assert r.status is SourceStatus.OK and r.score == sum(W[k] * v for k, v in scores.items() if v is not None)
    assert scores["emotional_soothing"] > 0  # the hotel was curt, the reply soothes
    assert r.calls.usage["total_tokens"] > 0 and r.latency_s > 0


def test_429_retry_waits_at_least_retry_after(server):
    server.control(rate_limit_rps=1)
    results = score_all(judge_cfg(server.base_url, max_retries=2), distinct_contexts(2, "ra"))
    assert [r.status for r in results] == [SourceStatus.OK, SourceStatus.OK]
    assert sorted(map(attempts, results)) == [["ok"], ["rate_limited", "ok"]]
    events = server.stats()["events"]
    limited = next(e for e in events if e["outcome"] == "rate_limited")
    retry = next(e for e in events if e["key"] == limited["key"] and e["outcome"] == "ok")
    assert limited["retry_after"] == 1
    assert retry["t"] - limited["t"] >= 1.0


def test_retry_after_longer_than_backoff_max_ends_rate_limited_without_retrying(server):
    server.control(rate_limit_rps=1)
    t0 = time.monotonic()
    results = score_all(judge_cfg(server.base_url, backoff_max_s=0.5), distinct_contexts(2, "ra2"))
    assert sorted(r.status.value for r in results) == ["ok", "rate_limited"]
    assert time.monotonic() - t0 < 0.9
    limited = next(r for r in results if r.status is SourceStatus.RATE_LIMITED)
    assert limited.score is None and "Retry-After" in limited.detail


def test_5xx_is_retried_then_ends_http_error(server):
    server.control(error_rate=1.0)
    [r] = score_all(judge_cfg(server.base_url, max_retries=2), [context("Could you adjust the Deluxe King to ¥800?")])
    assert r.status is SourceStatus.HTTP_ERROR and r.score is None
    assert attempts(r) == ["server_error"] * 3
    assert server.stats()["counters"]["server_error"] == 3


def test_hang_past_the_timeout_ends_timeout_after_retrying(server):
    server.control(hang_rate=1.0)
    t0 = time.monotonic()
    [r] = score_all(judge_cfg(server.base_url, timeout_s=0.3, max_retries=1), [context("Could you do ¥800?")])
    assert r.status is SourceStatus.TIMEOUT and attempts(r) == ["timeout", "timeout"]
    assert 0.6 <= time.monotonic() - t0 < 3.0
    assert server.stats()["counters"]["hang"] == 2


def test_per_sample_deadline_bounds_retries(server):
    server.control(hang_rate=1.0)
    [r] = score_all(judge_cfg(server.base_url, timeout_s=0.3, max_retries=20), [context("Could you do ¥800?")],
                    deadline_s=1.0)
    assert r.status is SourceStatus.TIMEOUT and r.latency_s < 1.5
    assert "deadline" in r.detail


def test_malformed_json_ends_invalid_output_without_a_retry(server):
    server.control(malformed_rate=1.0)
    [r] = score_all(judge_cfg(server.base_url, max_retries=3), [context("Could you adjust the Deluxe King to ¥800?")])
    assert r.status is SourceStatus.INVALID_OUTPUT and r.score is None and attempts(r) == ["invalid_output"]
    assert server.stats()["counters"]["requests"] == 1


def test_unreachable_judge_ends_error(server):
    cfg = judge_cfg("http://127.0.0.1:9/v1", max_retries=1)  # port 9 (discard): nothing listens
    [r] = score_all(cfg, [context("hi")])
    assert r.status is SourceStatus.ERROR and attempts(r) == ["error", "error"]


def test_same_prompt_is_answered_from_the_cache(server):
    cfg = judge_cfg(server.base_url, cache=True)

    async def run():
        async with JudgeClient(cfg, W) as judge:
            first = await judge.score(context("Could you adjust the Deluxe King to ¥800?"))
            second = await judge.score(context("Could you adjust the Deluxe King to ¥800?"))
            return first, second
    first, second = asyncio.run(run())
    assert second.score == first.score and second.calls.cached is True
    assert server.stats()["counters"]["requests"] == 1


def test_spent_budget_masks_further_samples_with_budget_exhausted(server):
    lim = JudgeRateLimiter(JudgeRateLimit(requests_per_s=1000, burst=10), JudgeBudget(max_calls=2))
    results = []
    for c in distinct_contexts(3, "budget"):
        results += score_all(judge_cfg(server.base_url), [c], gate=LocalGate(lim))
    assert [r.status.value for r in results] == ["ok", "ok", "budget_exhausted"]
    assert results[2].score is None
    assert server.stats()["counters"]["requests"] == 2


def test_mixed_fault_batch_every_sample_ends_rewarded_or_masked_and_counts_match_the_server(server):
    server.control(error_rate=0.2, hang_rate=0.15, malformed_rate=0.15, rate_limit_rps=25, seed=11)
    cfg = judge_cfg(server.base_url, timeout_s=1.0, max_retries=2, backoff_max_s=1.5)
    results = score_all(cfg, distinct_contexts(32, "mixed"))
    counters = server.stats()["counters"]

    final_of = {"ok": "ok", "invalid_output": "invalid_output", "server_error": "http_error",
                "timeout": "timeout", "rate_limited": "rate_limited"}
    per_attempt = Counter()
    for r in results:
        tries = attempts(r)
        per_attempt.update(tries)
        assert (r.score is not None) == (r.status is SourceStatus.OK)
        assert r.status.value == final_of[tries[-1]]  # the last attempt decides the status
        assert len(tries) <= 3
    statuses = Counter(r.status.value for r in results)
    seen = f"client attempts {dict(per_attempt)}, statuses {dict(statuses)}, server {counters}"
    assert statuses["ok"] == counters.get("ok", 0) and statuses["invalid_output"] == counters.get("malformed", 0), seen
    assert per_attempt["server_error"] == counters.get("server_error", 0), seen
    assert per_attempt["timeout"] == counters.get("hang", 0), seen
    assert per_attempt["rate_limited"] == counters.get("rate_limited", 0), seen
    assert sum(per_attempt.values()) == counters["requests"], seen
    for fault in ("server_error", "hang", "malformed", "rate_limited"):
        assert counters.get(fault, 0) > 0, f"the batch never saw {fault}"  # every path was exercised
    assert 0 < statuses["ok"] < 32


def test_retry_after_parses_seconds_and_http_dates_and_backoff_has_full_jitter():
    assert parse_retry_after("3") == 3.0 and parse_retry_after("garbage") is None and parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:10 GMT", now_epoch=1445412480.0) == 10.0
    rng = random.Random(1)
    delays = [backoff_delay(3, 0.5, 20.0, rng) for _ in range(200)]
    assert 0 <= min(delays) < 0.5 and 3.0 < max(delays) <= 4.0  # uniform over [0, 0.5 * 2**3]
    assert backoff_delay(0, 0.5, 20.0, rng, retry_after_s=2.0) >= 2.0
    assert len(build_judge_messages(context("x"), "v1")) == 2


def test_auto_asks_the_rubric_schema_and_a_server_without_it_gets_json_object_from_then_on(server):
    import httpx

    from reward_actors.judge.schema import answer_json_schema

    sent = []

    class Spy(httpx.AsyncHTTPTransport):  # the real transport, recording each request body
        async def handle_async_request(self, request):
            import json

            sent.append(json.loads(request.content)["response_format"])
            return await super().handle_async_request(request)

    async def run(cfg, ctxs):
        async with JudgeClient(cfg, W, transport=Spy(), rng=random.Random(0)) as judge:
            results = [await judge.score(c) for c in ctxs]  # one after another: the switch is in order
            return results, judge.answer_format

    results, fmt = asyncio.run(run(judge_cfg(server.base_url), distinct_contexts(2, "fmt")))
    assert [r.status for r in results] == [SourceStatus.OK] * 2 and fmt == "json_schema"
    schema = sent[0]["json_schema"]["schema"]
    assert sent[0]["type"] == "json_schema" and schema == answer_json_schema()
    assert schema["properties"]["scores"]["required"] == list(results[0].verdict.scores)

    server.control(structured_output=False)
    sent.clear()
    results, fmt = asyncio.run(run(judge_cfg(server.base_url), distinct_contexts(3, "fmt2")))
    assert [r.status for r in results] == [SourceStatus.OK] * 3 and fmt == "json_object"
    assert [f["type"] for f in sent] == ["json_schema", "json_object", "json_object", "json_object"]
    assert attempts(results[0]) == ["format_refused", "ok"] and attempts(results[1]) == ["ok"]
    counters = server.stats()["counters"]
    assert counters["format_refused"] == 1 and counters["ok"] == 3


def test_a_fixed_answer_format_is_never_switched(server):
    server.control(structured_output=False)
    [schema] = score_all(judge_cfg(server.base_url, response_format="json_schema"), distinct_contexts(1, "fx"))
    assert schema.status is SourceStatus.HTTP_ERROR and attempts(schema) == ["client_error"]
    assert "not supported" in schema.detail
    [obj] = score_all(judge_cfg(server.base_url, response_format="json_object"), distinct_contexts(1, "fy"))
    assert obj.status is SourceStatus.OK and server.stats()["counters"]["format_json_object"] == 1


def test_concurrent_refusals_switch_once_and_every_sample_is_asked_again(server, caplog):
    import logging

    server.control(structured_output=False)
    with caplog.at_level(logging.WARNING, logger="reward_actors.judge.client"):
        results = score_all(judge_cfg(server.base_url), distinct_contexts(4, "conc"))  # all in flight at once
    assert [r.status for r in results] == [SourceStatus.OK] * 4
    assert all(attempts(r)[-1] == "ok" for r in results)
    assert sum("refused response_format json_schema" in m for m in caplog.messages) == 1
