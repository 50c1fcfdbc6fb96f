"""The dataset's schema and its Parquet shards: one row per tree node (one step with its 10 views).

Shards are plain Parquet files that carry Hugging Face `datasets` feature metadata, so
`datasets.load_dataset("parquet", data_files="data/dataset/*.parquet")` decodes `images` to PIL
images, while pyarrow/pandas read them as PNG bytes. Writes are atomic (temporary name, then rename).

Row ids: `{task_id}/e{episode}/n{node}`; `parent_id` is the id of the step whose result this step
starts from (null for steps from the initial state). Siblings share a parent; a failed step's
retry is its sibling, because a failed step resets the world to the parent's state.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from octopus.files import write_with
from octopus.protocol.api import N_VIEWS


# name -> (arrow type, HF feature dict, nullable, help)
_COLUMNS: dict[str, tuple[pa.DataType, dict, bool, str]] = {
    "id": (pa.string(), {"dtype": "string", "_type": "Value"}, False, "unique node id {task}/e{episode}/n{node}"),
    "task_id": (pa.string(), {"dtype": "string", "_type": "Value"}, False, "task of the suite"),
    "episode": (pa.int32(), {"dtype": "int32", "_type": "Value"}, False, "tree index for the task (own seed)"),
    "node": (pa.int32(), {"dtype": "int32", "_type": "Value"}, False, "node index in the tree, in execution order"),
    "parent_id": (pa.string(), {"dtype": "string", "_type": "Value"}, True, "node this step starts from (null: root)"),
    "depth": (pa.int32(), {"dtype": "int32", "_type": "Value"}, False, "successful steps before this one"),
    "attempt": (pa.int32(), {"dtype": "int32", "_type": "Value"}, False, "index among the parent's children"),
    "split": (pa.string(), {"dtype": "string", "_type": "Value"}, False, "task split (train only in training data)"),
    "scene": (pa.string(), {"dtype": "string", "_type": "Value"}, False, "scene (house) of the task"),
    "category": (pa.string(), {"dtype": "string", "_type": "Value"}, False, "follow | reason"),
    "instruction": (pa.string(), {"dtype": "string", "_type": "Value"}, False, "the task goal in words"),
    "teacher": (pa.string(), {"dtype": "string", "_type": "Value"}, False, "who wrote the response"),
    "explore": (pa.string(), {"dtype": "string", "_type": "Value"}, True, "kind of deliberate wrong step, if any"),
    "images": (pa.list_(pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
               {"feature": {"_type": "Image"}, "_type": "List"}, False,
               "the 10 views before the step (EGO-0..EGO-315, BEV-I, BEV-II), PNG"),
    "prompt": (pa.string(), {"dtype": "string", "_type": "Value"}, False,
               "environment message without Observed Objects/Relations (what the VLM reads with the images)"),
    "message": (pa.string(), {"dtype": "string", "_type": "Value"}, False,
                "full environment message with Observed Objects/Relations (teachers, blind baselines)"),
    "response": (pa.string(), {"dtype": "string", "_type": "Value"}, False, "the response text (paper format)"),
    "code": (pa.string(), {"dtype": "string", "_type": "Value"}, True, "parsed code (null when it did not parse)"),
    "calls": (pa.string(), {"dtype": "string", "_type": "Value"}, False, "JSON list of [function, [args]] executed"),
    "parsed": (pa.bool_(), {"dtype": "bool", "_type": "Value"}, False, "the response parsed"),
    "executed": (pa.bool_(), {"dtype": "bool", "_type": "Value"}, False, "its code ran without error"),
    "error": (pa.string(), {"dtype": "string", "_type": "Value"}, True, "execution/format error or unmet targets"),
    "target_states_met": (pa.bool_(), {"dtype": "bool", "_type": "Value"}, False, "step label"),
    "task_success": (pa.bool_(), {"dtype": "bool", "_type": "Value"}, False, "episode label: the goal was reached"),
    "label": (pa.int8(), {"dtype": "int8", "_type": "Value"}, False,
              "RLEF label: 1 iff the step met its targets and the task succeeded"),
    "progress": (pa.float32(), {"dtype": "float32", "_type": "Value"}, False, "goal progress after the step"),
}
COLUMNS = tuple(_COLUMNS)
# every Arrow field is nullable, as `datasets` writes them (it ignores its feature metadata otherwise);
# REQUIRED columns are checked on write and by the validate stage
SCHEMA = pa.schema([pa.field(n, t) for n, (t, _, _, _) in _COLUMNS.items()])
REQUIRED = tuple(n for n, (_, _, nullable, _) in _COLUMNS.items() if not nullable)
FEATURES = {n: f for n, (_, f, _, _) in _COLUMNS.items()}
HELP = {n: h for n, (_, _, _, h) in _COLUMNS.items()}
_METADATA = {b"huggingface": json.dumps({"info": {"features": FEATURES}}).encode()}


class DatasetError(ValueError):
    """A shard or manifest is missing, corrupt or does not match the schema; the message names the file."""


def encode_png(image: np.ndarray) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def encode_views(rgb: np.ndarray) -> list[dict[str, Any]]:
    """The 10 views (10, S, S, 3) uint8 as HF Image structs {bytes: PNG, path: None}."""
    if rgb.ndim != 4 or rgb.shape[0] != N_VIEWS or rgb.shape[-1] != 3:
        raise ValueError(f"expected ({N_VIEWS}, S, S, 3) views, got shape {rgb.shape}")
    return [{"bytes": encode_png(v), "path": None} for v in rgb]


def decode_views(images: list[dict[str, Any]]) -> np.ndarray:
    """Inverse of `encode_views` (raises DatasetError on an undecodable image)."""
    from PIL import Image
    out = []
    for k, im in enumerate(images):
        try:
            with Image.open(io.BytesIO(im["bytes"])) as pil:
                out.append(np.asarray(pil.convert("RGB")))
        except Exception as err:  # PIL raises many types for corrupt data
            raise DatasetError(f"image {k} does not decode: {err}") from None
    return np.stack(out)


def to_table(rows: Iterable[dict[str, Any]]) -> pa.Table:
    """Rows (dicts with exactly the schema's columns) as an Arrow table with the HF metadata."""
    rows = list(rows)
    for r in rows:
        if set(r) != set(COLUMNS):
            missing, extra = sorted(set(COLUMNS) - set(r)), sorted(set(r) - set(COLUMNS))
            raise DatasetError(f"row {r.get('id')!r}: missing columns {missing}, unexpected {extra}")
        nulls = [c for c in REQUIRED if r[c] is None]
        if nulls:
            raise DatasetError(f"row {r.get('id')!r}: null in required columns {nulls}")
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    return table.replace_schema_metadata(_METADATA)


def write_table(table: pa.Table, path: str | Path) -> Path:
    """Write a shard atomically: a reader never sees a half-written file."""
    return write_with(path, lambda tmp: pq.write_table(table.replace_schema_metadata(_METADATA), tmp,
                                                       compression="zstd"))


def write_rows(rows: Iterable[dict[str, Any]], path: str | Path) -> Path:
    return write_table(to_table(rows), path)


def read_table(path: str | Path) -> pa.Table:
    """Read a shard, checking it is Parquet with this schema (DatasetError naming the file otherwise)."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as err:
        raise DatasetError(f"{path}: not a readable Parquet shard ({err})") from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: missing columns {missing}")
    return table


def shard_files(directory: str | Path) -> list[Path]:
    return sorted(Path(directory).glob("*.parquet"))


def load(directory: str | Path, split: str = "train"):
    """The dataset as `datasets.Dataset` (images decode to PIL on access)."""
    import datasets
    files = shard_files(directory)
    if not files:
        raise DatasetError(f"{directory}: no Parquet shards (run `dvc repro collect`)")
    return datasets.load_dataset("parquet", data_files={split: [str(f) for f in files]}, split=split)
