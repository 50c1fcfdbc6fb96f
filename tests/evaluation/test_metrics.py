"""Table 3 metrics on hand-built records: exact values, bootstrap CIs over tasks, empty groups, crashes."""

import time

import pytest

from octopus.evaluation.metrics import (GROUPS, METRICS, failure_counts, paired_difference, per_task, step_cause,
                                       summarize)
from octopus.evaluation.rollouts import EpisodeRecord, StepRecord


def step(n: int, parsed: bool = True, executed: bool = True, met: bool = True, progress: float = 0.5) -> StepRecord:
    return StepRecord(n, "response", "code" if parsed else None, parsed, executed and parsed,
                      None if met else "error", met, progress, False)


def record(task_id: str, success: bool, steps: list[tuple[bool, bool, bool]], split: str = "eval_seen",
           category: str = "follow", seed: int = 0, plan_score: float = 0.5, error: str | None = None,
           agent: str = "a") -> EpisodeRecord:
    recs = [step(i + 1, *s) for i, s in enumerate(steps)]
    return EpisodeRecord(agent, task_id, split, category, "scene", seed, "do it", recs, success,
                         len(recs) if success else None, plan_score, 0.0, 1.0, error)


OK, BAD_CODE, UNMET, NO_PARSE = (True, True, True), (True, False, False), (True, True, False), (False, False, False)


@pytest.fixture
def records() -> list[EpisodeRecord]:
    return [
        record("t1", True, [OK, OK], plan_score=1.0),                                       # seen follow
        record("t1", False, [BAD_CODE, UNMET, NO_PARSE], seed=1, plan_score=0.5),
        record("t2", False, [NO_PARSE], plan_score=0.0),                                    # seen follow
        record("t3", True, [UNMET, OK, OK, OK], split="eval_unseen", category="reason", plan_score=1.0),
    ]


def test_exact_values(records):
    s = summarize(records, n_boot=200)
    assert set(s) == set(GROUPS)
    a = s["all"]
    assert (a["tasks"], a["episodes"], a["crashed"], a["steps"]) == (3, 4, 0, 10)
    assert a["task_completion"]["mean"] == pytest.approx((0.5 + 0 + 1) / 3)    # tasks weigh equally
    assert a["code_executability"]["mean"] == pytest.approx(7 / 10)           # parsed and ran, over all steps
    assert a["step_success"]["mean"] == pytest.approx(5 / 10)
    assert a["mean_steps_to_success"]["mean"] == pytest.approx((2 + 4) / 2)
    assert a["plan_score"]["mean"] == pytest.approx((0.75 + 0 + 1) / 3)
    seen, unseen = s["seen"], s["unseen"]
    assert seen["tasks"] == 2 and seen["task_completion"]["mean"] == pytest.approx(0.25)
    assert seen["code_executability"]["mean"] == pytest.approx(3 / 6)
    assert unseen["tasks"] == 1 and unseen["task_completion"] == {"mean": 1.0, "lo": 1.0, "hi": 1.0}
    assert s["reason"]["step_success"]["mean"] == pytest.approx(3 / 4)
    assert s["follow"]["mean_steps_to_success"]["mean"] == pytest.approx(2.0)


def test_ci_contains_the_mean_and_lies_in_range(records):
    for group in summarize(records, n_boot=500).values():
        for m in METRICS:
            v = group[m]
            if v is not None:
                assert v["lo"] <= v["mean"] <= v["hi"], (m, v)
                if m != "mean_steps_to_success":
                    assert 0.0 <= v["lo"] and v["hi"] <= 1.0


def test_ci_narrows_with_more_tasks():
    def width(n: int) -> float:
        recs = [record(f"t{i}", i % 2 == 0, [OK]) for i in range(n)]
        tc = summarize(recs, n_boot=1000)["all"]["task_completion"]
        assert tc["mean"] == pytest.approx(0.5)
        return tc["hi"] - tc["lo"]
    assert width(100) < width(10) < width(4)


def test_empty_groups_give_none():
    s = summarize([record("t1", True, [OK])])
    for group in ("unseen", "reason"):
        assert s[group]["tasks"] == 0 and s[group]["episodes"] == 0
        assert all(s[group][m] is None for m in METRICS)
    assert summarize([])["all"]["tasks"] == 0


def test_no_success_gives_no_mean_steps():
    s = summarize([record("t1", False, [UNMET])])
    assert s["all"]["mean_steps_to_success"] is None and s["all"]["task_completion"]["mean"] == 0.0


def test_crashed_episodes_are_failures():
    recs = [record("t1", True, [OK]), record("t2", False, [OK], error="RuntimeError: boom"),
            record("t3", False, [], error="KeyError: 'x'")]
    a = summarize(recs)["all"]
    assert a["crashed"] == 2 and a["episodes"] == 3 and a["tasks"] == 3
    assert a["task_completion"]["mean"] == pytest.approx(1 / 3)
    assert a["code_executability"]["mean"] == 1.0  # the steps they did take still count


def test_deterministic_for_a_seed_and_accepts_dicts(records):
    dicts = [r.to_dict() for r in records]
    assert summarize(records, seed=3) == summarize(dicts, seed=3)
    assert summarize(records, seed=3) == summarize(records, seed=3)


def test_fast_on_the_evaluation_suite_shape():
    recs = [record(f"t{i}", i % 3 == 0, [OK, UNMET], split="eval_seen" if i < 45 else "eval_unseen",
                   category="follow" if i % 4 else "reason", seed=k) for i in range(60) for k in range(3)]
    t0 = time.perf_counter()
    s = summarize(recs, n_boot=1000)
    assert time.perf_counter() - t0 < 5.0
    assert s["seen"]["tasks"] == 45 and s["unseen"]["tasks"] == 15 and s["all"]["episodes"] == 180


def test_bad_arguments_and_mixed_agents(records):
    with pytest.raises(ValueError, match="n_boot"):
        summarize(records, n_boot=0)
    with pytest.raises(ValueError, match="ci"):
        summarize(records, ci=1.5)
    with pytest.raises(ValueError, match="several agents"):
        summarize([*records, record("t9", True, [OK], agent="b")])


def test_per_task_rows(records):
    rows = per_task(records)
    assert [r["task_id"] for r in rows] == ["t1", "t2", "t3"]
    t1 = rows[0]
    assert t1["episodes"] == 2 and t1["success_rate"] == 0.5 and t1["plan_score"] == 0.75
    assert rows[2]["split"] == "eval_unseen" and rows[2]["category"] == "reason"


@pytest.mark.parametrize("error, cause", [
    ("Response format error: no Code section", "format"),
    ("there is no object called 'apple_9' in the scene; did you mean apple_1?", "name"),
    ("apple_1 is 3.10 m away, out of reach (1.5 m): move to the furniture it is on or near with MoveBot first",
     "reach"),
    ("cannot MoveBot to apple_1: the robot can only move to large objects standing on the floor", "reach"),
    ("fridge_1 is closed: open it before putting apple_1 inside", "precondition"),
    ("apple_1 is not in the robot's hands: grasp it with EasyGrasp first", "precondition"),
    ("Target states not reached: inside(apple_1, fridge_1)", "targets"),
    ("NameError: name 'foo' is not defined", "code"),
])
def test_step_failures_are_classified_by_the_simulators_message(error, cause):
    s = StepRecord(1, "r", "code", True, cause != "format", error, False, 0.0, False)
    assert step_cause(s) == cause


def test_failure_counts_by_step_and_by_the_last_step_of_failed_episodes():
    def st(error):
        return StepRecord(1, "r", "c", True, True, error, error is None, 0.0, False)
    recs = [
        EpisodeRecord("a", "t1", "train", "follow", "s", 0, steps=[st("there is no object called 'x'"), st(None)],
                      success=True),
        EpisodeRecord("a", "t2", "train", "follow", "s", 0, steps=[st(None), st("is 3 m away, out of reach")]),
        EpisodeRecord("a", "t3", "train", "follow", "s", 0, steps=[st(None), st(None)]),
        EpisodeRecord("a", "t4", "train", "follow", "s", 0, error="RuntimeError: boom"),
        EpisodeRecord("a", "t5", "train", "follow", "s", 0),
    ]
    assert failure_counts(recs) == {"steps": {"name": 1, "reach": 1},
                                    "episodes": {"crashed": 1, "no_steps": 1, "planning": 1, "reach": 1}}


def test_paired_difference_exact_on_the_common_tasks_only(records):
    better = [record("t1", True, [OK, OK], plan_score=1.0, agent="b"),
              record("t2", True, [OK], plan_score=1.0, agent="b"),               # was a failure: +1
              record("t3", True, [OK, OK], split="eval_unseen", category="reason", plan_score=1.0, agent="b"),
              record("t9", True, [OK], agent="b")]                               # not in the baseline: left out
    d = paired_difference(records, better, n_boot=500)
    assert set(d) == set(GROUPS) and d["all"]["tasks"] == 3
    # completion per task: base t1 0.5 (2 seeds), t2 0, t3 1 -> b 1, 1, 1: mean difference (0.5 + 1 + 0) / 3
    assert d["all"]["task_completion"]["mean"] == pytest.approx(0.5)
    assert d["all"]["plan_score"]["mean"] == pytest.approx(((1 - 0.75) + (1 - 0.0) + 0) / 3)
    # executable steps pooled: base 7 of 10 steps parsed and ran, b 5 of 5
    assert d["all"]["code_executability"]["mean"] == pytest.approx(1 - 7 / 10)
    assert d["all"]["step_success"]["mean"] == pytest.approx(1 - 5 / 10)
    for m in ("task_completion", "plan_score", "code_executability", "step_success"):
        v = d["all"][m]
        assert v["lo"] <= v["mean"] <= v["hi"]
    assert d["unseen"]["task_completion"] == {"mean": 0.0, "lo": 0.0, "hi": 0.0}
    assert "mean_steps_to_success" not in d["all"]


def test_pairing_removes_the_task_to_task_spread():
    """Both rows succeed on the same easy tasks; the second also on 5 more: its per-row CIs overlap the
    first's, the paired interval of the difference excludes zero."""
    tasks = [f"t{i:02d}" for i in range(40)]
    a = [record(t, i < 10, [OK], agent="a") for i, t in enumerate(tasks)]
    b = [record(t, i < 15, [OK], agent="b") for i, t in enumerate(tasks)]
    sa, sb = summarize(a, n_boot=1000)["all"]["task_completion"], summarize(b, n_boot=1000)["all"]["task_completion"]
    assert sb["lo"] < sa["hi"]                       # the rows' own intervals overlap
    d = paired_difference(a, b, n_boot=1000)["all"]["task_completion"]
    assert d["mean"] == pytest.approx(5 / 40) and d["lo"] > 0
    assert paired_difference(a, a, n_boot=100)["all"]["task_completion"] == {"mean": 0.0, "lo": 0.0, "hi": 0.0}


def test_paired_difference_with_no_common_tasks_and_bad_arguments(records):
    d = paired_difference(records, [record("other", True, [OK], agent="b")], n_boot=10)
    assert d["all"] == {"tasks": 0, "task_completion": None, "code_executability": None, "step_success": None,
                        "plan_score": None}
    with pytest.raises(ValueError, match="n_boot"):
        paired_difference(records, records, n_boot=0)
    with pytest.raises(ValueError, match="ci"):
        paired_difference(records, records, ci=1.0)
