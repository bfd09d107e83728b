"""deploy/: the Dockerfile builds this package's two variants, the Prometheus and compose files
point at what Ray writes and at files that exist, and the Grafana dashboard queries only series
the code exports (repo_ray/telemetry.py), each the way its kind allows."""

from __future__ import annotations

import json
import os
import re

import pytest
from packaging.specifiers import SpecifierSet

from repo_ray.telemetry import METRICS, exported_name

from .conftest import DEPLOY, ROOT, load_yaml

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "repo-ray.json"
SERIES = re.compile(r"\bray_repo_ray_\w+")
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


# ---------------------------------------------------------------------------- Dockerfile
def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return [(ln.split(None, 1)[0].upper(), ln.split(None, 1)[1] if " " in ln else "") for ln in lines]


def test_dockerfile_copies_files_that_exist_and_runs_a_console_script(pyproject):
    instr = dockerfile_instructions()
    copies = [args.split()[:-1] for op, args in instr if op == "COPY"]
    assert copies
    for sources in copies:
        for src in sources:
            assert (ROOT / src).exists(), src
    copied = {s.rstrip("/") for sources in copies for s in sources}
    assert {"pyproject.toml", "README.md", "repo_ray", "reward_actors", "configs"} <= copied
    (cmd,) = [json.loads(args) for op, args in instr if op == "CMD"]
    assert cmd[0] in pyproject["project"]["scripts"]


def test_dockerfile_variants_install_torch_versions_the_package_accepts(pyproject):
    args = dict(a.split("=", 1) for op, a in dockerfile_instructions() if op == "ARG" and "=" in a)
    assert {"BASE_IMAGE", "VARIANT"} <= args.keys() and args["VARIANT"] == "cpu"
    torch_spec = SpecifierSet(next(d for d in pyproject["project"]["dependencies"] if d.startswith("torch"))[5:])
    assert args["TORCH_CPU_VERSION"] in torch_spec and args["TORCH_CUDA_VERSION"] in torch_spec
    # the CPU image gets the same torch as `make`; the CUDA one the version the gpu extra's vllm pins
    assert f"torch=={args['TORCH_CPU_VERSION']}" in (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "gpu" in pyproject["project"]["optional-dependencies"]
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    assert '".[gpu]"' in text and "python:3.11" in args["BASE_IMAGE"]
    # KubeRay starts Ray pods through bash and probes them with wget
    assert re.search(r"apt-get install[^\n]*\bbash\b[^\n]*\bwget\b", text)


def test_dockerignore_keeps_the_venv_and_runs_out_of_the_build_context():
    lines = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    rules = [ln for ln in lines if ln and not ln.startswith("#")]
    assert rules[0] == "**" and not any(r.lstrip("!").startswith((".venv", "runs")) for r in rules[1:])


# ---------------------------------------------------------------------------- Prometheus, compose
def test_prometheus_scrapes_the_service_discovery_file_ray_writes():
    from ray._private import ray_constants

    cfg = load_yaml(DEPLOY / "prometheus" / "prometheus.yml")
    (job,) = cfg["scrape_configs"]
    files = [f for sd in job["file_sd_configs"] for f in sd["files"]]
    assert files == [f"/tmp/ray/{ray_constants.PROMETHEUS_SERVICE_DISCOVERY_FILE}"]
    assert job["job_name"] == "ray"


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_yaml(DEPLOY / "compose.yaml")


def test_compose_runs_prometheus_and_grafana_on_the_host_network_with_existing_files(compose):
    services = compose["services"]
    assert set(services) == {"prometheus", "grafana"}
    for name, svc in services.items():
        assert svc["network_mode"] == "host" and "ports" not in svc, name
        for vol in svc["volumes"]:
            src, target = vol.split(":")[:2]
            if src.startswith("./"):
                assert (DEPLOY / src).exists(), f"{name}: {src}"
            else:  # Ray's directory, at the same path: its discovery file is a link inside it
                assert src == target == "/tmp/ray", f"{name}: {vol}"
    prom = services["prometheus"]
    config_arg = next(a for a in prom["command"] if a.startswith("--config.file="))
    mounted = {v.split(":")[1]: v.split(":")[0] for v in prom["volumes"]}
    assert mounted[config_arg.split("=", 1)[1]] == "./prometheus/prometheus.yml"


def test_everything_local_listens_on_loopback_and_grafana_finds_prometheus(compose):
    services = compose["services"]
    listen = next(a for a in services["prometheus"]["command"] if a.startswith("--web.listen-address="))
    assert listen.split("=", 1)[1] == "127.0.0.1:9090"
    assert services["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    (source,) = load_yaml(DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml")["datasources"]
    assert source["url"] == "http://127.0.0.1:9090" and source["type"] == "prometheus"


def test_grafana_loads_the_dashboard_from_where_compose_mounts_it(compose):
    mounts = {v.split(":")[0]: v.split(":")[1] for v in compose["services"]["grafana"]["volumes"]}
    providers = load_yaml(DEPLOY / "grafana" / "provisioning" / "dashboards" / "repo-ray.yaml")["providers"]
    paths = {p["options"]["path"] for p in providers}
    assert mounts["./grafana/dashboards"] in paths and mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    assert DASHBOARD.parent == DEPLOY / "grafana" / "dashboards"


def test_make_observe_starts_this_compose_file():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    recipe = re.search(r"^observe:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert recipe and "deploy/compose.yaml" in recipe[1] and " up " in recipe[1]


# ---------------------------------------------------------------------------- Grafana dashboard
def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]


def metric_of(series: str) -> tuple[str, str]:
    """(METRICS name, suffix) of an exported series name; KeyError when the code exports none."""
    name = series.removeprefix("ray_")
    if name in METRICS:
        return name, ""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and METRICS.get(base) and METRICS[base].kind == "histogram":
            return base, suffix
    raise KeyError(series)


def dashboard_series() -> set[str]:
    return {s for e in dashboard_exprs() for s in SERIES.findall(e)}


def test_dashboard_names_only_series_the_code_exports_in_the_way_ray_exports_them():
    for series in dashboard_series():
        name, suffix = metric_of(series)
        assert series == exported_name(name, suffix)
        assert METRICS[name].kind != "histogram" or suffix, f"{series}: a histogram is read through _bucket/_sum/_count"


def test_dashboard_has_a_panel_for_every_metric():
    assert {metric_of(s)[0] for s in dashboard_series()} == set(METRICS)


def test_counters_and_histograms_are_read_as_rates_and_gauges_as_levels():
    for expr in dashboard_exprs():
        for m in SERIES.finditer(expr):
            name, suffix = metric_of(m[0])
            kind = METRICS[name].kind
            before = expr[:m.start()]
            if kind == "counter" or suffix:
                assert re.search(r"\b(rate|increase)\($", before), f"{m[0]} outside rate(): {expr}"
            else:  # Ray drops a gauge ~20 s after its last set: read the last value over a window
                assert before.endswith("last_over_time("), expr
            if suffix == "_bucket":
                assert before.startswith("histogram_quantile("), expr


def test_dashboard_groups_only_by_labels_the_series_carry():
    for expr in dashboard_exprs():
        labels = {lbl.strip() for grp in re.findall(r"\bby \(([^)]*)\)", expr) for lbl in grp.split(",")}
        names = [metric_of(s) for s in SERIES.findall(expr)]
        for name, suffix in names:
            allowed = set(METRICS[name].tag_keys) | ({"le"} if suffix == "_bucket" else set())
            assert labels <= allowed, f"{expr}: {labels - allowed} not among {sorted(allowed)}"


def test_every_dashboard_metric_is_recorded_somewhere_in_the_code():
    sources = [p for pkg in ("repo_ray", "reward_actors") for p in (ROOT / pkg).rglob("*.py")
               if p.name != "metrics.py"]
    text = "\n".join(p.read_text(encoding="utf-8") for p in sources)
    for name in {metric_of(s)[0] for s in dashboard_series()}:
        assert f'"{name}"' in text, f"{name} is defined but never recorded"


def test_dashboard_reads_the_datasource_from_its_variable():
    dash = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    (var,) = dash["templating"]["list"]
    assert var["type"] == "datasource" and var["query"] == "prometheus"
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${" + var["name"] + "}"
    assert os.path.basename(DASHBOARD) == f"{dash['uid']}.json"
