"""Load a trained policy and let it act in the OctoGibson Gymnasium environment on one task.

Shows the loop every agent runs: `env.reset(options={"task": ...})`, then per step the policy
writes a response (Explain, Subtasks, Code, Target States) for what it sees, `env.step(text)` runs
the code in the simulator, and `info["result"]` says whether it parsed, executed, and met its
target states (the error is what the policy reads in the next message).

    # in a checkout after `make run` (models/sft/octopus and data/tasks/tasks.json exist)
    python examples/01_act_in_env.py                                   # first eval_seen task
    python examples/01_act_in_env.py --task TASK_ID --views views.png  # another task; save the 10 views
    python examples/01_act_in_env.py --model models/sft/blind --policy blind   # the blind baseline

List task ids with `octopus tasks list --split eval_seen`.
"""

from __future__ import annotations

import argparse
import dataclasses

import gymnasium as gym

from octopus import paths
from octopus.config import load_params
from octopus.model.policy import Policy
from octopus.sim.render import contact_sheet, save_png
from octopus.sim.tasks_stage import read_snapshot


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(paths.sft_model("octopus")), help="checkpoint directory (the sft stage's)")
    ap.add_argument("--policy", default="octopus", help="entry of `policies` whose model settings apply")
    ap.add_argument("--task", help="task id (default: the first eval_seen task of the suite)")
    ap.add_argument("--suite", default=str(paths.SUITE_TASKS), help="task suite snapshot (the tasks stage's)")
    ap.add_argument("--params", default="params.yaml", help="params file (missing: the defaults)")
    ap.add_argument("--max-steps", type=int, help="responses before the episode is cut off (default: sim.max_steps)")
    ap.add_argument("--views", help="save the first observation's 10 views as a contact sheet PNG here")
    args = ap.parse_args()

    params = load_params(args.params).for_policy(args.policy)
    if args.max_steps:
        params = dataclasses.replace(params, sim=dataclasses.replace(params.sim, max_steps=args.max_steps))
    suite = read_snapshot(args.suite)
    task = suite.get(args.task) if args.task else suite.select("eval_seen")[0]
    policy = Policy.from_pretrained(args.model)  # generation settings: the ones it was trained with
    sees = "views" in policy.reads  # False: a blind policy reading the full text message instead

    # the id is registered when gymnasium imports octopus.sim.env; keyword arguments go to OctoGibsonEnv
    env = gym.make("octopus.sim.env:octopus/OctoGibson-v0", params=params, suite=suite,
                   views=sees or bool(args.views))
    obs, info = env.reset(seed=0, options={"task": task.id})
    print(f"task {task.id} ({task.split}, {task.category}): {task.instruction}")
    if args.views:
        print("views saved to", save_png(contact_sheet(obs["views"]), args.views))
    done = False
    while not done:
        text = policy.respond(policy.observe(obs, info), objects=info["objects"])  # unknown names grounded
        obs, reward, terminated, truncated, info = env.step(text)
        r = info["result"]
        print(f"step {info['steps']}: parsed={r['parsed']} executed={r['executed']} "
              f"target_states_met={r['target_states_met']} progress={r['progress']:.2f} error={r['error']!r}")
        if r["code"]:
            print("    " + r["code"].replace("\n", "\n    "))
        done = terminated or truncated
    outcome = "completed" if info["task_success"] else "not completed"
    print(f"outcome: task {outcome} after {info['steps']} steps (goal progress {info['progress']:.2f})")
    env.close()


if __name__ == "__main__":
    main()
