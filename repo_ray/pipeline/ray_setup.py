"""Connecting to Ray: an existing cluster (RAY_ADDRESS or an explicit address) or a local
head bound to 127.0.0.1 only (DESIGN.md §5 security defaults), with a quiet console.

Quiet (the default): actors' stdout/stderr stay in Ray's session logs instead of being
mirrored to the driver (no per-actor weight-loading bars, no Serve/DeepSpeed INFO chatter),
Ray's own driver logger shows warnings and up, and Ray's multi-line worker-death paragraphs
become one `[ray] ...` line; the driver's `[repo-ray]` lines tell each event. Verbose
(`repo-ray --verbose` / `train --verbose`, or REPO_RAY_VERBOSE=1): everything, as Ray prints it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass, field

from repo_ray.types import NAMESPACE, run_scoped_name

__all__ = ["NAMESPACE", "ConsoleSettings", "apply_console", "condense_ray_message", "console_settings", "init_ray",
           "run_scoped_name"]

VERBOSE_ENV = "REPO_RAY_VERBOSE"
# Progress bars and library chatter off in every actor (and the driver): they are per-actor
# noise on the console and unreadable carriage-return soup in the log files.
QUIET_ACTOR_ENV = {
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # huggingface_hub and transformers' weight-loading bars
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "TQDM_DISABLE": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


@dataclass(frozen=True)
class ConsoleSettings:
    """How much of the cluster reaches the driver's console."""

    verbose: bool
    log_to_driver: bool  # mirror every actor's stdout/stderr to the driver
    logging_level: int  # Ray's own driver logger
    env_vars: dict[str, str] = field(default_factory=dict)  # set in the driver and every actor
    condense_errors: bool = True  # one line per Ray error message (worker death, ...)


def is_verbose(verbose: bool | None = None) -> bool:
    if verbose is not None:
        return verbose
    return os.environ.get(VERBOSE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def console_settings(verbose: bool | None = None) -> ConsoleSettings:
    """The console policy: quiet by default, everything when verbose (argument, else $REPO_RAY_VERBOSE)."""
    if is_verbose(verbose):
        return ConsoleSettings(True, log_to_driver=True, logging_level=logging.INFO, condense_errors=False)
    return ConsoleSettings(False, log_to_driver=False, logging_level=logging.WARNING, env_vars=dict(QUIET_ACTOR_ENV))


_FIELD = re.compile(r"(Worker PID|Worker exit type|Worker exit detail|Actor name)"
                    r"\s*[:=]\s*([^\n]+?)(?=\s+(?:[A-Z][\w ]{2,30}:|$)|\n|$)")
MAX_CONDENSED = 240


def condense_ray_message(text: str) -> str:
    """One line out of a Ray error paragraph: its first sentence plus the worker's pid, exit type
    and the first sentence of the exit detail where the paragraph has them."""
    flat = " ".join(text.split())
    first = re.split(r"(?<=[.!?])\s", flat, maxsplit=1)[0]
    facts = []
    for name, value in _FIELD.findall(text):
        value = re.split(r"(?<=[.!?])\s", " ".join(value.split()), maxsplit=1)[0]
        item = f"{name.lower().replace('worker ', '')} {value}"
        if item not in facts and value not in first:
            facts.append(item)
    line = first + (f" ({'; '.join(facts)})" if facts else "")
    return line if len(line) <= MAX_CONDENSED else line[:MAX_CONDENSED - 1] + "…"


def _condense_driver_errors() -> None:
    """Ray's error listener thread prints raylet messages (worker deaths, OOM kills) through
    `ray._private.worker.print_to_stdstream`, whatever `log_to_driver` says; wrap it so each
    becomes one line. Only messages from the raylet are touched, and only when quiet."""
    from ray._private import worker as ray_worker

    original = ray_worker.print_to_stdstream
    if getattr(original, "_repo_ray_condensed", False):
        return

    def print_condensed(data, ignore_prefix: bool):
        if data.get("pid") == "raylet" and data.get("lines"):
            for text in data["lines"]:
                print(f"[ray] {condense_ray_message(str(text))}", file=sys.stderr, flush=True)
            return
        original(data, ignore_prefix)

    print_condensed._repo_ray_condensed = True  # type: ignore[attr-defined]
    ray_worker.print_to_stdstream = print_condensed


def apply_console(verbose: bool | None = None) -> ConsoleSettings:
    """Fix the console policy for this process and the Ray processes it starts: records it in
    $REPO_RAY_VERBOSE (so the later `init_ray` and child processes agree) and sets the quiet
    env vars now, before transformers / huggingface_hub are imported (they read them once)."""
    console = console_settings(verbose)
    os.environ[VERBOSE_ENV] = "1" if console.verbose else "0"
    for k, v in console.env_vars.items():
        os.environ.setdefault(k, v)
    return console


def _with_env(runtime_env: dict | None, env_vars: dict[str, str]) -> dict | None:
    """The job's runtime_env plus the console env vars (the user's own values win). Never put
    a secret here: the dashboard shows runtime_env (DESIGN.md §5)."""
    if not env_vars:
        return runtime_env
    env = dict(runtime_env or {})
    env["env_vars"] = {**env_vars, **(env.get("env_vars") or {})}
    return env


def init_ray(
    address: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    metrics_export_port: int | None = None,
    include_dashboard: bool | None = None,
    runtime_env: dict | None = None,
    verbose: bool | None = None,
):
    """Connect to a cluster when an address is given or RAY_ADDRESS is set; otherwise start a
    local head with every port on 127.0.0.1. Idempotent: an existing connection is reused."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return ray.get_runtime_context()
    console = console_settings(verbose)
    for k, v in console.env_vars.items():  # the driver, and a local head's raylet and workers
        os.environ.setdefault(k, v)
    runtime_env = _with_env(runtime_env, console.env_vars)
    common = {"namespace": NAMESPACE, "runtime_env": runtime_env, "log_to_driver": console.log_to_driver,
              "logging_level": console.logging_level}
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        ctx = ray.init(address=address, **common)
    else:
        _local_only_ports()
        kwargs: dict = {}
        if metrics_export_port is not None:
            kwargs["_metrics_export_port"] = metrics_export_port
        ctx = ray.init(
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            _node_ip_address="127.0.0.1",
            dashboard_host="127.0.0.1",
            include_dashboard=include_dashboard,
            **common,
            **kwargs,
        )
    if console.condense_errors:
        _condense_driver_errors()
    return ctx


def _local_only_ports() -> None:
    """Seen with Ray 2.60: GCS, raylet and agents listen on all interfaces even when the node
    IP and dashboard host are 127.0.0.1, unless Ray's "local only" switch is off. Ray reads it
    from the environment when it is first imported, so set both the variable (for child
    processes) and the already-imported constant."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
