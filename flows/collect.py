"""The collect stage's Prefect flow: one task run per task-episode over a pool of workers.

    python flows/collect.py                       # run it once (what `octopus collect` / `dvc repro collect` do)
    python flows/collect.py --serve               # serve it: trigger runs and schedules from the Prefect UI
    prefect deploy flows/collect.py:collect       # or deploy it to a work pool (infra/docker-compose.yml)

The task runner (process | thread | dask | ray), workers and retries come from params.yaml `collect:`.
The flow body lives in `octopus.data.flow`; this file only exposes it to Prefect.
"""

from __future__ import annotations

import sys

from octopus.data.flow import collect
from octopus.orchestration import ensure_prefect_api

__all__ = ["collect"]

if __name__ == "__main__":
    if "--serve" in sys.argv:
        collect.serve(name="octopus-collect")
    else:
        ensure_prefect_api()
        collect()
