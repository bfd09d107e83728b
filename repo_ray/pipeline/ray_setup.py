"""Connecting to Ray: an existing cluster (RAY_ADDRESS or an explicit address) or a local
head bound to 127.0.0.1 only (DESIGN.md §5 security defaults)."""

from __future__ import annotations

import os

from repo_ray.types import NAMESPACE, run_scoped_name

__all__ = ["NAMESPACE", "init_ray", "run_scoped_name"]  # the naming contract lives in types.py


def init_ray(
    address: str | None = None,
    num_cpus: float | None = None,
    num_gpus: float | None = None,
    metrics_export_port: int | None = None,
    include_dashboard: bool | None = None,
    runtime_env: dict | None = None,
):
    """Connect to a cluster when an address is given or RAY_ADDRESS is set; otherwise start a
    local head with every port on 127.0.0.1. Idempotent: an existing connection is reused."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return ray.get_runtime_context()
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        return ray.init(address=address, namespace=NAMESPACE, runtime_env=runtime_env)
    _local_only_ports()
    kwargs: dict = {}
    if metrics_export_port is not None:
        kwargs["_metrics_export_port"] = metrics_export_port
    return ray.init(
        namespace=NAMESPACE,
        num_cpus=num_cpus,
        num_gpus=num_gpus,
        _node_ip_address="127.0.0.1",
        dashboard_host="127.0.0.1",
        include_dashboard=include_dashboard,
        runtime_env=runtime_env,
        **kwargs,
    )


def _local_only_ports() -> None:
    """Seen with Ray 2.60: GCS, raylet and agents listen on all interfaces even when the node
    IP and dashboard host are 127.0.0.1, unless Ray's "local only" switch is off. Ray reads it
    from the environment when it is first imported, so set both the variable (for child
    processes) and the already-imported constant."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False

