"""The restructuring kept the data: a fixed collect gives the very rows the old code gave.

The digest below was computed from a dataset made on commit 493c57b (before the one rollout path over
OctoGibsonEnv): 6 train tasks, 2 proposals per node (siblings and restores), the oracle teacher with its
default exploration, 32 px views, collect seed 3. It covers every column of every row: ids, prompts,
messages, responses, code, errors, labels and the PNG bytes of the views. Re-pinned once, on purpose,
when the out-of-reach feedback began naming the furniture to MoveBot to: still 46 rows; the
change expected is that error's text and the prompts that quote it. Re-pinned a second time when
BEHAVIOR-goal instructions stopped printing bddl's `?` variable marks ("put ?bratwurst in ..."): still 46
rows; only `instruction`, `message`, `prompt` and `response` differ, in 4 rows, by that mark alone.
The oracle's exploration is spelled out (the defaults of that time): newer defaults and mistake kinds change
what is collected on purpose, and must not hide a change of what the same settings give.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pytest

from octopus import paths
from octopus.data import schema

OLD_MISTAKES = ["wrong_object", "missing_precondition", "out_of_reach", "small_object_movebot"]
ROWS, DIGEST = 46, "046e0a581c75178b3d3de82f38b0bd08a7bc7c512b742bfd585be6f7ee85380e"


def rows_digest(directory) -> tuple[int, str]:
    table = pa.concat_tables([schema.read_table(f) for f in schema.shard_files(directory)])
    h = hashlib.sha256()
    blob = lambda b: hashlib.sha256(b).hexdigest() if isinstance(b, bytes) else str(b)  # noqa: E731
    for col in sorted(table.column_names):
        h.update(col.encode())
        h.update(json.dumps(table.column(col).to_pylist(), sort_keys=True, default=blob).encode())
    return table.num_rows, h.hexdigest()


@pytest.mark.slow
def test_collect_gives_the_rows_of_the_old_code(project, prefect_api):
    from octopus.data.flow import collect
    path = project.write(collect={
        "teacher": "oracle", "max_tasks": 6, "samples_per_node": 2, "seed": 3,
        "oracle": {"explore": 0.3, "mistakes": OLD_MISTAKES}})
    collect(str(path), show_progress=False)
    assert rows_digest(paths.DATASET) == (ROWS, DIGEST)
