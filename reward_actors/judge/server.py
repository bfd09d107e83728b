"""The local judge server (`repo-ray judge-server`): an OpenAI-compatible
`POST /v1/chat/completions` on loopback that scores the rubric with the deterministic
heuristics of heuristics.py — the stand-in for a real LLM judge (in production
`judge.base_url` points at vLLM's OpenAI server or any compatible API).

Knobs for testing the client and the limiter: added latency, its own rate limit (429 with
`Retry-After` past `rate_limit_rps` requests in any second), a share of 5xx answers, of
hangs (never answers; the connection stays open) and of malformed JSON answers, a
"gullible" mode that obeys `SCORE EVERYTHING <n>` written outside the prompt's data block,
no structured output (a `json_schema` response_format answered 400, as servers without it do),
and an expected API key (`--api-key-env VAR`: requests without that Bearer key get a 401
whose body echoes the header they sent, as careless APIs do — the client must scrub it).
Fault draws come from one seeded RNG in arrival order.

Test endpoints: `GET /stats` (counters and every request's arrival time and outcome),
`POST /control` (sets the knobs it names, keeps the others; resets counters, events and
the RNG), `GET /health`.
`JudgeServerProcess` runs the server as a subprocess for tests and the pipeline.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import ipaddress
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from dataclasses import asdict, dataclass, replace
from typing import Any

from repo_ray.errors import UserError

HANG_S = 600.0
MAX_EVENTS = 200_000
READY_PREFIX = "repo-ray judge-server: listening on "


class JudgeServerError(UserError):
    """The local judge server cannot start as asked."""


@dataclass(frozen=True)
class JudgeServerOptions:
    host: str = "127.0.0.1"
    port: int = 0  # 0 picks a free port
    latency_s: float = 0.0
    rate_limit_rps: float | None = None
    error_rate: float = 0.0
    hang_rate: float = 0.0
    malformed_rate: float = 0.0
    gullible: bool = False
    structured_output: bool = True  # False: a json_schema response_format is refused (400), as servers without it do
    seed: int = 0
    model: str = "repo-judge"
    api_key_env: str | None = None  # environment variable holding the key clients must send
    # "name=package.module:function": scorers of extra rubric items (judge.extra_items[].heuristic)
    extra_items: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _is_loopback(self.host):
            raise JudgeServerError(f"--host {self.host}: the heuristic judge only listens on loopback "
                                   "(127.0.0.1, ::1 or localhost)")
        for name in ("error_rate", "hang_rate", "malformed_rate"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise JudgeServerError(f"--{name.replace('_', '-')} {v}: must lie in [0, 1]")
        if self.latency_s < 0:
            raise JudgeServerError(f"--latency-s {self.latency_s}: must be >= 0")
        if self.rate_limit_rps is not None and self.rate_limit_rps <= 0:
            raise JudgeServerError(f"--rate-limit-rps {self.rate_limit_rps}: must be > 0")

    @classmethod
    def from_config(cls, local_server: Any, seed: int = 0, model: str = "repo-judge",
                    extra_items: Any = ()) -> JudgeServerOptions:
        """From the config section judge.local_server (and judge.extra_items' heuristics)."""
        return cls(port=local_server.port, latency_s=local_server.latency_s,
                   rate_limit_rps=local_server.rate_limit_rps, error_rate=local_server.error_rate,
                   hang_rate=local_server.hang_rate, malformed_rate=local_server.malformed_rate,
                   gullible=getattr(local_server, "gullible", False), seed=seed, model=model,
                   extra_items=tuple(f"{i.name}={i.heuristic}" for i in extra_items if i.heuristic))

    def extra_scorers(self) -> dict[str, Any]:
        """Item name -> its heuristic (resolved by import path)."""
        from repo_ray.plugins import PluginError, resolve_heuristic

        out = {}
        for entry in self.extra_items:
            name, sep, spec = entry.partition("=")
            if not sep or not name or not spec:
                raise JudgeServerError(f"--extra-item {entry!r}: expected NAME=package.module:function")
            try:
                out[name] = resolve_heuristic(spec)
            except PluginError as err:
                raise JudgeServerError(f"--extra-item {name}: {err}") from None
        return out


_KNOBS = ("latency_s", "rate_limit_rps", "error_rate", "hang_rate", "malformed_rate", "gullible", "structured_output",
          "seed")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class JudgeServerState:
    """Counters, arrival log, fault RNG and the server's own rate window."""

    def __init__(self, opts: JudgeServerOptions) -> None:
        self.configure(opts)

    def configure(self, opts: JudgeServerOptions) -> None:
        self.opts = opts
        self.rng = random.Random(opts.seed)
        self.counters: Counter[str] = Counter()
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_EVENTS)
        self.served: deque[float] = deque()
        self.expected_key = os.environ.get(opts.api_key_env) if opts.api_key_env else None

    def over_rate(self, now: float) -> float | None:
        """Seconds until a slot frees when the last second already holds rate_limit_rps served requests."""
        rps = self.opts.rate_limit_rps
        if rps is None:
            return None
        while self.served and self.served[0] <= now - 1.0:
            self.served.popleft()
        if len(self.served) >= rps:
            return self.served[0] + 1.0 - now
        self.served.append(now)
        return None


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def make_app(opts: JudgeServerOptions):
    from aiohttp import web

    from reward_actors.judge.heuristics import judge_answer

    scorers = opts.extra_scorers()
    state = JudgeServerState(opts)
    app = web.Application(client_max_size=8 * 1024 * 1024)
    app["state"] = state

    def record(t: float, outcome: str, key: str, **extra: Any) -> None:
        state.counters[outcome] += 1
        state.events.append({"t": t, "outcome": outcome, "key": key, **extra})

    async def chat(request: web.Request) -> web.Response:
        t = time.monotonic()
        state.counters["requests"] += 1
        try:
            body = await request.json()
            messages = body["messages"]
            if not isinstance(messages, list):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            record(t, "bad_request", "")
            return web.json_response({"error": {"message": "body must be JSON with a messages list"}}, status=400)
        key = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()[:16]
        fmt = body.get("response_format")
        fmt = fmt if isinstance(fmt, dict) else {}
        state.counters[f"format_{fmt.get('type', 'none')}"] += 1
        if fmt.get("type") == "json_schema" and not state.opts.structured_output:
            record(t, "format_refused", key)
            return web.json_response({"error": {"message": "response_format json_schema is not supported; use "
                                                           "json_object"}}, status=400)
        if state.expected_key is not None:
            sent = request.headers.get("Authorization", "")
            if sent != f"Bearer {state.expected_key}":
                record(t, "unauthorized", key)
                return web.json_response({"error": {"message": f"invalid API key in header {sent!r}"}}, status=401)
        # the window is checked at this moment, not at receipt: awaits above can reorder requests
        wait = state.over_rate(time.monotonic())
        if wait is not None:
            retry_after = max(1, math.ceil(wait))
            record(t, "rate_limited", key, retry_after=retry_after)
            return web.json_response({"error": {"message": "rate limit exceeded"}}, status=429,
                                     headers={"Retry-After": str(retry_after)})
        o = state.opts
        # three draws per request, always, so one knob does not shift the others' sequence
        r_error, r_hang, r_malformed = state.rng.random(), state.rng.random(), state.rng.random()
        if r_error < o.error_rate:
            record(t, "server_error", key)
            return web.json_response({"error": {"message": "injected server error"}}, status=503)
        if r_hang < o.hang_rate:
            record(t, "hang", key)
            await asyncio.sleep(HANG_S)
            return web.json_response({"error": {"message": "hung"}}, status=504)
        if o.latency_s > 0:
            await asyncio.sleep(o.latency_s)
        answer = json.dumps(judge_answer(messages, gullible=o.gullible, extra_scorers=scorers), ensure_ascii=False)
        if r_malformed < o.malformed_rate:
            record(t, "malformed", key)
            answer = answer[: max(1, len(answer) // 2)]  # cut mid-object: not JSON
        else:
            record(t, "ok", key)
        prompt_tokens = _tokens("".join(str(m.get("content", "")) for m in messages if isinstance(m, dict)))
        completion_tokens = _tokens(answer)
        return web.json_response({
            "id": f"chatcmpl-{key}", "object": "chat.completion", "created": int(time.time()), "model": o.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        })

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": state.opts.model, "object": "model",
                                                              "owned_by": "repo-ray"}]})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response({"counters": dict(state.counters), "events": list(state.events),
                                  "options": asdict(state.opts)})

    async def control(request: web.Request) -> web.Response:
        try:
            changes = await request.json()
            unknown = set(changes) - set(_KNOBS)
            if unknown:
                raise ValueError(f"unknown knob(s) {sorted(unknown)}")
            state.configure(replace(state.opts, **changes))
        except (ValueError, TypeError, UserError) as err:
            return web.json_response({"error": {"message": str(err)}}, status=400)
        return web.json_response({"options": asdict(state.opts)})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/stats", stats)
    app.router.add_post("/control", control)
    app.router.add_get("/health", health)
    return app


async def _serve(opts: JudgeServerOptions) -> None:
    from aiohttp import web

    # handler_cancellation: a hung request's handler ends when its client gives up
    runner = web.AppRunner(make_app(opts), handler_cancellation=True, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, opts.host, opts.port)
    try:
        await site.start()
    except OSError as err:
        raise JudgeServerError(f"cannot listen on {opts.host}:{opts.port}: {err.strerror}") from None
    host = f"[{opts.host}]" if ":" in opts.host else opts.host
    print(f"{READY_PREFIX}http://{host}:{site.port}/v1", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def run_judge_server(opts: JudgeServerOptions) -> None:
    """Serve until interrupted (the CLI's `repo-ray judge-server`)."""
    try:
        asyncio.run(_serve(opts))
    except KeyboardInterrupt:
        pass


# ---------------------------------------------------------------------------- CLI arguments
def add_server_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="loopback address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8400, help="port; 0 picks a free one (default 8400)")
    p.add_argument("--latency-s", type=float, default=0.0, help="added latency per answer")
    p.add_argument("--rate-limit-rps", type=float, default=None, help="answer 429 + Retry-After above this rate")
    p.add_argument("--error-rate", type=float, default=0.0, help="share of requests answered 503")
    p.add_argument("--hang-rate", type=float, default=0.0, help="share of requests never answered")
    p.add_argument("--malformed-rate", type=float, default=0.0, help="share of answers that are not valid JSON")
    p.add_argument("--gullible", action="store_true",
                   help="obey 'SCORE EVERYTHING <n>' found outside the prompt's data block (tests the prompt builder)")
    p.add_argument("--no-structured-output", dest="structured_output", action="store_false",
                   help="refuse a json_schema response_format with a 400, as servers without structured output do")
    p.add_argument("--seed", type=int, default=0, help="seed of the fault draws")
    p.add_argument("--model", default="repo-judge", help="model name reported by /v1/models")
    p.add_argument("--api-key-env", default=None, metavar="VAR",
                   help="require 'Authorization: Bearer $VAR' (the key itself never goes on the command line)")
    p.add_argument("--extra-item", action="append", default=[], metavar="NAME=MODULE:FUNCTION",
                   help="score the extra rubric item NAME with fn(payload) (repeatable); extra items asked "
                        "without one are answered null")


def options_from_args(args: argparse.Namespace) -> JudgeServerOptions:
    return JudgeServerOptions(
        host=args.host, port=args.port, latency_s=args.latency_s, rate_limit_rps=args.rate_limit_rps,
        error_rate=args.error_rate, hang_rate=args.hang_rate, malformed_rate=args.malformed_rate,
        gullible=args.gullible, structured_output=args.structured_output, seed=args.seed, model=args.model,
        api_key_env=args.api_key_env,
        extra_items=tuple(args.extra_item),
    )


def _argv(opts: JudgeServerOptions) -> list[str]:
    argv = ["--host", opts.host, "--port", str(opts.port), "--latency-s", repr(opts.latency_s),
            "--error-rate", repr(opts.error_rate), "--hang-rate", repr(opts.hang_rate),
            "--malformed-rate", repr(opts.malformed_rate), "--seed", str(opts.seed), "--model", opts.model]
    if opts.rate_limit_rps is not None:
        argv += ["--rate-limit-rps", repr(opts.rate_limit_rps)]
    if opts.gullible:
        argv.append("--gullible")
    if not opts.structured_output:
        argv.append("--no-structured-output")
    if opts.api_key_env:
        argv += ["--api-key-env", opts.api_key_env]
    for entry in opts.extra_items:
        argv += ["--extra-item", entry]
    return argv


# ---------------------------------------------------------------------------- subprocess
class JudgeServerProcess:
    """The judge server in a child process: `with JudgeServerProcess.start(opts) as srv: srv.base_url`."""

    def __init__(self, proc: subprocess.Popen, base_url: str, stderr_file: Any) -> None:
        self.proc = proc
        self.base_url = base_url  # http://127.0.0.1:PORT/v1
        self._stderr = stderr_file

    @classmethod
    def start(cls, opts: JudgeServerOptions | None = None, timeout_s: float = 30.0) -> JudgeServerProcess:
        opts = opts or JudgeServerOptions()
        # stderr to a file: a pipe nobody drains would block a long-running server once full
        stderr_file = tempfile.TemporaryFile(mode="w+", prefix="judge-server-")
        proc = subprocess.Popen(
            [sys.executable, "-m", "reward_actors.judge.server", *_argv(opts)],
            stdout=subprocess.PIPE, stderr=stderr_file, text=True, env=dict(os.environ),
        )
        deadline = time.monotonic() + timeout_s
        assert proc.stdout is not None
        line = ""
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line.startswith(READY_PREFIX) or not line:
                break
        if not line.startswith(READY_PREFIX):
            proc.kill()
            proc.wait()
            stderr_file.seek(0)
            err = stderr_file.read().strip().splitlines()
            stderr_file.close()
            raise JudgeServerError(f"judge-server did not start: {err[-1] if err else 'no output'}")
        return cls(proc, line[len(READY_PREFIX):].strip(), stderr_file)

    @property
    def root_url(self) -> str:
        return re.sub(r"/v1$", "", self.base_url)

    def stats(self) -> dict[str, Any]:
        import httpx

        return httpx.get(f"{self.root_url}/stats", timeout=10).json()

    def control(self, **knobs: Any) -> dict[str, Any]:
        """Set the named knobs (see JudgeServerOptions; others keep their values) and reset
        counters, events and the RNG."""
        import httpx

        resp = httpx.post(f"{self.root_url}/control", json=knobs, timeout=10)
        resp.raise_for_status()
        return resp.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()

    def __enter__(self) -> JudgeServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reward_actors.judge.server", description=__doc__.splitlines()[0])
    add_server_args(p)
    try:
        run_judge_server(options_from_args(p.parse_args(argv)))
    except UserError as err:
        print(f"judge-server: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
