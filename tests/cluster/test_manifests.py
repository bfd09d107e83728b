"""cluster/: the KubeRay manifests hold what configs/paper.yaml asks for, the judge key reaches
only the judge pods, images and entrypoints exist in this repository, submit.sh agrees."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from repo_ray.config import load_config
from repo_ray.pipeline.placement import RM_SCORER_CPUS, build_judge_app

from .conftest import CLUSTER, DEPLOY, ROOT, k8s_quantity, load_yaml, pod_groups, ray_container


def ray_resources(group: dict) -> dict[str, float]:
    """The Ray resources one pod of a group offers: KubeRay passes the container's CPU and GPU
    limits to `ray start` unless rayStartParams set them; custom ones come from rayStartParams."""
    limits = ray_container(group)["resources"]["limits"]
    params = group["rayStartParams"]
    res = {"CPU": k8s_quantity(params.get("num-cpus", limits["cpu"])),
           "GPU": k8s_quantity(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))}
    if "resources" in params:  # KubeRay wants the JSON quoted: '"{\"name\": n}"'
        res.update(json.loads(json.loads(params["resources"])))
    return res


def first_fit(demands: list[dict[str, float]], capacity: dict[str, float], pods: int) -> bool:
    """Whether the demands fit into `pods` pods of `capacity` (first fit, biggest first)."""
    free = [dict(capacity) for _ in range(pods)]
    for d in sorted(demands, key=lambda d: (-d.get("GPU", 0), -d.get("CPU", 0))):
        pod = next((f for f in free if all(f.get(k, 0) >= v - 1e-9 for k, v in d.items())), None)
        if pod is None:
            return False
        for k, v in d.items():
            pod[k] -= v
    return True


def gpu_demands(cfg, job_spec: dict) -> list[dict[str, float]]:
    """Everything of one RL stage that holds a GPU at once (the peak of the run)."""
    r, lrn = cfg.rollout, cfg.learner
    workers = r.num_workers + (1 if cfg.pipeline.frozen_control else 0)  # + the frozen-policy control
    return [
        {"CPU": job_spec["entrypointNumCpus"], "GPU": job_spec["entrypointNumGpus"]},  # the driver
        # the learner's placement group, kept on one pod so ZeRO-3's nccl traffic stays on NVLink
        {"CPU": lrn.world_size * lrn.num_cpus_per_rank, "GPU": lrn.world_size * lrn.num_gpus_per_rank},
        {"CPU": RM_SCORER_CPUS, "GPU": cfg.reward.model.num_gpus},
        *[{"CPU": r.num_cpus_per_worker, "GPU": r.num_gpus_per_worker}] * workers,
    ]


def judge_replica(cfg) -> dict[str, float]:
    """What one judge replica asks Ray for, read from the Serve app the pipeline deploys."""
    app = build_judge_app(cfg.judge, cfg.reward.judge_weights, "check", 5.0)
    opts = app._bound_deployment.ray_actor_options  # Ray 2.60: what Serve starts each replica with
    return {"CPU": opts["num_cpus"], **opts.get("resources", {})}


# ---------------------------------------------------------------------------- structure
def test_manifests_are_kuberay_v1_with_the_required_fields(raycluster, rayjob):
    assert (raycluster["apiVersion"], raycluster["kind"]) == ("ray.io/v1", "RayCluster")
    assert (rayjob["apiVersion"], rayjob["kind"]) == ("ray.io/v1", "RayJob")
    for spec in (raycluster["spec"], rayjob["spec"]["rayClusterSpec"]):
        assert spec["headGroupSpec"]["rayStartParams"] is not None
        for group in pod_groups(spec).values():
            container = ray_container(group)
            assert container["image"] and container["resources"]["limits"]
            assert all(isinstance(v, str) for v in group["rayStartParams"].values())  # KubeRay wants strings
    job = rayjob["spec"]
    assert job["entrypoint"] and job["submissionMode"] == "K8sJobMode"
    assert job["shutdownAfterJobFinishes"] is True


# Fields of KubeRay's ray.io/v1 API reference (KubeRay 1.x) that these manifests may use.
KUBERAY_FIELDS = {
    "RayJobSpec": {"entrypoint", "submissionMode", "entrypointNumCpus", "entrypointNumGpus", "entrypointResources",
                   "runtimeEnvYAML", "shutdownAfterJobFinishes", "ttlSecondsAfterFinished", "backoffLimit",
                   "activeDeadlineSeconds", "rayClusterSpec", "clusterSelector", "submitterPodTemplate",
                   "submitterConfig", "suspend", "jobId", "metadata"},
    "RayClusterSpec": {"rayVersion", "enableInTreeAutoscaling", "autoscalerOptions", "headGroupSpec",
                       "workerGroupSpecs", "headServiceAnnotations", "suspend", "gcsFaultToleranceOptions"},
    "AutoscalerOptions": {"upscalingMode", "idleTimeoutSeconds", "resources", "image", "imagePullPolicy", "env",
                          "envFrom", "securityContext", "volumeMounts", "version"},
    "HeadGroupSpec": {"rayStartParams", "template", "serviceType", "headService", "enableIngress"},
    "WorkerGroupSpec": {"groupName", "replicas", "minReplicas", "maxReplicas", "idleTimeoutSeconds", "rayStartParams",
                        "template", "scaleStrategy", "numOfHosts", "suspend"},
}


def test_manifests_use_only_kuberay_v1_field_names(raycluster, rayjob):
    def check(obj: dict, kind: str) -> None:
        assert set(obj) <= KUBERAY_FIELDS[kind], f"{kind}: {set(obj) - KUBERAY_FIELDS[kind]}"

    check(rayjob["spec"], "RayJobSpec")
    for spec in (raycluster["spec"], rayjob["spec"]["rayClusterSpec"]):
        check(spec, "RayClusterSpec")
        check(spec["autoscalerOptions"], "AutoscalerOptions")
        check(spec["headGroupSpec"], "HeadGroupSpec")
        for group in spec["workerGroupSpecs"]:
            check(group, "WorkerGroupSpec")
    assert rayjob["spec"]["submissionMode"] in ("K8sJobMode", "HTTPMode", "InteractiveMode")
    assert raycluster["spec"]["autoscalerOptions"]["upscalingMode"] in ("Default", "Aggressive", "Conservative")


def test_rayjob_creates_exactly_the_raycluster(raycluster, rayjob):
    assert rayjob["spec"]["rayClusterSpec"] == raycluster["spec"]


def test_ray_version_is_the_one_the_package_pins(raycluster, pyproject):
    ray_dep = next(d for d in pyproject["project"]["dependencies"] if d.startswith("ray["))
    assert raycluster["spec"]["rayVersion"] in SpecifierSet(ray_dep.split("]", 1)[1])


# ---------------------------------------------------------------------------- autoscaling
def test_in_tree_autoscaling_with_bounds_that_let_the_judge_group_grow(raycluster):
    spec = raycluster["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    for g in spec["workerGroupSpecs"]:
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"], g["groupName"]
    judge = pod_groups(spec)["judge-cpu"]
    assert judge["minReplicas"] >= 1 and judge["maxReplicas"] > judge["minReplicas"]


def test_head_runs_no_actor_of_a_run(raycluster):
    head = ray_resources(pod_groups(raycluster["spec"])["head"])
    assert head["CPU"] == 0 and head["GPU"] == 0 and set(head) == {"CPU", "GPU"}


def test_gpu_pods_hold_the_paper_runs_peak(paper, raycluster, rayjob):
    gpu = pod_groups(raycluster["spec"])["gpu"]
    pod = ray_resources(gpu)
    r, lrn = paper.rollout, paper.learner
    # vLLM's tensor parallel group sits in one worker's GPUs, and those in one pod
    assert r.backend == "vllm" and r.num_gpus_per_worker == r.vllm.tensor_parallel_size
    assert pod["GPU"] % r.num_gpus_per_worker == 0 and pod["GPU"] % lrn.num_gpus_per_rank == 0
    demands = gpu_demands(paper, rayjob["spec"])
    assert sum(d["GPU"] for d in demands) == 20  # 8 learner + 5 x 2 rollout + 1 RM + 1 driver
    assert first_fit(demands, pod, gpu["maxReplicas"])
    assert not first_fit(demands, pod, gpu["maxReplicas"] - 1)  # maxReplicas is not oversized


def test_a_pod_too_small_for_the_learner_group_fails_the_check(paper, raycluster, rayjob):
    pod = ray_resources(pod_groups(raycluster["spec"])["gpu"])
    assert not first_fit(gpu_demands(paper, rayjob["spec"]), {**pod, "CPU": 48}, 99)


def test_judge_replicas_fit_only_the_judge_group_from_min_to_max(paper, raycluster):
    groups = pod_groups(raycluster["spec"])
    replica = judge_replica(paper)
    assert set(replica) == {"CPU", "judge_node"}  # paper.yaml pins replicas with a custom resource
    a = paper.judge.autoscaling
    judge = groups["judge-cpu"]
    pod = ray_resources(judge)
    assert first_fit([replica] * a.min_replicas, pod, judge["minReplicas"])
    assert first_fit([replica] * a.max_replicas, pod, judge["maxReplicas"])
    # the CPUs bind before the custom resource does
    assert pod["judge_node"] / replica["judge_node"] >= pod["CPU"] / replica["CPU"]
    for name, group in groups.items():
        if name != "judge-cpu":
            assert not first_fit([replica], ray_resources(group), 1), name


# ---------------------------------------------------------------------------- the judge key
def test_judge_api_key_comes_from_a_secret_on_exactly_the_pods_judge_replicas_can_use(paper, raycluster):
    env_name = paper.judge.api_key_env
    replica = judge_replica(paper)
    for name, group in pod_groups(raycluster["spec"]).items():
        env = {e["name"]: e for e in ray_container(group).get("env", [])}
        runs_judges = first_fit([replica], ray_resources(group), 1)
        assert (env_name in env) == runs_judges, name
        if runs_judges:
            ref = env[env_name]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": "repo-ray-judge", "key": "api-key"} and "value" not in env[env_name]


def test_no_manifest_or_script_carries_the_key_or_a_runtime_env(paper, rayjob):
    assert "runtimeEnvYAML" not in rayjob["spec"]  # runtime_env env_vars show in the dashboard
    for path in CLUSTER.iterdir():
        text = path.read_text(encoding="utf-8")
        assert "runtime-env" not in text and "runtime_env:" not in text, path.name
        for m in re.finditer(re.escape(paper.judge.api_key_env), text):
            # the only mention is the env entry fed from the Secret
            assert path.name in ("raycluster.yaml", "rayjob.yaml"), path.name
            assert text[m.end():].lstrip().startswith("valueFrom:"), path.name


def test_paper_config_points_the_judge_at_an_endpoint_the_judge_pods_can_reach(paper):
    assert not re.search(r"//(127\.|localhost|0\.0\.0\.0)", paper.judge.base_url)
    assert not paper.judge.local_server.enabled


# ---------------------------------------------------------------------------- storage
def test_every_pod_mounts_the_shared_run_volume_and_shares_the_scratch_mirror(raycluster):
    pvc = load_yaml(CLUSTER / "storage.yaml")
    assert pvc["kind"] == "PersistentVolumeClaim" and "ReadWriteMany" in pvc["spec"]["accessModes"]
    for name, group in pod_groups(raycluster["spec"]).items():
        volumes = {v["name"]: v for v in group["template"]["spec"]["volumes"]}
        container = ray_container(group)
        mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
        claim = next(n for n, v in volumes.items() if "persistentVolumeClaim" in v)
        assert volumes[claim]["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"], name
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["REPO_RAY_SCRATCH"].startswith(mounts[claim] + "/"), name


# ---------------------------------------------------------------------------- images, entrypoint
def test_images_are_this_repos_cpu_and_cuda_variants(raycluster, pyproject):
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    version = pyproject["project"]["version"]
    image = re.compile(r"[\w.\-/:]+/repo-ray:(?P<version>[\w.]+)-(?P<variant>cpu|cuda)")
    for name, group in pod_groups(raycluster["spec"]).items():
        m = image.fullmatch(ray_container(group)["image"])
        assert m and m["version"] == version, name
        assert m["variant"] == ("cuda" if ray_resources(group)["GPU"] else "cpu"), name
        assert re.search(rf"^\s*{m['variant']}\)", dockerfile, re.M), f"deploy/Dockerfile has no {m['variant']} variant"


def test_rayjob_entrypoint_is_a_repo_ray_train_the_image_can_run(rayjob, raycluster, pyproject):
    from repo_ray.cli import build_parser

    argv = shlex.split(rayjob["spec"]["entrypoint"])
    assert argv[0] in pyproject["project"]["scripts"]
    args = build_parser().parse_args(argv[1:])
    assert args.command == "train" and args.resume  # a retried job continues the run
    workdir = re.search(r"^WORKDIR\s+(\S+)", (DEPLOY / "Dockerfile").read_text(encoding="utf-8"), re.M)[1]
    config = Path(args.config)
    assert config.is_relative_to(workdir)
    load_config(ROOT / config.relative_to(workdir))  # the file the image copies from this repo
    # the driver holds a GPU, so it runs on a gpu pod: the run dir must be on that pod's volume
    assert rayjob["spec"]["entrypointNumGpus"] >= 1
    gpu = ray_container(pod_groups(raycluster["spec"])["gpu"])
    assert any(Path(args.run_dir).is_relative_to(m["mountPath"]) for m in gpu["volumeMounts"]
               if m["name"] == "runs")


def test_podmonitor_scrapes_every_ray_pod_on_its_metrics_export_port(raycluster):
    monitor = load_yaml(CLUSTER / "podmonitor.yaml")
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for name, group in pod_groups(raycluster["spec"]).items():
        assert selector.items() <= group["template"]["metadata"]["labels"].items(), name
        ports = {p["name"]: p["containerPort"] for p in ray_container(group)["ports"]}
        assert ports[endpoint["port"]] == int(group["rayStartParams"]["metrics-export-port"]), name


# ---------------------------------------------------------------------------- submit.sh
@pytest.fixture()
def fake_ray(tmp_path):
    """A `ray` on PATH that records its arguments, one per line."""
    log = tmp_path / "ray-args"
    exe = tmp_path / "bin" / "ray"
    exe.parent.mkdir()
    exe.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$@" > {log}\n')
    exe.chmod(0o755)
    env = {**os.environ, "PATH": f"{exe.parent}:{os.environ['PATH']}", "RAY_ADDRESS": "http://127.0.0.1:18265"}
    return env, log


def run_submit(env, *args):
    return subprocess.run(["bash", str(CLUSTER / "submit.sh"), *args], env=env, capture_output=True, text=True,
                          timeout=30)


def test_submit_sh_submits_the_rayjobs_entrypoint_with_its_driver_resources(fake_ray, rayjob):
    env, log = fake_ray
    done = run_submit(env)
    assert done.returncode == 0, done.stderr
    argv = log.read_text().splitlines()
    sep = argv.index("--")
    head, entry = argv[:sep], argv[sep + 1:]
    assert head[:4] == ["job", "submit", "--address", "http://127.0.0.1:18265"]
    job = rayjob["spec"]
    assert head[head.index("--entrypoint-num-gpus") + 1] == str(job["entrypointNumGpus"])
    assert head[head.index("--entrypoint-num-cpus") + 1] == str(job["entrypointNumCpus"])
    assert entry == shlex.split(job["entrypoint"])


def test_submit_sh_passes_options_and_extra_args_through(fake_ray):
    env, log = fake_ray
    done = run_submit(env, "--config", "configs/demo.yaml", "--run-dir", "s3://bucket/runs/x", "--working-dir", ".",
                      "--wait", "--", "--no-eval")
    assert done.returncode == 0, done.stderr
    argv = log.read_text().splitlines()
    assert argv[argv.index("--working-dir") + 1] == "." and "--no-wait" not in argv
    assert argv[argv.index("--") + 1:] == ["repo-ray", "train", "--config", "configs/demo.yaml", "--run-dir",
                                           "s3://bucket/runs/x", "--resume", "--no-progress", "--no-eval"]


def test_submit_sh_refuses_a_relative_run_dir(fake_ray):
    env, log = fake_ray
    done = run_submit(env, "--run-dir", "runs/x")
    assert done.returncode == 2 and "--run-dir 'runs/x'" in done.stderr
    assert not log.exists()
