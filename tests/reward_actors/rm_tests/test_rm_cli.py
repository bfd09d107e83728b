"""`repo-ray train-rm`: trains from a config and prints the held-out accuracy report."""

from __future__ import annotations

import yaml

from repo_ray.cli import main


def test_train_rm_command_writes_the_model_and_prints_accuracy_per_defect(data_dir, domain_models, domain_model_cfg,
                                                                          tmp_path, capsys):
    config = tmp_path / "rm.yaml"
    config.write_text(yaml.safe_dump({
        "model": domain_model_cfg.model_dump(mode="json"),
        "reward": {"model": {"epochs": 1, "lr": 1e-3, "batch_size": 16, "max_tokens": 512, "holdout_fraction": 0.2,
                             "finetune": "full"}},
    }))
    out = tmp_path / "rm"
    rc = main(["train-rm", "--config", str(config), "--data", str(data_dir), "--out", str(out),
               "--base", str(domain_models.reward_dir)])
    printed = capsys.readouterr().out
    assert rc == 0 and (out / "rm_stats.json").is_file() and (out / "model.safetensors").is_file()
    assert "384 train / 96 held out (384 / 96 scenarios, none in both)" in printed
    assert "held-out pairwise accuracy:" in printed and "length-matched" in printed
    assert "  leaked_internal_term " in printed and "z-score reference: train_split_chosen_and_rejected" in printed


def test_train_rm_command_names_a_missing_data_directory(tmp_path, capsys):
    config = tmp_path / "rm.yaml"
    config.write_text("reward: {model: {epochs: 1}}\n")
    rc = main(["train-rm", "--config", str(config), "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "rm")])
    assert rc == 2 and "nope: data directory not found" in capsys.readouterr().err
