"""`octopus bench sim | collect | sft | rlef | scaling | serve`: the numbers behind the issues' targets (benchmarks, not tests)."""

from __future__ import annotations

from pathlib import Path

import typer

from octopus import paths
from octopus.cli.common import PARAMS, params_of, print_report

app = typer.Typer(help="Benchmarks: the simulator, the collect stage, the sft stage (and its policy's inference).",
                 no_args_is_help=True)


@app.command("collect")
def collect_bench(as_json: bool = typer.Option(False, "--json", help="print the numbers as JSON"),
               episodes: int = typer.Option(24, help="task-episodes per timed run (0: every train task once, the "
                                             "default collect stage's episodes)"),
               repeats: int = typer.Option(3, help="timed runs per worker count (the median is reported)"),
               workers: str = typer.Option("1,2", help="worker counts to time, comma-separated"),
               dvc_noop: bool = typer.Option(True, help="also time a no-op `dvc repro` (needs the pipeline run once)"),
               runner: str = typer.Option("process", help="the fan-out: process (a process pool) | dask (a local "
                                          "Dask cluster, prefect-dask) | thread | ray"),
               params: Path = PARAMS) -> None:
    """Collection throughput (steps/min) with the oracle teacher, rendering on, per worker count; no-op dvc repro time."""
    from octopus.cli.common import fail
    if runner not in ("process", "thread", "dask", "ray"):
        fail(f"--runner: must be one of process, thread, dask, ray, got {runner!r}")
    from octopus.data.collect_bench import run_collect_bench, time_noop_repro
    from octopus.orchestration import OrchestrationError
    p = params_of(params)
    counts = [int(w) for w in workers.split(",") if w.strip()]
    try:
        report = run_collect_bench(p, counts, episodes, repeats, runner)
    except OrchestrationError as err:
        fail(str(err))
    if dvc_noop:
        report["dvc_repro_noop_s"] = time_noop_repro(repeats)
    print_report(report, as_json)


@app.command("sft")
def sft_bench(as_json: bool = typer.Option(False, "--json", help="print the numbers as JSON"),
                steps: int = typer.Option(30, help="optimizer steps per timed training run"),
                repeats: int = typer.Option(3, help="timed runs per trainer (the median is reported)"),
                inference: bool = typer.Option(True, help="also time generation with the trained policy"),
                policy: str = typer.Option("octopus", help="which entry of `policies` to benchmark"),
                kinds: str = typer.Option("octopus,trainer,trl_default,grouped", help="trainers to time: octopus "
                                          "(the stage's), trainer (plain transformers), trl_default, grouped"),
                precisions: str = typer.Option("auto", help="precisions to time, comma-separated: auto, bf16, fp32 "
                                               "(bf16,fp32 also reports their ratio)"),
                params: Path = PARAMS) -> None:
    """SFT throughput (ours vs a plain transformers.Trainer vs TRL's default loss; bf16 vs fp32), the share of
    this machine's matmul rate it reaches, and policy responses/s (with models/sft/POLICY, when it exists)."""
    from octopus.cli.common import fail
    from octopus.model.device import PrecisionError
    from octopus.training.sft_bench import run_inference_bench, run_train_bench
    p = params_of(params, policy)
    split = lambda text: tuple(x.strip() for x in text.split(",") if x.strip())  # noqa: E731
    try:
        report = run_train_bench(p, paths.DATASET, steps, repeats, split(kinds), split(precisions))
    except PrecisionError as err:
        fail(str(err))
    if inference and paths.sft_model(policy).exists():
        report["inference"] = run_inference_bench(p, paths.sft_model(policy), paths.DATASET)
    print_report(report, as_json)


@app.command("rlef")
def rlef_bench(as_json: bool = typer.Option(False, "--json", help="print the numbers as JSON"),
               algorithms: str = typer.Option("ppo,grpo", help="rlef algorithms to time, comma-separated"),
               updates: int = typer.Option(4, help="updates per algorithm (the first is warm-up)"),
               params: Path = PARAMS) -> None:
    """RLEF throughput on the SFT checkpoint of rlef.policy: rollout responses/s, scoring responses/s and update
    samples/s per algorithm, next to the sft stage's samples/s on the same preset."""
    from octopus.cli.common import fail, require
    from octopus.training.rlef import RLEFError
    from octopus.training.rlef.bench import run_rlef_bench
    p = params_of(params)
    require(paths.DATASET)
    try:
        report = run_rlef_bench(p.for_policy(p.rlef.policy), paths.sft_model(p.rlef.policy), paths.REWARD_MODEL,
                                paths.DATASET, tuple(a.strip() for a in algorithms.split(",") if a.strip()), updates)
    except RLEFError as err:
        fail(str(err))
    print_report(report, as_json)


@app.command("scaling")
def scaling_bench(presets: str = typer.Option("tiny,small", help="model presets, comma-separated"),
                  fractions: str = typer.Option("0.25,1", help="shares of the training tasks, comma-separated"),
                  epochs: float = typer.Option(None, help="sft.epochs for every run (default: params.yaml's)"),
                  out: Path = typer.Option(Path("reports/scaling"), help="where the checkpoints, scaling.json "
                                           "and scaling.md go"),
                  policy: str = typer.Option("octopus", help="which entry of `policies` to scale"),
                  params: Path = PARAMS) -> None:
    """Completion (held-out training tasks and the 60-task suite, with CIs) and training minutes against model
    size and amount of training data (paper Fig. 6b). Trains one policy per (preset, share): hours for `small`."""
    from dataclasses import replace

    from octopus.cli.common import require
    from octopus.files import write_atomic, write_json
    from octopus.training.scaling import markdown, run_scaling
    p = params_of(params, policy)
    if epochs is not None:
        p = replace(p, sft=replace(p.sft, epochs=epochs))
    require(paths.DATASET)
    require(paths.SUITE_TASKS)
    report = run_scaling(p, [s.strip() for s in presets.split(",") if s.strip()],
                         [float(f) for f in fractions.split(",") if f.strip()], out / "models")
    write_json(out / "scaling.json", report)
    write_atomic(out / "scaling.md", markdown(report))
    print(markdown(report))


@app.command("serve")
def serve_bench(as_json: bool = typer.Option(False, "--json", help="print the numbers as JSON"),
                model: Path = typer.Option(None, help="policy checkpoint (default: a random-init policy of params.yaml's "
                                           "model preset, built in memory)"),
                clients: int = typer.Option(8, min=1, max=64, help="concurrent HTTP clients (and the batch size)"),
                requests: int = typer.Option(4, min=1, help="requests each client sends, one after another"),
                repeats: int = typer.Option(3, min=1, help="timed runs (the median is reported)"),
                max_new_tokens: int = typer.Option(128, min=1, help="tokens per response"),
                window_ms: float = typer.Option(10.0, min=0.0, help="the server's batching window"),
                params: Path = PARAMS) -> None:
    """`octopus serve` on loopback: CLIENTS concurrent clients vs direct Policy.respond_batch on the same
    observations: responses/s, p50/p99 latency and the throughput ratio (target >= 0.8)."""
    from octopus.model.policy import Policy
    from octopus.serving.bench import run_serve_bench, synthetic_observations
    p = params_of(params)
    if model is not None:
        policy = Policy.from_pretrained(model, max_new_tokens=max_new_tokens, temperature=0.0)
    else:
        from octopus.model.factory import build_model
        texts = [o.get("text") or o["message"] for o in synthetic_observations(16, 16, False)]
        policy = Policy(build_model(p.model, texts * 8, seed=0), max_new_tokens=max_new_tokens)
    observations = synthetic_observations(clients * requests, p.render.size, policy.pm.family.reads_views)
    report = run_serve_bench(policy, observations, clients, repeats, window_ms)
    report["model"] = str(model) if model else f"random-init {p.model.family}/{p.model.preset}"
    report["view_px"] = p.render.size
    print_report(report, as_json)
