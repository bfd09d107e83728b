"""The README's Python API script runs as written against the shared tiny run (its `RUN` set
to that run's directory): a plug-in rule added by override shows in `score`'s rows and the
run's policy is evaluated from Python."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(900)  # the shared run is built on first use

ROOT = Path(__file__).resolve().parents[2]


def readme_api_script() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    (code,) = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    return code


def test_the_readme_python_api_script_runs(pipeline_run, monkeypatch, capsys):
    code = readme_api_script()
    assert 'RUN = "runs/demo"' in code
    monkeypatch.chdir(ROOT)  # the script names configs/demo.yaml and examples/ as a user in the clone would
    exec(compile(code.replace('RUN = "runs/demo"', f"RUN = {str(pipeline_run.run_dir)!r}"), "README.md", "exec"),
         {"__name__": "__readme__"})
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and out[0].startswith("R_total") and "no_discount_codes" in out[0]
    assert "no_discount_codes" not in out[1]
    assert out[2].startswith("rating ") and (pipeline_run.run_dir / "api-eval" / "eval.json").is_file()
