"""One tiny pipeline run shared by the end-to-end tests (built once per test run), plus a
sync run that reuses its data, SFT model and reward model."""

from __future__ import annotations

import collections
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from repo_ray.config import RepoRayConfig
from tests.conftest import TEST_DATA, TEST_TINY

# A canary judge API key for the shared run (tests/pipeline/test_secrets.py looks for it
# everywhere the run leaves a trace). Set at collection, before the session's Ray head starts,
# so its judge replicas inherit it as a key from the environment would be on a cluster; the
# local judge server ignores it, but the client sends it as a bearer header.
CANARY_KEY_ENV = "REPO_RAY_E2E_CANARY_JUDGE_KEY"
CANARY_KEY = "sk-canary-7c1e94d0b3a2-do-not-leak"
os.environ.setdefault(CANARY_KEY_ENV, CANARY_KEY)


def tiny_pipeline_config(cache_dir: str, **overrides: Any) -> RepoRayConfig:
    data = TEST_DATA.model_dump() | {"rl_scenarios": 48, "eval_dialogues": 6, "bad_cases": 8}
    cfg = {
        "name": "e2e",
        "model": {"dtype": "float32", "cache_dir": cache_dir, "tiny": TEST_TINY.model_dump()},
        "data": data,
        "rollout": {"num_workers": 2, "num_cpus_per_worker": 0.25, "scenarios_per_batch": 4, "max_new_tokens": 20,
                    "max_prompt_tokens": 512, "max_turns": 3},
        "reward": {"model": {"epochs": 1, "lr": 1e-3, "batch_size": 32, "max_tokens": 512}},
        "judge": {"api_key_env": None, "timeout_s": 5.0,
                  "rate_limit": {"requests_per_s": 500, "burst": 100, "tokens_per_min": 2e7},
                  "autoscaling": {"min_replicas": 1, "max_replicas": 1, "num_cpus_per_replica": 0.05},
                  "local_server": {"enabled": True}},
        "learner": {"zero_stage": 0, "num_cpus_per_rank": 0.25, "batch_size": 16, "micro_batch_size": 8,
                    "max_steps": 4, "lora": {"r": 4, "alpha": 8}, "optimizer": {"lr": 1e-3},
                    "sft": {"epochs": 1, "lr": 3e-3, "max_tokens": 512}},
        "pipeline": {"mode": "async", "max_staleness": 1, "checkpoint_every": 2},
    }
    for dotted, value in overrides.items():
        node = cfg
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return RepoRayConfig.model_validate(cfg)


@dataclass
class PipelineRun:
    cfg: RepoRayConfig
    run_dir: Path
    summary: dict[str, Any]
    worker_versions: list[dict[str, int]] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    metrics_pages: list[str] = field(default_factory=list)  # the metrics endpoint, read after every step
    listeners: list[list[tuple[str, int, int, str]]] = field(default_factory=list)  # (ip, port, pid, name) per step
    key_holders: set[str] = field(default_factory=set)  # processes whose environment holds the canary key
    outside_before: dict[str, float] = field(default_factory=dict)  # outside_snapshot() before / after the run
    outside_after: dict[str, float] = field(default_factory=dict)


def run_rows(run_dir: Path | str, *parts: str) -> list[dict[str, Any]]:
    """Rows of one Parquet table of a run directory (e.g. "rl", "ledger"), which must exist."""
    from repo_ray.pipeline.rundir import RunDir

    t = RunDir(str(run_dir)).read_parquet_dir(*parts)
    assert t is not None, f"no parquet under {parts} in {run_dir}"
    return t.to_pylist()


def outside_snapshot() -> dict[str, float]:
    """mtime of what lies where a run must not write: the working directory (two levels), the
    top of the temp dir and ~/.cache (two levels). Compared before and after the shared run."""
    import tempfile

    roots = [(Path.cwd(), 2), (Path(tempfile.gettempdir()), 1), (Path.home() / ".cache", 2)]
    out: dict[str, float] = {}

    def walk(d: Path, depth: int) -> None:
        try:
            entries = list(d.iterdir())
        except OSError:
            return
        for e in entries:
            try:
                out[str(e)] = e.lstat().st_mtime
            except OSError:
                continue
            if depth > 1 and e.is_dir() and not e.is_symlink() and e.name not in (".git", ".venv"):
                walk(e, depth - 1)

    for root, depth in roots:
        walk(root, depth)
    return out


def canary_holders() -> set[str]:
    """Names of this process's descendants whose environment carries the canary key (the
    judge replicas must: that is how they get the key, and what makes the leak checks bite)."""
    import psutil

    names = set()
    for c in psutil.Process().children(recursive=True):
        try:
            if c.environ().get(CANARY_KEY_ENV) == CANARY_KEY:
                names.add(" ".join(c.cmdline()[:1])[:80])
        except psutil.Error:
            continue
    return names


def run_listeners() -> list[tuple[str, int, int, str]]:
    """Listening sockets of this process and its descendants: the driver and, for the local
    head it started, every Ray process (GCS, raylet, dashboard, workers) and the judge server."""
    import psutil

    me = psutil.Process()
    procs = {me.pid: me, **{c.pid: c for c in me.children(recursive=True)}}
    out = []
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in procs:
            try:
                name = " ".join(procs[conn.pid].cmdline()[:2])[:80]
            except psutil.Error:
                name = "?"
            out.append((conn.laddr.ip, conn.laddr.port, conn.pid, name))
    return out


def metrics_page() -> str:
    import urllib.request

    from ray._private.worker import global_worker

    port = global_worker.node.metrics_export_port
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


@dataclass
class Served:
    """A metrics page read with prometheus_client's text parser: each sample name's family
    kind and its samples (a counter's `_total`, a histogram's `_bucket`/`_sum`/`_count`)."""

    kinds: dict[str, str]
    samples: dict[str, list[Any]]

    def kind_of(self, name: str) -> str | None:
        """The kind under which metric `name` (telemetry.METRICS spelling, without `ray_`) is served."""
        return next((self.kinds[f"ray_{name}{s}"] for s in ("", "_count") if f"ray_{name}{s}" in self.kinds), None)

    def summed(self, sample: str, label: str) -> dict[str, float]:
        """`sample`'s values summed per value of `label` (one series per reporting process)."""
        out: dict[str, float] = collections.defaultdict(float)
        for s in self.samples.get(sample, []):
            out[s.labels.get(label, "")] += s.value
        return dict(out)


def parse_metrics(body: str) -> Served:
    from prometheus_client.parser import text_string_to_metric_families

    kinds: dict[str, str] = {}
    samples: dict[str, list[Any]] = collections.defaultdict(list)
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            kinds[s.name] = family.type
            samples[s.name].append(s)
    return Served(kinds, dict(samples))


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("pipeline-model-cache"))


@pytest.fixture(scope="session")
def pipeline_run(ray_local, tmp_path_factory, model_cache) -> PipelineRun:
    """The async run: 4 RL steps; rollout-0 is killed right after step 1 (fault test)."""
    from repo_ray.pipeline.train import train

    # TensorBoard on (an observer: tests/pipeline/test_tracking.py reads its events back)
    cfg = tiny_pipeline_config(model_cache, tracking__tensorboard=True, judge__api_key_env=CANARY_KEY_ENV)
    run = PipelineRun(cfg, tmp_path_factory.mktemp("e2e") / "run", {})

    def on_step(lp, record):
        run.worker_versions.append({w: ray_local.get(h.version.remote()) for w, h in lp.workers.items()})
        # Ray drops a gauge from the endpoint ~20 s after its last set: read gauges while the run lives
        run.metrics_pages.append(metrics_page())
        run.listeners.append(run_listeners())  # the socket table while the run's actors live
        if record.step == 2:
            run.key_holders |= canary_holders()
        if record.step == 1:
            ray_local.kill(lp.workers["rollout-0"], no_restart=False)  # Ray restarts it (max_restarts)
            run.killed.append("rollout-0")

    run.outside_before = outside_snapshot()
    run.summary = train(cfg, str(run.run_dir), progress=False, evaluate=False, on_step=on_step)
    run.outside_after = outside_snapshot()
    return run


# The shared sync run: SYNC_CALM_STEPS steps with a calm judge (the Ray-job resume test resumes
# it after the first and repeats the second), then one step under each of JUDGE_FAULTS (the fault matrix).
SYNC_CALM_STEPS = 2


def run_rl_only(base: PipelineRun, run_dir: Path, mode: str, max_steps: int, resume: bool = False,
                on_step=None, cfg: RepoRayConfig | None = None) -> PipelineRun:
    from repo_ray.pipeline.rundir import RunDir
    from repo_ray.pipeline.train import run_id_for, run_rl

    cfg = cfg or tiny_pipeline_config(base.cfg.model.cache_dir, pipeline__mode=mode, learner__max_steps=max_steps)
    rd = RunDir(str(run_dir))
    s = base.summary
    rl = run_rl(cfg, rd, run_id_for(cfg, rd) + mode, Path(s["data_dir"]), Path(s["sft_model"]), Path(s["rm_dir"]),
                resume=resume, progress=False, on_step=on_step)
    return PipelineRun(cfg, run_dir, {**s, "rl_steps": len(rl.steps), "ledger": rl.ledger_counts})


# The chaos run begins as the async resume test: its driver dies right after step 1's checkpoint
# (work in flight) and the run is resumed. Then the kinds it kills, by the step after whose
# checkpoint each dies (SIGKILL by pid).
CHAOS_DRIVER_DIES_AFTER = 1
CHAOS_KILLS = {2: ("rollout", "reward_pool", "rule_checker"), 3: ("rm_scorer", "judge_replica", "judge_limiter"),
               4: ("learner",)}
CHAOS_STEPS = 5


class DriverKilled(Exception):
    pass


@dataclass
class ChaosRun(PipelineRun):
    fates_at_kill: dict[str, str] = field(default_factory=dict)  # sample -> fate the killed driver recorded
    pending_at_kill: set[str] = field(default_factory=set)  # episodes of the chunks in flight at its checkpoint


@pytest.fixture(scope="session")
def chaos_run(pipeline_run, tmp_path_factory) -> ChaosRun:
    """One async RL run (reusing the shared run's data, SFT and RM), a checkpoint after every
    step (the default): the driver dies after step 1 and the run is resumed, then every actor
    kind of a run is killed once by process id: three kinds after each of steps 2 and 3 (the
    RewardPool as soon as after step 2 it holds a request in progress), a learner rank after
    step 4; five steps in all. One run for both the driver's resume and the
    actors' restarts: each RL run in the suite pays ~30 s of actor start-up."""
    from repo_ray.pipeline.faults import kill_one
    from repo_ray.pipeline.rundir import RunDir
    from repo_ray.pipeline.train import run_id_for

    cfg = tiny_pipeline_config(pipeline_run.cfg.model.cache_dir, learner__max_steps=CHAOS_STEPS,
                               pipeline__checkpoint_every=1, pipeline__frozen_control=False,
                               rollout__scenarios_per_batch=3)
    run_dir = tmp_path_factory.mktemp("chaos") / "run"
    rd = RunDir(str(run_dir))
    run_id = run_id_for(cfg, rd) + "async"
    killed: list[str] = []
    pages: list[str] = []
    fates_at_kill: dict[str, str] = {}

    def die_after_checkpoint(lp, record):
        if record.step == CHAOS_DRIVER_DIES_AFTER:  # its checkpoint is written; what is in flight dies too
            fates_at_kill.update({sid: lp.ledger.fate(sid).value for sid in list(lp.ledger._entries)})
            raise DriverKilled

    watchers: list[threading.Thread] = []

    def kill_while_scoring(lp, kind):
        """SIGKILL `kind` once the loop has a score request the pool is still working on (a kill
        between two requests would leave nothing to re-score), from a thread: the loop goes on."""
        import ray

        def watch():
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                refs = list(lp.rewards)
                if refs and ray.wait(refs, num_returns=len(refs), timeout=0)[1]:
                    break
                time.sleep(0.01)
            victim = kill_one(kind, run_id=run_id, job_id=lp.job_id)
            killed.append(f"{kind}:{victim.pid}")

        watchers.append(threading.Thread(target=watch, name=f"chaos-{kind}", daemon=True))
        watchers[-1].start()

    def kill_actors(lp, record):
        for kind in CHAOS_KILLS.get(record.step, ()):
            if kind == "reward_pool":
                kill_while_scoring(lp, kind)
                continue
            victim = kill_one(kind, run_id=run_id, job_id=lp.job_id)
            killed.append(f"{kind}:{victim.pid}")
        if record.step >= max(CHAOS_KILLS):
            pages.append(metrics_page())

    import threading
    import time

    t0 = time.perf_counter()
    with pytest.raises(DriverKilled):
        run_rl_only(pipeline_run, run_dir, mode="async", max_steps=CHAOS_STEPS, on_step=die_after_checkpoint, cfg=cfg)
    state = rd.read_json("rl", "checkpoints", "latest.json")
    pending = {f"e{i:07d}" for _, start, stop, _ in state.get("pending") or [] for i in range(start, stop)}
    run = run_rl_only(pipeline_run, run_dir, mode="async", max_steps=CHAOS_STEPS, resume=True, on_step=kill_actors,
                      cfg=cfg)
    for w in watchers:
        w.join(timeout=5)
    wall = round(time.perf_counter() - t0, 1)
    ledger = run_rows(run_dir, "rl", "ledger")
    fates = collections.Counter(r["fate"] for r in ledger)
    masked = collections.Counter(r["reason"].split(":")[0][:30] for r in ledger if r["fate"] == "masked")
    print(f"chaos run: {wall} s; {dict(fates)}; re-scored {sum(r['rescored'] > 0 for r in ledger)}; "
          f"masked by {dict(masked)}")  # its share of the suite and what it cost (pytest -s shows it)
    return ChaosRun(cfg, run_dir, {**run.summary, "wall_s": wall, "state_at_kill": state}, killed=killed,
                    metrics_pages=pages, fates_at_kill=fates_at_kill, pending_at_kill=pending)


# the judge's faults, one per step of the sync run after its calm steps (set after the step before it)
JUDGE_FAULTS = [
    ("429 storm", {"rate_limit_rps": 3.0}),  # 429 with Retry-After past 3 requests a second
    ("5xx burst", {"error_rate": 0.8}),
    ("hang", {"hang_rate": 0.6}),
    ("malformed JSON", {"malformed_rate": 0.8}),
    ("slow answers", {"latency_s": 0.6}),
    ("budget exhausted", None),  # the limiter's budget is spent: every later judge call is refused
]
JUDGE_CALM = {"rate_limit_rps": None, "error_rate": 0.0, "hang_rate": 0.0, "malformed_rate": 0.0, "latency_s": 0.0}
ALERT_SHARE = 0.3
# what the fault matrix sets beyond the shared config: short judge deadlines, so a hang costs seconds
FAULT_SETTINGS = {"reward__timeouts": {"judge_s": 3.0}, "judge__timeout_s": 1.0, "judge__max_retries": 1,
                  "judge__backoff_max_s": 1.0, "pipeline__alert_masked_share": ALERT_SHARE}


def sync_config(cache_dir: str, **overrides: Any) -> RepoRayConfig:
    """The shared config in sync mode with a checkpoint every step, the fault matrix's judge
    settings, plus a plug-in rule and rubric item loaded by import path (tests/plugin_rules.py;
    test_plugin_rewards.py checks they ran in the actors)."""
    return tiny_pipeline_config(
        cache_dir, **{
            "pipeline__mode": "sync", "learner__max_steps": SYNC_CALM_STEPS + len(JUDGE_FAULTS),
            "learner__rl_epochs": 3,  # scenarios enough for the faults' masked samples and the spent budget
            "pipeline__checkpoint_every": 1, "pipeline__frozen_control": False,
            "rollout__num_workers": 1,  # fewer actors to start: the async run has both
            "reward__extra_rules": ["tests.plugin_rules:flags_every_reply"],
            "judge__extra_items": [{"name": "plugin_item", "prompt": "a test item", "weight": 2.0,
                                    "heuristic": "tests.plugin_rules:minus_five"}],
            **FAULT_SETTINGS, **overrides,
        })


@dataclass
class SyncRun(PipelineRun):
    fault_at_step: dict[int, str] = field(default_factory=dict)  # RL step (steps-table `step`) -> its fault
    rl_at_checkpoint: Path | None = None  # a copy of RUN/rl as it was after step RESUME_FROM's checkpoint


# the Ray-job resume test resumes a copy of the sync run's RL stage taken after this step
RESUME_FROM = SYNC_CALM_STEPS - 1


@pytest.fixture(scope="session")
def sync_run(pipeline_run, tmp_path_factory) -> SyncRun:
    """The sync run (sync_config), reusing the async run's data, SFT and RM: SYNC_CALM_STEPS
    steps with a calm judge, then the local judge misbehaving in a different way during each
    step (JUDGE_FAULTS, switched through the server's /control between steps; sync, so each
    step's samples are generated and scored under its own fault). One run for the sync mode,
    the plug-ins, the fault matrix and (a copy of its RL stage after step RESUME_FROM's
    checkpoint) the Ray-job resume: each RL run in the suite pays ~30 s of actor start-up."""
    from repo_ray.pipeline.rundir import RunDir
    from repo_ray.pipeline.train import run_id_for, run_rl, start_reward_side
    from reward_actors.judge.limiter import LimiterSpend

    cfg = sync_config(pipeline_run.cfg.model.cache_dir)
    run_dir = tmp_path_factory.mktemp("sync") / "run"
    rd = RunDir(str(run_dir))
    run_id = run_id_for(cfg, rd) + "sync"
    s = pipeline_run.summary
    side = start_reward_side(cfg, Path(s["rm_dir"]), run_id)
    srv = side.servers[0]
    fault_at: dict[int, str] = {}
    at_checkpoint = tmp_path_factory.mktemp("sync-checkpoint") / "rl"

    def on_step(lp, record):
        if record.step == RESUME_FROM:  # its checkpoint is written (checkpoint_every 1): what a killed driver leaves
            shutil.copytree(run_dir / "rl", at_checkpoint)
        i = record.step - SYNC_CALM_STEPS
        if not 0 <= i < len(JUDGE_FAULTS):
            return
        name, knobs = JUDGE_FAULTS[i]
        srv.control(**JUDGE_CALM)
        if knobs is None:
            import ray

            ray.get(side.judge_pool.limiter.restore_spend.remote(LimiterSpend(10**9, 0, True)))
        else:
            srv.control(**knobs)
        fault_at[record.step + 1] = name

    import time

    t0 = time.perf_counter()
    try:
        rl = run_rl(cfg, rd, run_id, Path(s["data_dir"]), Path(s["sft_model"]), Path(s["rm_dir"]), resume=False,
                    progress=False, on_step=on_step, reward_side=side)
    finally:
        side.close()
    wall = round(time.perf_counter() - t0, 1)
    steps = run_rows(run_dir, "rl", "steps")
    shares = ", ".join(f"{fault_at.get(r['step'], 'calm')} {r['masked']}/{r['samples']}" for r in steps)
    print(f"sync run: {wall} s; masked per step: {shares}")  # pytest -s shows it
    return SyncRun(cfg, run_dir, {**s, "rl_steps": len(rl.steps), "ledger": rl.ledger_counts, "wall_s": wall},
                   fault_at_step=fault_at, rl_at_checkpoint=at_checkpoint)
