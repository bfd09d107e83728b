"""Faults seen from outside the actors: which actor of a run is which kind, their restarts as
Ray's state API reports them (the run's events, for the report), and killing one by process
id (SIGKILL, on its own node) for `repo-ray chaos` and the chaos test.

The policies (what survives what) are in placement.py; the in-actor restart counter is
telemetry.record_actor_start. A judge replica is replaced by Serve, not restarted by Ray, so
its replacement is counted here: a dead replica of the run's judge app that did not exit on
purpose (a downscale is an intended exit).
"""

from __future__ import annotations

import logging
import os
import signal
from collections import Counter
from dataclasses import dataclass
from typing import Any

from repo_ray.pipeline.placement import (
    KIND_JUDGE_REPLICA,
    KIND_LEARNER,
    KIND_LIMITER,
    KIND_POOL,
    KIND_RM,
    KIND_ROLLOUT,
    KIND_RULES,
    RESTART_KINDS,
)
from repo_ray.telemetry import record

log = logging.getLogger(__name__)

# the Ray class name of each kind (the process title is `ray::<class name>`)
CLASS_OF_KIND = {
    KIND_ROLLOUT: "RolloutWorker", KIND_POOL: "RewardPool", KIND_RM: "RMScorer", KIND_RULES: "RuleChecker",
    KIND_LIMITER: "JudgeLimiterActor", KIND_JUDGE_REPLICA: "JudgeCaller", KIND_LEARNER: "_DeepSpeedRank",
}


def kind_of(class_name: str) -> str | None:
    """The restart kind of a Ray actor class name (a Serve replica: ServeReplica:APP:JudgeCaller)."""
    if class_name.startswith("ServeReplica:"):
        return KIND_JUDGE_REPLICA if class_name.endswith(":JudgeCaller") else None
    return next((k for k, c in CLASS_OF_KIND.items() if c == class_name), None)


@dataclass(frozen=True)
class ActorInfo:
    kind: str
    actor_id: str
    name: str
    class_name: str
    pid: int
    node_id: str
    state: str
    num_restarts: int
    death: str  # the death cause's message ("" when alive)
    job_id: str


def _death_text(cause: Any) -> str:
    if not cause:
        return ""
    ctx = cause.get("actor_died_error_context") or {} if isinstance(cause, dict) else {}
    return f"{ctx.get('reason', '')} {ctx.get('error_message', '')}".strip() or str(cause)[:300]


def run_actors(run_id: str | None = None, job_id: str | None = None, alive_only: bool = False) -> list[ActorInfo]:
    """Actors of one run: named ones carry the run id; unnamed ones (RewardPool, rule
    checkers) belong to the driver's job; replicas to the judge app of the run. Needs the
    Ray dashboard (the state API)."""
    import ray
    from ray.util.state import list_actors

    filters = [("state", "=", "ALIVE")] if alive_only else None
    # the connected cluster's address: with none, the state API refuses when several local clusters run
    address = ray.get_runtime_context().gcs_address if ray.is_initialized() else None
    out = []
    for a in list_actors(address=address, filters=filters, limit=10_000, detail=True, raise_on_missing_output=False):
        a = a if isinstance(a, dict) else a.__dict__
        kind = kind_of(a.get("class_name") or "")
        if kind is None:
            continue
        name = a.get("name") or ""
        mine = run_id is None or run_id in name or run_id in (a.get("class_name") or "") \
            or (job_id is not None and a.get("job_id") == job_id and not name)
        if not mine:
            continue
        out.append(ActorInfo(kind, a["actor_id"], name, a["class_name"], int(a.get("pid") or 0),
                             a.get("node_id") or "", a["state"], int(a.get("num_restarts") or 0),
                             _death_text(a.get("death_cause")), a.get("job_id") or ""))
    return out


def _replaced(info: ActorInfo) -> bool:
    """A dead judge replica that did not exit on purpose (Serve starts another)."""
    text = info.death.upper()
    return info.state == "DEAD" and "INTENDED" not in text and "RAY_KILL" not in text


# a learner rank is not restarted but rebuilt by the loop, which records that itself
SEEN_BY_THE_LOOP = (KIND_LEARNER,)


class ActorWatch:
    """Polled by the driver once per step: new restarts per kind since the last poll (a
    rebuilt learner group is the loop's to record). Best effort: without the dashboard it
    reports nothing (the in-actor counters still count; the loop still records what it
    resubmitted)."""

    def __init__(self, run_id: str, app_name: str | None = None) -> None:
        import ray

        self.run_id, self.app_name = run_id, app_name
        self.job_id = ray.get_runtime_context().get_job_id()
        self.seen: Counter[str] = Counter()
        self.dead_replicas: set[str] = set()
        self.failed = False

    def poll(self) -> dict[str, int]:
        if self.failed:
            return {}
        try:
            actors = run_actors(self.run_id, self.job_id)
        except Exception as err:  # noqa: BLE001 - no dashboard: nothing to add
            self.failed = True
            log.info("actor watch off: %s", type(err).__name__)
            return {}
        now: Counter[str] = Counter()
        for a in actors:
            if a.kind == KIND_JUDGE_REPLICA:
                if _replaced(a) and a.actor_id not in self.dead_replicas:
                    self.dead_replicas.add(a.actor_id)
                    record("repo_ray_actor_restarts_total", kind=KIND_JUDGE_REPLICA)  # Serve's, not Ray's, restart
                    now[a.kind] += 1
            elif a.kind not in SEEN_BY_THE_LOOP:
                now[a.kind] += a.num_restarts
        new = {k: now[k] - self.seen[k] for k in now if k == KIND_JUDGE_REPLICA or now[k] > self.seen[k]}
        for k, v in now.items():
            if k != KIND_JUDGE_REPLICA:
                self.seen[k] = max(self.seen[k], v)
        return {k: v for k, v in new.items() if v > 0}


# ---------------------------------------------------------------------------- killing
def kill_pid(pid: int, node_id: str | None = None) -> None:
    """SIGKILL `pid` on its node (a zero-CPU task pinned there; in-process on this node)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    if node_id is None or node_id == ray.get_runtime_context().get_node_id():
        os.kill(pid, signal.SIGKILL)
        return

    @ray.remote(num_cpus=0)
    def _kill(p: int) -> None:
        os.kill(p, signal.SIGKILL)

    ray.get(_kill.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(pid))


def kill_one(kind: str, run_id: str | None = None, job_id: str | None = None) -> ActorInfo:
    """SIGKILL one alive actor of `kind` of the run; returns which. LookupError if none."""
    if kind not in RESTART_KINDS:
        raise ValueError(f"unknown actor kind {kind!r}; expected one of {', '.join(RESTART_KINDS)}")
    alive = [a for a in run_actors(run_id, job_id, alive_only=True) if a.kind == kind and a.pid > 0]
    if not alive:
        raise LookupError(f"no alive {kind} actor" + (f" of run {run_id}" if run_id else ""))
    victim = sorted(alive, key=lambda a: a.name or a.actor_id)[0]
    kill_pid(victim.pid, victim.node_id)
    return victim


# ---------------------------------------------------------------------------- repo-ray chaos
@dataclass(frozen=True)
class ChaosResult:
    kind: str
    victim: ActorInfo
    recovered: bool
    seconds: float

    def line(self) -> str:
        who = self.victim.name or self.victim.actor_id[:12]
        state = f"back in {self.seconds:.1f} s" if self.recovered else f"NOT back after {self.seconds:.0f} s"
        return f"{self.kind}: killed {who} (pid {self.victim.pid}); {state}"


def _recovered(kind: str, victim: ActorInfo, before: list[ActorInfo], now: list[ActorInfo]) -> bool:
    alive = [a for a in now if a.kind == kind and a.state == "ALIVE"]
    if kind in (KIND_JUDGE_REPLICA, KIND_LEARNER):  # replaced by new actors (Serve; the driver's rebuild)
        was = sum(1 for a in before if a.kind == kind and a.state == "ALIVE")
        return len(alive) >= was and all(a.actor_id != victim.actor_id for a in alive)
    return any(a.actor_id == victim.actor_id and a.num_restarts > victim.num_restarts for a in alive)


def run_chaos(kinds: list[str], run_id: str | None = None, job_id: str | None = None, interval_s: float = 20.0,
              recover_s: float = 180.0, out=print) -> list[ChaosResult]:
    """Kill one actor of each kind in turn (SIGKILL by pid) and wait until it is back (Ray's
    restart, Serve's replacement or the driver's learner rebuild); `interval_s` between kinds."""
    import time

    results = []
    for i, kind in enumerate(kinds):
        before = run_actors(run_id, job_id)
        t0 = time.monotonic()
        victim = kill_one(kind, run_id, job_id)
        ok = False
        while time.monotonic() - t0 < recover_s:
            time.sleep(1.0)
            if _recovered(kind, victim, before, run_actors(run_id, job_id)):
                ok = True
                break
        res = ChaosResult(kind, victim, ok, time.monotonic() - t0)
        out(res.line())
        results.append(res)
        if i + 1 < len(kinds):
            time.sleep(interval_s)
    return results
