"""The oracle teacher: the plan's next step, or (seeded) plausible wrong steps that really go wrong.

The teacher reads what the env shows a privileged reader, `info["state"]`; the tests step that env."""

from __future__ import annotations

import pytest

from octopus.agents import Proposal, env_for, make_agent, make_teacher, reads_of, teacher_names
from octopus.agents import oracle as oracle_module
from octopus.agents.oracle import OracleAgent, OracleTeacher
from octopus.config import MISTAKES, CollectParams, OracleTeacherParams, Params, RenderParams, SimParams
from octopus.protocol import parse_response
from octopus.sim.episode import SimState
from octopus.sim.planner import plan
from octopus.sim.tasks_stage import prove
from octopus.sim.tasks import Suite, Task, published_tasks

from tests.helpers import kitchen_task

SIM = SimParams(sandbox_timeout_s=1.0)
PARAMS = Params(sim=SIM, render=RenderParams(size=32))
COOK_AND_APPLE = [["cooked", "bacon.n.01_1"], ["inside", "apple.n.01_1", "wicker_basket.n.01_1"]]
APPLE = [["inside", "apple.n.01_1", "wicker_basket.n.01_1"]]
# what stepping each kind's proposal must say (wrong_object: executes, checked separately)
EXPECTED_ERROR = {
    "missing_precondition": ("is closed", "hands are full", "not in the robot's hands"),
    "out_of_reach": ("out of reach",),
    "small_object_movebot": ("cannot MoveBot", "large objects standing on the floor"),
    "wrong_furniture": ("out of reach",),
}


class Run:
    """One episode of the env a privileged teacher reads (`env_for`), and what it showed last."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.env = env_for(OracleAgent(), PARAMS, Suite([task]))
        self.obs, self.info = self.env.reset(options={"task": task.id})
        self.done = bool(self.info["task_success"])

    @property
    def shown(self) -> tuple[dict, dict]:
        return self.obs, self.info

    @property
    def state(self) -> SimState:
        return self.info["state"]

    @property
    def success(self) -> bool:
        return bool(self.info["task_success"])

    @property
    def steps(self) -> int:
        return int(self.info["steps"])

    def step(self, text: str) -> dict:
        """Step one response; its `info["result"]`."""
        self.obs, _, terminated, truncated, self.info = self.env.step(text)
        self.done = terminated or truncated
        return self.info["result"]

    def snapshot(self):
        return self.env.snapshot()

    def restore(self, token) -> None:
        self.obs, self.info = self.env.restore(token)
        self.done = bool(self.info["task_success"])


@pytest.fixture
def runs():
    """`runs(task)` -> a Run, closed after the test."""
    made: list[Run] = []

    def make(task: Task) -> Run:
        made.append(Run(task))
        return made[-1]
    yield make
    for r in made:
        r.env.close()


def kitchen_task_for(goal: list = COOK_AND_APPLE, task_id: str = "oracle_teacher_kitchen") -> Task:
    return kitchen_task(goal, task_id, "cook the bacon and put an apple in the basket")


@pytest.fixture
def kitchen(runs):
    """`kitchen(goal)` -> a Run of the small kitchen."""
    return lambda goal=COOK_AND_APPLE: runs(kitchen_task_for(goal))


def teacher(explore: float = 0.0, mistakes: tuple[str, ...] = MISTAKES, seed: int = 0) -> OracleTeacher:
    return OracleTeacher(OracleTeacherParams(explore=explore, mistakes=list(mistakes)), SIM, seed)


def propose(t: OracleTeacher, run: Run, n: int = 1) -> list[Proposal]:
    """Proposals for what the env shows now, each checked to parse in the paper's format."""
    key = run.state.world.state_key()
    out = t.propose(*run.shown, n)
    assert len(out) == n
    assert run.state.world.state_key() == key, "proposing leaves the live world as it found it"
    for p in out:
        parse_response(p.text)
    return out


def drive(t: OracleTeacher, run: Run, n: int = 1, check_against: OracleAgent | None = None) -> list[Proposal]:
    """Run the episode stepping the first proposal each time (a failed step is retried from the restored state)."""
    seen = []
    while not run.done:
        props = propose(t, run, n)
        if check_against is not None:
            expected = check_against.respond(*run.shown)
            assert all(p.text == expected for p in props if p.explore is None)
        seen += props
        run.step(props[0].text)
    return seen


@pytest.fixture(scope="module")
def real_tasks() -> list[Task]:
    """The first few published tasks (by id) that the plain oracle completes in 2+ steps."""
    agent, out = OracleAgent(), []
    for task in sorted(published_tasks()[0], key=lambda t: t.id):
        if prove(task, SIM) is not None or task.plan_steps < 2:
            continue
        run = Run(task)
        while not run.done:
            run.step(agent.respond(*run.shown))
        run.env.close()
        if run.success:
            out.append(task)
        if len(out) == 6:
            return out
    raise AssertionError("not enough solvable published tasks")


def test_registered_as_the_oracle_teacher():
    t = make_teacher("oracle", CollectParams(), SIM, seed=3)
    assert "oracle" in teacher_names() and isinstance(t, OracleTeacher) and t.name == "oracle"
    assert t.params == CollectParams().oracle and t.seed == 3
    assert isinstance(make_agent("oracle"), OracleAgent)
    assert reads_of(t) == reads_of(OracleAgent()) == {"state"}, "privileged: the simulator's true state"


def test_env_for_a_privileged_teacher_shows_the_true_state(runs):
    run = runs(kitchen_task_for())
    assert run.env.privileged and "views" not in run.obs, "no views rendered for a teacher that does not read them"
    state = run.state
    assert isinstance(state, SimState) and state.task.id == "oracle_teacher_kitchen"
    assert (state.steps, state.max_steps, state.error) == (0, SIM.max_steps, None)
    run.step("not a response")
    assert run.state.steps == 1 and run.state.error.startswith("Response format error")


def test_explore_zero_is_exactly_the_oracle_agent_and_solves_tasks(real_tasks, runs):
    agent = OracleAgent(max_expansions=OracleTeacherParams().max_expansions)
    for task in real_tasks:
        run, t = runs(task), teacher(0.0)
        props = drive(t, run, n=2, check_against=agent)
        assert run.success, task.id
        assert all(p.explore is None and not p.cached for p in props)
        usage = t.usage()
        assert usage["proposals"] == len(props) and usage["explored"] == 0
        assert usage["plans"] == run.steps, "one plan per state, whatever n"


@pytest.mark.parametrize("kind", sorted(EXPECTED_ERROR))
def test_failing_kinds_fail_with_their_error(kind, kitchen):
    run = kitchen()
    key = run.state.world.state_key()
    (p,) = propose(teacher(1.0, (kind,)), run)
    assert p.explore == kind
    r = run.step(p.text)
    assert r["parsed"] and not r["executed"] and r["error"].startswith("ActionError: ")
    assert any(s in r["error"] for s in EXPECTED_ERROR[kind]), r["error"]
    assert run.state.world.state_key() == key
    assert run.state.error == r["error"] and r["error"] in run.info["message"], "the next message reads the failure"
    assert "Explain:" in p.text and "Target States:" in p.text and "```python" in p.text


def test_missing_precondition_skips_the_open(kitchen):
    run = kitchen([["cooked", "bacon.n.01_1"]])
    (p,) = propose(teacher(1.0, ("missing_precondition",)), run)
    r = run.step(p.text)
    assert "electric_refrigerator_1 is closed: open it before" in r["error"] and "bacon_1" in r["error"]


def test_wrong_furniture_goes_elsewhere_and_the_error_names_where_the_item_is(kitchen):
    run = kitchen(APPLE)
    correct = plan(run.state.world, run.state.goal).steps[0]
    (p,) = propose(teacher(1.0, ("wrong_furniture",)), run)
    r = run.step(p.text)
    moved = [args[0] for fn, args in r["calls"] if fn == "MoveBot"]
    assert moved and moved[0] != correct[0][1][0], "another piece of furniture than the plan's"
    assert "out of reach" in r["error"] and f"move to {correct[0][1][0]}, the furniture it is on or in" in r["error"]


def test_wrong_object_executes_but_does_not_help(kitchen):
    run = kitchen(APPLE)
    before = plan(run.state.world, run.state.goal).steps
    (p,) = propose(teacher(1.0, ("wrong_object",)), run)
    assert p.explore == "wrong_object" and "apple_2" in p.text, "another apple: the most similar visible item"
    r = run.step(p.text)
    assert r["executed"] and r["target_states_met"] and not r["task_success"]
    done = [(fn, tuple(args)) for fn, args in r["calls"] if fn != "registry"]
    assert done and done != [(fn, tuple(args)) for fn, args in before[0]], "not the plan's first step"
    assert len(plan(run.state.world, run.state.goal).steps) >= len(before), "no progress towards the goal"


@pytest.mark.parametrize("kind", MISTAKES)
def test_every_kind_does_what_it_says_on_real_tasks(kind, real_tasks, runs):
    """Wherever a kind applies (first states and after the plan's first step), stepping it gives its outcome."""
    applied = 0
    for task in real_tasks:
        run = runs(task)
        for _ in range(2):
            (p,) = propose(teacher(1.0, (kind,)), run)
            correct, start = OracleAgent().respond(*run.shown), run.snapshot()
            if p.explore is None:
                assert p.text == correct, "a kind that does not apply falls back to the correct step"
            else:
                applied += 1
                assert p.explore == kind and p.text != correct
                r = run.step(p.text)
                if kind == "wrong_object":
                    assert r["parsed"] and (r["executed"] or r["error"].startswith("ActionError: "))
                else:
                    assert not r["executed"] and any(s in r["error"] for s in EXPECTED_ERROR[kind]), (task.id, r["error"])
                run.restore(start)  # a wrong_object step may have executed: back to where `correct` was planned
            if not run.step(correct)["target_states_met"]:
                break
    assert applied >= 4, f"{kind} applied only {applied} times"


def test_inapplicable_kind_gives_way_to_the_next_then_to_the_correct_step(kitchen):
    run = kitchen([["open", "electric_refrigerator.n.01_1"]])  # a one-step plan: nothing to skip
    only = teacher(1.0, ("missing_precondition",))
    (p,) = propose(only, run)
    assert p.explore is None and p.text == OracleAgent().respond(*run.shown)
    assert only.usage()["explore_fallbacks"] == 1
    (q,) = propose(teacher(1.0, ("missing_precondition", "out_of_reach")), run)
    assert q.explore == "out_of_reach"


def test_no_plan_gives_up(kitchen):
    run = kitchen([["open", "breakfast_table.n.01_1"]])  # a table cannot be opened
    (p,) = propose(teacher(1.0), run)
    assert p.explore is None and "no plan found" in p.text and "donothing(env)" in p.text
    assert p.text == OracleAgent().respond(*run.shown)


def test_several_proposals_are_distinct_mistakes(kitchen):
    run = kitchen()
    t = teacher(1.0)
    props = propose(t, run, n=4)
    assert all(p.explore in MISTAKES for p in props)
    assert len({p.text for p in props}) == 4
    usage = t.usage()
    assert usage["proposals"] == 4 and usage["explored"] == 4
    assert sum(usage[f"explored_{k}"] for k in MISTAKES) == 4


def test_same_seed_same_proposals_over_an_episode(kitchen):
    def run(seed: int) -> list[tuple[str, str | None]]:
        return [(p.text, p.explore) for p in drive(teacher(0.5, seed=seed), kitchen(), n=2)]

    again = run(1)
    assert run(1) == again
    assert run(2) != again
    assert any(kind for _, kind in again) and any(kind is None for _, kind in again)


def test_exploring_teacher_still_completes_most_tasks(real_tasks, runs):
    """explore=0.3, one proposal per step, retried after failures: the planner recovers within the budget."""
    agent = OracleAgent(max_expansions=OracleTeacherParams().max_expansions)
    done, explored = 0, 0
    for seed, task in enumerate([*real_tasks, kitchen_task_for()]):
        run, t = runs(task), teacher(0.3, seed=seed)
        drive(t, run, check_against=agent)  # correct steps after failures equal a fresh plan's
        done += run.success
        explored += t.usage()["explored"]
    assert explored >= 3
    assert done >= 6, f"completed {done}/7 tasks"


def test_plans_once_per_state(monkeypatch, kitchen):
    planned: list[tuple] = []

    def spy(world, goal, **kw):
        planned.append(world.state_key())
        return plan(world, goal, **kw)

    monkeypatch.setattr(oracle_module, "plan", spy)
    run, t = kitchen(), teacher(0.5, seed=1)
    props = drive(t, run, n=3)
    assert run.success
    assert len(planned) == len(set(planned)), "re-proposals from a restored state reuse the plan"
    usage = t.usage()
    assert usage["plans"] == len(planned) < run.steps
    assert usage["plan_cache_hits"] == run.steps - len(planned) > 0
    assert len(props) == 3 * run.steps and usage["plan_seconds"] > 0
