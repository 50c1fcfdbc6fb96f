"""Shards: HF datasets reads them with decoded images; bad rows and corrupt files get clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from octopus.data import schema


def _row(i: int, rgb: np.ndarray) -> dict:
    row = {c: None for c in schema.COLUMNS}
    row.update(id=f"t/e0/n{i}", task_id="t", episode=0, node=i, depth=0, attempt=i, split="train", scene="Rs_int",
               category="follow", instruction="do it", teacher="oracle", images=schema.encode_views(rgb),
               prompt="Inventory: None", message="Observed Objects: ...", response="Explain: ...", calls="[]",
               parsed=False, executed=False, error="Response format error", target_states_met=False,
               task_success=False, label=0, progress=0.0)
    return row


def test_hf_datasets_decodes_the_ten_views(tmp_path):
    rng = np.random.default_rng(0)
    views = [rng.integers(0, 255, (10, 24, 24, 3), dtype=np.uint8) for _ in range(3)]
    schema.write_rows([_row(i, v) for i, v in enumerate(views)], tmp_path / "a.parquet")
    ds = schema.load(tmp_path)
    assert ds.num_rows == 3 and ds.column_names == list(schema.COLUMNS)
    images = ds[1]["images"]
    assert len(images) == 10 and images[0].size == (24, 24) and images[0].mode == "RGB"
    assert np.array_equal(np.stack([np.asarray(im) for im in images]), views[1])  # PNG is lossless
    table = schema.read_table(tmp_path / "a.parquet")
    assert np.array_equal(schema.decode_views(table.column("images")[2].as_py()), views[2])


def test_missing_or_null_required_columns_are_rejected(tmp_path):
    row = _row(0, np.zeros((10, 8, 8, 3), np.uint8))
    bad = dict(row)
    del bad["label"]
    with pytest.raises(schema.DatasetError, match="missing columns \\['label'\\]"):
        schema.write_rows([bad], tmp_path / "x.parquet")
    with pytest.raises(schema.DatasetError, match="null in required columns \\['task_id'\\]"):
        schema.write_rows([{**row, "task_id": None}], tmp_path / "x.parquet")
    assert not list(tmp_path.iterdir())  # nothing half-written
    with pytest.raises(ValueError, match="expected \\(10, S, S, 3\\)"):
        schema.encode_views(np.zeros((9, 8, 8, 3), np.uint8))


def test_corrupt_shards_and_images_name_the_problem(tmp_path):
    path = schema.write_rows([_row(0, np.zeros((10, 8, 8, 3), np.uint8))], tmp_path / "a.parquet")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(schema.DatasetError, match="a.parquet: not a readable Parquet shard"):
        schema.read_table(path)
    with pytest.raises(schema.DatasetError, match="image 1 does not decode"):
        schema.decode_views([{"bytes": schema.encode_png(np.zeros((4, 4, 3), np.uint8))}, {"bytes": b"nope"}])
    with pytest.raises(schema.DatasetError, match="no Parquet shards"):
        schema.load(tmp_path / "empty")
