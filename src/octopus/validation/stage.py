"""The validate stage: a great_expectations suite over the collected dataset, Data Docs and metrics.

    report = validate_dataset(dataset_dir, suite_tasks, params, docs_dir)   # -> ValidationReport
    code = run_validate(params, dataset_dir, suite_tasks, docs_dir, metrics_path)  # `octopus validate`

Two batches are validated in one ephemeral GX context (nothing written but the Data Docs HTML):
`shards` (one row per Parquet file: readable, schema, manifest) and `rows` (one row per tree node
with the derived columns of `checks.py`). Every expectation carries a stable name in `meta.name`
(also the start of its Data Docs description); `EXPECTATIONS` lists them all.

Choices: a malformed response is legitimate data (a failed step, parsed=False), so `responses.format`
asks that `parsed` agrees with whether the response parses (all four sections, valid contents).
The share of parsed responses is a property of the teacher, not of data integrity: it is reported
in the metrics (`parsed_share`), not enforced with `mostly`. Code recorded as executed must pass
the sandbox's static policy (only API functions, sandbox builtins and names it defines); code that
the sandbox rejected is a legitimate negative row as long as it is recorded as not executed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.data_context.types.base import (DataContextConfig, InMemoryStoreBackendDefaults,
                                                        ProgressBarsConfig)
from rich.console import Console
from rich.markup import escape

from octopus.config import Params
from octopus.data.schema import N_VIEWS
from octopus.files import write_json
from octopus.validation.checks import LoadedDataset, ValidationError, load_dataset, parsed_share
from octopus.files import replace_dir

SITE = "octopus"
EXAMPLES = 5
# name -> what it checks (the Data Docs description reads "name: text")
EXPECTATIONS: dict[str, str] = {
    "shards.readable": "every shard file is a readable Parquet file",
    "schema.columns": "every shard has exactly the schema's columns, in order",
    "schema.types": "every shard's column types are the schema's Arrow types, with its Hugging Face features",
    "manifest.shards": "shard files and sha256 match manifest.json (only when it exists)",
    "manifest.rows": "the row count matches manifest.json (only when it exists)",
    "schema.required_not_null": "required columns are not null",
    "ids.unique": "node ids are unique",
    "images.count": f"every row has exactly {N_VIEWS} images",
    "images.decodable": "every image decodes as PNG",
    "images.size": "every image has the configured size, square, RGB",
    "responses.format": "parsed=True rows have a response with Explain, Subtasks, Code and Target States that "
                        "parses; parsed=False rows one that does not",
    "code.matches_response": "code is set iff the response parsed, and equals its Code section",
    "code.api_only": "code is Python; executed code calls only API functions, sandbox builtins and its own "
                     "functions; logged calls are API functions",
    "labels.binary": "label is 0 or 1",
    "labels.step_flags": "target_states_met implies executed implies parsed",
    "labels.task_rule": "label == (target_states_met and task_success)",
    "labels.tree_success_constant": "task_success is the same for every node of a (task_id, episode) tree",
    "tree.parent_exists": "parent_id is null or a node of the same tree",
    "split.train_only": "every row's split is train",
    "split.train_tasks": "every task is a train task of the suite snapshot (no evaluation or unknown task)",
    "split.seen_scenes": "no row comes from an unseen scene (tasks.unseen_scenes, scenes of eval_unseen tasks)",
    "split.procedural_leakage": "no row comes from a procedural task built on an evaluation task's activity or "
                                "asking an evaluation task's goal",
    "rows.min_count": "at least validate.min_rows rows",
}


@dataclass
class ExpectationResult:
    name: str
    success: bool
    unexpected_count: int | None = None  # rows (or shards) that broke it; None for table-level checks
    examples: list[str] = field(default_factory=list)  # "<id or file>: <value or problem>"
    observed: str | None = None  # table-level checks: the observed value
    error: str | None = None  # the expectation itself raised

    def line(self) -> str:
        parts = [self.error or "", f"{self.unexpected_count} unexpected" if self.unexpected_count else "",
                 f"observed {self.observed}" if self.observed is not None else "",
                 f"e.g. {' | '.join(self.examples[:3])}" if self.examples else ""]
        return f"{self.name} ({EXPECTATIONS.get(self.name, '')}): {'; '.join(p for p in parts if p)}"


@dataclass
class ValidationReport:
    success: bool
    rows: int
    shards: int
    images_checked: int
    results: list[ExpectationResult]
    docs_index: Path
    parsed_share: float | None
    seconds: dict[str, float]  # load (read, decode, derive), expectations, docs, total

    @property
    def failed(self) -> list[str]:
        return [r.name for r in self.results if not r.success]

    def metrics(self) -> dict[str, Any]:
        """What reports/validate.json holds (DVC metrics)."""
        return {"success": self.success, "rows": self.rows, "shards": self.shards,
                "images_checked_rows": self.images_checked, "expectations": len(self.results),
                "failed_expectations": len(self.failed), "failed": self.failed,
                "unexpected": {r.name: r.unexpected_count for r in self.results if r.unexpected_count is not None},
                "parsed_share": self.parsed_share, "seconds": round(self.seconds["total"], 2),
                "seconds_detail": {k: round(v, 2) for k, v in self.seconds.items()},
                "data_docs": str(self.docs_index)}


# ---------------------------------------------------------------------- the suite
def _x(cls: type, name: str, detail: str = "", **kwargs: Any) -> gxe.Expectation:
    return cls(**kwargs, description=f"{name}: {EXPECTATIONS[name]}{detail}", meta={"name": name})


def shard_expectations(manifest: dict | None) -> list[gxe.Expectation]:
    out = [_x(gxe.ExpectColumnValuesToBeNull, "shards.readable", column="read_error"),
           _x(gxe.ExpectColumnValuesToBeNull, "schema.columns", column="columns_error"),
           _x(gxe.ExpectColumnValuesToBeNull, "schema.types", column="types_error")]
    if manifest is not None:
        out += [_x(gxe.ExpectColumnValuesToBeNull, "manifest.shards", column="manifest_error"),
                _x(gxe.ExpectColumnSumToBeBetween, "manifest.rows", f" ({manifest['rows']})", column="rows",
                   min_value=manifest["rows"], max_value=manifest["rows"])]
    return out


def row_expectations(params: Params, unseen_scenes: list[str]) -> list[gxe.Expectation]:
    size = params.render.size
    null = gxe.ExpectColumnValuesToBeNull
    return [
        _x(null, "schema.required_not_null", column="null_required"),
        _x(gxe.ExpectColumnValuesToBeUnique, "ids.unique", column="id"),
        _x(gxe.ExpectColumnValuesToBeInSet, "images.count", column="n_images", value_set=[N_VIEWS]),
        _x(null, "images.decodable", column="image_error"),
        _x(gxe.ExpectColumnValuesToBeInSet, "images.size", f" ({size}x{size} RGB)", column="image_size",
           value_set=[f"{size}x{size} RGB"]),
        _x(null, "responses.format", column="check_response"),
        _x(null, "code.matches_response", column="check_code"),
        _x(null, "code.api_only", column="check_api"),
        _x(gxe.ExpectColumnValuesToBeInSet, "labels.binary", column="label", value_set=[0, 1]),
        _x(null, "labels.step_flags", column="check_flags"),
        _x(gxe.ExpectColumnPairValuesToBeEqual, "labels.task_rule", column_A="label", column_B="label_rule"),
        _x(null, "labels.tree_success_constant", column="check_tree_success"),
        _x(null, "tree.parent_exists", column="check_parent"),
        _x(gxe.ExpectColumnValuesToBeInSet, "split.train_only", column="split", value_set=["train"]),
        _x(null, "split.train_tasks", column="check_task_split"),
        _x(gxe.ExpectColumnValuesToNotBeInSet, "split.seen_scenes", column="scene", value_set=unseen_scenes),
        _x(null, "split.procedural_leakage", column="check_procedural"),
        _x(gxe.ExpectTableRowCountToBeBetween, "rows.min_count", f" ({params.validate.min_rows})",
           min_value=params.validate.min_rows),
    ]


def _context(site_dir: Path) -> Any:
    """An in-memory GX context whose only Data Docs site writes static HTML into `site_dir`."""
    site = {"class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(site_dir.resolve())},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}}
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                               data_docs_sites={SITE: site}, analytics_enabled=False,
                               progress_bars=ProgressBarsConfig(globally=False))
    return gx.get_context(mode="ephemeral", project_config=config)


def _run(context: Any, name: str, frame: Any, expectations: list, index: str) -> list[ExpectationResult]:
    """Validate one dataframe against its suite; results in suite order."""
    batch = (context.data_sources.add_pandas(name).add_dataframe_asset(name)
             .add_batch_definition_whole_dataframe(name))
    suite = context.suites.add(gx.ExpectationSuite(name=f"octopus_dataset_{name}", expectations=expectations))
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=name, data=batch, suite=suite))
    result = definition.run(batch_parameters={"dataframe": frame},
                            result_format={"result_format": "SUMMARY", "unexpected_index_column_names": [index],
                                           "partial_unexpected_count": EXAMPLES})
    order = {n: k for k, n in enumerate(EXPECTATIONS)}
    return sorted((_result(r, index) for r in result.results), key=lambda r: order.get(r.name, len(order)))


def _result(r: Any, index: str) -> ExpectationResult:
    res, exc = r.result or {}, r.exception_info or {}
    if exc and "raised_exception" not in exc:  # keyed by metric when several metrics were computed
        exc = next((e for e in exc.values() if e.get("raised_exception")), {})
    error = exc.get("exception_message") if exc.get("raised_exception") else None
    examples = []
    for item in res.get("partial_unexpected_index_list") or []:
        item = dict(item)
        key = item.pop(index, "?")
        vals = [str(v) for v in item.values()] if len(item) == 1 else [f"{k}={v}" for k, v in item.items()]
        examples.append(f"{key}: {', '.join(vals)}")
    observed = res.get("observed_value")
    return ExpectationResult(r.expectation_config.meta["name"], bool(r.success), res.get("unexpected_count"),
                             examples[:EXAMPLES], None if observed is None else str(observed), error)


def validate_dataset(dataset_dir: Path, suite_tasks: Path, params: Params, docs_dir: Path) -> ValidationReport:
    """Run the suite over the dataset, build Data Docs into `docs_dir` (index.html) and report.

    Raises ValidationError (naming the file) when the dataset directory or the suite snapshot is
    missing or unreadable; every problem inside the data is a failed expectation instead.
    """
    t0 = time.perf_counter()
    data: LoadedDataset = load_dataset(Path(dataset_dir), Path(suite_tasks), params)
    t1 = time.perf_counter()
    docs_dir = Path(docs_dir)
    docs_dir.parent.mkdir(parents=True, exist_ok=True)
    with replace_dir(docs_dir) as tmp:
        context = _context(tmp)
        results = _run(context, "shards", data.shards, shard_expectations(data.manifest), "file")
        results += _run(context, "rows", data.rows, row_expectations(params, data.unseen_scenes), "id")
        t2 = time.perf_counter()
        context.build_data_docs(site_names=[SITE])
    t3 = time.perf_counter()
    return ValidationReport(all(r.success for r in results), len(data.rows), len(data.shards), data.images_checked,
                            results, docs_dir / "index.html", parsed_share(data.rows),
                            {"load": t1 - t0, "expectations": t2 - t1, "docs": t3 - t2, "total": t3 - t0})


# ---------------------------------------------------------------------- the stage
#: expectations that fail when the files on disk are damaged (unreadable, or not what collect's manifest
#: recorded), not when their content is wrong: a corrupt input, exit code 2 like every stage's
INTEGRITY = ("shards.readable", "manifest.shards", "manifest.rows")


def run_validate(params: Params, dataset_dir: Path, suite_tasks: Path, docs_dir: Path, metrics_path: Path,
                 console: Console | None = None) -> int:
    """The `octopus validate` stage: validate, write metrics (atomically), print a summary.

    Exit code 0 when every expectation passes; 2 for a corrupt or missing input (a missing or unreadable
    dataset, suite or manifest; a damaged shard or one the manifest disagrees with, each file named);
    1 when the data is readable but fails expectations. Data Docs and the metrics are written either way."""
    console = console or Console(stderr=True, soft_wrap=True)
    t0 = time.perf_counter()
    try:
        report = validate_dataset(dataset_dir, suite_tasks, params, docs_dir)
    except ValidationError as err:
        write_json(metrics_path, {"success": False, "error": str(err), "rows": 0, "expectations": 0,
                                   "failed_expectations": 0, "failed": [],
                                   "seconds": round(time.perf_counter() - t0, 2)})
        console.print(f"[red]validate failed:[/] {escape(str(err))}")
        return 2
    write_json(metrics_path, report.metrics())
    n = len(report.results)
    if report.success:
        console.print(f"validate: all {n} expectations passed on {report.rows} rows in {report.shards} shard(s) "
                      f"(images of {report.images_checked} rows decoded) in {report.seconds['total']:.1f} s; "
                      f"Data Docs: {report.docs_index}")
        return 0
    console.print(f"[red]validate failed:[/] {len(report.failed)} of {n} expectations failed on {report.rows} rows:")
    for r in report.results:
        if not r.success:
            console.print(f"  [red]x[/] {escape(r.line())}", highlight=False)
    console.print(f"Data Docs: {report.docs_index}")
    corrupt = [r for r in report.results if not r.success and r.name in INTEGRITY]
    for r in corrupt:
        for example in r.examples or [f"{dataset_dir}: {r.line()}"]:
            console.print(f"[red]corrupt input:[/] {escape(_under(dataset_dir, example))}", highlight=False)
    return 2 if corrupt else 1


def _under(dataset_dir: Path, example: str) -> str:
    """'shard-00000.parquet: problem' -> 'data/dataset/shard-00000.parquet: problem' (the file a user opens)."""
    head, sep, rest = example.partition(": ")
    return f"{Path(dataset_dir) / head}{sep}{rest}" if sep and head.endswith(".parquet") else example
