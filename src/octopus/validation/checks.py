"""Load the dataset for validation and compute the derived columns its expectations read.

Two frames come out (`load_dataset`): one row per shard file (readable? schema? manifest?) and
one row per tree node, the raw columns (without the image bytes) plus `check_*`/derived columns
computed here with pandas, because a great_expectations expectation can only look at one column
or a pair: "the parent exists in the same tree", "the response parses" and "the image decodes"
need code. Convention: a derived column named `check_*` holds None when the row is fine and a
short message saying what is wrong otherwise, so Data Docs lists readable examples.

Rows of a shard that is unreadable or does not have exactly the schema's columns and Arrow types
are not checked row by row (their failures would only repeat the schema failure).
"""

from __future__ import annotations

import ast
import io
import json
import os
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from octopus.config import Params
from octopus.data import schema
from octopus.paths import MANIFEST
from octopus.protocol import API_NAMES, ResponseFormatError, check_code, parse_response
from octopus.files import sha256

IMAGE_SAMPLE_SEED = 0  # the seeded row sample when validate.image_sample > 0
_OBJECT_REPR = re.compile(r" ?<[^<>]* at 0x[0-9a-f]+>")  # keeps error messages the same run to run
_DECODE_THREADS = min(8, os.cpu_count() or 1)  # Pillow and zlib release the GIL while decoding


class ValidationError(ValueError):
    """An input of the validate stage is missing or unreadable; the message names the file."""


@dataclass
class LoadedDataset:
    """What the expectations run on."""

    shards: pd.DataFrame       # one row per shard file (on disk or listed in the manifest)
    rows: pd.DataFrame         # one row per node of the well-formed shards, raw + derived columns
    manifest: dict | None      # manifest.json, when present
    images_checked: int        # rows whose 10 images were decoded
    unseen_scenes: list[str]   # scenes no training row may come from


# ---------------------------------------------------------------------- inputs
def read_suite_splits(path: Path) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """From the task suite snapshot (tasks.json): task id -> split, task id -> scene, and task id -> how a
    procedural train task leaks evaluation content (its activity or its goal is an evaluation task's)."""
    try:
        tasks = json.loads(Path(path).read_text())["tasks"]
        splits, scenes = {t["id"]: t["split"] for t in tasks}, {t["id"]: t["scene"] for t in tasks}
        evaluation = [t for t in tasks if t["split"] != "train"]
        activities = {t["activity"]: t["id"] for t in evaluation if t.get("activity")}
        goals = {_goal_key(t["goal"]): t["id"] for t in evaluation if t.get("goal")}
        leaks = {}
        for t in tasks:
            if t.get("source") != "procedural":
                continue
            if t["activity"] in activities:
                leaks[t["id"]] = f"{t['id']} is built on activity {t['activity']} of evaluation task {activities[t['activity']]}"
            elif _goal_key(t["goal"]) in goals:
                leaks[t["id"]] = f"{t['id']} asks the goal of evaluation task {goals[_goal_key(t['goal'])]}"
        return splits, scenes, leaks
    except FileNotFoundError:
        raise ValidationError(f"{path}: no task suite snapshot (run `dvc repro tasks`)") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValidationError(f"{path}: not a task suite snapshot (expected {{'tasks': [{{id, split, scene, ...}}]}}:"
                              f" {type(err).__name__}: {err})") from None


def _goal_key(goal: list) -> tuple:
    """A goal (list of literals) as an order-free value."""
    return tuple(sorted(repr(list(lit)) for lit in goal))


def read_manifest(dataset_dir: Path) -> dict | None:
    path = dataset_dir / MANIFEST
    if not path.exists():
        return None
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("rows"), int) or not isinstance(manifest.get("shards"), list):
            raise ValueError("expected 'rows' (int) and 'shards' (list of {file, rows, sha256})")
        for s in manifest["shards"]:
            if not {"file", "rows", "sha256"} <= set(s):
                raise ValueError(f"shard entry {s!r} lacks file, rows or sha256")
        return manifest
    except (OSError, ValueError, AttributeError, TypeError) as err:
        raise ValidationError(f"{path}: not a readable manifest ({err})") from None


# ---------------------------------------------------------------------- shards
def _schema_errors(table: pa.Table) -> tuple[str | None, str | None]:
    """(columns error, types error) of a shard against `schema.SCHEMA`, None when it matches."""
    names = table.column_names
    missing = [c for c in schema.COLUMNS if c not in names]
    extra = [c for c in names if c not in schema.COLUMNS]
    if missing or extra:
        cols = "; ".join(p for p in (missing and f"missing {missing}", extra and f"unexpected {extra}") if p)
    else:
        cols = None if tuple(names) == schema.COLUMNS else f"column order {names} differs from the schema"
    wrong = [f"{f.name}: {f.type} (expected {schema.SCHEMA.field(f.name).type})" for f in table.schema
             if f.name in schema.COLUMNS and f.type != schema.SCHEMA.field(f.name).type]
    if _hf_features(table) != schema.FEATURES:
        wrong.append("Hugging Face feature metadata missing or different (datasets would not decode the images)")
    return cols, "; ".join(wrong) or None


def _hf_features(table: pa.Table) -> dict | None:
    try:
        return json.loads((table.schema.metadata or {})[b"huggingface"])["info"]["features"]
    except (KeyError, ValueError, TypeError):
        return None


def _shard_record(path: Path, manifest: dict | None) -> tuple[dict, pa.Table | None]:
    """The shard frame's row for one file, and its table when it is well-formed."""
    rec: dict[str, Any] = {"file": path.name, "read_error": None, "columns_error": None, "types_error": None,
                           "rows": None, "manifest_error": None}
    table = None
    try:
        table = pq.read_table(path)
        rec["rows"] = table.num_rows
        rec["columns_error"], rec["types_error"] = _schema_errors(table)
    except (OSError, pa.ArrowException) as err:
        rec["read_error"] = f"not a readable Parquet shard ({type(err).__name__}: {err})"
    if manifest is not None:
        listed = {s["file"]: s for s in manifest["shards"]}.get(path.name)
        if listed is None:
            rec["manifest_error"] = "not listed in manifest.json"
        elif listed["sha256"] != sha256(path):
            rec["manifest_error"] = "sha256 differs from manifest.json"
        elif rec["rows"] is not None and rec["rows"] != listed["rows"]:
            rec["manifest_error"] = f"{rec['rows']} rows, manifest.json says {listed['rows']}"
    ok = not (rec["read_error"] or rec["columns_error"] or rec["types_error"])
    return rec, table if ok else None


# ---------------------------------------------------------------------- images
def _decode(png: bytes | None) -> tuple[str | None, str | None]:
    """(error, 'WxH MODE') of one stored image."""
    from PIL import Image
    if not png:
        return "no PNG bytes", None
    try:
        with Image.open(io.BytesIO(png)) as im:
            im.load()
            if im.format != "PNG":
                return f"{im.format}, expected PNG", None
            return None, f"{im.width}x{im.height} {im.mode}"
    except Exception as err:  # PIL raises many types for corrupt data
        return f"{type(err).__name__}: {_OBJECT_REPR.sub('', str(err))}", None


def _image_columns(images: list, sample: np.ndarray, pool: ThreadPoolExecutor) -> dict[str, list]:
    """n_images for every row; image_error and image_size for the sampled rows (each distinct PNG once)."""
    n = [None if im is None else len(im) for im in images]
    err: list[str | None] = [None] * len(images)
    size: list[str | None] = [None] * len(images)
    rows = [i for i in np.flatnonzero(sample) if images[i] is not None]
    distinct = list({(v or {}).get("bytes") or b"": None for i in rows for v in images[i]})
    decoded = dict(zip(distinct, pool.map(_decode, distinct)))
    for i in rows:
        sizes = []
        for k, v in enumerate(images[i]):
            e, s = decoded[(v or {}).get("bytes") or b""]
            if e and err[i] is None:
                err[i] = f"image {k}: {e}"
            if s and s not in sizes:
                sizes.append(s)
        size[i] = "; ".join(sizes) or None
    return {"n_images": n, "image_error": err, "image_size": size}


def _null_required(table: pa.Table) -> list[str | None]:
    masks = {c: table.column(c).is_null().to_numpy(zero_copy_only=False) for c in schema.REQUIRED}
    out: list[str | None] = [None] * table.num_rows
    for i in np.flatnonzero(np.logical_or.reduce(list(masks.values()))):
        out[i] = "null " + ", ".join(c for c in schema.REQUIRED if masks[c][i])
    return out


# ---------------------------------------------------------------------- row checks
def _response_check(text: str | None, parsed: bool) -> tuple[str | None, str | None]:
    """(problem, parsed code): parsed=True needs a response that parses, parsed=False one that does not."""
    if text is None:
        return None, None
    try:
        code = parse_response(text).code
    except ResponseFormatError as err:
        return (f"parsed=True but the response does not parse: {err}" if parsed else None), None
    return (None if parsed else "parsed=False but the response parses"), code


def _code_check(code: str | None, parsed: bool, response_code: str | None) -> str | None:
    if not parsed:
        return None if code is None else "code is set although the response did not parse"
    if code is None:
        return "code is null although the response parsed"
    if response_code is not None and code != response_code:
        return "code differs from the response's Code section"
    return None


def _api_check(code: str | None, calls: str | None, parsed: bool, executed: bool) -> str | None:
    """Code of a parsed row must be Python; code recorded as executed must pass the sandbox's static
    policy with only API functions, sandbox builtins and its own names; logged calls must be API functions."""
    if parsed and code is not None:
        try:
            ast.parse(code)
        except (SyntaxError, ValueError) as err:
            return f"code is not Python: {err}"
        if executed and (problem := check_code(code)):
            return f"executed=True but the sandbox rejects the code: {problem}"
    try:
        logged = json.loads(calls) if calls is not None else []
        unknown = sorted({c[0] for c in logged if c[0] not in API_NAMES})
    except (ValueError, TypeError, IndexError, KeyError):
        return f"calls is not a JSON list of [function, [args]]: {calls[:80]!r}"
    return f"calls log non-API functions {unknown}" if unknown else None


def _flags_check(parsed: bool, executed: bool, met: bool) -> str | None:
    if executed and not parsed:
        return "executed=True but parsed=False"
    if met and not executed:
        return "target_states_met=True but executed=False"
    return None


def add_row_checks(df: pd.DataFrame, splits: dict[str, str], leaks: dict[str, str] | None = None) -> pd.DataFrame:
    """Append the derived columns the row expectations read (see the module docstring)."""
    pairs = [_response_check(r, bool(p)) for r, p in zip(df["response"], df["parsed"])]
    trees = dict(zip(df["id"], zip(df["task_id"], df["episode"])))
    n_success = df.groupby(["task_id", "episode"], dropna=False)["task_success"].transform("nunique")
    derived = {
        "check_response": [p[0] for p in pairs],
        "check_code": [_code_check(c, bool(p), rc) for c, p, (_, rc) in zip(df["code"], df["parsed"], pairs)],
        "check_api": [_api_check(c, k, bool(p), bool(e))
                      for c, k, p, e in zip(df["code"], df["calls"], df["parsed"], df["executed"])],
        "check_flags": [_flags_check(bool(p), bool(e), bool(m))
                        for p, e, m in zip(df["parsed"], df["executed"], df["target_states_met"])],
        "check_tree_success": [None if v <= 1 else f"tree {t}/e{e} has task_success both True and False"
                               for v, t, e in zip(n_success, df["task_id"], df["episode"])],
        "check_parent": [_parent_check(i, p, (t, e), trees)
                         for i, p, t, e in zip(df["id"], df["parent_id"], df["task_id"], df["episode"])],
        "check_task_split": [None if splits.get(t) == "train" else f"{t} is not in the task suite"
                             if t not in splits else f"{t} is {splits[t]} in the suite" for t in df["task_id"]],
        "check_procedural": [(leaks or {}).get(t) for t in df["task_id"]],
    }
    for name, values in derived.items():
        df[name] = _obj(values)
    df["label_rule"] = (df["target_states_met"].astype(bool) & df["task_success"].astype(bool)).astype(int)
    return df


def _parent_check(node: str, parent: str | None, own: tuple, tree: dict[str, tuple]) -> str | None:
    if parent is None:
        return None
    if parent == node:
        return "is its own parent"
    if parent not in tree:
        return f"parent {parent} does not exist"
    return None if tree[parent] == own else f"parent {parent} is in another tree {tree[parent][0]}/e{tree[parent][1]}"


# ---------------------------------------------------------------------- loading
def load_dataset(dataset_dir: Path, suite_tasks: Path, params: Params) -> LoadedDataset:
    """Read every shard once (images decoded shard by shard, then dropped) into the two frames."""
    dataset_dir = Path(dataset_dir)
    if not dataset_dir.is_dir():
        raise ValidationError(f"{dataset_dir}: no dataset directory (run `dvc repro collect`)")
    splits, scenes, leaks = read_suite_splits(suite_tasks)
    manifest = read_manifest(dataset_dir)
    files = schema.shard_files(dataset_dir)
    if not files and manifest is None:
        raise ValidationError(f"{dataset_dir}: no Parquet shards (*.parquet) and no {MANIFEST}")
    totals = []
    for f in files:
        try:
            totals.append(pq.read_metadata(f).num_rows)
        except (OSError, pa.ArrowException):
            totals.append(0)  # reported by shards.readable when the shard is read
    sample = _sample_mask(sum(totals), params.validate.image_sample)
    records, frames, offset, checked = [], [], 0, 0
    with ThreadPoolExecutor(_DECODE_THREADS) as pool:
        for f, total in zip(files, totals):
            rec, table = _shard_record(f, manifest)
            records.append(rec)
            if table is not None:
                mask = sample[offset:offset + table.num_rows]
                mask = np.pad(mask, (0, table.num_rows - len(mask)))  # a shard that grew since its metadata
                derived = _image_columns(table.column("images").to_pylist(), mask, pool)
                derived["null_required"] = _null_required(table)
                checked += int(mask.sum())
                frames.append(_frame(table.drop_columns(["images"]), derived))
            offset += total
    on_disk = {f.name for f in files}
    for s in (manifest or {}).get("shards", []):
        if s["file"] not in on_disk:
            records.append({"file": s["file"], "read_error": None, "columns_error": None, "types_error": None,
                            "rows": None, "manifest_error": "listed in manifest.json but missing"})
    rows = pd.concat(frames, ignore_index=True) if frames else _empty_rows()
    rows = add_row_checks(rows, splits, leaks)
    shards = pd.DataFrame.from_records(records, columns=["file", "read_error", "columns_error", "types_error",
                                                         "rows", "manifest_error"]).astype({"rows": "Int64"})
    return LoadedDataset(shards, rows, manifest, checked, unseen_scenes(params, splits, scenes))


def _frame(table: pa.Table, derived: dict[str, list]) -> pd.DataFrame:
    """The shard as pandas; strings stay Python objects with None for null (pandas 3 would make them NaN)."""
    df = table.to_pandas()
    for name in table.column_names:
        if pa.types.is_string(table.schema.field(name).type):
            df[name] = _obj(table.column(name).to_pylist())
    for name, values in derived.items():
        df[name] = _obj(values)
    return df


def _obj(values: list) -> pd.Series:
    return pd.Series(values, dtype=object)


def _sample_mask(total: int, sample: int) -> np.ndarray:
    """Which rows get their images decoded: all, or a seeded sample of `sample` rows."""
    mask = np.zeros(total, dtype=bool)
    if sample <= 0 or sample >= total:
        mask[:] = True
    else:
        mask[random.Random(IMAGE_SAMPLE_SEED).sample(range(total), sample)] = True
    return mask


def _empty_rows() -> pd.DataFrame:
    cols = [c for c in schema.COLUMNS if c != "images"] + ["n_images", "image_error", "image_size", "null_required"]
    return pd.DataFrame({c: pd.Series([], dtype=object) for c in cols})


def unseen_scenes(params: Params, splits: dict[str, str], scenes: dict[str, str]) -> list[str]:
    """Scenes no training row may come from: the configured unseen scenes and those of eval_unseen tasks."""
    return sorted(set(params.tasks.unseen_scenes) | {scenes[t] for t, s in splits.items() if s == "eval_unseen"})


def parsed_share(rows: pd.DataFrame) -> float | None:
    """Share of rows whose response parsed (reported, not enforced: see stage.py)."""
    return float(rows["parsed"].astype(bool).mean()) if len(rows) else None

