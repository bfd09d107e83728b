"""`repo-ray compare` on the shared tiny run's stages: every method and ablation trained
with the same budget (1 RL step each), evaluated, and reported in Markdown and HTML."""

from __future__ import annotations

import re
import shutil

import pytest

from repo_ray.eval.compare_report import PAPER, PAPER_METRICS, Win, winners
from repo_ray.eval.metrics import METRICS, Estimate
from repo_ray.eval.report import HEADLINE
from repo_ray.pipeline.compare import METHODS, CompareError, method_config, parse_methods, sample_budget
from repo_ray.pipeline.rundir import RunDir

from .conftest import tiny_pipeline_config

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def compared(pipeline_run, tmp_path_factory):
    """compare() in a copy of the shared run's directory (data, tiny model, SFT and RM reused)."""
    from repo_ray.pipeline.compare import compare

    run_dir = tmp_path_factory.mktemp("compare") / "run"
    src = pipeline_run.run_dir
    shutil.copytree(src, run_dir, ignore=lambda d, names: ["rl"] if d == str(src) else [])
    cfg = tiny_pipeline_config(pipeline_run.cfg.model.cache_dir, learner__max_steps=1, learner__dpo__epochs=1,
                               rollout__num_workers=1)
    summary = compare(cfg, str(run_dir), parse_methods(",".join(TESTED)), progress=False)
    return cfg, run_dir, summary


# Every kind of method (base, SFT, DPO, an RL baseline, REPO): PPO and the ablations are
# presets of the same RL path (test_method_presets_... checks them; PPO differs from REPO in
# the reward the learner reads and its KL penalty to the SFT reference, which
# tests/learner/test_batch.py and test_trainers.py cover; an ablation in the sources its
# RewardPool asks, which tests/reward_actors/pool_tests/test_pool.py covers for repo_rm; its
# report row in test_an_ablation_is_named_so_...), and each RL method costs a learner and
# rollout fleet start-up in the suite (~20 s).
TESTED = ("base", "sft", "dpo", "grpo", "repo")


def test_method_presets_set_algorithm_sources_and_one_final_checkpoint():
    cfg = tiny_pipeline_config("/tmp/unused", learner__max_steps=3)
    want = {"ppo": ("ppo", ["rm", "judge", "rules"]), "grpo": ("grpo", ["rm", "judge", "rules"]),
            "repo": ("repo", ["rm", "judge", "rules"]), "repo_rm": ("repo", ["rm"]),
            "repo_rm_judge": ("repo", ["rm", "judge"]), "repo_rm_rules": ("repo", ["rm", "rules"]),
            "grpo_enhanced": ("grpo", ["rm", "judge", "rules"])}
    for name, (algo, sources) in want.items():
        m = method_config(cfg, METHODS[name])
        assert (m.learner.algorithm, list(m.reward.sources)) == (algo, sources), name
        assert m.pipeline.frozen_control is False and m.pipeline.checkpoint_every == 3
        assert m.learner.max_steps == 3 and m.learner.batch_size == cfg.learner.batch_size  # same budget
    assert method_config(cfg, METHODS["grpo_enhanced"]).learner.grpo.reward == "enhanced"
    assert method_config(cfg, METHODS["grpo"]).learner.grpo.reward == "rm"
    assert sample_budget(cfg) == 3 * cfg.learner.batch_size


def test_unknown_method_is_a_one_line_error():
    with pytest.raises(CompareError, match="unknown bogus; known: base, sft"):
        parse_methods("repo,bogus")
    assert [m.name for m in parse_methods("sft, repo,sft")] == ["sft", "repo"]


def test_every_rl_method_trained_the_same_budget_and_logged_its_rewards(compared):
    cfg, run_dir, _ = compared
    budget = sample_budget(cfg)
    for name in TESTED:
        if METHODS[name].kind != "rl":
            continue
        steps = RunDir(str(run_dir / "methods" / name)).read_parquet_dir("rl", "steps").to_pylist()
        assert sum(s["samples"] for s in steps) == budget, name
        assert (run_dir / "methods" / name / "rl" / "final_adapter" / "adapter_config.json").is_file()
        assert steps[-1]["r_model_mean"] is not None
    assert (run_dir / "methods" / "dpo" / "adapter" / "adapter_config.json").is_file()


def test_report_holds_every_method_ablation_and_metric_in_markdown_and_html(compared):
    _, run_dir, summary = compared
    md = (run_dir / "compare" / "compare.md").read_text()
    page = (run_dir / "compare" / "compare.html").read_text()
    methods_table = md.split("## Methods")[1].split("## Who won what")[0]
    for name in TESTED:
        m = METHODS[name]
        assert re.search(rf"^\| {name} \| {'ablation: ' if m.ablation else ''}", methods_table, re.M), name
    heldout = md.split("## Held-out evaluation")[1].split("### Paired gain")[0]
    assert heldout.index("### Ground truth") < heldout.index("### Judged")  # ground truth leads
    header = next(line for line in heldout.splitlines() if line.startswith("| metric |"))
    assert [c.strip() for c in header.strip("|").split("|")][1:] == [*TESTED, "expert"]  # + the ceiling row
    assert re.search(r"^\| expert \| scripted expert", methods_table, re.M)
    for spec in METRICS.values():
        assert spec.label in heldout, spec.label
    wins = md.split("## Who won what")[1].split("## The paper")[0]
    for key in HEADLINE:
        assert METRICS[key].label in wins, key
    paper = md.split("## The paper's figures beside ours")[1].split("## Reward during training")[0]
    for name in PAPER:  # the paper's rows for the methods that ran
        assert (f"| {name} |" in paper) == (name in TESTED), name
    assert "4.63 /" in paper  # REPO's reported rating beside ours
    for png in ("compare_rewards.png", "compare_eval.png", "compare_paper.png"):
        assert (run_dir / "compare" / png).stat().st_size > 1000
        assert f"({png})" in md
    assert "<table>" in page and page.count("data:image/png;base64,") == 3 and 'src="compare_' not in page
    assert summary["methods"] == list(TESTED)


def test_an_ablation_is_named_so_in_the_methods_table():
    from repo_ray.eval.compare_report import MethodResult, _methods_markdown

    rows = [MethodResult(n, METHODS[n].summary, METHODS[n].kind, METHODS[n].ablation, eval=None,
                         info={"samples": 16}) for n in ("repo", "repo_rm")]
    table = _methods_markdown(rows, 16)
    assert METHODS["repo_rm"].ablation and not METHODS["repo"].ablation
    assert f"| repo_rm | ablation: {METHODS['repo_rm'].summary} | 16 |" in table
    assert f"| repo | {METHODS['repo'].summary} | 16 |" in table


def test_a_second_compare_reuses_every_stage(compared):
    from repo_ray.pipeline.compare import compare

    cfg, run_dir, _ = compared
    before = {p: p.stat().st_mtime for p in (run_dir / "methods").rglob("adapter_model.safetensors")}
    summary = compare(cfg, str(run_dir), parse_methods("sft,dpo,repo"), progress=False)
    assert summary["wall_s"] < 60
    assert before and all(p.stat().st_mtime == t for p, t in before.items())


def test_winner_is_by_the_metric_direction_and_clear_only_when_the_interval_excludes_zero(compared):
    from repo_ray.eval.harness import PolicyEval

    _, run_dir, _ = compared
    evals = {n: PolicyEval.from_json((run_dir / "compare" / "evals" / f"{n}.json").read_text())
             for n in ("base", "sft", "repo")}
    for w in winners(evals):
        spec = METRICS[w.key]
        values = [ev.metrics.estimates[w.key].value for ev in evals.values()
                  if ev.metrics.estimates.get(w.key) and ev.metrics.estimates[w.key].value is not None]
        assert w.value.value == (max(values) if spec.higher_is_better else min(values))
    assert Win("rating", "a", Estimate(4.0, 3.5, 4.5, 30), "b", Estimate(0.5, 0.1, 0.9, 30)).clear
    assert not Win("rating", "a", Estimate(4.0, 3.5, 4.5, 30), "b", Estimate(0.5, -0.1, 0.9, 30)).clear
    assert set(PAPER_METRICS) <= set(METRICS)
