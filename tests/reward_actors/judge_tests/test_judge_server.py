"""The local judge server as users meet it: `repo-ray judge-server` arguments, loopback
only, a fast start, the OpenAI model list and per-request arrival records."""

from __future__ import annotations

import time

import httpx
import pytest

from repo_ray.cli import build_parser, main
from reward_actors.judge.server import JudgeServerError, JudgeServerOptions, JudgeServerProcess, options_from_args


def test_cli_arguments_map_onto_server_options():
    args = build_parser().parse_args(["judge-server", "--port", "0", "--latency-s", "0.2", "--rate-limit-rps", "5",
                                      "--error-rate", "0.1", "--hang-rate", "0.05", "--malformed-rate", "0.2",
                                      "--gullible", "--seed", "3"])
    assert options_from_args(args) == JudgeServerOptions(port=0, latency_s=0.2, rate_limit_rps=5.0, error_rate=0.1,
                                                         hang_rate=0.05, malformed_rate=0.2, gullible=True, seed=3)


def test_non_loopback_host_is_refused_in_one_line(capsys):
    assert main(["judge-server", "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "0.0.0.0" in err and "loopback" in err
    with pytest.raises(JudgeServerError, match="error_rate|error-rate"):
        JudgeServerOptions(error_rate=1.5)


def test_server_starts_fast_lists_its_model_and_records_arrivals():
    t0 = time.monotonic()
    with JudgeServerProcess.start(JudgeServerOptions(model="heuristic-judge")) as srv:
        started = time.monotonic() - t0
        assert srv.base_url.startswith("http://127.0.0.1:")
        models = httpx.get(f"{srv.base_url}/models", timeout=5).json()
        assert [m["id"] for m in models["data"]] == ["heuristic-judge"]
        resp = httpx.post(f"{srv.base_url}/chat/completions", json={"messages": "not a list"}, timeout=5)
        assert resp.status_code == 400
        events = srv.stats()["events"]
        assert [e["outcome"] for e in events] == ["bad_request"] and events[0]["t"] > 0
    assert started < 10.0  # about 0.7 s on an idle machine
