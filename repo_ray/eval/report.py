"""The run report: `report.md` with PNG plots of the RL steps (trained policy next to the
frozen-policy control) and the held-out evaluation of the policies (base vs SFT vs REPO
...), and `eval.md`, the evaluation part alone (`repo-ray eval`).

Whether the reward rose is decided, not eyeballed: for the trained policy and for the
control, the mean of the last third of the steps minus the mean of the first third, with a
Welch t interval over the step means of each third, and the same on the per-step difference
trained - control. Step means are autocorrelated, so these intervals are indicative, and the
report says so.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from repo_ray.atomic import atomic_write_text
from repo_ray.eval.eval_judge import DIFFERENCES
from repo_ray.eval.guardrails import SHARED_WITH_TRAINING
from repo_ray.eval.hacking import LABELS, MONITORED, hacking_series
from repo_ray.eval.metrics import GROUND_TRUTH, METRICS, Estimate, gain
from repo_ray.eval.reference_policies import EXPERT_ROW
from repo_ray.eval.results import DialogueResult, PolicyEval
from repo_ray.eval.stepstats import COLUMNS, CONTROL_PREFIX, mean_column

SOURCES = (("r_total", "R_total"), ("r_model", "R_model (RM)"), ("e_judge", "E_judge (RJ)"), ("e_func", "E_func (RF)"))
HEADLINE = (*GROUND_TRUTH, "rating", "excellent_share", "bad_case.fix", "bad_case.clean_fix",
            "bad_case.severe_unresolved", "capability.dialogue_fluency", "capability.workflow_compliance",
            "capability.negotiation_effectiveness", "capability.domain_understanding")
MAX_TURN_CHARS = 400
# the learner metrics (StepMetrics fields, step columns of the same name) in the learner plot
LEARNER_PLOTS = ("policy_loss", "value_loss", "approx_kl", "kl_to_sft", "entropy", "clip_fraction")


# ---------------------------------------------------------------------------- steps
def load_steps(steps: pa.Table | str | Path) -> dict[str, np.ndarray]:
    """Column -> float array (nulls as NaN), sorted by step; a missing column reads as absent."""
    table = steps if isinstance(steps, pa.Table) else pq.read_table(Path(steps))
    cols: dict[str, np.ndarray] = {}
    for name in table.column_names:
        values = table.column(name).to_pylist()
        try:
            cols[name] = np.array([math.nan if v is None else float(v) for v in values], dtype=float)
        except (TypeError, ValueError):
            continue  # a non-numeric column is not plotted
    if COLUMNS.step in cols and cols[COLUMNS.step].size:
        order = np.argsort(cols[COLUMNS.step], kind="stable")
        cols = {k: v[order] for k, v in cols.items()}
    return cols


@dataclass(frozen=True, slots=True)
class Rise:
    """Mean of the last third of the steps minus the first third, for one series."""

    first: float | None
    last: float | None
    delta: Estimate


@dataclass(frozen=True, slots=True)
class RiseVerdict:
    series: str
    steps: int
    trained: Rise
    control: Rise | None
    net: Estimate | None  # trained rise - control rise
    text: str


MIN_STEPS = 6  # two steps per third at least, or a third has no spread to judge noise by


def _thirds(values: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    v = values[np.isfinite(values)]
    if v.size < MIN_STEPS:
        return None
    k = v.size // 3
    return v[:k], v[-k:]


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile: exact for df 1 and 2, else the Cornish-Fisher expansion around the
    normal quantile (Hill 1970; within 0.5% for df >= 3 at the usual levels). No scipy here."""
    from statistics import NormalDist

    if df <= 1.0:
        return math.tan(math.pi * (p - 0.5))
    if df <= 2.0:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    z = NormalDist().inv_cdf(p)
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160
    return z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


def welch_rise(first: np.ndarray, last: np.ndarray, confidence: float) -> Estimate:
    """mean(last) - mean(first) with a Welch t interval (the step means of a third are the sample)."""
    va, vb = first.var(ddof=1) / first.size, last.var(ddof=1) / last.size
    delta = float(last.mean() - first.mean())
    se = math.sqrt(va + vb)
    if se == 0.0:
        return Estimate(delta, delta, delta, first.size + last.size)
    df = (va + vb) ** 2 / (va**2 / (first.size - 1) + vb**2 / (last.size - 1))
    half = t_quantile(0.5 + confidence / 2, df) * se
    return Estimate(delta, delta - half, delta + half, first.size + last.size)


def reward_rise(cols: Mapping[str, np.ndarray], series: str = "r_total", confidence: float = 0.95) -> RiseVerdict:
    """Did `{series}_mean` rise over the RL steps, and more than the frozen control's? The rise
    of each is mean(last third) - mean(first third) with a Welch t interval; the net rise is the
    same on the per-step difference trained - control (paired: both play the step's scenarios)."""
    label = dict(SOURCES).get(series, series)
    trained = cols.get(mean_column(series))
    control = cols.get(CONTROL_PREFIX + mean_column(series))
    n = int(np.isfinite(trained).sum()) if trained is not None else 0
    t3 = _thirds(trained) if trained is not None else None
    if t3 is None:
        empty = Rise(None, None, Estimate(None, None, None, n))
        return RiseVerdict(series, n, empty, None, None,
                           f"Too few RL steps with {label} ({n}, fewer than {MIN_STEPS}) to tell whether it rose.")
    t_rise = Rise(float(t3[0].mean()), float(t3[1].mean()), welch_rise(*t3, confidence))
    c3 = _thirds(control) if control is not None else None
    c_rise = net = None
    if c3 is not None:
        c_rise = Rise(float(c3[0].mean()), float(c3[1].mean()), welch_rise(*c3, confidence))
        d3 = _thirds(trained - control)  # NaN where either is missing
        net = welch_rise(*d3, confidence) if d3 is not None else None
    return RiseVerdict(series, n, t_rise, c_rise, net, _verdict_text(label, n, t_rise, c_rise, net, confidence))


def _fmt_ci(e: Estimate, digits: int = 3) -> str:
    if e.value is None:
        return "n/a"
    ci = f" [{e.lo:+.{digits}f}, {e.hi:+.{digits}f}]" if e.lo is not None and e.hi is not None else ""
    return f"{e.value:+.{digits}f}{ci}"


def _verdict_text(label: str, n: int, t: Rise, c: Rise | None, net: Estimate | None, confidence: float) -> str:
    pct = f"{confidence:.0%}"
    third = max(1, n // 3)
    head = (f"{label}, mean of the last {third} of {n} steps minus the first {third}: trained {_fmt_ci(t.delta)} "
            f"({pct} interval)")
    if c is not None:
        head += f"; frozen control {_fmt_ci(c.delta)}; trained minus control {_fmt_ci(net)}"
    rose = t.delta.lo is not None and t.delta.lo > 0
    fell = t.delta.hi is not None and t.delta.hi < 0
    if rose and c is None:
        return f"{head}. {label} ROSE under training; there is no frozen control to rule out drift in the scenarios."
    if rose and net is not None and net.lo is not None and net.lo > 0:
        return f"{head}. {label} ROSE under training, by more than the frozen control moved on the same scenarios."
    if rose:
        return (f"{head}. {label} rose, but not clearly more than the frozen control did: the rise cannot be "
                "credited to training.")
    if fell:
        return f"{head}. {label} FELL under training."
    return f"{head}. NO CLEAR CHANGE in {label}: the interval of the trained rise includes 0."


# ---------------------------------------------------------------------------- plots
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _line(ax, cols: Mapping[str, np.ndarray], key: str, label: str, **kw: Any) -> bool:
    y = cols.get(key)
    if y is None or not np.isfinite(y).any():
        return False
    x = cols.get(COLUMNS.step, np.arange(1, y.size + 1, dtype=float))
    ax.plot(x, y, marker=".", label=label, **kw)
    return True


def step_axis(ax, title: str, drew: bool, legend_size: float = 7) -> None:
    """Title, step label and legend of a per-RL-step panel ("no data" when nothing was drawn)."""
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("RL step", fontsize=8)
    ax.tick_params(labelsize=7)
    if drew:
        ax.legend(fontsize=legend_size)
    else:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)


def _trained_vs_control(ax, cols: Mapping[str, np.ndarray], key: str, title: str) -> None:
    drew = _line(ax, cols, key, "trained")
    drew |= _line(ax, cols, CONTROL_PREFIX + key, "frozen control", linestyle="--")
    step_axis(ax, title, drew)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _plt().close(fig)
    return path


def plot_rewards(cols: Mapping[str, np.ndarray], path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(2, 2, figsize=(9, 6))
    for ax, (key, label) in zip(axes.flat, SOURCES, strict=True):
        _trained_vs_control(ax, cols, mean_column(key), f"{label}, mean per step")
    return _save(fig, path)


def masked_share(cols: Mapping[str, np.ndarray], prefix: str = "") -> np.ndarray | None:
    masked, samples = cols.get(prefix + COLUMNS.masked), cols.get(prefix + COLUMNS.samples)
    if masked is None or samples is None:
        return None
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(samples > 0, masked / samples, np.nan)


def plot_masked(cols: Mapping[str, np.ndarray], path: Path) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    shares = {"masked_share": masked_share(cols), CONTROL_PREFIX + "masked_share": masked_share(cols, CONTROL_PREFIX)}
    view = {**cols, **{k: v for k, v in shares.items() if v is not None}}
    _trained_vs_control(ax, view, "masked_share", "masked share of the step's samples")
    ax.set_ylim(bottom=0)
    return _save(fig, path)


def plot_text(cols: Mapping[str, np.ndarray], path: Path) -> Path:
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, (key, title) in zip(axes, ((COLUMNS.response_len_mean, "response length (tokens)"),
                                       (COLUMNS.distinct_1, "distinct-1"), (COLUMNS.distinct_2, "distinct-2")),
                                strict=True):
        _trained_vs_control(ax, cols, key, title)
    return _save(fig, path)


def plot_learner(cols: Mapping[str, np.ndarray], path: Path) -> Path:
    plt = _plt()
    keys = LEARNER_PLOTS
    fig, axes = plt.subplots(2, 3, figsize=(11, 5))
    for ax, key in zip(axes.flat, keys, strict=True):
        if not _line(ax, cols, key, key):
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
    return _save(fig, path)


def plot_eval(evals: Mapping[str, PolicyEval], path: Path) -> Path:
    plt = _plt()
    names = list(evals)
    shares = [k for k in HEADLINE if METRICS[k].kind == "share"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.2), gridspec_kw={"width_ratios": [1, 5]})

    def bar(ax, x, e: Estimate, scale: float, **kw: Any) -> None:
        if e.value is None:
            return
        err = None
        if e.lo is not None and e.hi is not None:
            err = [[max(0.0, (e.value - e.lo) * scale)], [max(0.0, (e.hi - e.value) * scale)]]
        ax.bar(x, e.value * scale, yerr=err, capsize=2, **kw)

    for i, n in enumerate(names):
        bar(ax1, i, evals[n].metrics["rating"], 1.0, color=f"C{i}")
    ax1.set_xticks(range(len(names)), names, fontsize=8)
    ax1.set_ylim(0, 5.2)
    ax1.set_title("dialogue rating (1-5)", fontsize=9)
    width = 0.8 / max(1, len(names))
    for i, n in enumerate(names):
        for j, key in enumerate(shares):
            bar(ax2, j + (i - (len(names) - 1) / 2) * width, evals[n].metrics[key], 100.0, width=width, color=f"C{i}",
                label=n if j == 0 else None)
    ax2.set_xticks(range(len(shares)), [METRICS[k].label.replace("bad cases", "bad") for k in shares], rotation=25,
                   ha="right", fontsize=7)
    ax2.set_ylim(0, 105)
    ax2.set_ylabel("%", fontsize=8)
    ax2.set_title("held-out evaluation, with bootstrap intervals", fontsize=9)
    ax2.legend(fontsize=7)
    return _save(fig, path)


# ---------------------------------------------------------------------------- tables
def format_estimate(key: str, e: Estimate, signed: bool = False) -> str:
    """A metric value with its interval, in the metric's unit (shares in %)."""
    if e.value is None:
        return "n/a"
    kind = METRICS[key].kind if key in METRICS else "mean"
    scale, digits, unit = (100.0, 1, "%") if kind == "share" else (1.0, 1, "") if kind == "per100" else (1.0, 2, "")
    if key == "price_vs_target":
        scale, digits, unit = 100.0, 1, "%"
    sign = "+" if signed else ""

    def f(x: float) -> str:
        return f"{x * scale:{sign}.{digits}f}"

    ci = f" [{f(e.lo)}, {f(e.hi)}]" if e.lo is not None and e.hi is not None else ""
    return f"{f(e.value)}{unit}{ci}"


def reference_name(evals: Mapping[str, PolicyEval], reference: str = "sft") -> str | None:
    return next((n for n in evals if n.lower() == reference.lower()), None)


def eval_table_markdown(evals: Mapping[str, PolicyEval], reference: str = "sft", values: bool = True,
                        gains: bool = True, keys: Sequence[str] | None = None) -> str:
    """One row per metric (`keys`, default every metric), one column per policy (value
    [interval]), plus the paired gain of every other policy over the reference (SFT) with its
    interval; `values` / `gains` False leave either group of columns out (wide comparisons
    print them as two tables)."""
    names = list(evals)
    ref = reference_name(evals, reference)
    others = [n for n in names if n != ref] if ref and gains else []
    settings = evals[ref].settings if ref else (evals[names[0]].settings if names else {})
    samples, conf, seed = (int(settings.get("bootstrap_samples", 1000)), float(settings.get("confidence", 0.95)),
                           int(settings.get("seed", 0)))
    shown = names if values else []
    head = ["metric", *shown, *(f"{n} - {ref}" for n in others)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in keys if keys is not None else METRICS:
        spec = METRICS[key]
        if not any(key in evals[n].metrics.estimates for n in names):
            continue
        arrow = "↑" if spec.higher_is_better else "↓"
        row = [f"{spec.label} {arrow}"]
        row += [format_estimate(key, evals[n].metrics.estimates.get(key, Estimate(None, None, None, 0))) for n in shown]
        for n in others:
            row.append(format_estimate(key, gain(evals[n].metrics, evals[ref].metrics, key, samples, conf, seed),
                                       signed=True))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def _counts_line(name: str, ev: PolicyEval) -> str:
    m = ev.metrics
    ratings = ", ".join(f"{k}: {v}" for k, v in sorted(m.rating_counts.items()))
    outcomes = ", ".join(f"{k}: {v}" for k, v in m.outcome_counts.items())
    return (f"- **{name}** ({ev.policy_path}{' + ' + ev.adapter if ev.adapter else ''}): {m.dialogues} dialogues, "
            f"{m.responses} replies, {m.bad_cases} bad cases; ratings {{{ratings}}}; bad-case outcomes {{{outcomes}}}")


def _short(text: str) -> str:
    text = text.replace("\n", " ").replace("|", "\\|")
    return text if len(text) <= MAX_TURN_CHARS else text[:MAX_TURN_CHARS] + " …"


def dialogue_markdown(d: DialogueResult) -> str:
    caps = ", ".join(f"{k.replace('_', ' ')} {'yes' if v else 'no'}" for k, v in d.capabilities.items())
    lines = [f"rating {d.rating:.2f}; excellent reply: {'yes' if d.excellent else 'no'}; {caps}; "
             f"agreed {json.dumps(d.agreed, ensure_ascii=False) if d.agreed else 'nothing'}; ended: {d.end_reason}", ""]
    findings = iter(d.responses)
    for m in d.transcript:
        if m["role"] == "agent":
            f = next(findings, None)
            lines.append(f"- **agent**: {_short(m['text']) or '*(empty)*'}")
            if f is not None:
                low = {k: v for k, v in f.judge_scores.items() if v is not None and v < 0}
                rules = "; ".join(f"{r} ({', '.join(t[:2])})" for r, t in f.rule_tags.items()) or "none"
                judged = ", ".join(f"{k} {v:+.0f}: {f.judge_reasons.get(k, '')}" for k, v in low.items()) or "none"
                lines.append(f"  - eval judge {f.judge_score:+.2f}; rules fired: {rules}; low judge items: {judged}")
        else:
            lines.append(f"- *hotel*: {_short(m['text']) if m['text'].strip() else '*(silence)*'}")
    return "\n".join(lines)


def examples_markdown(evals: Mapping[str, PolicyEval], limit: int = 3) -> str:
    """The example dialogues, the same scenario for every policy side by side."""
    ids: list[str] = []
    for ev in evals.values():
        ids += [i for i in ev.example_ids if i not in ids]
    out = []
    for sid in ids[:limit]:
        first = next(d for ev in evals.values() for d in ev.dialogues if d.dialogue_id == sid)
        sc = first.scenario
        rooms = ", ".join(f"{r['name']} (current {r['current_price']:g}, target {r['target_price']:g}, "
                          f"floor {r['floor_price']:g})" for r in sc["room_types"])
        out.append(f"### {sid}: {sc['persona']} hotel, {sc['language']}; {rooms}\n")
        for name, ev in evals.items():
            d = next((x for x in ev.dialogues if x.dialogue_id == sid), None)
            if d is not None:
                out.append(f"#### {name}\n\n{dialogue_markdown(d)}\n")
    bad = []
    for name, ev in evals.items():
        for b in ev.bad_cases[:2]:
            problems = ", ".join(f"{k} ({v})" for k, v in b.new_problems.items()) or "none"
            bad.append(f"- **{name}**, {b.case_id} ({b.defect}, {b.severity}): hotel said "
                       f"\"{_short(b.last_hotel) or '(silence)'}\"; weak reply \"{_short(b.bad_response)}\"; policy "
                       f"\"{_short(b.response.response)}\" -> **{b.outcome}**"
                       f"{' (severe unresolved)' if b.severe_unresolved else ''}; other problems: {problems}")
    if bad:
        out.append("### Bad cases (first two per policy)\n\n" + "\n".join(bad) + "\n")
    return "\n".join(out)


DEFINITIONS = """\
- **Ground truth** (the simulated hotel's own state, no judge): **task success** = room-type tickets agreed below
  the current price, over all tickets; **price vs target** = mean (agreed - target) / target over agreed tickets
  (negative is better); **response rate** = dialogues where the hotel said anything; **turns to a deal** = mean
  agent turn at which an agreed ticket was agreed.
- **Rating 1-5**: the mean over the dialogue's replies of a per-reply score, clip(3 + 2 x normalised eval-judge
  score - cost of the reply's worst problem, 1, 5); a problem is a guardrail that fires or a judge item <= -5, and
  costs 1 (minor), 2 (major) or 4 (severe). Problems combine per reply, so ratings spread over 1..5.
- **Excellent reply**: normalised eval-judge score >= the excellent threshold and no guardrail fires.
- **Bad cases**: the policy answers the case's context; its defect is judged by its registered catcher (rule, or
  eval-judge item <= -5). Defect present: unresolved (severe unresolved if the case is severe). Gone: clean fix if
  nothing else is found, else fix with a minor / major problem by the worst other problem's severity.
- **Capabilities** (per dialogue, every reply must pass): fluency = no format breakage, mixed language,
  repetition or overlength and persuasive style >= 0; workflow = SOP compliance, no repeated confirmation and
  silence-not-consent >= 0; negotiation = pursued a price (some price-pursuit item > 0, mean >= 0) and the
  negotiation moved (a ticket agreed or the hotel named a price below current); domain = no hallucinated numbers,
  price-constraint violations or internal-term leakage.
- **Guardrails**: replies on which an evaluation guardrail check fires, per 100 replies (repo_ray/eval/guardrails.py).
- **expert**: the data generator's scripted agent, played through the same harness and scored alike: the ceiling.
- **Intervals**: percentile bootstrap over dialogues (or bad cases); gains over SFT are paired over the same
  scenarios.
"""


def decoding_line(settings: Mapping[str, Any], dialogues: int) -> str:
    """How the policies were played: decoding, horizon, stop rule, dialogues, intervals."""
    sampling = settings.get("sampling", {})
    how = ("decoded greedily (top-k 1)" if settings.get("decoding", "sampled") == "greedy" else
           f"sampled (temperature {sampling.get('temperature')}, top-p {sampling.get('top_p')}, top-k "
           f"{sampling.get('top_k')}, fixed seed {settings.get('seed')})")
    stop = "stopping once every ticket is settled" if settings.get("stop_when_settled") else \
        "not stopping at a deal (confirming and closing count)"
    return (f"{dialogues} held-out dialogues per policy, {how}, up to {settings.get('max_turns')} agent turns "
            f"against the seeded hotel simulator, {stop}: the horizon and stop rule RL trains on "
            f"(rollout.max_turns, rollout.stop_when_settled). Intervals: {settings.get('confidence', 0.95):.0%} "
            f"percentile bootstrap, {settings.get('bootstrap_samples')} resamples.")


def evaluation_markdown(evals: Mapping[str, PolicyEval], plot: str | None = None) -> str:
    """The evaluation section: judge, settings, the table with gains, counts, plot, definitions."""
    if not evals:
        return "No policy was evaluated.\n"
    first = next(iter(evals.values())).settings
    ref = reference_name(evals)
    judged = [k for k in METRICS if k not in GROUND_TRUTH]
    parts = [
        decoding_line(first, len(next(iter(evals.values())).dialogues))
        + (f" The last columns give each policy's paired gain over **{ref}**." if ref else "")
        + (f" **{EXPERT_ROW}** is the data generator's scripted agent through the same harness: the ceiling."
           if EXPERT_ROW in evals else ""),
        "",
        "### Ground truth: what the simulated hotel did",
        "",
        eval_table_markdown(evals, keys=GROUND_TRUTH),
        "",
        "### Judged: rating, bad cases, capabilities, guardrails",
        "",
        f"Evaluation judge: {first.get('judge', 'builtin-heuristic')} "
        f"(rubric {first.get('judge_rubric_version', '?')}). " + DIFFERENCES,
        "",
        SHARED_WITH_TRAINING,
        "",
        eval_table_markdown(evals, keys=judged),
        "",
        *(_counts_line(name, ev) for name, ev in evals.items()),
        "",
    ]
    if plot:
        parts += [f"![held-out evaluation]({plot})", ""]
    parts += ["Definitions:", "", DEFINITIONS]
    return "\n".join(parts)


def write_eval_markdown(evals: Mapping[str, PolicyEval], path: Path) -> Path:
    """eval.md of `repo-ray eval`: the evaluation section, its plot and the example dialogues."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plot = plot_eval(evals, path.parent / "eval.png").name if evals else None
    text = (f"# Held-out evaluation\n\n{evaluation_markdown(evals, plot)}\n"
            f"## Example dialogues\n\n{examples_markdown(evals)}")
    atomic_write_text(path, text)
    return path


# ---------------------------------------------------------------------------- the report
def _manifest_line(run_dir: Path) -> str:
    try:
        m = json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ""
    sha = m.get("git_sha")
    algo = ((m.get("config") or {}).get("learner") or {}).get("algorithm")
    bits = [f"git {str(sha)[:12]}{'-dirty' if str(sha).endswith('-dirty') else ''}" if sha else "",
            f"algorithm {algo}" if algo else ""]
    return "; ".join(b for b in bits if b)


def _rise_table(verdicts: Sequence[RiseVerdict]) -> str:
    lines = ["| series | trained: first third | last third | rise [CI] | control: first third | last third | "
             "rise [CI] | trained rise - control rise [CI] |", "|---|---|---|---|---|---|---|---|"]

    def v(x: float | None) -> str:
        return "n/a" if x is None else f"{x:+.3f}"

    for r in verdicts:
        c = r.control
        lines.append(f"| {dict(SOURCES).get(r.series, r.series)} | {v(r.trained.first)} | {v(r.trained.last)} | "
                     f"{_fmt_ci(r.trained.delta)} | {v(c.first) if c else 'n/a'} | {v(c.last) if c else 'n/a'} | "
                     f"{_fmt_ci(c.delta) if c else 'n/a'} | {_fmt_ci(r.net) if r.net else 'n/a'} |")
    return "\n".join(lines)


def _text_note(cols: Mapping[str, np.ndarray]) -> str:
    notes = []
    for key, label in ((COLUMNS.response_len_mean, "response length"), (COLUMNS.distinct_2, "distinct-2")):
        t3 = _thirds(cols[key]) if key in cols else None
        if t3 is None:
            continue
        a, b = float(t3[0].mean()), float(t3[1].mean())
        change = (b - a) / abs(a) if a else math.nan
        notes.append(f"{label} {a:.3g} -> {b:.3g} ({change:+.0%}) from the first to the last third of the steps")
    text = "; ".join(notes)
    if COLUMNS.distinct_2 in cols and (t3 := _thirds(cols[COLUMNS.distinct_2])) is not None and t3[0].mean() > 0 \
            and t3[1].mean() < 0.7 * t3[0].mean():
        text += (". Distinct-2 fell by more than 30%: the policy repeats itself more, so part of a reward rise may "
                 "come from collapsing onto phrasings the reward sources like")
    return (text + ".") if text else "No response-length or distinct-n data."


def faults_markdown(run_dir: Path) -> str:
    """The run's events (RUN/rl/events, written by the driver: actor restarts, re-scorings,
    rollbacks, masked-share alerts) as a table with a count per kind (pipeline/placement.py
    says what survives what)."""
    events_dir = Path(run_dir) / "rl" / "events"
    parts = sorted(events_dir.glob("part-*.parquet")) if events_dir.is_dir() else []
    rows = [r for p in parts for r in pq.read_table(p).to_pylist()]
    if not rows:
        return "No actor died and no alert fired during RL.\n"
    counts: dict[tuple[str, str], int] = {}
    for r in rows:
        counts[(r["kind"], r["actor"])] = counts.get((r["kind"], r["actor"]), 0) + 1
    summary = ", ".join(f"{kind} {actor} x{n}" for (kind, actor), n in sorted(counts.items()))
    table = ["| step | event | actor / alert | what happened |", "|---|---|---|---|"]
    table += [f"| {r['step']} | {r['kind']} | {r['actor']} | {str(r['detail']).replace('|', '/')} |" for r in rows]
    return f"{summary}.\n\n" + "\n".join(table) + "\n"


def hacking_markdown(cols: Mapping[str, np.ndarray], window: int, threshold: float, n: float) -> str:
    """The reward-hacking monitor over the steps (recomputed from the log: repo_ray/eval/hacking.py)."""
    if COLUMNS.step not in cols or not cols[COLUMNS.step].size:
        return "No RL steps: nothing to monitor.\n"
    size = cols[COLUMNS.step].size
    rows = [{k: float(v[i]) for k, v in cols.items()} for i in range(size)]
    checks = hacking_series(rows, window, threshold, n)
    flagged = [c for c in checks if c.flagged]
    head = (f"Per step, the change of each source's batch mean over the last {window} steps (second half minus first "
            f"half; R_model in z units, E_judge and E_func as a share of reward.n = {n:g}); a step is flagged when one "
            f"source rose and another fell by at least {threshold:g} each (eval.hacking_monitor). The driver logs the "
            "same check per step (steps table columns hacking_divergence, hacking_flag; gauge "
            "ray_repo_ray_reward_hacking).")
    if size < window:
        return f"{head}\n\nOnly {size} steps, fewer than the window of {window}: not checked.\n"
    if not flagged:
        best = max((c for c in checks if np.isfinite(c.divergence)), key=lambda c: c.divergence, default=None)
        tail = "" if best is None else (f" Largest divergence {best.divergence:+.3f} at step {best.step} "
                                        f"({LABELS.get(best.rising or '', '-')} up, "
                                        f"{LABELS.get(best.falling or '', '-')} down).")
        return f"{head}\n\n**No step flagged.**{tail}\n"
    lines = [head, "", f"**{len(flagged)} of {size} steps flagged.**", "",
             "| step | rising | falling | divergence | " + " | ".join(LABELS[s] for s in MONITORED) + " |",
             "|---|---|---|---|" + "---|" * len(MONITORED)]
    for c in flagged[:20]:
        lines.append(f"| {c.step} | {LABELS.get(c.rising or '', '-')} | {LABELS.get(c.falling or '', '-')} | "
                     f"{c.divergence:+.3f} | " + " | ".join(f"{c.changes[s]:+.3f}" if s in c.changes else "n/a"
                                                          for s in MONITORED) + " |")
    if len(flagged) > 20:
        lines.append(f"\n({len(flagged) - 20} more flagged steps in the steps table.)")
    return "\n".join(lines) + "\n"


def write_report(run_dir: Path, steps: pa.Table | str | Path | None, evals: Mapping[str, PolicyEval],
                 out: Path, hacking: tuple[int, float, float] = (8, 0.1, 100.0)) -> Path:
    """Write OUT/report.md and its PNG plots (rewards, masked, text, learner, eval); return
    the path of report.md. `steps` is the driver's steps table (or its Parquet path);
    `hacking` is the monitor's (window, threshold, reward.n)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cols = load_steps(steps) if steps is not None else {}
    n_steps = int(cols[COLUMNS.step].size) if COLUMNS.step in cols else 0
    manifest = _manifest_line(Path(run_dir))
    parts = ["# repo-ray run report\n",
             f"Run directory: `{run_dir}`{'; ' + manifest if manifest else ''}; written "
             f"{_dt.datetime.now().astimezone().isoformat(timespec='seconds')}.\n"]

    parts.append("## Did the reward rise under training?\n")
    if n_steps:
        verdicts = [reward_rise(cols, key) for key, _ in SOURCES]
        parts += [f"**{verdicts[0].text}**\n", _rise_table(verdicts), "",
                  "Rises are the mean of the last third of the RL steps minus the first third, with Welch t "
                  "intervals over the step means of each third (steps are autocorrelated, so read the intervals as "
                  "indicative); trained minus control is computed on the per-step differences. The frozen "
                  "control is the starting policy, never updated, played on the same scenarios and scored by the "
                  "same reward sources: a rise it shares is not due to training.\n",
                  f"![rewards per step]({plot_rewards(cols, out / 'rewards.png').name})\n",
                  "### Masked samples\n",
                  "Masked share = masked / all samples of the step (a masked sample is out of the loss, counted).\n",
                  f"![masked share]({plot_masked(cols, out / 'masked.png').name})\n",
                  "### Response length and diversity\n", _text_note(cols) + "\n",
                  f"![length and distinct-n]({plot_text(cols, out / 'text.png').name})\n",
                  "### Learner\n", f"![learner diagnostics]({plot_learner(cols, out / 'learner.png').name})\n",
                  "### Reward-hacking monitor\n", hacking_markdown(cols, *hacking)]
    else:
        parts.append("No RL steps were recorded: nothing to say about the reward.\n")
    parts += ["## Faults and alerts\n", faults_markdown(Path(run_dir))]

    parts.append("## Held-out evaluation\n")
    plot = plot_eval(evals, out / "eval.png").name if evals else None
    parts.append(evaluation_markdown(evals, plot))
    if evals:
        parts += ["## Example dialogues\n", examples_markdown(evals)]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(parts))
    return path
