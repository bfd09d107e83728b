"""The judge API key never shows: not in log records (httpx's included), exception texts,
SourceResult details or reprs, nor the client's repr — through a 401 whose body echoes the
key, 5xx, timeouts, a transport error quoting the request headers and an unexpected error."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from repo_ray.domain.rubric import DEFAULT_JUDGE_WEIGHTS
from repo_ray.types import SourceStatus
from reward_actors.judge.client import JudgeClient
from reward_actors.judge.server import JudgeServerOptions, JudgeServerProcess

from .judge_helpers import context, judge_cfg

SECRET = "sk-repo-ray-TEST-SECRET-4f9c2a7e"
CLIENT_VAR, SERVER_VAR = "REPO_RAY_TEST_JUDGE_KEY", "REPO_RAY_TEST_JUDGE_SERVER_KEY"


@pytest.fixture
def keyed_server(monkeypatch):
    monkeypatch.setenv(SERVER_VAR, SECRET)  # the server process expects exactly this key
    with JudgeServerProcess.start(JudgeServerOptions(api_key_env=SERVER_VAR)) as srv:
        yield srv


def run(client_key, cfg, monkeypatch, transport=None, gate=None):
    monkeypatch.setenv(CLIENT_VAR, client_key)

    async def go():
        judge = JudgeClient(cfg, DEFAULT_JUDGE_WEIGHTS, transport=transport, gate=gate)
        async with judge:
            return judge, await judge.score(context("Could you adjust the Deluxe King to ¥800?"))
    return asyncio.run(go())


def assert_nowhere(secret, judge, result, caplog):
    texts = [result.detail, str(result), repr(result), repr(judge), str(judge), repr(vars(judge))]
    for rec in caplog.records:
        texts += [rec.getMessage(), repr(rec.args), rec.exc_text or "", str(rec.exc_info or "")]
    leaks = [t for t in texts if secret in t]
    assert not leaks, leaks


def test_api_key_never_leaks_through_errors_logs_details_or_reprs(keyed_server, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)  # root: httpx and httpcore debug records included
    cfg = judge_cfg(keyed_server.base_url, api_key_env=CLIENT_VAR, timeout_s=0.3, max_retries=1)

    wrong = SECRET + "-revoked"  # 401: the server echoes the header it got
    judge, r = run(wrong, cfg, monkeypatch)
    assert r.status is SourceStatus.HTTP_ERROR and "HTTP 401" in r.detail and f"${CLIENT_VAR}" in r.detail
    assert "***" in r.detail  # the echoed key was there, and was scrubbed
    assert_nowhere(wrong, judge, r, caplog)
    assert_nowhere(SECRET, judge, r, caplog)
    assert keyed_server.stats()["counters"]["unauthorized"] == 1  # no retry on 401

    keyed_server.control(error_rate=1.0)
    judge, r = run(SECRET, cfg, monkeypatch)
    assert r.status is SourceStatus.HTTP_ERROR
    assert_nowhere(SECRET, judge, r, caplog)

    keyed_server.control(error_rate=0.0, hang_rate=1.0)
    judge, r = run(SECRET, cfg, monkeypatch)
    assert r.status is SourceStatus.TIMEOUT
    assert_nowhere(SECRET, judge, r, caplog)

    keyed_server.control(hang_rate=0.0)
    judge, r = run(SECRET, cfg, monkeypatch)
    assert r.status is SourceStatus.OK  # the right key does get through
    assert_nowhere(SECRET, judge, r, caplog)


def test_transport_errors_quoting_headers_and_unexpected_errors_are_scrubbed(monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)

    def explode(request: httpx.Request):
        raise httpx.ConnectError(f"refused ({request.headers['authorization']})", request=request)

    cfg = judge_cfg("http://127.0.0.1:9/v1", api_key_env=CLIENT_VAR, max_retries=0)
    judge, r = run(SECRET, cfg, monkeypatch, transport=httpx.MockTransport(explode))
    assert r.status is SourceStatus.ERROR and "refused" in r.detail
    assert_nowhere(SECRET, judge, r, caplog)

    class BrokenGate:
        async def acquire(self, est_tokens, max_wait_s):
            raise RuntimeError(f"limiter down, key {SECRET}")

    judge, r = run(SECRET, cfg, monkeypatch, gate=BrokenGate())
    assert r.status is SourceStatus.ERROR and "RuntimeError" in r.detail
    assert_nowhere(SECRET, judge, r, caplog)
