"""Judge pool rate limit, measured at the judge: the local judge server records every
request's arrival; the Serve judge pool sends through one shared JudgeRateLimiter actor.

Prints, side by side in one run: the rate achieved with all load through one replica and
with an autoscaled pool (1 -> 4 replicas) against the configured Q, the most arrivals in
any sliding one-second window against Q + burst, how long Serve took to scale 1 -> 4, and
how many permits reached their replica too late to use (re-queued, see limiter.py).

    .venv/bin/python bench/judge_limiter.py [--q 20] [--burst 5] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# the driver's router probes replica queues; on a loaded 2-core machine 0.1 s is too short
os.environ.setdefault("RAY_SERVE_QUEUE_LENGTH_RESPONSE_DEADLINE_S", "1.0")

from emit import emit  # noqa: E402  (bench/emit.py: this script's directory is on sys.path)

from repo_ray.config import JudgeAutoscaling, JudgeConfig, JudgeRateLimit  # noqa: E402
from repo_ray.domain.rubric import DEFAULT_JUDGE_WEIGHTS  # noqa: E402
from repo_ray.domain.scenario import Persona, RoomType, Scenario  # noqa: E402
from repo_ray.types import Message, Role  # noqa: E402
from reward_actors.judge.limiter import arrival_rate, max_window_count  # noqa: E402
from reward_actors.judge.prompt import JudgeContext  # noqa: E402
from reward_actors.judge.server import JudgeServerOptions, JudgeServerProcess  # noqa: E402

SCENARIO = Scenario("bench-0", "Harbor Hotel", "Hangzhou", 4, "2027-05-01", "2027-05-03", Persona.HESITANT, "en",
                    (RoomType("Deluxe King", 900.0, (820.0, 860.0), 800.0, 740.0),))
HISTORY = (Message(Role.AGENT, "Hi, this is Alex from the travel platform."), Message(Role.HOTEL, "Hello, go ahead."))


def contexts(n: int, salt: str) -> list[JudgeContext]:
    """Distinct prompts (no cache hits): the text varies per request."""
    return [JudgeContext(SCENARIO, HISTORY, f"Could you adjust the Deluxe King to ¥{760 + i % 100}? ({salt}-{i})",
                         "ask") for i in range(n)]


def judge_config(base_url: str, q: float, burst: int, autoscaling: JudgeAutoscaling) -> JudgeConfig:
    return JudgeConfig(
        base_url=base_url, cache=False, timeout_s=10.0, max_retries=2, backoff_base_s=0.05, backoff_max_s=2.0,
        rate_limit=JudgeRateLimit(requests_per_s=q, burst=burst, tokens_per_min=1e9),
        autoscaling=autoscaling,
    )


def one_replica(max_ongoing: int = 64) -> JudgeAutoscaling:
    return JudgeAutoscaling(min_replicas=1, max_replicas=1, max_ongoing_requests=max_ongoing, num_cpus_per_replica=0.1)


def one_to_four() -> JudgeAutoscaling:
    return JudgeAutoscaling(min_replicas=1, max_replicas=4, initial_replicas=1, target_ongoing_requests=2,
                            upscale_delay_s=0.5, downscale_delay_s=60, max_ongoing_requests=16,
                            num_cpus_per_replica=0.1)


@dataclass
class PhaseResult:
    requests: int
    replicas_seen: int
    arrivals: list[float]  # server arrival times (monotonic clock, shared by processes on one host)
    statuses: dict[str, int]
    late_permits: int
    rate: float
    max_window: int
    scale_up_s: float | None  # first request -> max_replicas running (None: never)
    rate_after_scale_up: float | None


async def _drive(pool, ctxs: list[JudgeContext], max_replicas: int) -> tuple[list, int, float, float | None]:
    from reward_actors.judge.serve import replica_count

    t0 = time.monotonic()
    tasks = [asyncio.ensure_future(_await(pool.score(c))) for c in ctxs]
    seen, scaled_at = 1, None
    while not all(t.done() for t in tasks):
        n = await asyncio.to_thread(replica_count, pool.app_name)
        seen = max(seen, n)
        if scaled_at is None and n >= max_replicas:
            scaled_at = time.monotonic()
        await asyncio.sleep(0.25)
    return [t.result() for t in tasks], seen, t0, scaled_at


async def _await(resp):
    return await resp


def run_phase(server: JudgeServerProcess, run_id: str, q: float, burst: int, n_requests: int,
              autoscaling: JudgeAutoscaling) -> PhaseResult:
    """Deploy a pool, send n_requests at once through its handle, measure at the server."""
    from repo_ray.pipeline.placement import deploy_judge_pool

    cfg = judge_config(server.base_url, q, burst, autoscaling)
    pool = deploy_judge_pool(cfg, dict(DEFAULT_JUDGE_WEIGHTS), run_id, deadline_s=120.0)
    try:
        server.control()  # reset the arrival log after deployment
        results, seen, t0, scaled_at = asyncio.run(_drive(pool, contexts(n_requests, run_id), autoscaling.max_replicas))
    finally:
        pool.shutdown()
    arrivals = [e["t"] for e in server.stats()["events"]]
    statuses: dict[str, int] = {}
    for r in results:
        statuses[r.status.value] = statuses.get(r.status.value, 0) + 1
    late = sum(r.calls.late_permits if r.calls else 0 for r in results)
    return PhaseResult(
        n_requests, seen, arrivals, statuses, late, arrival_rate(arrivals), max_window_count(arrivals),
        None if scaled_at is None else scaled_at - t0,
        None if scaled_at is None else arrival_rate(arrivals, since=scaled_at),
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--q", type=float, default=20.0, help="limiter requests/s")
    p.add_argument("--burst", type=int, default=5, help="limiter burst")
    p.add_argument("--seconds", type=float, default=4.0, help="load of the one-replica phase, in seconds at Q")
    p.add_argument("--latency-s", type=float, default=0.05, help="judge server latency")
    args = p.parse_args()

    from ray import serve

    from repo_ray.pipeline.ray_setup import init_ray

    init_ray(num_cpus=4, include_dashboard=False)
    n = int(args.q * args.seconds)
    with JudgeServerProcess.start(JudgeServerOptions(latency_s=args.latency_s)) as server:
        one = run_phase(server, "bench-one", args.q, args.burst, n, one_replica())
        four = run_phase(server, "bench-four", args.q, args.burst, 4 * n, one_to_four())
    serve.shutdown()
    limit = args.q + args.burst
    print(f"\njudge limiter: Q = {args.q:g} req/s, burst = {args.burst}, judge server latency {args.latency_s:g}s")
    print(f"{'pool':<19}{'requests':>9}{'rate':>7}{'rate/Q':>8}{'max 1s':>8}{'Q+burst':>8}{'replicas':>9}"
          f"{'scale-up':>9}{'rate/Q after':>13}{'late':>6}  statuses")
    for name, r in (("1 replica", one), ("autoscaled 1->4", four)):
        scale = "n/a" if r is one else ("never" if r.scale_up_s is None else f"{r.scale_up_s:.1f}s")
        after = "n/a" if r.rate_after_scale_up is None or r is one else f"{r.rate_after_scale_up / args.q:.3f}"
        print(f"{name:<19}{r.requests:>9}{r.rate:>7.2f}{r.rate / args.q:>8.3f}{r.max_window:>8}{limit:>8g}"
              f"{r.replicas_seen:>9}{scale:>9}{after:>13}{r.late_permits:>6}  {r.statuses}")
    emit("judge_limiter", {"q": args.q, "burst": args.burst, "latency_s": args.latency_s, "phases": {
        name: {"requests": r.requests, "rate_over_q": r.rate / args.q, "max_window": r.max_window,
               "q_plus_burst": limit, "replicas": r.replicas_seen, "scale_up_s": r.scale_up_s,
               "rate_after_scale_up_over_q": None if r.rate_after_scale_up is None else r.rate_after_scale_up / args.q,
               "late_permits": r.late_permits, "statuses": r.statuses}
        for name, r in (("1 replica", one), ("autoscaled 1->4", four))}})


if __name__ == "__main__":
    main()
