"""The `octopus` command: one sub-command per stage and tools around the simulator.

    octopus tasks list [--split S] [--category C] [--json]
    octopus tasks check                      prove the evaluation suite solvable, with counts
    octopus tasks export DIR                 write the suite snapshot (what data.dvc pins)
    octopus sim run TASK --agent oracle|random|llm|policy [--model DIR] [--save-views DIR]
    octopus sim step TASK --response-file FILE [--json]
    octopus sim bench [--json]
    octopus collect                          the collect stage (Prefect fan-out; dvc.yaml calls it)
    octopus validate                         the validate stage (great_expectations, Data Docs)
    octopus data bench [--json]              collection throughput with 1 and 2 workers, no-op dvc repro
    octopus sft [--policy NAME]              the sft stage of one policy (TRL SFTTrainer; models/sft/NAME)
    octopus model bench [--json]             SFT samples/s vs a plain Trainer; policy responses/s
    octopus evaluate                         the evaluate stage (Table 3 on the suite; reports/evaluate.*)

Only this package reads argv, params files and the environment; everything else takes typed params.
One module per command group: tasks, sim, stages (what dvc.yaml runs), bench; common holds what they share.
"""

from __future__ import annotations

import typer

from octopus.cli import bench, sim, stages, tasks

app = typer.Typer(help="Octopus: an embodied vision-language programmer trained from environment feedback.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(tasks.app, name="tasks")
app.add_typer(sim.app, name="sim")
app.add_typer(bench.data_app, name="data")
app.add_typer(bench.model_app, name="model")
app.command("collect")(stages.collect_cmd)
app.command("validate")(stages.validate_cmd)
app.command("sft")(stages.sft_cmd)
app.command("evaluate")(stages.evaluate_cmd)


def main() -> None:  # pragma: no cover - console entry point
    app()
