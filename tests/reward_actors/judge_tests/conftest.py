"""One local judge server (a real subprocess on 127.0.0.1) for the judge tests; each test
sets the knobs it needs with `judge_server.control(...)`, which also resets its counters."""

from __future__ import annotations

import pytest

from reward_actors.judge.server import JudgeServerOptions, JudgeServerProcess


@pytest.fixture(scope="package")
def judge_server():
    with JudgeServerProcess.start(JudgeServerOptions(seed=0)) as srv:
        yield srv


@pytest.fixture
def server(judge_server):
    """The package's server with every knob at its default and fresh counters."""
    judge_server.control(latency_s=0.0, rate_limit_rps=None, error_rate=0.0, hang_rate=0.0, malformed_rate=0.0,
                         gullible=False, structured_output=True, seed=0)
    return judge_server
