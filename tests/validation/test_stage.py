"""The validate stage: the valid dataset passes; each way of breaking it fails exactly its expectation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from octopus.data import schema
from octopus.protocol import parse_response
from octopus.validation import EXPECTATIONS, ValidationError, run_validate, validate_dataset
from tests.validation import dataset as ds


def _run(tmp_path: Path, shards, suite_tasks: Path, params, manifest: bool = True, after=None) -> tuple[int, dict]:
    """Write the dataset, optionally damage its files, run the stage; (exit code, metrics)."""
    data = ds.write_dataset(tmp_path / "dataset", shards, manifest)
    if after is not None:
        after(data)
    metrics = tmp_path / "reports" / "validate.json"
    code = run_validate(params, data, suite_tasks, tmp_path / "docs", metrics)
    return code, json.loads(metrics.read_text())


def test_valid_dataset_passes(tmp_path, base_shards, suite_tasks, vparams):
    data = ds.write_dataset(tmp_path / "dataset", base_shards)
    report = validate_dataset(data, suite_tasks, vparams, tmp_path / "docs")
    assert report.failed == [] and report.success
    assert [r.name for r in report.results] == list(EXPECTATIONS)  # every expectation ran (manifest present)
    assert report.rows == 15 and report.shards == 2 and report.images_checked == 15
    assert report.docs_index == tmp_path / "docs" / "index.html" and report.docs_index.is_file()
    pages = list((tmp_path / "docs" / "validations").rglob("*.html"))
    assert len(pages) == 2 and "ids.unique" in "".join(p.read_text() for p in pages)
    assert report.parsed_share == pytest.approx(12 / 15)
    assert {r.name: r.observed for r in report.results}["rows.min_count"] == "15"


def test_stage_writes_metrics_and_replaces_docs(tmp_path, base_shards, suite_tasks, vparams, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "stale.html").write_text("old")
    code, metrics = _run(tmp_path, base_shards, suite_tasks, vparams, manifest=False)
    assert code == 0
    assert metrics["success"] is True and metrics["failed"] == [] and metrics["rows"] == 15
    assert metrics["unexpected"]["ids.unique"] == 0 and metrics["seconds"] > 0
    assert metrics["expectations"] == len(EXPECTATIONS) - 2  # no manifest: its two checks are not run
    assert not (tmp_path / "docs" / "stale.html").exists() and (tmp_path / "docs" / "index.html").exists()
    assert not list(tmp_path.glob(".*tmp"))
    assert "all 21 expectations passed" in capsys.readouterr().err


# ---------------------------------------------------------------------- row-level breaks
def _row(shards, rid: str) -> dict:
    return next(r for rows in shards for r in rows if r["id"] == rid)


def _png(size: int, mode: str = "RGB") -> dict:
    from PIL import Image
    import io
    buf = io.BytesIO()
    Image.new(mode, (size, size)).save(buf, "PNG")
    return {"bytes": buf.getvalue(), "path": None}


def _set_code(row: dict, code: str) -> None:
    row["response"] = ds.response_for(code, "table_1")
    row["code"] = parse_response(row["response"]).code


def _duplicate_id(s):
    _row(s, "set_table/e0/n4")["id"] = "set_table/e0/n3"  # two leaves share an id (no child points at them)


def _nine_images(s):
    r = _row(s, "set_table/e0/n1")
    r["images"] = r["images"][:9]


def _wrong_size(s):
    _row(s, "cook_bacon/e0/n0")["images"][3] = _png(ds.SIZE // 2)


def _grayscale(s):
    _row(s, "cook_bacon/e0/n0")["images"][0] = _png(ds.SIZE, "L")


def _undecodable(s):
    _row(s, "grab_apple/e0/n2")["images"][7] = {"bytes": b"\x89PNG\r\n\x1a\nnot really", "path": None}


def _missing_section(s):
    r = _row(s, "set_table/e0/n0")
    r["response"] = r["response"].split("Target States:")[0]


def _parsed_false_but_parses(s):
    r = _row(s, "set_table/e0/n2")
    r["response"] = ds.response_for(ds.code_for("table_1"), "table_1")


def _null_code(s):
    _row(s, "set_table/e0/n1")["code"] = None


def _os_system(s):
    _set_code(_row(s, "set_table/e0/n0"), "def act(robot, env, camera):\n    os.system('rm -rf /')\n")


def _unknown_function(s):
    _set_code(_row(s, "set_table/e0/n1"), "def act(robot, env, camera):\n    teleport(robot, 'table_1')\n")


def _non_api_calls_log(s):
    _row(s, "set_table/e0/n0")["calls"] = json.dumps([["system", ["ls"]]])


def _label_on_failed_task(s):
    _row(s, "grab_apple/e0/n4")["label"] = 1  # its step met its targets, but the task failed


def _label_two(s):
    _row(s, "set_table/e0/n0")["label"] = 2


def _met_without_execution(s):
    r = _row(s, "set_table/e0/n3")  # parsed, not executed
    r["target_states_met"] = True


def _success_differs_in_tree(s):
    _row(s, "set_table/e0/n1")["task_success"] = False  # its step failed: label stays 0 under the rule


def _orphan(s):
    _row(s, "cook_bacon/e0/n2")["parent_id"] = "cook_bacon/e0/n99"


def _parent_in_other_tree(s):
    _row(s, "cook_bacon/e0/n2")["parent_id"] = "set_table/e0/n0"


def _eval_task(s):
    for r in s[1]:
        r["task_id"] = "eval_seen_task"  # a seen scene: only the task is wrong


def _unknown_task(s):
    for r in s[1]:
        r["task_id"] = "not_a_task"


@pytest.mark.parametrize("task, leaks", [("procedural_ok", False), ("procedural_on_eval_activity", True),
                                         ("procedural_eval_goal", True)])
def test_procedural_tasks_with_evaluation_content_fail(tmp_path, base_shards, suite_tasks, vparams, task, leaks):
    shards = ds.copy_shards(base_shards)
    for r in shards[1]:
        r["task_id"] = task
    code, metrics = _run(tmp_path, shards, suite_tasks, vparams)
    assert (code, metrics["failed"]) == ((1, ["split.procedural_leakage"]) if leaks else (0, []))


def _split_column(s):
    _row(s, "set_table/e0/n0")["split"] = "eval_seen"


@pytest.mark.parametrize("scene", ["scene_u", ds.UNSEEN_PARAM])
def test_unseen_scene_fails(tmp_path, base_shards, suite_tasks, vparams, scene):
    shards = ds.copy_shards(base_shards)
    for r in shards[1]:
        r["scene"] = scene
    code, metrics = _run(tmp_path, shards, suite_tasks, vparams)
    assert code == 1 and metrics["failed"] == ["split.seen_scenes"]


def _required_null(s):
    _row(s, "set_table/e0/n0")["instruction"] = None


ROW_BREAKS = [  # one way to break each row-level expectation
    (_duplicate_id, ["ids.unique"]),
    (_nine_images, ["images.count"]),
    (_wrong_size, ["images.size"]),
    (_undecodable, ["images.decodable"]),
    (_missing_section, ["responses.format"]),
    (_null_code, ["code.matches_response"]),
    (_os_system, ["code.api_only"]),
    (_unknown_function, ["code.api_only"]),
    (_label_on_failed_task, ["labels.task_rule"]),
    (_met_without_execution, ["labels.step_flags", "labels.task_rule"]),
    (_success_differs_in_tree, ["labels.tree_success_constant"]),
    (_orphan, ["tree.parent_exists"]),
    (_eval_task, ["split.train_tasks"]),
    (_split_column, ["split.train_only"]),
    (_required_null, ["schema.required_not_null"]),
]


@pytest.mark.parametrize("breaker, expected", ROW_BREAKS, ids=[b.__name__.strip("_") for b, _ in ROW_BREAKS])
def test_row_break_fails_exactly_its_expectation(tmp_path, base_shards, suite_tasks, vparams, breaker, expected,
                                                 capsys):
    shards = ds.copy_shards(base_shards)
    breaker(shards)
    code, metrics = _run(tmp_path, shards, suite_tasks, vparams)
    assert code == 1
    assert metrics["failed"] == expected and metrics["failed_expectations"] == len(expected)
    err = capsys.readouterr().err
    assert all(name in err for name in expected) and "Data Docs:" in err


def test_more_breaks_at_once_are_each_counted(tmp_path, base_shards, suite_tasks, vparams):
    """Other ways to break the same expectations, in one dataset (they touch different rows or columns)."""
    shards = ds.copy_shards(base_shards)
    for breaker in (_grayscale, _parsed_false_but_parses, _non_api_calls_log, _label_two, _parent_in_other_tree,
                    _unknown_task):
        breaker(shards)
    report = validate_dataset(ds.write_dataset(tmp_path / "d", shards), suite_tasks, vparams, tmp_path / "docs")
    assert {r.name: r.unexpected_count for r in report.results if not r.success} == {
        "images.size": 1, "responses.format": 1, "code.api_only": 1, "labels.binary": 1, "labels.task_rule": 1,
        "tree.parent_exists": 1, "split.train_tasks": 5}


def test_report_names_the_rows(tmp_path, base_shards, suite_tasks, vparams):
    shards = ds.copy_shards(base_shards)
    _orphan(shards)
    _os_system(shards)
    report = validate_dataset(ds.write_dataset(tmp_path / "d", shards), suite_tasks, vparams, tmp_path / "docs")
    by_name = {r.name: r for r in report.results}
    orphan, api = by_name["tree.parent_exists"], by_name["code.api_only"]
    assert orphan.unexpected_count == 1
    assert orphan.examples == ["cook_bacon/e0/n2: parent cook_bacon/e0/n99 does not exist"]
    assert api.unexpected_count == 1 and "set_table/e0/n0" in api.examples[0] and "'os'" in api.examples[0]


# ---------------------------------------------------------------------- file-level breaks
def _rewrite_shard(directory: Path, k: int, change) -> None:
    path = schema.shard_files(directory)[k]
    schema.write_table(change(pq.read_table(path)), path)
    ds.write_manifest(directory)  # as if collect had written it this way


def _wrong_type(d):
    _rewrite_shard(d, 1, lambda t: t.set_column(t.column_names.index("episode"), "episode",
                                                t.column("episode").cast(pa.int64())))


def _bool_as_int(d):
    _rewrite_shard(d, 1, lambda t: t.set_column(t.column_names.index("parsed"), "parsed",
                                                t.column("parsed").cast(pa.int8())))


def _no_hf_metadata(d):  # written by plain pyarrow: `datasets` would read images as structs of bytes
    path = schema.shard_files(d)[0]
    pq.write_table(pq.read_table(path).replace_schema_metadata(None), path)


def _missing_column(d):
    _rewrite_shard(d, 1, lambda t: t.drop_columns(["progress"]))


def _extra_column(d):
    _rewrite_shard(d, 1, lambda t: t.append_column("note", pa.array(["x"] * t.num_rows)))


def _corrupt_shard(d):
    path = schema.shard_files(d)[1]
    path.write_bytes(path.read_bytes()[: 200])


def _garbage_shard(d):
    (d / "extra.parquet").write_bytes(b"definitely not parquet")


def _several(*breakers):
    def run(d):
        for b in breakers:
            b(d)
    run.__name__ = "_" + "+".join(b.__name__.strip("_") for b in breakers)
    return run


FILE_BREAKS = [
    (_wrong_type, ["schema.types"], False),
    (_no_hf_metadata, ["schema.types"], False),
    (_missing_column, ["schema.columns"], False),
    (_corrupt_shard, ["shards.readable"], False),
    (_corrupt_shard, ["shards.readable", "manifest.shards", "manifest.rows"], True),  # after collect wrote it
    (_several(_bool_as_int, _extra_column, _garbage_shard), ["shards.readable", "schema.columns", "schema.types"],
     False),
]


@pytest.mark.parametrize("breaker, expected, manifest", FILE_BREAKS,
                         ids=[f"{b.__name__.strip('_')}{'-manifest' if m else ''}" for b, _, m in FILE_BREAKS])
def test_file_break_fails_exactly_its_expectation(tmp_path, base_shards, suite_tasks, vparams, breaker, expected,
                                                  manifest):
    def after(d: Path) -> None:
        if not manifest:
            (d / "manifest.json").unlink()
        breaker(d)
        if not manifest and (d / "manifest.json").exists():
            (d / "manifest.json").unlink()
    code, metrics = _run(tmp_path, base_shards, suite_tasks, vparams, after=after)
    assert metrics["failed"] == expected
    assert code == (2 if "shards.readable" in expected else 1)  # a damaged file is a corrupt input


def _lost_and_unlisted(m: dict) -> None:
    m["shards"].pop()  # a shard on disk the manifest does not list
    m["shards"].append({"file": "shard-lost.parquet", "rows": 3, "sha256": "0" * 64})  # listed, not on disk


@pytest.mark.parametrize("tamper, expected, shards", [
    (lambda m: m.update(rows=m["rows"] + 1), ["manifest.rows"], 0),
    (lambda m: m["shards"][0].update(sha256="0" * 64), ["manifest.shards"], 1),
    (_lost_and_unlisted, ["manifest.shards"], 2),
])
def test_manifest_mismatch_fails(tmp_path, base_shards, suite_tasks, vparams, tamper, expected, shards, capsys):
    def after(d: Path) -> None:
        m = json.loads((d / "manifest.json").read_text())
        tamper(m)
        (d / "manifest.json").write_text(json.dumps(m))
    code, metrics = _run(tmp_path, base_shards, suite_tasks, vparams, after=after)
    assert code == 2 and metrics["failed"] == expected and metrics["unexpected"]["manifest.shards"] == shards
    said = " ".join(capsys.readouterr().err.split())
    if shards:  # each damaged file named by the path a user opens
        assert f"corrupt input: {tmp_path / 'dataset'}/shard-" in said or \
            f"corrupt input: {tmp_path / 'dataset' / 'shard-lost.parquet'}" in said, said


def test_too_few_rows(tmp_path, base_shards, suite_tasks):
    code, metrics = _run(tmp_path, base_shards, suite_tasks, ds.make_params(min_rows=16))
    assert code == 1 and metrics["failed"] == ["rows.min_count"]


def test_wrong_configured_size(tmp_path, base_shards, suite_tasks):
    code, metrics = _run(tmp_path, base_shards, suite_tasks, ds.make_params(size=64))
    assert code == 1 and metrics["failed"] == ["images.size"]


def test_image_sample_decodes_a_seeded_subset(tmp_path, base_shards, suite_tasks):
    shards = ds.copy_shards(base_shards)
    for rows in shards:  # break every row's images: the failures count exactly the sampled rows
        for r in rows:
            r["images"] = [{"bytes": b"junk", "path": None}] * schema.N_VIEWS
    data = ds.write_dataset(tmp_path / "d", shards)
    reports = [validate_dataset(data, suite_tasks, ds.make_params(image_sample=4), tmp_path / f"docs{k}")
               for k in range(2)]
    assert [r.images_checked for r in reports] == [4, 4] and reports[0].failed == ["images.decodable"]
    decodable = [next(x for x in r.results if x.name == "images.decodable") for r in reports]
    assert decodable[0].unexpected_count == 4 and decodable[0].examples == decodable[1].examples


# ---------------------------------------------------------------------- bad inputs
def test_missing_dataset_dir_is_a_clear_error(tmp_path, suite_tasks, vparams, capsys):
    with pytest.raises(ValidationError, match="no dataset directory"):
        validate_dataset(tmp_path / "nope", suite_tasks, vparams, tmp_path / "docs")
    metrics = tmp_path / "validate.json"
    assert run_validate(vparams, tmp_path / "nope", suite_tasks, tmp_path / "docs", metrics) == 2  # a missing input
    assert json.loads(metrics.read_text())["success"] is False
    assert "no dataset directory" in capsys.readouterr().err


@pytest.mark.parametrize("content, match", [(None, "no task suite snapshot"), ("{}", "not a task suite snapshot")])
def test_bad_suite_snapshot_is_a_clear_error(tmp_path, base_shards, vparams, content, match):
    data = ds.write_dataset(tmp_path / "d", base_shards)
    suite = tmp_path / "tasks.json"
    if content is not None:
        suite.write_text(content)
    with pytest.raises(ValidationError, match=match):
        validate_dataset(data, suite, vparams, tmp_path / "docs")


def test_empty_dataset_dir_is_a_clear_error(tmp_path, suite_tasks, vparams):
    (tmp_path / "d").mkdir()
    with pytest.raises(ValidationError, match="no Parquet shards"):
        validate_dataset(tmp_path / "d", suite_tasks, vparams, tmp_path / "docs")


def test_unreadable_manifest_is_a_clear_error(tmp_path, base_shards, suite_tasks, vparams):
    data = ds.write_dataset(tmp_path / "d", base_shards)
    (data / "manifest.json").write_text("{not json")
    with pytest.raises(ValidationError, match="manifest.json"):
        validate_dataset(data, suite_tasks, vparams, tmp_path / "docs")


def test_fixture_views_are_real_pngs(base_shards):
    views = schema.decode_views(base_shards[0][0]["images"])
    assert views.shape == (schema.N_VIEWS, ds.SIZE, ds.SIZE, 3) and views.dtype == np.uint8
