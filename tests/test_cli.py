"""The `repo-ray` console script: help, data generation, one-line errors with non-zero exit."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repo_ray.cli import main
from repo_ray.domain.schemas import FILES

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--set", "data.sft_dialogues=3", "--set", "data.preference_pairs=16", "--set", "data.rl_scenarios=4",
         "--set", "data.eval_dialogues=6", "--set", "data.bad_cases=4"]


def test_console_script_help_lists_commands():
    exe = shutil.which("repo-ray", path=str(Path(sys.executable).parent))
    assert exe, "the repo-ray console script is not installed"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for cmd in ("data", "validate-data", "build-model", "config", "simulate"):
        assert cmd in out


def test_data_writes_every_file(tmp_path, capsys):
    assert main(["data", "--config", str(ROOT / "configs/demo.yaml"), "--out", str(tmp_path), *SMALL]) == 0
    for spec in FILES.values():
        assert (tmp_path / spec.filename).is_file()
    out = capsys.readouterr().out
    assert "wrote 5 files" in out and "(16 rows)" in out
    assert main(["validate-data", "--dir", str(tmp_path)]) == 0


@pytest.mark.parametrize(
    "content, fragment",
    [
        ("learner:\n  batch_size: lots\n", "learner.batch_size: Input should be a valid integer"),
        ("learner:\n  bogus_key: 1\n", "learner.bogus_key: unknown key"),
        ("learner: {batch_size: [\n", "invalid YAML"),
        (None, "config file not found"),
    ],
    ids=["wrong-type", "unknown-key", "broken-yaml", "missing-file"],
)
def test_bad_config_gives_one_line_and_nonzero_exit(tmp_path, content, fragment):
    cfg = tmp_path / "bad.yaml"
    if content is not None:
        cfg.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "repo_ray.cli", "data", "--config", str(cfg), "--out", str(tmp_path / "o")],
        capture_output=True, text=True,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("repo-ray data: error: ") and str(cfg) in lines[0] and fragment in lines[0]
    assert not (tmp_path / "o").exists()


def test_validate_data_reports_bad_rows_and_fails(tmp_path, capsys):
    import pyarrow.parquet as pq

    from repo_ray.domain.schemas import write_rows

    main(["data", "--config", str(ROOT / "configs/demo.yaml"), "--out", str(tmp_path), *SMALL])
    rows = pq.read_table(tmp_path / FILES["bad_cases"].filename).to_pylist()
    rows[2]["defect"] = "unknown_defect"
    write_rows(rows, "bad_cases", tmp_path)
    assert main(["validate-data", "--dir", str(tmp_path), "bad_cases"]) == 1
    captured = capsys.readouterr()
    assert "bad_cases.parquet:2: defect 'unknown_defect' is not registered" in captured.err
    assert "3 good, 1 dropped" in captured.out


def test_missing_data_dir_is_a_user_error(tmp_path, capsys):
    assert main(["build-model", "--config", str(ROOT / "configs/demo.yaml"), "--data", str(tmp_path / "nope")]) == 2
    assert "data directory not found" in capsys.readouterr().err


def test_simulate_prints_every_persona(capsys):
    assert main(["simulate", "--rooms", "1"]) == 0
    out = capsys.readouterr().out
    for p in ("cooperative", "hesitant", "price_anchored", "hostile", "silent", "partial"):
        assert f"persona={p}" in out
