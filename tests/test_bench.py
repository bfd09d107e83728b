"""`make bench` (bench/run.py): each benchmark in its own process hands its figures back
through bench/emit.py, and RESULTS.md is rendered from what that run measured."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def runner():
    """bench/run.py loaded as a module; it puts bench/ on sys.path (for bench/emit.py), taken
    off again afterwards so bench's script names (pipeline, rules, ...) shadow nothing."""
    path_before = list(sys.path)
    spec = importlib.util.spec_from_file_location("bench_run", BENCH / "run.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_run"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("bench_run", None)
    sys.modules.pop("emit", None)
    sys.path[:] = path_before


def test_emit_writes_the_figures_only_under_the_runner(runner, tmp_path, monkeypatch):
    from emit import OUT_ENV, emit  # bench/ is on sys.path once run.py is loaded

    monkeypatch.delenv(OUT_ENV, raising=False)
    emit("x", {"a": 1})
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setenv(OUT_ENV, str(tmp_path))
    emit("x", {"a": 1.5})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": 1.5}


def test_a_benchmark_runs_in_its_own_process_and_a_failing_one_is_reported(runner, tmp_path):
    good = tmp_path / "good.py"
    good.write_text(f"import json, os, pathlib\nprint('table')\n"
                    f"pathlib.Path(os.environ[{runner.OUT_ENV!r}], 'good.json').write_text(json.dumps({{'v': 2}}))\n")
    bad = tmp_path / "bad.py"
    bad.write_text("raise SystemExit('cannot start: no data')\n")
    ok = runner.run_one(runner.Bench("good", str(good), (), (), "a good one"), quick=False, timeout_s=60)
    assert (ok.rc, ok.figures, ok.output.strip()) == (0, {"v": 2}, "table")
    failed = runner.run_one(runner.Bench("bad", str(bad), (), (), "a bad one"), quick=False, timeout_s=60)
    assert failed.rc != 0 and failed.figures is None and "cannot start: no data" in failed.output


def test_results_md_is_rendered_from_this_runs_figures(runner):
    import datetime as dt

    figures = {
        "pipeline": {"by_latency": {"0.2": {"efficiency": 0.87, "ratio": 1.9, "ideal_speedup": 2.18,
                                            "slowest_stage": "rollout"}}},
        "judge_limiter": {"phases": {"1 replica": {"rate_over_q": 0.97, "max_window": 24, "q_plus_burst": 25,
                                                   "statuses": {"ok": 80}}}},
        "adapter_fanout": {"by_workers": {"1": {"object_store_x_one": 1.0, "object_store_s": 0.05, "file_s": 0.07},
                                          "4": {"object_store_x_one": 1.21, "object_store_s": 0.06, "file_s": 0.2}}},
    }
    outcomes = {name: runner.Outcome(next(b for b in runner.BENCHES if b.name == name), 0, 10.0, f, "done")
                for name, f in figures.items()}
    rules = next(b for b in runner.BENCHES if b.name == "rules")
    outcomes["rules"] = runner.Outcome(rules, 1, 3.0, None, "Traceback: boom")
    info = {"cores": 2, "cpu": "test cpu", "memory_gib": 8.0, "platform": "linux", "python": "3.11", "git": "abc",
            "packages": {"torch": "2.13.0", "trl": "not installed"}}
    md = runner.render(outcomes, info, quick=True, started=dt.datetime(2026, 12, 1, tzinfo=dt.UTC))
    assert "2026-12-01 00:00 UTC at git abc" in md and "**Quick run**" in md and "torch 2.13.0" in md
    assert "| async efficiency, judge at 0.2 s | 0.87 (async/sync 1.90, ideal 2.18, slowest rollout) | >= 0.9 |" in md
    assert "| judge QPS / limit, 1 replica | 0.970" in md
    assert "| adapter push, 4 worker(s), x one | 1.21 (60 ms; file reload 200 ms) | <= 1.3 at 4 |" in md
    assert "RF rules" not in md.split("## Headline figures")[1].split("##")[0]  # it failed: no figure
    assert "### rules:" in md and "**failed (exit 1)**" in md and "Traceback: boom" in md
    for what, _ in runner.NOT_MEASURED:  # what is not measured is said, every run
        assert what in md
