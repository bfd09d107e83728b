"""The Python API beside the CLI: the same library calls `repo-ray` makes, with typed results.

    import repo_ray
    cfg = repo_ray.load_config("configs/demo.yaml", overrides={"learner.max_steps": 8})
    run = repo_ray.train(cfg, "runs/demo")          # TrainResult
    scored = repo_ray.score(cfg, run.run_dir, [{"scenario": ..., "context": [], "response": "..."}])

Each function is a thin shell over the one the CLI command calls (pipeline/train.py,
eval/harness.py, pipeline/score.py, pipeline/compare.py) and returns what that command
prints, typed. User errors raise `repo_ray.errors.UserError` subclasses (the CLI prints
them as one line); nothing here exits the process.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from repo_ray.config import RepoRayConfig, apply_overrides, config_from_dict
from repo_ray.config import load_config as _load_config_file

if TYPE_CHECKING:
    from repo_ray.eval.results import PolicyEval
    from repo_ray.pipeline.score import ScoreSummary

__all__ = ["CompareResult", "EvalResult", "ScoreResult", "TrainResult", "compare", "evaluate", "load_config",
           "score", "train"]


def load_config(path: str | os.PathLike | None = None,
                overrides: Mapping[str, Any] | Sequence[str] | None = None) -> RepoRayConfig:
    """A validated config: the YAML file (None: every default) with overrides applied, either
    `{"learner.max_steps": 8}` (values as Python objects) or `["learner.max_steps=8"]` (values
    parsed as YAML, as `--set` does). Any problem is one ConfigError naming the field."""
    if isinstance(overrides, Mapping):
        items = [f"{k}={json.dumps(v)}" for k, v in overrides.items()]  # JSON is YAML: one parser for both
    else:
        items = list(overrides or [])
    if path is None:
        return config_from_dict(apply_overrides({}, items), source="<overrides>")
    return _load_config_file(path, overrides=items)


# ---------------------------------------------------------------------------- train
@dataclass(frozen=True)
class TrainResult:
    """What `repo-ray train` prints (RUN/summary.json), typed; `steps` is the RL steps table."""

    run_id: str
    run_dir: str
    rl_steps: int
    ledger: dict[str, int]
    data_dir: Path
    sft_model: Path
    rm_dir: Path
    final_adapter: Path | None  # RUN/rl/final_adapter (None when RL made no step)
    report: Path | None  # RUN/eval/report.md when evaluated
    r_total_first_last: tuple[float, float] | None
    timings_s: dict[str, float]
    wall_s: float
    steps: list[dict[str, Any]] = field(default_factory=list, repr=False)
    summary: dict[str, Any] = field(default_factory=dict, repr=False)  # the printed JSON as is

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], steps: list[dict[str, Any]] | None = None) -> TrainResult:
        final = Path(summary["sft_model"]).parent.parent / "rl" / "final_adapter"
        first_last = summary.get("r_total_first_last")
        return cls(
            run_id=summary["run_id"], run_dir=summary["run_dir"], rl_steps=int(summary["rl_steps"]),
            ledger=dict(summary["ledger"]), data_dir=Path(summary["data_dir"]), sft_model=Path(summary["sft_model"]),
            rm_dir=Path(summary["rm_dir"]),
            final_adapter=final if summary["rl_steps"] and (final / "adapter_config.json").is_file() else None,
            report=Path(summary["report"]) if summary.get("report") else None,
            r_total_first_last=tuple(first_last) if first_last else None,
            timings_s=dict(summary.get("timings_s", {})), wall_s=float(summary.get("wall_s", 0.0)),
            steps=list(steps or []), summary=dict(summary),
        )


def train(cfg: RepoRayConfig, run_dir: str | os.PathLike, *, resume: bool = False, evaluate: bool = True,
          progress: bool = False, on_step=None) -> TrainResult:
    """`repo-ray train`: every stage (reused where its inputs' hash matches), then evaluation."""
    from repo_ray.pipeline.rundir import RunDir
    from repo_ray.pipeline.runlog import read_steps
    from repo_ray.pipeline.train import train as _train

    summary = _train(cfg, os.fspath(run_dir), resume=resume, progress=progress, evaluate=evaluate, on_step=on_step)
    return TrainResult.from_summary(summary, read_steps(RunDir(os.fspath(run_dir))))


# ---------------------------------------------------------------------------- evaluate
@dataclass(frozen=True)
class EvalResult:
    """What `repo-ray eval` writes: eval.json (read back as PolicyEval per policy) and eval.md."""

    json_path: Path
    markdown_path: Path
    policies: dict[str, PolicyEval]


def evaluate(cfg: RepoRayConfig, policies: Mapping[str, str | os.PathLike | tuple] | Sequence[str],
             data_dir: str | os.PathLike, out_dir: str | os.PathLike, seed: int | None = None) -> EvalResult:
    """`repo-ray eval`: policies as `{"name": "MODEL_DIR"}`, `{"name": ("MODEL_DIR", "ADAPTER_DIR")}`
    or the CLI's `["name=MODEL_DIR[:ADAPTER_DIR]"]`."""
    from repo_ray.eval.harness import run_eval
    from repo_ray.eval.results import read_evals

    if isinstance(policies, Mapping):
        specs = []
        for name, where in policies.items():
            model, adapter = (where if isinstance(where, tuple) else (where, None))
            specs.append(f"{name}={os.fspath(model)}" + (f":{os.fspath(adapter)}" if adapter else ""))
    else:
        specs = list(policies)
    json_path, md_path = run_eval(cfg, specs, data_dir, out_dir, seed=seed)
    return EvalResult(Path(json_path), Path(md_path), read_evals(Path(json_path)))


# ---------------------------------------------------------------------------- score
@dataclass(frozen=True)
class ScoreResult:
    """What `repo-ray score` prints: one output object per input reply, in order (its keys are
    the command's: r_model, e_judge, e_func, e_enh, r_total, masked, sources, violations, or
    error), and the summary line's counts."""

    rows: list[dict[str, Any]]
    summary: ScoreSummary


def score(cfg: RepoRayConfig, run_dir: str | os.PathLike,
          replies: str | os.PathLike | Iterable[Mapping[str, Any]]) -> ScoreResult:
    """`repo-ray score`: replies as a JSONL path or as objects {"scenario", "context",
    "response", "truncated"?} (the command's input lines), scored in this process."""
    from repo_ray.pipeline.score import RewardInspector, judge_endpoint, rm_model_dir, score_lines

    if isinstance(replies, (str, os.PathLike)):
        path = Path(replies)
        if not path.is_file():
            from repo_ray.pipeline.score import ScoreInputError

            raise ScoreInputError(f"{path}: file not found")
        lines: list[str | None] = path.read_text(encoding="utf-8").splitlines()
    else:
        lines = [json.dumps(dict(r), ensure_ascii=False) for r in replies]
    rm_dir = rm_model_dir(os.fspath(run_dir))
    out = io.StringIO()
    with judge_endpoint(cfg) as base_url:
        summary = asyncio.run(score_lines(RewardInspector(cfg, rm_dir, base_url), lines, out))
    return ScoreResult([json.loads(x) for x in out.getvalue().splitlines()], summary)


# ---------------------------------------------------------------------------- compare
@dataclass(frozen=True)
class CompareResult:
    """What `repo-ray compare` prints (RUN/compare/summary.json), typed."""

    run_dir: str
    methods: list[str]
    report: Path
    html: Path
    wall_s: float


def compare(cfg: RepoRayConfig, run_dir: str | os.PathLike, methods: Sequence[str] | str | None = None,
            progress: bool = False) -> CompareResult:
    """`repo-ray compare`: methods by name (e.g. ["sft", "repo"] or "sft,repo"; None: all)."""
    from repo_ray.pipeline.compare import compare as _compare
    from repo_ray.pipeline.compare import parse_methods

    chosen = None
    if methods is not None:
        chosen = parse_methods(methods if isinstance(methods, str) else ",".join(methods))
    s = _compare(cfg, os.fspath(run_dir), chosen, progress=progress)
    return CompareResult(s["run_dir"], list(s["methods"]), Path(s["report"]), Path(s["html"]), float(s["wall_s"]))
