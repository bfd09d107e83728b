"""Verified adapter push fan-out, side by side in one run: one `ray.put` of the adapter and
every rollout worker loading and verifying it (repo_ray/pipeline/adapter_push.py), to 1, 2,
4 and 8 workers; against a file-based reload, where the adapter is written once as a
safetensors file and each worker reads it from disk, then loads and verifies it the same way.

Reported per fleet size: the median push time (ray.put until the last verified ack) over
--pushes versions, and its ratio to one worker. Goal (issue 17): 4 workers <= 1.3x one.
The tiny policy and LoRA of --config (the demo's by default) on this machine's CPUs; each
worker is a Ray actor with its own process, as in a run.

    .venv/bin/python bench/adapter_fanout.py [--workers 1,2,4,8] [--pushes 5] [--config configs/demo.yaml]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from emit import emit  # bench/emit.py (this script's directory is on sys.path)

from repo_ray.config import RepoRayConfig, load_config
from repo_ray.rollout.worker import RolloutWorker
from repo_ray.types import AdapterUpdate

ROOT = Path(__file__).resolve().parents[1]


class FileReloadWorker(RolloutWorker):
    """A rollout worker that also takes its adapter from a file: the baseline a deployment
    without an object store would use (a shared disk)."""

    def load_adapter_file(self, path: str, meta: dict):
        update = AdapterUpdate.build(meta["version"], Path(path).read_bytes(), meta["peft_config"],
                                     meta["probe_token_ids"], meta["probe_logprob"])
        return self.load_adapter(update)


def make_update(cfg: RepoRayConfig, policy_dir: Path, version: int):
    """What learner rank 0 publishes: the policy + LoRA (cfg.learner.lora) with non-zero B."""
    import torch
    from peft import TaskType

    from repo_ray.model import add_lora, load_policy
    from repo_ray.model.adapters import build_adapter_update

    model = add_lora(load_policy(policy_dir), cfg.learner.lora, TaskType.CAUSAL_LM)
    gen = torch.Generator().manual_seed(version)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return build_adapter_update(model, version=version, probe_token_ids=[1, 40, 77, 120, 250, 31, 9, 2])


def renumbered(u: AdapterUpdate, version: int) -> AdapterUpdate:
    """The same adapter as a new version (every push must carry a version the workers have not seen)."""
    return AdapterUpdate.build(version, u.tensors, u.peft_config, u.probe_token_ids, u.probe_logprob)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "configs/demo.yaml"))
    ap.add_argument("--workers", default="1,2,4,8", help="fleet sizes, comma-separated")
    ap.add_argument("--pushes", type=int, default=5, help="adapter versions pushed per fleet size")
    args = ap.parse_args()
    sizes = [int(x) for x in args.workers.split(",") if x.strip()]

    import ray

    from repo_ray.domain.datagen import write_dataset
    from repo_ray.model.cache import ensure_tiny_models_for_data
    from repo_ray.pipeline.adapter_push import collect_acks, push_adapter
    from repo_ray.pipeline.placement import restart_counted, rollout_worker_options
    from repo_ray.pipeline.ray_setup import init_ray

    cfg = load_config(args.config)
    work = Path(tempfile.mkdtemp(prefix="bench-fanout-"))
    write_dataset(cfg.data, work / "data")
    models = ensure_tiny_models_for_data(cfg.model, work / "data", cfg.seed)
    updates = [make_update(cfg, models.policy_dir, v) for v in range(1, args.pushes + 1)]
    tol = cfg.rollout.adapter_logprob_tolerance
    print(f"adapter: {len(updates[0].tensors) / 1e3:.0f} kB safetensors (LoRA r={cfg.learner.lora.r}), "
          f"{args.pushes} versions per fleet size", flush=True)

    init_ray(None, num_cpus=max(2, max(sizes)), include_dashboard=False)
    actor = ray.remote(restart_counted(FileReloadWorker, "rollout"))
    workers = {f"rollout-{i}": actor.options(**rollout_worker_options(cfg, None)).remote(
        cfg, str(models.policy_dir), str(models.tokenizer_dir), f"rollout-{i}") for i in range(max(sizes))}
    ray.get([w.ping.remote() for w in workers.values()])
    results: dict[str, dict] = {}
    version = 0
    for n in sizes:
        fleet = dict(list(workers.items())[:n])
        store, files = [], []
        for u in updates:
            version += 1
            store.append(push_adapter(renumbered(u, version), fleet, tol).push_s)
            version += 1
            u = renumbered(u, version)
            t0 = time.perf_counter()
            path = work / f"adapter-v{version}.safetensors"
            path.write_bytes(u.tensors)
            meta = {"version": u.version, "peft_config": u.peft_config, "probe_token_ids": list(u.probe_token_ids),
                    "probe_logprob": u.probe_logprob}
            collect_acks(u, {w: h.load_adapter_file.remote(str(path), meta) for w, h in fleet.items()}, tol)
            files.append(time.perf_counter() - t0)
        results[str(n)] = {"object_store_s": statistics.median(store), "file_s": statistics.median(files)}
    one = results[str(sizes[0])]
    print(f"\n{'workers':>8}{'object store':>14}{'x one':>7}{'file reload':>13}{'x one':>7}{'file / store':>14}")
    for n, r in results.items():
        r["object_store_x_one"] = r["object_store_s"] / one["object_store_s"]
        r["file_x_one"] = r["file_s"] / one["file_s"]
        print(f"{n:>8}{r['object_store_s'] * 1e3:>12.1f}ms{r['object_store_x_one']:>7.2f}"
              f"{r['file_s'] * 1e3:>11.1f}ms{r['file_x_one']:>7.2f}{r['file_s'] / r['object_store_s']:>14.2f}")
    four = results.get("4")
    if four is not None:
        print(f"4 workers vs one (object store): {four['object_store_x_one']:.2f}x (goal <= 1.3)")
    emit("adapter_fanout", {"adapter_bytes": len(updates[0].tensors), "pushes": args.pushes, "by_workers": results})
    ray.shutdown()


if __name__ == "__main__":
    main()
