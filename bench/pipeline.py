"""Async vs sync pipeline throughput, side by side in one run, judge at 200 ms latency.

Prints each stage's time (from the sync run, where stages run in series), samples/s of
both modes, their ratio, and async efficiency = (async / sync samples/s) / ideal speed-up,
ideal = sum of stage times / slowest stage time. Target: efficiency >= 0.8.

    .venv/bin/python bench/pipeline.py [--steps 6] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs/demo.yaml"))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--latency", type=float, default=0.2)
    args = ap.parse_args()
    base = load_config(args.config)
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    print(f"preparing data, SFT and RM in {work} ...", flush=True)
    prep = train(mode_cfg(base, "sync", 1, 0.0), str(work / "prep"), progress=False, evaluate=False)
    results = {}
    for mode in ("sync", "async"):
        cfg = mode_cfg(base, mode, args.steps, args.latency)
        rd = RunDir(str(work / mode))
        t0 = time.perf_counter()
        timing: dict = {}

        def grab(lp, record, timing=timing):
            timing.update(phases=dict(lp.phase_s), samples=lp.samples_seen)

        run_rl(cfg, rd, run_id_for(cfg, rd) + mode, Path(prep["data_dir"]), Path(prep["sft_model"]),
               Path(prep["rm_dir"]), resume=False, progress=False, on_step=grab)
        wall = time.perf_counter() - t0
        results[mode] = {"wall_s": wall, **timing}
        print(f"{mode}: {timing['samples']} samples in {sum(timing['phases'].values()):.1f}s of loop time "
              f"({wall:.1f}s with actor start-up)", flush=True)
    sync, asyn = results["sync"], results["async"]
    stages = {k: sync["phases"][k] for k in ("rollout", "reward", "train")}
    sps = {m: r["samples"] / sum(r["phases"].values()) for m, r in results.items()}
    ideal = sum(stages.values()) / max(stages.values())
    ratio = sps["async"] / sps["sync"]
    print("\nstage times in sync mode (s): " + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    print(f"samples/s: sync {sps['sync']:.2f}, async {sps['async']:.2f}, ratio {ratio:.2f}")
    print(f"ideal speed-up {ideal:.2f}; async efficiency {ratio / ideal:.2f} (target >= 0.8)")
    print(f"async phase breakdown (s): {asyn['phases']}")


if __name__ == "__main__":
    main()
