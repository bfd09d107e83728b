"""Secrets and exposure (issue 15 item 5), on the shared tiny run whose judge key is a canary
(tests/pipeline/conftest.py): the key is in none of the run directory, Ray's session logs,
the metrics endpoint, the job and actor metadata, or the reprs a user sees; every socket the
run listens on is on 127.0.0.1; the run writes nothing outside its directory and the model
cache. The pure parts (answer cap, safetensors only) are in tests/test_secrets.py."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from tests.pipeline.conftest import CANARY_KEY, metrics_page

pytestmark = pytest.mark.timeout(900)  # the shared run is built on first use
KEY = CANARY_KEY.encode()
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}  # the last: IPv4 loopback on a dual-stack socket


def files_holding(root: Path, needle: bytes, max_bytes: int = 200 << 20) -> list[str]:
    hits = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink() and p.stat().st_size <= max_bytes and needle in p.read_bytes():
                hits.append(str(p))
        except OSError:
            continue  # a socket, or a file Ray rotated away meanwhile
    return hits


def test_the_judge_replicas_held_the_canary_key(pipeline_run):
    """Precondition of every check below: the key really was in play (the replicas read it
    from their environment and sent it as a bearer header)."""
    assert any("ServeReplica" in name for name in pipeline_run.key_holders), pipeline_run.key_holders


def test_the_key_is_nowhere_in_the_run_directory(pipeline_run):
    files = [p for p in pipeline_run.run_dir.rglob("*") if p.is_file()]
    assert len(files) > 10  # the run wrote its ledger, trajectories, checkpoints, manifest
    assert files_holding(pipeline_run.run_dir, KEY) == []


def test_the_key_is_nowhere_in_rays_session_logs(pipeline_run, ray_local):
    from ray._private.worker import global_worker

    logs = Path(global_worker.node.get_logs_dir_path())
    assert any(logs.glob("worker-*.out"))  # actor output lands here (the console is quiet)
    assert files_holding(logs, KEY) == []


def test_the_key_is_not_on_the_metrics_endpoint(pipeline_run):
    pages = [*pipeline_run.metrics_pages, metrics_page()]
    assert any("ray_repo_ray_" in p for p in pages)
    assert not any(CANARY_KEY in p for p in pages)


def test_the_key_is_not_in_job_or_actor_metadata(pipeline_run, ray_local):
    from ray.util.state import list_actors, list_jobs

    address = ray_local.get_runtime_context().gcs_address  # other Ray instances may run on this machine
    jobs = list_jobs(address=address, detail=True)
    actors = list_actors(address=address, detail=True, limit=10_000)
    assert jobs and actors
    text = repr(jobs) + repr(actors)
    assert "RolloutWorker" in text
    assert CANARY_KEY not in text


def test_the_key_is_not_in_the_reprs_of_the_run(pipeline_run):
    from repo_ray.pipeline.rundir import RunDir

    seen = repr(pipeline_run.cfg) + pipeline_run.cfg.model_dump_json() + repr(pipeline_run.summary) + \
        repr(RunDir(str(pipeline_run.run_dir)))
    assert pipeline_run.cfg.judge.api_key_env in seen  # the variable's name is fine to show
    assert CANARY_KEY not in seen


def test_every_listener_of_the_run_is_on_loopback(pipeline_run):
    snapshots = pipeline_run.listeners
    assert len(snapshots) == pipeline_run.summary["rl_steps"] and all(snapshots)
    ports = {port for snap in snapshots for _, port, _, _ in snap}
    assert len(ports) >= 5  # GCS, raylet, dashboard, metrics export, judge server at least
    exposed = sorted({(ip, port, name) for snap in snapshots for ip, port, _, name in snap if ip not in LOOPBACK})
    assert exposed == []


def test_the_run_writes_nothing_outside_its_directory_and_the_model_cache(pipeline_run):
    """Entries that appeared or changed during the run where a run has no business writing:
    the working directory, ~/.cache, and the temp dir's top (Ray's /tmp/ray and pytest's own
    directories aside). Other processes share these directories, so only names a run of ours
    would create count in the temp dir."""
    before, after = pipeline_run.outside_before, pipeline_run.outside_after
    changed = [p for p, mtime in after.items() if before.get(p) != mtime]
    tmp = Path(tempfile.gettempdir())
    ignored_parts = {"__pycache__", ".pytest_cache", ".ruff_cache", ".git", ".venv"}
    suspicious = []
    for p in map(Path, changed):
        if ignored_parts & set(p.parts) or p.suffix in (".py", ".md", ".yaml", ".toml", ".json", ".txt", ".cfg"):
            continue  # source edits and caches (other sessions work in this tree too)
        if p.parent == tmp:
            if p.name in ("ray",) or p.name.startswith(("pytest-of-", "pymp-")) or not any(
                    k in p.name.lower() for k in ("repo", "ray", "judge", "lora", "deepspeed", "hf", "torch")):
                continue
        suspicious.append(str(p))
    assert suspicious == []


def test_the_sessions_console_is_quiet(pipeline_run, ray_local):
    """The run's Ray was started quiet (ray_setup.console_settings): actor output is not
    mirrored to the driver and Ray's error paragraphs go through the one-line condenser."""
    from ray._private import worker as ray_worker
    from ray._private.ray_logging import global_worker_stdstream_dispatcher

    assert "ray_print_logs" not in [name for name, _ in global_worker_stdstream_dispatcher.handlers]
    assert getattr(ray_worker.print_to_stdstream, "_repo_ray_condensed", False)
