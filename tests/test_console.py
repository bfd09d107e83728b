"""A quiet console by default (issue 15 item 6): the policy `init_ray` applies, the one line a
Ray worker-death paragraph becomes, and `--verbose` turning everything back on. The live
check on the session's Ray is in tests/pipeline/test_secrets.py."""

from __future__ import annotations

import logging

import pytest

from repo_ray.pipeline import ray_setup
from repo_ray.pipeline.ray_setup import QUIET_ACTOR_ENV, VERBOSE_ENV, condense_ray_message, console_settings

WORKER_DEATH = (
    "A worker died or was killed while executing a task by an unexpected system error. To troubleshoot the problem, "
    "check the logs for the dead worker. RayTask ID: ffffffffffffffff3bb1a7fb8e4c55d301000000\n"
    "Lease ID: 04000000a1b2c3\nWorker ID: 9f3c0d2e8b7a\nNode ID: 5d1e2f3a4b5c\nWorker IP address: 127.0.0.1\n"
    "Worker port: 40123\nWorker PID: 51234\nWorker exit type: SYSTEM_ERROR\n"
    "Worker exit detail: Worker unexpectedly exits with a connection error code 2. End of file. There are some "
    "potential root causes. (1) The process is killed by SIGKILL by OOM killer due to high memory usage. (2) ray "
    "stop --force is called. (3) The worker is crashed unexpectedly due to SIGSEGV or other unexpected errors."
)


def test_quiet_by_default_keeps_actor_output_off_the_console(monkeypatch):
    monkeypatch.delenv(VERBOSE_ENV, raising=False)
    c = console_settings()
    assert not c.verbose and not c.log_to_driver and c.logging_level == logging.WARNING and c.condense_errors
    assert c.env_vars["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and c.env_vars["TRANSFORMERS_VERBOSITY"] == "error"


@pytest.mark.parametrize("how", ["argument", "env"])
def test_verbose_shows_everything(monkeypatch, how):
    monkeypatch.setenv(VERBOSE_ENV, "1" if how == "env" else "0")
    c = console_settings(True if how == "argument" else None)
    assert c.verbose and c.log_to_driver and c.logging_level == logging.INFO and not c.condense_errors
    assert c.env_vars == {}  # progress bars as the libraries draw them


def test_a_worker_death_paragraph_becomes_one_short_line():
    line = condense_ray_message(WORKER_DEATH)
    assert "\n" not in line and len(line) <= 240 < len(WORKER_DEATH)
    assert line.startswith("A worker died or was killed")
    assert "pid 51234" in line and "SYSTEM_ERROR" in line and "connection error code 2" in line
    assert "OOM killer" not in line and "Lease ID" not in line


def test_a_short_message_is_kept_whole():
    assert condense_ray_message("Actor restarted.") == "Actor restarted."


def test_init_ray_passes_the_policy_to_ray(monkeypatch):
    import ray

    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    monkeypatch.setattr(ray_setup, "_condense_driver_errors", lambda: seen.setdefault("condensed", True))
    monkeypatch.setattr(ray_setup, "_local_only_ports", lambda: None)
    for k in QUIET_ACTOR_ENV:
        monkeypatch.delenv(k, raising=False)
    ray_setup.init_ray(runtime_env={"env_vars": {"TRANSFORMERS_VERBOSITY": "info", "MINE": "1"}}, verbose=False)
    assert seen["log_to_driver"] is False and seen["logging_level"] == logging.WARNING and seen["condensed"]
    env = seen["runtime_env"]["env_vars"]
    assert env["HF_HUB_DISABLE_PROGRESS_BARS"] == "1" and env["MINE"] == "1"
    assert env["TRANSFORMERS_VERBOSITY"] == "info"  # the user's own value wins
    assert seen["_node_ip_address"] == "127.0.0.1" and seen["dashboard_host"] == "127.0.0.1"

    seen.clear()
    ray_setup.init_ray(address="ray://cluster:10001", verbose=True)
    assert seen["log_to_driver"] is True and seen["runtime_env"] is None and "condensed" not in seen


def test_verbose_flag_on_train_and_compare_and_globally(monkeypatch):
    from repo_ray.cli import build_parser, main

    p = build_parser()
    assert p.parse_args(["train", "--config", "c.yaml", "--verbose"]).verbose
    assert p.parse_args(["--verbose", "train", "--config", "c.yaml"]).verbose
    assert p.parse_args(["compare", "--config", "c.yaml", "-v"]).verbose
    assert not p.parse_args(["train", "--config", "c.yaml"]).verbose
    monkeypatch.setenv(VERBOSE_ENV, "0")
    assert main(["--verbose", "describe-data"]) == 0
    import os

    assert os.environ[VERBOSE_ENV] == "1"  # what the later init_ray (and a Ray job's children) read
