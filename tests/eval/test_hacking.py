"""The reward-hacking monitor on hand-made step rows (pure), its report section, and the
driver's watch that annotates each step's row before it is written."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from repo_ray.eval.hacking import hacking_check, hacking_series, window_changes
from repo_ray.eval.report import hacking_markdown, load_steps
from repo_ray.eval.stepstats import BatchStats, StepRow, steps_table

N = 100.0


def rows(r_model, e_func, e_judge=None):
    e_judge = e_judge if e_judge is not None else [math.nan] * len(r_model)
    return [{"step": i + 1, "r_model_mean": a, "e_func_mean": b, "e_judge_mean": c}
            for i, (a, b, c) in enumerate(zip(r_model, e_func, e_judge, strict=True))]


def test_rm_up_while_rules_down_beyond_the_threshold_is_flagged_with_the_pair_and_its_size():
    steps = rows([0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.5], [-10.0] * 4 + [-30.0] * 4)
    c = hacking_check(steps, window=8, threshold=0.1, n=N)
    assert c.flagged and (c.rising, c.falling) == ("r_model", "e_func")
    assert c.changes == {"r_model": pytest.approx(0.5), "e_func": pytest.approx(-0.2)}  # -20 E units / n
    assert c.divergence == pytest.approx(0.2)  # the smaller of the two moves
    assert "R_model +0.500 while E_func -0.200" in c.line(8, 0.1)


def test_no_flag_when_both_rise_when_a_move_is_below_the_threshold_or_the_window_is_not_full():
    both_up = rows([0.0] * 4 + [0.5] * 4, [-30.0] * 4 + [-10.0] * 4)
    assert not hacking_check(both_up, 8, 0.1, N).flagged
    small = rows([0.0] * 4 + [0.5] * 4, [-10.0] * 4 + [-15.0] * 4)  # E_func -0.05 of n
    c = hacking_check(small, 8, 0.1, N)
    assert not c.flagged and c.divergence == pytest.approx(0.05)
    early = hacking_check(both_up[:5], 8, 0.1, N)
    assert not early.flagged and math.isnan(early.divergence) and early.changes == {}


def test_a_source_that_never_answered_takes_no_part_and_the_window_is_the_last_steps():
    steps = rows([0.0] * 12, [0.0] * 12)  # e_judge all NaN: absent
    assert set(window_changes(steps, 8, N)) == {"r_model", "e_func"}
    late = rows([0.0] * 4 + [0.0] * 4 + [0.8] * 4, [0.0] * 8 + [-40.0] * 4)
    series = hacking_series(late, window=4, threshold=0.1, n=N)
    # the jump at step 9 is inside the windows ending at steps 9, 10 and 11; by step 12 it is history
    assert [c.flagged for c in series] == [False] * 8 + [True, True, True, False]
    with pytest.raises(ValueError):
        window_changes(late, 1, N)


def test_the_report_section_lists_the_flagged_steps_from_the_steps_table():
    table = steps_table([StepRow(i + 1, i + 1, 8, 0, 1.0, 1.0, BatchStats(8, 0, 0.0, a, math.nan, b, 10.0, 0.5, 0.5),
                                 None, None) for i, (a, b) in enumerate(zip([0.0] * 4 + [0.6] * 4,
                                                                            [-5.0] * 4 + [-35.0] * 4, strict=True))],
                        _Learner)
    text = hacking_markdown(load_steps(table), 8, 0.1, N)
    assert "**1 of 8 steps flagged.**" in text and "| 8 | R_model | E_func | +0.300 |" in text
    quiet = hacking_markdown(load_steps(table), 8, 0.5, N)
    assert "**No step flagged.**" in quiet and "Largest divergence +0.300 at step 8" in quiet


@dataclass
class _Learner:
    policy_loss: float = 0.0


@dataclass
class _Record:
    step: int
    row: StepRow


@dataclass
class _Loop:
    pending_step_rows: list = field(default_factory=list)


def test_the_drivers_watch_annotates_the_pending_row_before_it_is_written(capsys):
    from repo_ray.config import RepoRayConfig
    from repo_ray.pipeline.hacking_watch import HackingWatch

    cfg = RepoRayConfig.model_validate({"eval": {"hacking_monitor": {"window": 4, "threshold": 0.1}}})
    watch, lp = HackingWatch(cfg), _Loop()
    for i, (rm, ef) in enumerate([(0.0, -5.0), (0.0, -5.0), (0.6, -40.0), (0.6, -40.0)]):
        row = StepRow(i + 1, i + 1, 8, 0, 1.0, 1.0, BatchStats(8, 0, 0.0, rm, math.nan, ef, 10.0, 0.5, 0.5), None,
                      _Learner())
        lp.pending_step_rows.append(row)
        rec = _Record(i + 1, row)
        check = watch.observe(lp, rec)
        assert lp.pending_step_rows[-1] is rec.row and rec.row.hacking_flag == int(check.flagged)
    assert watch.flagged_steps == [4] and lp.pending_step_rows[-1].hacking_divergence == pytest.approx(0.35)
    assert math.isnan(lp.pending_step_rows[0].hacking_divergence)
    assert "reward-hacking monitor, step 4: R_model +0.600 while E_func -0.350" in capsys.readouterr().out
    cols = steps_table(lp.pending_step_rows, _Learner).to_pydict()
    assert cols["hacking_flag"] == [0, 0, 0, 1]


def test_the_watch_forgets_steps_undone_by_a_rollback():
    from repo_ray.config import RepoRayConfig
    from repo_ray.pipeline.hacking_watch import HackingWatch

    watch, lp = HackingWatch(RepoRayConfig()), _Loop()
    for step in (1, 2, 3, 2, 3):  # a rollback to the checkpoint of step 1, then steps 2 and 3 again
        row = StepRow(step, step, 8, 0, 1.0, 1.0, BatchStats(8, 0, 0.0, 0.0, math.nan, 0.0, 10.0, 0.5, 0.5), None,
                      _Learner())
        watch.observe(lp, _Record(step, row))
    assert [r["step"] for r in watch.rows] == [1, 2, 3]
