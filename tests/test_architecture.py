"""The import rule of DESIGN.md §3, read from the source (AST; no imports run, CPU only):
imports point down, nothing below the driver imports `repo_ray.pipeline`, and no modules
import each other in a loop. Imports inside functions and under TYPE_CHECKING count too:
a lazy import is still a dependency."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("repo_ray", "reward_actors")
# Layers below the driver (DESIGN.md §3): they must not know the pipeline exists.
BELOW_PIPELINE = ("reward_actors", "repo_ray.rollout", "repo_ray.learner", "repo_ray.model", "repo_ray.domain",
                  "repo_ray.algos", "repo_ray.types", "repo_ray.telemetry", "repo_ray.config")


def module_files() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


MODULES = module_files()


def imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name `module` imports anywhere in its file (absolute, relative resolved)."""
    names: set[str] = set()
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return names


def our_module(name: str) -> str | None:
    """The longest module of ours that `name` is or lies in (None for third-party names)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for mod, path in MODULES.items():
        targets = {our_module(n) for n in imported_names(mod, path)}
        graph[mod] = {t for t in targets if t is not None and t != mod}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return cycles


def in_package(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_the_import_scan_sees_function_level_and_relative_imports(tmp_path):
    src = tmp_path / "m.py"
    src.write_text("import os\nfrom . import sib\n\ndef f():\n    from repo_ray.pipeline.loop import RLLoop\n")
    names = imported_names("repo_ray.pkg.m", src)
    assert {"repo_ray.pipeline.loop.RLLoop", "repo_ray.pkg.sib", "os"} <= names
    assert our_module("repo_ray.pipeline.loop.RLLoop") == "repo_ray.pipeline.loop"
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_nothing_below_the_driver_imports_the_pipeline():
    graph = import_graph()
    assert "repo_ray.pipeline.loop" in graph and "reward_actors.pool" in graph  # the scan found the tree
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() if in_package(m, BELOW_PIPELINE)
                    for t in targets if in_package(t, ("repo_ray.pipeline", "repo_ray.cli")))
    assert not upward, upward


def test_no_two_modules_import_each_other_even_lazily():
    cycles = import_cycles(import_graph())
    assert not cycles, cycles


def test_telemetry_and_the_contracts_are_the_ground_floor():
    graph = import_graph()
    assert graph["repo_ray.types"] == set()
    assert graph["repo_ray.telemetry"] <= {"repo_ray.types"}


def test_actors_below_the_driver_are_plain_classes_made_remote_only_in_the_launcher():
    """`ray.remote` / `serve.deployment` (decorator or call) appear in no module of
    reward_actors/ or repo_ray/rollout/: pipeline/placement.py makes them remote."""
    found = []
    for mod, path in MODULES.items():
        if not in_package(mod, ("reward_actors", "repo_ray.rollout")):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and (node.attr, getattr(node.value, "id", None)) in (
                    ("remote", "ray"), ("deployment", "serve")):
                found.append(f"{mod}:{node.lineno}")
    assert not found, found
    placement = (ROOT / "repo_ray/pipeline/placement.py").read_text(encoding="utf-8")
    for actor in ("RolloutWorker", "RewardPool", "RuleChecker", "RMScorer", "JudgeLimiterActor", "JudgeCaller",
                  "LearnerGroup"):
        assert actor in placement, actor
