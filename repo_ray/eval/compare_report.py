"""The `repo-ray compare` report: every method's held-out evaluation, who won what (with
paired intervals), reward curves per method and per source, the paper's table beside ours,
and example dialogues with their rule and judge findings — as Markdown with PNG plots and
as one self-contained HTML page (plots embedded).

The evaluation tables, metric bars and example dialogues are the run report's own code
(repo_ray/eval/report.py), so `repo-ray train`'s report and this one read alike.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from repo_ray.atomic import atomic_write_text
from repo_ray.eval.guardrails import SHARED_WITH_TRAINING
from repo_ray.eval.metrics import GROUND_TRUTH, METRICS, Estimate, gain
from repo_ray.eval.report import (
    DEFINITIONS,
    HEADLINE,
    SOURCES,
    _plt,
    _save,
    decoding_line,
    eval_table_markdown,
    examples_markdown,
    format_estimate,
    plot_eval,
    step_axis,
)
from repo_ray.eval.results import PolicyEval
from repo_ray.eval.stepstats import COLUMNS, mean_column

# The paper's table (DESIGN.md §1; expert consensus, 30 online and 45 bad-case dialogues).
# None: not reported; "below base" entries are kept as text.
PAPER: dict[str, dict[str, float | str | None]] = {
    "base": {"rating": 3.43, "excellent_share": 0.1333, "bad_case.fix": None, "bad_case.clean_fix": None,
             "bad_case.severe_unresolved": None},
    "sft": {"rating": None, "excellent_share": None, "bad_case.fix": 0.9333, "bad_case.clean_fix": 0.3111,
            "bad_case.severe_unresolved": 0.0},
    "dpo": {"rating": 3.80, "excellent_share": 0.3333, "bad_case.fix": 0.9333, "bad_case.clean_fix": 0.40,
            "bad_case.severe_unresolved": 0.0222},
    "ppo": {"rating": "below base", "excellent_share": "below base", "bad_case.fix": 0.8666,
            "bad_case.clean_fix": 0.3333, "bad_case.severe_unresolved": 0.0},
    "grpo": {"rating": 4.30, "excellent_share": 0.4333, "bad_case.fix": 0.7110, "bad_case.clean_fix": 0.4444,
             "bad_case.severe_unresolved": 0.0444},
    "repo": {"rating": 4.63, "excellent_share": 0.6667, "bad_case.fix": 0.9333, "bad_case.clean_fix": 0.7556,
             "bad_case.severe_unresolved": 0.0},
}
PAPER_METRICS = ("rating", "excellent_share", "bad_case.fix", "bad_case.clean_fix", "bad_case.severe_unresolved")


@dataclass
class MethodResult:
    name: str
    summary: str
    kind: str  # base | sft | dpo | rl | reference (the scripted expert: the ceiling, not a method)
    ablation: bool
    eval: PolicyEval
    steps: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- who won
@dataclass
class Win:
    key: str
    winner: str
    value: Estimate
    runner_up: str | None
    margin: Estimate | None  # paired winner - runner-up

    @property
    def tied(self) -> bool:
        m = self.margin
        return m is not None and m.value == 0 and m.lo == 0 and m.hi == 0

    @property
    def clear(self) -> bool:
        m = self.margin
        return m is not None and m.lo is not None and m.hi is not None and (m.lo > 0 or m.hi < 0)


def winners(evals: Mapping[str, PolicyEval], keys: Sequence[str] = HEADLINE) -> list[Win]:
    """Per metric, the best method by point value (direction from the metric), the runner-up
    and the paired difference between them with its bootstrap interval."""
    out = []
    first = next(iter(evals.values())).settings if evals else {}
    samples, conf, seed = (int(first.get("bootstrap_samples", 1000)), float(first.get("confidence", 0.95)),
                           int(first.get("seed", 0)))
    for key in keys:
        spec = METRICS[key]
        ranked = [(n, ev.metrics.estimates[key]) for n, ev in evals.items()
                  if key in ev.metrics.estimates and ev.metrics.estimates[key].value is not None]
        if not ranked:
            continue
        ranked.sort(key=lambda x: x[1].value, reverse=spec.higher_is_better)
        (best, est), runner = ranked[0], (ranked[1] if len(ranked) > 1 else None)
        margin = gain(evals[best].metrics, evals[runner[0]].metrics, key, samples, conf, seed) if runner else None
        out.append(Win(key, best, est, runner[0] if runner else None, margin))
    return out


def winners_markdown(wins: Sequence[Win], keys: Sequence[str] = HEADLINE) -> str:
    """The winners table; a headline metric no method has a value for (e.g. price reached vs
    target when no dialogue reached a deal) gets a row that says so rather than vanishing."""
    lines = ["| metric | best | value [CI] | runner-up | best - runner-up [CI] | separated? |",
             "|---|---|---|---|---|---|"]
    won = {w.key for w in wins}
    for key in keys:
        if key not in won:
            spec = METRICS[key]
            lines.append(f"| {spec.label} {'↑' if spec.higher_is_better else '↓'} | - | "
                         "no method has a value | - | - | no |")
    for w in wins:
        spec = METRICS[w.key]
        lines.append(
            f"| {spec.label} {'↑' if spec.higher_is_better else '↓'} | **{w.winner}** | "
            f"{format_estimate(w.key, w.value)} | {w.runner_up or '-'} | "
            f"{format_estimate(w.key, w.margin, signed=True) if w.margin else '-'} | "
            f"{'yes' if w.clear else 'no: tied on every unit' if w.tied else 'no: the interval includes 0'} |")
    return "\n".join(lines)


def paper_markdown(evals: Mapping[str, PolicyEval]) -> str:
    """The paper's five reported columns beside ours, for the methods the paper has."""
    head = ["method"] + [f"{METRICS[k].label}: paper / ours" for k in PAPER_METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, paper in PAPER.items():
        if name not in evals:
            continue
        row = [name]
        for k in PAPER_METRICS:
            p = paper.get(k)
            ptxt = "–" if p is None else p if isinstance(p, str) else (
                f"{p:.2f}" if METRICS[k].kind == "rating" else f"{p * 100:.1f}%")
            ours = format_estimate(k, evals[name].metrics.estimates.get(k, Estimate(None, None, None, 0)))
            row.append(f"{ptxt} / {ours}")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- plots
def _curve(steps: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    xs = np.array([float(s.get(COLUMNS.step) or i + 1) for i, s in enumerate(steps)])
    ys = np.array([np.nan if s.get(key) is None else float(s[key]) for s in steps])
    return xs, ys


def plot_curves(results: Sequence[MethodResult], path: Path) -> Path:
    """Mean reward per RL step for every RL method: R_total and each source."""
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    rl = [r for r in results if r.steps]
    for ax, (key, label) in zip(axes.flat, SOURCES, strict=True):
        drew = False
        for i, r in enumerate(rl):
            xs, ys = _curve(r.steps, mean_column(key))
            if np.isfinite(ys).any():
                ax.plot(xs, ys, marker=".", label=r.name, color=f"C{i}", linestyle="--" if r.ablation else "-")
                drew = True
        step_axis(ax, f"{label}, mean per RL step", drew, legend_size=6)
    return _save(fig, path)


def plot_paper(evals: Mapping[str, PolicyEval], path: Path) -> Path:
    """The paper's reported values (hatched) beside ours (with intervals), per metric."""
    plt = _plt()
    names = [n for n in PAPER if n in evals]
    fig, axes = plt.subplots(1, len(PAPER_METRICS), figsize=(3.0 * len(PAPER_METRICS), 3.6))
    for ax, key in zip(axes, PAPER_METRICS, strict=True):
        scale = 1.0 if METRICS[key].kind == "rating" else 100.0
        for i, n in enumerate(names):
            e = evals[n].metrics.estimates.get(key)
            if e is not None and e.value is not None:
                err = None
                if e.lo is not None and e.hi is not None:
                    err = [[max(0.0, (e.value - e.lo) * scale)], [max(0.0, (e.hi - e.value) * scale)]]
                ax.bar(i - 0.2, e.value * scale, width=0.4, yerr=err, capsize=2, color=f"C{i}",
                       label="ours" if i == 0 else None)
            p = PAPER[n].get(key)
            if isinstance(p, float):
                ax.bar(i + 0.2, p * scale, width=0.4, color="white", edgecolor=f"C{i}", hatch="//",
                       label="paper" if i == 0 else None)
        ax.set_xticks(range(len(names)), names, fontsize=7, rotation=30)
        ax.set_title(METRICS[key].label.replace("bad cases", "bad"), fontsize=8)
        ax.tick_params(labelsize=7)
        ax.set_ylim(0, 5.2 if scale == 1.0 else 105)
    axes[0].legend(fontsize=7)
    return _save(fig, path)


# ---------------------------------------------------------------------------- report
def _methods_markdown(results: Sequence[MethodResult], budget: int | None) -> str:
    lines = ["| method | what | samples trained | wall s (train) |", "|---|---|---|---|"]
    for r in results:
        samples = r.info.get("samples")
        what = ("ablation: " if r.ablation else "") + r.summary
        lines.append(f"| {r.name} | {what} | {samples if samples is not None else '-'} | "
                     f"{r.info.get('train_s', '-')} |")
    note = (f"Sample budget per trained method: {budget} (RL: steps x batch size; DPO: pairs x epochs)."
            if budget else "RL methods run `learner.rl_epochs` over the RL scenarios (no max_steps).")
    return "\n".join(lines) + "\n\n" + note


def compare_markdown(results: Sequence[MethodResult], budget: int | None, config_name: str,
                     plots: Mapping[str, str]) -> str:
    evals = {r.name: r.eval for r in results}
    first = next(iter(evals.values())).settings if evals else {}
    wins = winners({r.name: r.eval for r in results if r.kind != "reference"})  # the ceiling is no contestant
    n_dialogues = len(next(iter(evals.values())).dialogues) if evals else 0
    parts = [
        "# repo-ray comparison: base, SFT, DPO, PPO, GRPO, REPO and ablations",
        "",
        f"Config `{config_name}`; written {_dt.datetime.now(_dt.UTC).isoformat(timespec='seconds')}. "
        "Every method starts from the same SFT model and is trained on the same data; every policy is "
        f"evaluated on the same held-out scenarios and bad cases by the evaluation judge "
        f"({first.get('judge', 'builtin-heuristic')}, rubric {first.get('judge_rubric_version', '?')}), which is "
        "separate from the training judge. Intervals: "
        f"{float(first.get('confidence', 0.95)):.0%} percentile bootstrap, {first.get('bootstrap_samples')} "
        "resamples; differences are paired over the same scenarios.",
        "",
        decoding_line(first, n_dialogues) if evals else "",
        "",
        "## Methods",
        "",
        _methods_markdown(results, budget),
        "",
        "## Who won what",
        "",
        "Best method per headline metric (ground truth first) by point value, and its paired difference from the "
        "runner-up: a win counts only where that interval excludes 0. The scripted expert is the ceiling, not a "
        "contestant: its row is in the tables below.",
        "",
        winners_markdown(wins),
        "",
        "## The paper's figures beside ours",
        "",
        "The paper's numbers are expert ratings of a Qwen3-32B agent in production-like dialogues; ours are the "
        "evaluation judge's on this run's models and simulator. Compare the ordering of methods, not the "
        "levels.",
        "",
        paper_markdown(evals),
        "",
        f"![paper vs ours]({plots['paper']})",
        "",
        "## Reward during training",
        "",
        "Mean reward per RL step for every RL method, on the run's reward sources (PPO and GRPO are scored by "
        "the judge and rules too but train on R_model; ablations leave out the sources they drop, so their "
        "R_total is on their own scale). Dashed: ablations.",
        "",
        f"![reward curves]({plots['curves']})",
        "",
        "## Held-out evaluation",
        "",
        "### Ground truth: what the simulated hotel did",
        "",
        eval_table_markdown(evals, gains=False, keys=GROUND_TRUTH),
        "",
        "### Judged: rating, bad cases, capabilities, guardrails",
        "",
        SHARED_WITH_TRAINING,
        "",
        eval_table_markdown(evals, gains=False, keys=[k for k in METRICS if k not in GROUND_TRUTH]),
        "",
        f"![metric bars]({plots['eval']})",
        "",
        "### Paired gain of each method over SFT",
        "",
        eval_table_markdown(evals, values=False),
        "",
        "## Example dialogues with rule and judge findings",
        "",
        examples_markdown(evals, limit=2),
        "",
        "## Definitions",
        "",
        DEFINITIONS,
    ]
    return "\n".join(parts)


def markdown_to_html(text: str, base_dir: Path, title: str) -> str:
    """A self-contained HTML page: the Markdown rendered, every local image inlined."""
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(text)

    def inline(m: re.Match) -> str:
        src = html.unescape(m.group(1))
        p = base_dir / src
        if not p.is_file():
            return m.group(0)
        data = base64.b64encode(p.read_bytes()).decode()
        return f'src="data:image/png;base64,{data}"'

    body = re.sub(r'src="([^"]+\.png)"', inline, body)
    style = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;line-height:1.45}"
             "table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 6px}"
             "th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3}")
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n{body}\n</body></html>\n")


def write_compare_report(out_dir: Path, results: Sequence[MethodResult], budget: int | None = None,
                         config_name: str = "") -> tuple[Path, Path]:
    """OUT/compare.md (+ PNGs) and OUT/compare.html (self-contained)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    evals = {r.name: r.eval for r in results}
    plots = {"curves": plot_curves(results, out / "compare_rewards.png").name,
             "eval": plot_eval(evals, out / "compare_eval.png").name,
             "paper": plot_paper(evals, out / "compare_paper.png").name}
    text = compare_markdown(results, budget, config_name, plots)
    md = out / "compare.md"
    atomic_write_text(md, text)
    page = out / "compare.html"
    atomic_write_text(page, markdown_to_html(text, out, "repo-ray comparison"))
    return md, page
