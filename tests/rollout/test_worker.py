"""RolloutWorker actors on the local Ray cluster and the verified adapter push to them.

Two workers are shared by the module (an actor start costs seconds on 2 cores); the
restart test runs last because it takes one of them back to adapter version 0.
"""

import dataclasses

import pytest

from repo_ray.config import RepoRayConfig
from repo_ray.pipeline.adapter_push import collect_acks, push_adapter
from repo_ray.pipeline.placement import rollout_worker_options
from repo_ray.rollout import SamplingSettings
from repo_ray.types import AdapterAck, AdapterVerificationError

from .conftest import make_adapter_update

TOLERANCE = 1e-3


@pytest.fixture(scope="module")
def cfg(domain_model_cfg, lora_settings) -> RepoRayConfig:
    return RepoRayConfig.model_validate({
        "model": domain_model_cfg.model_dump(),
        "rollout": {"num_cpus_per_worker": 0.25, "max_restarts": 2, "max_new_tokens": 8, "max_turns": 2,
                    "max_prompt_tokens": 1024},
        "learner": {"lora": lora_settings.model_dump()},
    })


@pytest.fixture(scope="module")
def workers(ray_local, cfg, domain_models):
    from repo_ray.pipeline.placement import start_rollout_worker

    handles = {f"rollout-{i}": start_rollout_worker(cfg, domain_models.policy_dir, domain_models.tokenizer_dir,
                                                    f"rollout-{i}") for i in range(2)}
    ray_local.get([h.ping.remote() for h in handles.values()])
    yield handles
    for h in handles.values():
        ray_local.kill(h, no_restart=True)


def test_worker_options_come_from_the_config(cfg):
    opts = rollout_worker_options(cfg, name="rollout-0-run1")
    assert opts == {"max_restarts": 2, "max_task_retries": 0, "num_cpus": 0.25, "num_gpus": 0.0,
                    "name": "rollout-0-run1"}


def test_worker_actor_plays_a_rollout_from_parquet_rows(ray_local, workers, data_dir):
    import pyarrow.parquet as pq

    from repo_ray.domain.schemas import FILES

    rows = pq.read_table(data_dir / FILES["rl"].filename).to_pylist()[:3]
    result = ray_local.get(workers["rollout-0"].rollout.remote(
        rows, ["s1", "s2", "s3"], SamplingSettings(max_new_tokens=8, seed=1)))
    assert [e.scenario_id for e in result.episodes] == [r["scenario"]["scenario_id"] for r in rows]
    assert {t.sample_id.split(":")[0] for t in result.trajectories} == {"s1", "s2", "s3"}
    assert all(len(t.response_token_ids) <= 8 for t in result.trajectories)
    for t in result.trajectories:
        dataclasses.replace(t)  # still a valid Trajectory after the trip through Ray


def test_adapter_round_trip_learner_to_two_workers_is_verified(
    ray_local, workers, domain_models, lora_settings, persona_scenarios
):
    update = make_adapter_update(domain_models.policy_dir, lora_settings, version=1, seed=21)
    push = push_adapter(update, workers, TOLERANCE)
    assert [a.worker_id for a in push.acks] == ["rollout-0", "rollout-1"]
    for ack in push.acks:
        assert (ack.version, ack.sha256) == (1, update.sha256)
        assert ack.probe_logprob == pytest.approx(update.probe_logprob, abs=1e-6)
    assert push.push_s >= push.put_s > 0
    assert ray_local.get([w.version.remote() for w in workers.values()]) == [1, 1]
    # generations now carry the new version
    result = ray_local.get(workers["rollout-1"].rollout.remote(persona_scenarios[:1], ["after-v1"]))
    assert {t.adapter_version for t in result.trajectories} == {1}

    # the learner's returned ObjectRef can be pushed as is (no second copy)
    update5 = make_adapter_update(domain_models.policy_dir, lora_settings, version=5, seed=25)
    push = push_adapter(ray_local.put(update5), workers, TOLERANCE)
    assert [(a.version, a.sha256) for a in push.acks] == [(5, update5.sha256)] * 2


def test_worker_handed_a_corrupted_adapter_is_detected_and_named(ray_local, workers, domain_models, lora_settings):
    update = make_adapter_update(domain_models.policy_dir, lora_settings, version=2, seed=22)
    blob = bytearray(update.tensors)
    blob[-3] ^= 0xFF  # flips bits inside the last tensor: still valid safetensors
    corrupted = object.__new__(type(update))  # as if mangled in transit: no __post_init__ check
    for f in dataclasses.fields(update):
        object.__setattr__(corrupted, f.name, getattr(update, f.name))
    object.__setattr__(corrupted, "tensors", bytes(blob))
    ack_refs = {
        "rollout-0": workers["rollout-0"].load_adapter.remote(ray_local.put(update)),
        "rollout-1": workers["rollout-1"].load_adapter.remote(ray_local.put(corrupted)),
    }
    with pytest.raises(AdapterVerificationError) as err:
        collect_acks(update, ack_refs, TOLERANCE)
    message = str(err.value)
    assert message.startswith("worker rollout-1: adapter v2 checksum")
    assert "rollout-0" not in message


def test_stale_version_and_drifted_logprob_are_errors_naming_each_worker(ray_local, domain_models, lora_settings):
    update = make_adapter_update(domain_models.policy_dir, lora_settings, version=3, seed=23)
    stale = AdapterAck("w-stale", 2, update.sha256, update.probe_logprob)
    drifted = AdapterAck("w-drift", 3, update.sha256, update.probe_logprob + 10 * TOLERANCE)
    good = AdapterAck("w-good", 3, update.sha256, update.probe_logprob + TOLERANCE / 10)
    refs = {a.worker_id: ray_local.put(a) for a in (good, stale, drifted)}
    with pytest.raises(AdapterVerificationError) as err:
        collect_acks(update, refs, TOLERANCE)
    assert str(err.value) == (
        "worker w-stale: loaded adapter v2, expected v3 (stale); "
        f"worker w-drift: adapter v3 probe logprob {drifted.probe_logprob:.6f} differs from the learner's "
        f"{update.probe_logprob:.6f} by {10 * TOLERANCE:.2e} > tolerance {TOLERANCE:.1e}"
    )
    assert collect_acks(update, {"w-good": refs["w-good"]}, TOLERANCE) == [good]


def test_crashed_worker_is_restarted_and_says_so(ray_local, workers):
    """Runs last: the restarted worker is back at adapter version 0."""
    import os
    import signal
    import time

    from ray.exceptions import RayActorError

    w = workers["rollout-1"]
    before = ray_local.get(w.ping.remote())
    assert not before.restarted and before.adapter_version > 0
    os.kill(before.pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:  # a call that reached the dead process fails (no task retries); the restarted one answers
        try:
            after = ray_local.get(w.ping.remote(), timeout=60)
            break
        except RayActorError:
            assert time.monotonic() < deadline, "worker did not come back"
            time.sleep(0.5)
    assert after.restarted and after.pid != before.pid
    assert after.adapter_version == 0  # the driver must re-push before using it
