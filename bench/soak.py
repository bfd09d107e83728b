"""Soak: one RL run for --minutes with the judge at its rate limit (the local judge server
answers 429 past the limiter's own rate), sampled every --every seconds: resident memory
of every actor of the run (and of the driver and the local judge server), actors alive, the
driver's open files and descriptors, Serve apps, throughput and the judge server's answers.
At the end: each actor's RSS drift (last sample vs the first after warm-up; target within
10 %), throughput first vs last third, and what is left once the run is over (actors, Serve
apps, open files: target none beyond the start). Not in the suite. Writes only to its temp
dir (printed) and the config's model cache (bench/soak.yaml: runs/.model-cache).

    .venv/bin/python bench/soak.py [--minutes 30] [--every 30] [--warmup 120] [--rate 4] [--config bench/soak.yaml]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import psutil

from repo_ray.config import RepoRayConfig, load_config
from repo_ray.pipeline.rundir import RunDir
from repo_ray.pipeline.train import run_id_for, run_rl, train

ROOT = Path(__file__).resolve().parents[1]
JUDGE_SERVER_MODULE = "reward_actors.judge.server"


class SoakOver(Exception):
    """Raised from the step callback when the time is up (run_rl cleans up as for any error)."""


def soak_cfg(base: RepoRayConfig, rate: float) -> RepoRayConfig:
    data = base.model_dump(mode="json")
    data["learner"].update(max_steps=10**6, rl_epochs=10**4)
    data["pipeline"].update(frozen_control=False)
    data["judge"]["rate_limit"].update(requests_per_s=rate, burst=max(1, int(rate)))
    # the API's own limit a little under the limiter's: the limiter's 429 back-off is exercised
    data["judge"]["local_server"].update(rate_limit_rps=rate * 0.9)
    return RepoRayConfig.model_validate(data)


def run_processes(run_id: str, job_id: str) -> dict[str, psutil.Process]:
    """The process of every actor of the run (on this node), by kind:name."""
    from repo_ray.pipeline.faults import run_actors

    out = {}
    for a in run_actors(run_id, job_id, alive_only=True):
        try:
            out[f"{a.kind}:{a.name or a.actor_id[:8]}"] = psutil.Process(a.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def judge_server(me: psutil.Process) -> psutil.Process | None:
    """The local judge server (a child process of the driver), if one runs."""
    for c in me.children(recursive=True):
        try:
            if JUDGE_SERVER_MODULE in " ".join(c.cmdline()):
                return c
        except psutil.Error:
            continue
    return None


def judge_counters(proc: psutil.Process | None) -> dict[str, int]:
    """The local judge server's outcome counts (GET /stats on its 127.0.0.1 port)."""
    import httpx

    if proc is None:
        return {}
    try:
        port = next(c.laddr.port for c in proc.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN)
        stats = httpx.get(f"http://127.0.0.1:{port}/stats", timeout=10).json()
    except (StopIteration, psutil.Error, httpx.HTTPError, ValueError):
        return {}
    out = {"requests": int(stats["counters"].get("requests", 0))}
    for e in stats["events"]:  # bounded (MAX_EVENTS); the soak's calls stay well under it
        out[e["outcome"]] = out.get(e["outcome"], 0) + 1
    return out


def serve_apps() -> int:
    from ray import serve

    try:
        return len(serve.status().applications)
    except Exception:  # noqa: BLE001 - Serve not running
        return 0


def alive_actors() -> int:
    """Alive actors in the whole cluster, any job (Serve's controller and proxy included)."""
    import ray
    from ray.util.state import list_actors

    return len(list_actors(address=ray.get_runtime_context().gcs_address, filters=[("state", "=", "ALIVE")],
                           limit=10_000, raise_on_missing_output=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "bench/soak.yaml"))
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--rate", type=float, default=4.0, help="judge requests per second (limiter; the API 0.9x)")
    ap.add_argument("--warmup", type=float, default=120.0, help="seconds before the RSS baseline")
    args = ap.parse_args()
    base = load_config(args.config)
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    print(f"preparing data, SFT and RM in {work} ...", flush=True)
    t_prep = time.monotonic()
    prep_cfg = RepoRayConfig.model_validate({**base.model_dump(mode="json"),
                                             "learner": {**base.learner.model_dump(mode="json"), "max_steps": 1}})
    prep = train(prep_cfg, str(work / "prep"), progress=False, evaluate=False)
    print(f"prep took {time.monotonic() - t_prep:.0f} s", flush=True)
    import ray

    cfg = soak_cfg(base, args.rate)
    rd = RunDir(str(work / "soak"))
    run_id = run_id_for(cfg, rd) + "soak"
    me = psutil.Process(os.getpid())
    time.sleep(5)  # the prep's actors and Serve app are gone by now
    files0, fds0, apps0, actors0 = len(me.open_files()), me.num_fds(), serve_apps(), alive_actors()
    print(f"before the soak: {actors0} actors alive in the cluster, {apps0} Serve apps, {files0} open files, "
          f"{fds0} fds", flush=True)
    t0 = time.monotonic()
    samples: list[dict] = []
    seen = {"masked": 0, "loop": None}

    def sample(lp, record) -> None:
        now = time.monotonic() - t0
        seen["masked"] += record.masked
        seen["loop"] = lp
        if not samples or now - samples[-1]["t"] >= args.every:
            srv = judge_server(me)
            procs = run_processes(run_id, lp.job_id) | {"driver": me}
            if srv is not None:
                procs["judge-server (process)"] = srv
            rss, cpu = {}, {}
            for name, p in procs.items():
                try:
                    with p.oneshot():
                        rss[name], t = p.memory_info().rss / 2**20, p.cpu_times()
                    cpu[name] = t.user + t.system
                except psutil.Error:
                    continue
            samples.append({"t": now, "step": record.step, "seen": lp.samples_seen, "masked": seen["masked"],
                            "rss": rss, "cpu_s": cpu, "files": len(me.open_files()), "fds": me.num_fds(),
                            "apps": serve_apps(), "judge": judge_counters(srv), "load1": os.getloadavg()[0]})
            s = samples[-1]
            print(f"{now:7.0f}s step {record.step:5d} {s['seen']:7d} samples ({s['masked']} masked), "
                  f"{len(s['rss'])} procs {sum(s['rss'].values()):8.0f} MiB, {s['files']} files, {s['fds']} fds, "
                  f"{s['apps']} apps, judge {s['judge']}, load {s['load1']:.1f}", flush=True)
        if now > args.minutes * 60:
            raise SoakOver

    try:
        run_rl(cfg, rd, run_id, Path(prep["data_dir"]), Path(prep["sft_model"]), Path(prep["rm_dir"]),
               resume=False, progress=False, on_step=sample)
    except SoakOver:
        pass
    time.sleep(5)
    from repo_ray.pipeline.faults import run_actors

    left = run_actors(run_id, ray.get_runtime_context().get_job_id(), alive_only=True)
    end = {"run_actors_alive": [f"{a.kind}:{a.name or a.actor_id[:8]}" for a in left],
           "cluster_actors": alive_actors() - actors0, "serve_apps": serve_apps() - apps0,
           "open_files": len(me.open_files()) - files0, "fds": me.num_fds() - fds0,
           "judge_server_alive": judge_server(me) is not None}
    (work / "soak-samples.json").write_text(json.dumps({"args": vars(args), "samples": samples, "end": end},
                                                       indent=1))
    base_rows = [s for s in samples if s["t"] >= args.warmup] or samples
    first, last = base_rows[0], samples[-1]
    print(f"\n{len(samples)} samples over {last['t']:.0f} s, {last['step']} steps, {last['seen']} samples "
          f"({last['masked']} masked); figures in {work / 'soak-samples.json'}")
    print(f"RSS (MiB): first after warm-up (t={first['t']:.0f} s) -> last (t={last['t']:.0f} s), drift")
    worst = 0.0
    for name in sorted(first["rss"]):
        if name in last["rss"]:
            drift = last["rss"][name] / first["rss"][name] - 1
            if ":" in name:  # actors (kind:name); the driver and the judge server are shown, not judged
                worst = max(worst, abs(drift))
            print(f"  {name:40s} {first['rss'][name]:8.0f} -> {last['rss'][name]:8.0f}  {drift:+.1%}")
        else:
            print(f"  {name:40s} {first['rss'][name]:8.0f} -> (gone)")
    for name in sorted(set(last["rss"]) - set(first["rss"])):
        print(f"  {name:40s}   (new) -> {last['rss'][name]:8.0f}")
    thirds = max(1, len(samples) // 3)

    def rate(rows, key="seen"):
        return (rows[-1][key] - rows[0][key]) / max(1e-9, rows[-1]["t"] - rows[0]["t"]) if len(rows) > 1 else 0

    def judge_rate(rows, outcome):
        if len(rows) < 2:
            return 0
        a, b = rows[0]["judge"].get(outcome, 0), rows[-1]["judge"].get(outcome, 0)
        return (b - a) / max(1e-9, rows[-1]["t"] - rows[0]["t"])

    print(f"worst actor RSS drift {worst:.1%} (target <= 10%)")
    for label, rows in (("first third", samples[:thirds + 1]), ("last third", samples[-thirds - 1:]),
                        ("whole run", samples)):
        print(f"throughput {label}: {rate(rows):.2f} samples/s, {rate(rows, 'step') * 60:.1f} steps/min; "
              f"judge answers {judge_rate(rows, 'ok'):.2f}/s, 429s {judge_rate(rows, 'rate_limited'):.2f}/s")
    common = [n for n in first["cpu_s"] if n in last["cpu_s"]]
    span = max(1e-9, last["t"] - first["t"])
    used = {n: (last["cpu_s"][n] - first["cpu_s"][n]) / span for n in sorted(common)}
    print(f"CPU of the run's processes after warm-up: {sum(used.values()):.2f} cores ("
          + ", ".join(f"{n.split(':')[0]} {c:.2f}" for n, c in used.items()) + ")")
    lp = seen["loop"]
    if lp is not None:
        total = sum(lp.phase_s.values()) or 1.0
        print("loop wall time by what was in flight: " + ", ".join(f"{k} {v / total:.0%}"
                                                                    for k, v in lp.phase_s.items()))
    print(f"after the run: {len(left)} actors of the run alive (target 0), {end['cluster_actors']} more actors "
          f"alive in the cluster than before, {end['serve_apps']} Serve apps more than at the start (target 0), "
          f"{end['open_files']} more open files (target 0), {end['fds']} more fds, judge server "
          f"{'still running' if end['judge_server_alive'] else 'stopped'}")


if __name__ == "__main__":
    main()
