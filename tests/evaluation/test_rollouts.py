"""Rollouts over OctoGibsonEnv: the oracle succeeds, random and garbage agents fail with every step recorded,
crashes are recorded, each agent is shown what it reads, sheets are the views the agent saw."""

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from octopus.agents import make_agent
from octopus.evaluation.rollouts import SHEET_WIDTH, EpisodeRecord, rollout, rollout_batch
from octopus.sim.episode import Episode

from tests.helpers import kitchen_task

KITCHEN_GOAL = [["inside", "apple.n.01_1", "wicker_basket.n.01_1"]]


def with_(params, max_steps: int | None = None, size: int | None = None):
    sim = replace(params.sim, max_steps=max_steps) if max_steps else params.sim
    render = replace(params.render, size=size) if size else params.render
    return replace(params, sim=sim, render=render)


@pytest.fixture
def kitchen():
    return kitchen_task(KITCHEN_GOAL, "rollout_kitchen", "put an apple in the basket")


@pytest.fixture(scope="module")
def eval_tasks(suite):
    """The shortest seen and unseen evaluation tasks (fast oracle rollouts), one of each category where possible."""
    ev = sorted(suite.evaluation(), key=lambda t: (t.plan_steps or 99, t.id))
    seen = [t for t in ev if t.split == "eval_seen"]
    unseen = [t for t in ev if t.split == "eval_unseen"]
    reason = [t for t in ev if t.category == "reason"]
    return list({t.id: t for t in (seen[0], unseen[0], reason[0])}.values())


class Scripted:
    """Answers with the oracle, then does `then` from step `after` on (raise, garbage, expose a grounding).

    Privileged like the oracle it wraps; keeps every (obs, info) it was shown."""

    def __init__(self, after: int, then: str, reads: frozenset[str] = frozenset({"state"})) -> None:
        self.oracle, self.after, self.then, self.calls = make_agent("oracle"), after, then, 0
        self.reads = reads | {"state"}
        self.last_grounding = None
        self.shown: list[tuple[dict, dict]] = []

    def respond(self, obs, info):
        self.calls += 1
        self.shown.append((obs, info))
        if self.calls > self.after:
            if self.then == "raise":
                raise RuntimeError("the model exploded")
            if self.then == "garbage":
                return "I think I will <script>dance</script> now."
        if self.then == "ground":
            self.last_grounding = SimpleNamespace(mapping={"apple": "apple_1"})
        return self.oracle.respond(obs, info)


def test_oracle_solves_evaluation_tasks(eval_tasks, params):
    oracle = make_agent("oracle")
    assert {t.split for t in eval_tasks} == {"eval_seen", "eval_unseen"}
    for task in eval_tasks:
        r = rollout(oracle, task, params, seed=0, name="oracle")
        assert r.success and not r.crashed, (task.id, r.error, [s.error for s in r.steps])
        assert r.steps_to_success == len(r.steps) >= 1 and r.plan_score == 1.0
        assert r.initial_progress < 1.0 and r.steps[-1].task_success and r.steps[-1].progress == 1.0
        assert all(s.parsed and s.executed and s.target_states_met and s.code for s in r.steps)
        assert [s.step for s in r.steps] == list(range(1, len(r.steps) + 1))
        assert (r.agent, r.task_id, r.split, r.category, r.scene) == ("oracle", task.id, task.split, task.category,
                                                                     task.scene)
        assert EpisodeRecord.from_dict(json.loads(json.dumps(r.to_dict()))) == r


def test_random_agent_runs_to_the_step_limit(eval_tasks, params):
    p = with_(params, max_steps=3)
    r = rollout(make_agent("random", seed=0), eval_tasks[0], p, seed=0, name="random")
    assert not r.crashed
    assert r.success or len(r.steps) == 3
    if not r.success:
        assert r.steps_to_success is None
    assert [s.step for s in r.steps] == list(range(1, len(r.steps) + 1))
    assert r.plan_score >= max([r.initial_progress, *(s.progress for s in r.steps)]) - 1e-9


def test_agent_exception_is_recorded_not_raised(kitchen, params):
    r = rollout(Scripted(after=1, then="raise"), kitchen, params, seed=3, name="flaky")
    assert r.crashed and "RuntimeError: the model exploded" in r.error
    assert not r.success and r.steps_to_success is None and r.seed == 3
    assert len(r.steps) == 1 and r.steps[0].target_states_met  # what ran before the crash is kept


def test_simulator_exception_is_recorded(kitchen, params, monkeypatch):
    def boom(self, text):
        raise ValueError("simulator broke")
    monkeypatch.setattr(Episode, "step", boom)  # what the env's embedded backend steps
    r = rollout(make_agent("oracle"), kitchen, params, name="oracle")
    assert r.crashed and "ValueError: simulator broke" in r.error and not r.success and r.steps == []


def test_an_env_that_cannot_start_is_a_crashed_episode(kitchen, params):
    """A task the suite cannot build (here: an object the scene lacks) fails the episode, not the caller."""
    bad = replace(kitchen, id="broken_kitchen", goal=[["inside", "unicorn.n.01_1", "wicker_basket.n.01_1"]])
    r = rollout(make_agent("oracle"), bad, params, name="oracle")
    assert r.crashed and "unicorn.n.01_1" in r.error and not r.success and r.steps == []
    assert r.task_id == "broken_kitchen" and r.steps_to_success is None


def test_garbage_text_gives_failed_steps_with_parse_errors(kitchen, params):
    r = rollout(Scripted(after=0, then="garbage"), kitchen, with_(params, max_steps=2), name="garbage")
    assert not r.crashed and not r.success and len(r.steps) == 2
    for s in r.steps:
        assert not s.parsed and not s.executed and not s.target_states_met and s.code is None
        assert s.error.startswith("Response format error") and "<script>" in s.response


def test_long_responses_are_clipped(kitchen, params):
    class Verbose:
        reads = frozenset({"text"})

        def respond(self, obs, info):
            return "x" * 10_000
    r = rollout(Verbose(), kitchen, with_(params, max_steps=1))
    assert r.agent == "Verbose" and len(r.steps[0].response) < 4100


def test_grounding_is_recorded(kitchen, params):
    r = rollout(Scripted(after=99, then="ground"), kitchen, with_(params, max_steps=1), name="policy")
    assert r.steps[0].grounding == {"apple": "apple_1"}


def test_views_are_saved_only_when_asked(kitchen, params, tmp_path):
    p = with_(params, max_steps=2, size=32)
    r = rollout(make_agent("oracle"), kitchen, p, seed=1, views_dir=tmp_path / "views", name="oracle")
    assert len(r.steps) == 2
    pngs = sorted((tmp_path / "views").rglob("*.png"))
    assert [s.views for s in r.steps] == ["oracle/rollout_kitchen/seed1/step01.png",
                                          "oracle/rollout_kitchen/seed1/step02.png"]
    assert len(pngs) == 2 and all((tmp_path / "views" / s.views).is_file() for s in r.steps)
    assert Image.open(pngs[0]).width <= SHEET_WIDTH
    plain = rollout(make_agent("oracle"), kitchen, p, seed=1, name="oracle")
    assert all(s.views is None for s in plain.steps)


def test_large_views_are_downscaled(kitchen, params, tmp_path):
    r = rollout(make_agent("oracle"), kitchen, with_(params, max_steps=1, size=112), views_dir=tmp_path)
    assert Image.open(tmp_path / r.steps[0].views).width == SHEET_WIDTH


def test_the_sheet_shows_the_views_the_agent_saw(kitchen, params, tmp_path):
    """Each step's sheet is made from obs["views"] the agent answered to: the state before the step."""
    from octopus.evaluation.rollouts import _sheet
    agent = Scripted(after=99, then="", reads=frozenset({"views"}))
    r = rollout(agent, kitchen, with_(params, max_steps=2, size=32), views_dir=tmp_path / "v", name="policy")
    assert r.error is None and len(r.steps) == len(agent.shown) == 2
    first, second = (obs["views"] for obs, _ in agent.shown)
    assert first.shape == (10, 32, 32, 3) and not np.array_equal(first, second)  # the first step moved the robot
    for step, (obs, _) in zip(r.steps, agent.shown):
        _sheet(obs["views"], tmp_path / "expected.png")
        assert np.array_equal(np.asarray(Image.open(tmp_path / "v" / step.views)),
                              np.asarray(Image.open(tmp_path / "expected.png"))), step.step


def test_an_agent_is_shown_what_it_reads_and_nothing_is_rendered_for_text_agents(kitchen, params, monkeypatch):
    from octopus.sim import render

    def no_renderer(*args, **kwargs):
        raise AssertionError("a text-only rollout built a renderer")
    monkeypatch.setattr(render, "SceneRenderer", no_renderer)
    agent = Scripted(after=99, then="")
    r = rollout(agent, kitchen, with_(params, max_steps=1), name="oracle")
    assert r.error is None and len(r.steps) == 1
    obs, info = agent.shown[0]
    assert set(obs) == {"text"} and "Task Goal: put an apple in the basket" in obs["text"]
    assert "Observed Objects" not in obs["text"] and "Observed Objects:" in info["message"]
    state = info["state"]  # privileged: the true state of this very episode
    assert state.task.id == "rollout_kitchen" and state.steps == 0 and state.max_steps == 1
    assert "apple_1" in info["objects"] and all(isinstance(d, float) for d in info["objects"].values())


def test_an_unprivileged_agent_gets_no_true_state(kitchen, params):
    seen = []

    class Blind:
        reads = frozenset({"message"})

        def respond(self, obs, info):
            seen.append(info)
            return "no idea"
    r = rollout(Blind(), kitchen, with_(params, max_steps=1), name="blind")
    assert not r.crashed and len(r.steps) == 1 and "state" not in seen[0] and "Observed Objects:" in seen[0]["message"]


def test_an_agent_reading_an_unknown_part_is_a_crashed_episode(kitchen, params):
    class Greedy:
        reads = frozenset({"views", "thoughts"})

        def respond(self, obs, info):
            raise AssertionError("never asked")
    r = rollout(Greedy(), kitchen, params, name="greedy")
    assert r.crashed and "unknown part(s) ['thoughts']" in r.error and r.steps == []


class Batched(Scripted):
    """Scripted, answering a round of episodes in one call (a policy's batched generate); counts the calls."""

    def __init__(self, after: int, then: str) -> None:
        super().__init__(after, then)
        self.batches: list[int] = []

    def respond_batch(self, observations, infos):
        self.batches.append(len(observations))
        texts = [self.respond(o, i) for o, i in zip(observations, infos)]
        self.last_groundings = [SimpleNamespace(mapping={"apple": "apple_1"})] * len(texts)
        return texts


def strip_wall(r: EpisodeRecord) -> dict:
    return {k: v for k, v in r.to_dict().items() if k != "wall_s"}


def test_batched_rollouts_equal_one_by_one_episodes(eval_tasks, params):
    batched = Batched(after=99, then="")
    recs = rollout_batch(batched, eval_tasks, params, seed=0, name="oracle")
    singles = [rollout(make_agent("oracle"), t, params, seed=0, name="oracle") for t in eval_tasks]
    assert all(r.success for r in recs)
    assert [strip_wall(replace(r, steps=[replace(s, grounding=None) for s in r.steps])) for r in recs] == \
        [strip_wall(r) for r in singles]
    # one call per round, every running episode in it; rounds shrink as episodes finish
    assert batched.batches[0] == len(eval_tasks) and sum(batched.batches) == sum(len(r.steps) for r in recs)
    assert batched.batches == sorted(batched.batches, reverse=True)
    assert recs[0].steps[0].grounding == {"apple": "apple_1"}


def test_a_failing_batched_call_fails_that_rounds_episodes_and_keeps_their_steps(kitchen, params):
    recs = rollout_batch(Batched(after=2, then="raise"), [kitchen, kitchen], params, name="flaky")
    assert all(r.crashed and "the model exploded" in r.error and not r.success for r in recs)
    assert [len(r.steps) for r in recs] == [1, 1]  # round 1 answered both; round 2's call raised


def test_agents_without_respond_batch_answer_one_by_one(kitchen, params):
    recs = rollout_batch(make_agent("oracle"), [kitchen, kitchen], params, name="oracle")
    assert [r.success for r in recs] == [True, True]


def test_live_caps_the_episodes_at_a_time_and_changes_no_episode(eval_tasks, params):
    capped = Batched(after=99, then="")
    recs = rollout_batch(capped, eval_tasks, params, seed=0, name="oracle", live=1)
    free = rollout_batch(Batched(after=99, then=""), eval_tasks, params, seed=0, name="oracle")
    assert [strip_wall(r) for r in recs] == [strip_wall(r) for r in free]
    assert set(capped.batches) == {1}
