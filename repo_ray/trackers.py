"""Experiment trackers (config `tracking`, all off by default), through the libraries' own clients:
TensorBoard event files, W&B (offline by default) and MLflow (a local file store by default).

Each enabled tracker gets the run's config once, every RL step's row (the steps table's
numeric columns: rewards per source, masked share, learner diagnostics, throughput, and any
alert column the driver adds) and the evaluation summary. What each writes:

- TensorBoard (RUN/tensorboard/events.out.tfevents.*): scalars `<group>/<column>` per step
  (groups: reward, batch, control, learner, throughput, step), text `config` (the resolved
  config as JSON), scalars `eval/<policy>/<metric>` (estimate values, at the last step) and
  text `eval/summary` (the same as a table).
- W&B (RUN/wandb/offline-run-*/ in offline mode; `wandb sync RUN/wandb/offline-run-*` uploads
  it): the config as the run config, one history row per step (the same keys), the eval
  metrics in the run summary.
- MLflow (RUN/mlflow, the file-store layout, unless tracking.mlflow.tracking_uri says
  otherwise): the flattened config as params (values cut to 500 characters), step metrics,
  eval metrics at the last step, artifacts config.json and eval_summary.json.

A tracker whose library is absent is a one-line `TrackerUnavailable` naming the extra to
install, raised when the run starts (before any stage runs).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from repo_ray.config import RepoRayConfig
from repo_ray.errors import UserError

log = logging.getLogger(__name__)

MLFLOW_PARAM_CHARS = 500  # MLflow's limit on one param value


class TrackerUnavailable(UserError):
    """A tracker is enabled but its library is not installed."""


def _require(module: str, extra: str, field: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise TrackerUnavailable(
            f"{field} is enabled but {module.split('.')[0]} is not installed: pip install 'repo-ray[{extra}]'"
        ) from None


# ---------------------------------------------------------------------------- what gets logged (pure)
_REWARDS = ("r_total_mean", "r_model_mean", "e_judge_mean", "e_func_mean")
_THROUGHPUT = ("step_time_s", "samples_per_s")
_STEP = ("step", "adapter_version", "samples", "max_staleness")


def step_metrics(row: Mapping[str, Any], learner_columns: frozenset[str] | None = None) -> dict[str, float]:
    """One step's row as tracker scalars `<group>/<column>` (finite numbers only), plus
    reward/masked_share = masked / samples (as the report reads it)."""
    if learner_columns is None:
        learner_columns = learner_column_names()
    out: dict[str, float] = {}
    for key, value in row.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        if key in _REWARDS:
            group = "reward"
        elif key in _THROUGHPUT:
            group = "throughput"
        elif key in _STEP:
            group = "step"
        elif key.startswith("control_"):
            group, key = "control", key.removeprefix("control_")
        elif key in learner_columns:
            group = "learner"
        else:
            group = "batch"  # BatchStats fields, alerts and whatever else the row gains
        out[f"{group}/{key}"] = float(value)
    samples, masked = row.get("samples"), row.get("masked")
    if isinstance(samples, (int, float)) and isinstance(masked, (int, float)) and samples:
        out["reward/masked_share"] = float(masked) / float(samples)
    return out


def learner_column_names() -> frozenset[str]:
    """The steps table's learner columns (repo_ray.eval.stepstats), for grouping."""
    from repo_ray.eval.stepstats import _learner_columns  # the one place that names them
    from repo_ray.learner.trainers import StepMetrics

    return frozenset(c for _, c, _ in _learner_columns(StepMetrics))


def eval_metrics(evals_json: Mapping[str, Any]) -> dict[str, float]:
    """eval.json ({policy: PolicyEval dict}) as `eval/<policy>/<metric>` -> estimate value."""
    out = {}
    for policy, ev in evals_json.items():
        for metric, est in ev.get("metrics", {}).get("estimates", {}).items():
            v = est.get("value")
            if isinstance(v, (int, float)) and math.isfinite(v):
                out[f"eval/{policy}/{metric}"] = float(v)
    return out


def flat_params(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested config as `a.b.c` -> value text (MLflow params)."""
    out: dict[str, str] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flat_params(v, key + "."))
        else:
            out[key] = json.dumps(v, default=str)[:MLFLOW_PARAM_CHARS]
    return out


# ---------------------------------------------------------------------------- the trackers
class TensorBoardTracker:
    def __init__(self, log_dir: Path) -> None:
        _require("tensorboard", "tensorboard", "tracking.tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(log_dir))
        self.last_step = 0

    def log_config(self, config: Mapping[str, Any]) -> None:
        self.writer.add_text("config", "```json\n" + json.dumps(config, indent=1, default=str) + "\n```", 0)

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)
        self.last_step = step
        self.writer.flush()

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, self.last_step)
        table = "| metric | value |\n|---|---|\n" + "\n".join(f"| {k} | {v:.4g} |" for k, v in metrics.items())
        self.writer.add_text("eval/summary", table, self.last_step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbTracker:
    def __init__(self, cfg: RepoRayConfig, run_dir: Path, run_id: str) -> None:
        self.wandb = _require("wandb", "wandb", "tracking.wandb.enabled")
        w = cfg.tracking.wandb
        self.run = self.wandb.init(project=w.project, entity=w.entity, mode=w.mode, dir=str(run_dir), name=run_id,
                                   id=run_id, resume="allow", config=cfg.model_dump(mode="json"),
                                   settings=self.wandb.Settings(console="off", silent=True))

    def log_config(self, config: Mapping[str, Any]) -> None:
        pass  # given to wandb.init

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self.run.log(dict(metrics), step=step)

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        self.run.summary.update(dict(metrics))

    def close(self) -> None:
        self.run.finish()


class MLflowTracker:
    def __init__(self, cfg: RepoRayConfig, run_dir: Path, run_id: str) -> None:
        m = cfg.tracking.mlflow
        uri = m.tracking_uri
        if uri is None:
            # mlflow 3 keeps the file store in maintenance mode behind this switch; a run
            # directory's own store needs no server or database (mlflow-skinny has none)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (run_dir / "mlflow").resolve().as_uri()
        self.mlflow = _require("mlflow", "mlflow", "tracking.mlflow.enabled")
        self.client = self.mlflow.tracking.MlflowClient(tracking_uri=uri)
        exp = self.client.get_experiment_by_name(m.experiment)
        exp_id = exp.experiment_id if exp is not None else self.client.create_experiment(m.experiment)
        self.run_id = self.client.create_run(exp_id, run_name=run_id).info.run_id
        self.last_step = 0

    def log_config(self, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        params = [Param(k, v) for k, v in flat_params(config).items()]
        for i in range(0, len(params), 100):  # the API's batch limit
            self.client.log_batch(self.run_id, params=params[i:i + 100])
        self.client.log_dict(self.run_id, dict(config), "config.json")

    def _metrics(self, metrics: Mapping[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, v, now, step) for k, v in metrics.items()]
        for i in range(0, len(batch), 1000):
            self.client.log_batch(self.run_id, metrics=batch[i:i + 1000])

    def log_step(self, step: int, metrics: Mapping[str, float]) -> None:
        self._metrics(metrics, step)
        self.last_step = step

    def log_summary(self, metrics: Mapping[str, float]) -> None:
        self._metrics(metrics, self.last_step)
        self.client.log_dict(self.run_id, dict(metrics), "eval_summary.json")

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


class Trackers:
    """The enabled trackers of a run as one (none enabled: every call does nothing). A
    tracker that fails while logging is logged and dropped: it must not stop the run."""

    def __init__(self, trackers: list[Any]) -> None:
        self.trackers = trackers
        self._learner_cols: frozenset[str] | None = None

    def __bool__(self) -> bool:
        return bool(self.trackers)

    def _each(self, method: str, *args: Any) -> None:
        for t in list(self.trackers):
            try:
                getattr(t, method)(*args)
            except Exception as err:  # noqa: BLE001 - a tracker is an observer, never a reason to fail a run
                log.warning("tracker %s: %s failed (%s: %s); dropping it", type(t).__name__, method,
                            type(err).__name__, str(err).splitlines()[0] if str(err) else "")
                self.trackers.remove(t)

    def log_config(self, config: Mapping[str, Any]) -> None:
        self._each("log_config", config)

    def log_step(self, step: int, row: Mapping[str, Any]) -> None:
        """One steps-table row (StepRow.columns())."""
        if not self.trackers:
            return
        if self._learner_cols is None:
            self._learner_cols = learner_column_names()
        self._each("log_step", step, step_metrics(row, self._learner_cols))

    def log_eval(self, evals_json: Mapping[str, Any]) -> None:
        """The evaluation summary (eval.json's content)."""
        if self.trackers:
            self._each("log_summary", eval_metrics(evals_json))

    def close(self) -> None:
        self._each("close")


def open_trackers(cfg: RepoRayConfig, run_dir: str | os.PathLike, run_id: str) -> Trackers:
    """The trackers `cfg.tracking` enables, writing under the local run directory `run_dir`."""
    t = cfg.tracking
    root = Path(run_dir)
    out: list[Any] = []
    try:
        if t.tensorboard:
            out.append(TensorBoardTracker(root / "tensorboard"))
        if t.wandb.enabled:
            out.append(WandbTracker(cfg, root, run_id))
        if t.mlflow.enabled:
            out.append(MLflowTracker(cfg, root, run_id))
    except BaseException:
        Trackers(out).close()
        raise
    return Trackers(out)
