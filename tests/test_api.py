"""The Python API (repo_ray/api.py), CPU only, no Ray: `import repo_ray` stays light, configs
load with overrides given either way, and a run's summary reads back typed."""

from __future__ import annotations

import subprocess
import sys

import pytest

import repo_ray
from repo_ray.errors import ConfigError


def test_import_repo_ray_is_light_and_the_api_is_there_on_first_use():
    code = ("import sys, repo_ray; assert 'repo_ray.config' not in sys.modules and 'ray' not in sys.modules; "
            "repo_ray.load_config; assert 'repo_ray.api' in sys.modules and 'torch' not in sys.modules; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_load_config_takes_overrides_as_a_dict_or_as_set_strings():
    a = repo_ray.load_config("configs/demo.yaml", overrides={"learner.max_steps": 3, "reward.sources": ["rm"]})
    b = repo_ray.load_config("configs/demo.yaml", overrides=["learner.max_steps=3", "reward.sources=[rm]"])
    assert a == b and a.learner.max_steps == 3 and a.reward.sources == ["rm"] and a.name == "demo"
    assert repo_ray.load_config(overrides={"seed": 7}).seed == 7  # no file: the defaults
    with pytest.raises(ConfigError, match="learner.max_steps: Input should be greater than or equal to 1"):
        repo_ray.load_config(overrides={"learner.max_steps": 0})


def test_train_result_reads_the_printed_summary(tmp_path):
    (tmp_path / "rl" / "final_adapter").mkdir(parents=True)
    (tmp_path / "rl" / "final_adapter" / "adapter_config.json").write_text("{}")
    summary = {"run_id": "r-1", "run_dir": str(tmp_path), "ledger": {"trained": 4},
               "sft_model": str(tmp_path / "sft" / "model"), "rm_dir": str(tmp_path / "rm" / "model"),
               "data_dir": str(tmp_path / "data"), "rl_steps": 2,
               "timings_s": {"rl": 1.0}, "r_total_first_last": [0.1, 0.3], "wall_s": 3.0}
    r = repo_ray.TrainResult.from_summary(summary, [{"step": 1}, {"step": 2}])
    assert r.final_adapter == tmp_path / "rl" / "final_adapter" and r.report is None
    assert r.r_total_first_last == (0.1, 0.3) and len(r.steps) == 2 and r.summary == summary
