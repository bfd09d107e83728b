"""Loaders keep good rows and name each bad one as file:row: reason."""

import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from repo_ray.config import DataConfig
from repo_ray.domain.datagen import write_dataset
from repo_ray.domain.schemas import FILES, DataFileError, load_rows, schema_markdown, write_rows


@pytest.fixture()
def data_dir(tmp_path):
    sizes = DataConfig(sft_dialogues=4, preference_pairs=8, rl_scenarios=4, eval_dialogues=4, bad_cases=4)
    write_dataset(sizes, tmp_path)
    return tmp_path


def test_bad_rows_are_reported_and_good_rows_kept(data_dir, caplog):
    rows = pq.read_table(data_dir / FILES["preference"].filename).to_pylist()
    rows[1]["defect"] = "made_up"
    rows[2]["rejected"] = rows[2]["chosen"]
    rows[3]["scenario"]["room_types"][0]["floor_price"] = 10_000.0
    rows[4]["context"][0]["role"] = "assistant"
    rows[5]["severity"] = "minor" if rows[5]["severity"] != "minor" else "severe"
    rows[6]["pair_id"] = rows[0]["pair_id"]
    write_rows(rows, "preference", data_dir)
    with caplog.at_level(logging.WARNING):
        loaded = load_rows("preference", data_dir)
    assert [r.pair_id for r in loaded.rows] == [rows[0]["pair_id"], rows[7]["pair_id"]]
    assert loaded.dropped == 6
    name = FILES["preference"].filename
    expected = [
        f"{name}:1: defect 'made_up' is not registered",
        f"{name}:2: chosen and rejected are identical",
        f"{name}:3: room type",
        f"{name}:4: context[0].role is 'assistant'",
        f"{name}:5: severity",
        f"{name}:6: duplicate id",
    ]
    for problem, prefix in zip(loaded.problems, expected):
        assert problem.startswith(prefix), problem
    assert "kept 2 rows, dropped 6 bad row(s)" in caplog.text


def test_whole_file_problems_are_one_line_errors(data_dir):
    path = data_dir / FILES["rl"].filename
    pq.write_table(pa.table({"other": [1]}), path)
    with pytest.raises(DataFileError, match=r"missing column\(s\) \['scenario'\]"):
        load_rows("rl", data_dir)
    path.write_bytes(b"not parquet")
    with pytest.raises(DataFileError, match="not a readable Parquet file"):
        load_rows("rl", data_dir)
    path.unlink()
    with pytest.raises(DataFileError, match="file not found"):
        load_rows("rl", data_dir)


def test_schema_doc_names_every_column():
    doc = schema_markdown()
    for spec in FILES.values():
        assert spec.filename in doc
        for field in spec.schema:
            assert f"`{field.name}`" in doc


def test_readme_documents_the_current_schemas():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert schema_markdown() in readme, "regenerate the README section: repo-ray describe-data"
