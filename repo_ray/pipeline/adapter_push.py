"""Verified adapter push (DESIGN.md §6 `AdapterUpdate`): one `ray.put` per version, every
rollout worker loads it and answers (worker, version, sha256, probe logprob); any stale
version, wrong checksum, logprob beyond tolerance, failed load or dead worker is one
`AdapterVerificationError` naming every worker at fault.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import ray
from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

from repo_ray.telemetry import record
from repo_ray.types import AdapterAck, AdapterUpdate, AdapterVerificationError


@dataclass(frozen=True, slots=True)
class AdapterPush:
    version: int
    acks: list[AdapterAck]  # one per worker, in the order of the workers mapping
    put_s: float  # the single ray.put (or the fetch of the learner's object)
    push_s: float  # ray.put until the last ack is verified


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def collect_acks(
    update: AdapterUpdate, ack_refs: Mapping[str, ray.ObjectRef], tolerance: float, timeout_s: float | None = None
) -> list[AdapterAck]:
    """Wait for every worker's answer to `load_adapter` and verify it against `update`.

    Raises AdapterVerificationError listing each failing worker (all of them, not just the
    first) after every answer is in; returns the acks when all match."""
    acks: list[AdapterAck] = []
    failures: list[str] = []
    for worker_id, ref in ack_refs.items():
        try:
            ack = ray.get(ref, timeout=timeout_s)
        except RayTaskError as err:
            cause = err.cause if isinstance(err.cause, BaseException) else err
            msg = str(cause) if isinstance(cause, AdapterVerificationError) else _first_line(cause)
            failures.append(msg if msg.startswith(f"worker {worker_id}") else f"worker {worker_id}: load failed: {msg}")
            continue
        except RayActorError as err:
            failures.append(f"worker {worker_id}: died while loading adapter v{update.version} ({_first_line(err)})")
            continue
        except GetTimeoutError:
            failures.append(f"worker {worker_id}: no answer to adapter v{update.version} within {timeout_s} s")
            continue
        if ack.worker_id != worker_id:
            failures.append(f"worker {worker_id}: answered as {ack.worker_id!r}")
            continue
        try:
            update.verify_ack(ack, tolerance)
        except AdapterVerificationError as err:
            failures.append(str(err))
            continue
        acks.append(ack)
    if failures:
        raise AdapterVerificationError("; ".join(failures))
    return acks


def push_adapter(
    update: AdapterUpdate | ray.ObjectRef,
    workers: Mapping[str, ray.actor.ActorHandle],
    tolerance: float,
    timeout_s: float | None = None,
) -> AdapterPush:
    """Publish `update` to every worker (worker id -> RolloutWorker handle) and verify each
    load. `tolerance` is rollout.adapter_logprob_tolerance.

    Given an AdapterUpdate, it is `ray.put` once; given the ObjectRef the learner's
    `adapter_update` call returned, that object (already in the store) is what the workers
    read, and the driver fetches it only to verify the answers."""
    started = time.perf_counter()
    if isinstance(update, ray.ObjectRef):
        ref, update = update, ray.get(update)
    else:
        ref = ray.put(update)  # once per version; every worker reads the same object
    put_s = time.perf_counter() - started
    ack_refs = {worker_id: handle.load_adapter.remote(ref) for worker_id, handle in workers.items()}
    acks = collect_acks(update, ack_refs, tolerance, timeout_s)
    push_s = time.perf_counter() - started
    record("repo_ray_adapter_push_seconds", push_s)
    for ack in acks:  # what each worker now plays (a restarted one is back at 0 until re-pushed)
        record("repo_ray_adapter_version", ack.version, worker=ack.worker_id)
    return AdapterPush(update.version, acks, put_s, push_s)
