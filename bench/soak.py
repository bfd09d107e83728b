"""Soak: one RL run for --minutes with the judge at its rate limit (the local judge server
answers 429 past the limiter's own rate), sampled every --every seconds: resident memory
of every actor of the run, actors alive, the driver's open files, Serve apps and
throughput. At the end: each actor's RSS drift (last sample vs the first after warm-up;
target within 10 %), throughput first vs last third, and what is left once the run is
over (actors, Serve apps, open files: target none beyond the start). Not in the suite.

    .venv/bin/python bench/soak.py [--minutes 30] [--every 30] [--config configs/demo.yaml]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import psutil

from repo_ray.config import RepoRayConfig, load_config
from repo_ray.pipeline.rundir import RunDir
from repo_ray.pipeline.train import run_id_for, run_rl, train

ROOT = Path(__file__).resolve().parents[1]


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


def actor_rss(run_id: str, job_id: str) -> dict[str, float]:
    """MiB of resident memory per actor of the run (on this node)."""
    from repo_ray.pipeline.faults import run_actors

    out = {}
    for a in run_actors(run_id, job_id, alive_only=True):
        try:
            out[f"{a.kind}:{a.name or a.actor_id[:8]}"] = psutil.Process(a.pid).memory_info().rss / 2**20
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def serve_apps() -> int:
    from ray import serve

    try:
        return len(serve.status().applications)
    except Exception:  # noqa: BLE001 - Serve not running
        return 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs/demo.yaml"))
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--every", type=float, default=30.0, help="seconds between samples")
    ap.add_argument("--rate", type=float, default=20.0, help="judge requests per second (limiter and API)")
    ap.add_argument("--warmup", type=float, default=120.0, help="seconds before the RSS baseline")
    args = ap.parse_args()
    base = load_config(args.config)
    work = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    print(f"preparing data, SFT and RM in {work} ...", flush=True)
    prep_cfg = RepoRayConfig.model_validate({**base.model_dump(mode="json"),
                                             "learner": {**base.learner.model_dump(mode="json"), "max_steps": 1}})
    prep = train(prep_cfg, str(work / "prep"), progress=False, evaluate=False)
    import ray

    cfg = soak_cfg(base, args.rate)
    rd = RunDir(str(work / "soak"))
    run_id = run_id_for(cfg, rd) + "soak"
    me = psutil.Process(os.getpid())
    files0, apps0 = len(me.open_files()), serve_apps()
    t0 = time.monotonic()
    samples: list[dict] = []

    def sample(lp, record) -> None:
        now = time.monotonic() - t0
        if not samples or now - samples[-1]["t"] >= args.every:
            samples.append({"t": now, "step": record.step, "seen": lp.samples_seen,
                            "rss": actor_rss(run_id, lp.job_id), "files": len(me.open_files()),
                            "apps": serve_apps()})
            s = samples[-1]
            print(f"{now:7.0f}s step {record.step:5d} {s['seen']:7d} samples, {len(s['rss'])} actors "
                  f"{sum(s['rss'].values()):8.0f} MiB, {s['files']} files, {s['apps']} apps", flush=True)
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
    base_rows = [s for s in samples if s["t"] >= args.warmup] or samples
    first, last = base_rows[0], samples[-1]
    print("\nactor RSS (MiB): first after warm-up -> last, drift")
    worst = 0.0
    for name in sorted(first["rss"]):
        if name in last["rss"]:
            drift = last["rss"][name] / first["rss"][name] - 1
            worst = max(worst, abs(drift))
            print(f"  {name:40s} {first['rss'][name]:8.0f} -> {last['rss'][name]:8.0f}  {drift:+.1%}")
    thirds = max(1, len(samples) // 3)

    def rate(rows):
        return (rows[-1]["seen"] - rows[0]["seen"]) / max(1e-9, rows[-1]["t"] - rows[0]["t"]) if len(rows) > 1 else 0

    print(f"worst RSS drift {worst:.1%} (target <= 10%)")
    print(f"throughput samples/s: first third {rate(samples[:thirds + 1]):.2f}, last third "
          f"{rate(samples[-thirds - 1:]):.2f}")
    print(f"after the run: {len(left)} actors of the run alive (target 0), {serve_apps() - apps0} Serve apps more "
          f"than at the start (target 0), {len(me.open_files()) - files0} more open files (target 0)")


if __name__ == "__main__":
    main()
