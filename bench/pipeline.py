"""Async vs sync pipeline throughput, side by side in one run, at each judge latency asked.

For each latency: each stage's time (from the sync run, where stages run in series),
samples/s of both modes (loop time: actor start-up excluded), their ratio, and async
efficiency = (async / sync samples/s) / ideal speed-up, ideal = sum of stage times / slowest
stage time. Target: efficiency >= 0.9 (issue 17). Data, SFT and RM are prepared once.

    .venv/bin/python bench/pipeline.py [--steps 6] [--latencies 0,0.2,1.0] [--config configs/demo.yaml]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from emit import emit  # bench/emit.py (this script's directory is on sys.path)

from repo_ray.config import RepoRayConfig, load_config
from repo_ray.pipeline.rundir import RunDir
from repo_ray.pipeline.train import run_id_for, run_rl, train

ROOT = Path(__file__).resolve().parents[1]


def mode_cfg(base: RepoRayConfig, mode: str, steps: int, latency: float) -> RepoRayConfig:
    data = base.model_dump(mode="json")
    data["pipeline"].update(mode=mode, frozen_control=False, checkpoint_every=1000)
    data["learner"]["max_steps"] = steps
    data["judge"]["local_server"]["latency_s"] = latency
    return RepoRayConfig.model_validate(data)


def run_mode(base: RepoRayConfig, prep: dict, work: Path, mode: str, steps: int, latency: float) -> dict:
    cfg = mode_cfg(base, mode, steps, latency)
    rd = RunDir(str(work / f"{mode}-{latency:g}"))
    t0 = time.perf_counter()
    timing: dict = {}

    def grab(lp, record, timing=timing):
        timing.update(phases=dict(lp.phase_s), samples=lp.samples_seen)

    run_rl(cfg, rd, run_id_for(cfg, rd) + mode, Path(prep["data_dir"]), Path(prep["sft_model"]),
           Path(prep["rm_dir"]), resume=False, progress=False, on_step=grab)
    wall = time.perf_counter() - t0
    print(f"{mode} at {latency:g}s: {timing['samples']} samples in {sum(timing['phases'].values()):.1f}s of loop "
          f"time ({wall:.1f}s with actor start-up)", flush=True)
    return {"wall_s": wall, **timing}


def compare_modes(sync: dict, asyn: dict) -> dict:
    stages = {k: sync["phases"][k] for k in ("rollout", "reward", "train")}
    sps = {m: r["samples"] / sum(r["phases"].values()) for m, r in (("sync", sync), ("async", asyn))}
    ideal = sum(stages.values()) / max(stages.values())
    ratio = sps["async"] / sps["sync"]
    return {"stages_s": stages, "sync_samples_per_s": sps["sync"], "async_samples_per_s": sps["async"],
            "ratio": ratio, "ideal_speedup": ideal, "efficiency": ratio / ideal, "async_phases_s": asyn["phases"],
            "slowest_stage": max(stages, key=stages.get)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs/demo.yaml"))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--latencies", default="0,0.2,1.0", help="judge latencies in seconds, comma-separated")
    args = ap.parse_args()
    latencies = [float(x) for x in args.latencies.split(",") if x.strip()]
    base = load_config(args.config)
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    print(f"preparing data, SFT and RM in {work} ...", flush=True)
    prep = train(mode_cfg(base, "sync", 1, 0.0), str(work / "prep"), progress=False, evaluate=False)
    by_latency = {}
    for latency in latencies:
        sync, asyn = (run_mode(base, prep, work, mode, args.steps, latency) for mode in ("sync", "async"))
        r = by_latency[f"{latency:g}"] = compare_modes(sync, asyn)
        print(f"\njudge latency {latency:g}s: stage times in sync mode (s): "
              + ", ".join(f"{k} {v:.1f}" for k, v in r["stages_s"].items()))
        print(f"  samples/s: sync {r['sync_samples_per_s']:.2f}, async {r['async_samples_per_s']:.2f}, "
              f"ratio {r['ratio']:.2f}")
        print(f"  ideal speed-up {r['ideal_speedup']:.2f}; async efficiency {r['efficiency']:.2f} (target >= 0.9); "
              f"slowest stage {r['slowest_stage']}")
        print(f"  async phase breakdown (s): {r['async_phases_s']}", flush=True)
    emit("pipeline", {"config": args.config, "steps": args.steps, "by_latency": by_latency})


if __name__ == "__main__":
    main()
