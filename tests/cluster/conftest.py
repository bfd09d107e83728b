"""The manifests under cluster/ and deploy/, parsed once, and the config they are sized for."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import yaml

from repo_ray.config import RepoRayConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
DEPLOY = ROOT / "deploy"
PAPER = ROOT / "configs" / "paper.yaml"


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def k8s_quantity(value) -> float:
    """A Kubernetes CPU/GPU quantity as a number ("88", 8, "500m")."""
    s = str(value)
    return float(s[:-1]) / 1000 if s.endswith("m") else float(s)


@pytest.fixture(scope="session")
def paper() -> RepoRayConfig:
    return load_config(PAPER)


@pytest.fixture(scope="session")
def raycluster() -> dict:
    return load_yaml(CLUSTER / "raycluster.yaml")


@pytest.fixture(scope="session")
def rayjob() -> dict:
    return load_yaml(CLUSTER / "rayjob.yaml")


@pytest.fixture(scope="session")
def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def pod_groups(cluster_spec: dict) -> dict[str, dict]:
    """Every pod group of a RayCluster spec by name ("head" for the head group)."""
    groups = {"head": cluster_spec["headGroupSpec"]}
    groups.update({g["groupName"]: g for g in cluster_spec["workerGroupSpecs"]})
    return groups


def ray_container(group: dict) -> dict:
    (container,) = group["template"]["spec"]["containers"]  # the Ray container is the only one
    return container
