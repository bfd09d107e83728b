"""`repo-ray train-rm`: trains from a config and prints the held-out accuracy report."""

from __future__ import annotations

from repo_ray.cli import main


def test_train_rm_command_writes_the_model_and_prints_accuracy_per_defect(trained_rm):
    """The shared test RM is trained by this command (tests/reward_actors/conftest.py)."""
    out, printed = trained_rm.out_dir, trained_rm.printed
    assert trained_rm.rc == 0 and (out / "rm_stats.json").is_file() and (out / "model.safetensors").is_file()
    r = trained_rm.result
    assert r.train_pairs + r.held_out_pairs == 480 and 0.25 < r.held_out_pairs / 480 < 0.35  # holdout_fraction 0.3
    assert (f"{r.train_pairs} train / {r.held_out_pairs} held out ({r.train_scenarios} / {r.held_out_scenarios} "
            "scenarios, none in both)") in printed
    assert "held-out pairwise accuracy:" in printed and "length-matched" in printed
    assert "  leaked_internal_term " in printed and "z-score reference: train_split_chosen_and_rejected" in printed


def test_train_rm_command_names_a_missing_data_directory(tmp_path, capsys):
    config = tmp_path / "rm.yaml"
    config.write_text("reward: {model: {epochs: 1}}\n")
    rc = main(["train-rm", "--config", str(config), "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "rm")])
    assert rc == 2 and "nope: data directory not found" in capsys.readouterr().err
