"""Tests for octopus.protocol: rendering/parsing of responses and environment messages."""
from __future__ import annotations

import random
import re

import pytest

from octopus.protocol import (
    API_FUNCTIONS, BINARY_RELATIONS, UNARY_STATES, EnvMessage, EnvMessageFormatError, ObservedObject,
    Response, ResponseFormatError, TargetState, parse_env_message, parse_response, system_message,
)

CODE = '''def act(robot, env, camera):
    # Subtask 1: Approach the fridge
    fridge_1 = registry(env, "fridge_1")
    MoveBot(env, robot, fridge_1, camera)
    donothing(env)'''

GOOD = f"""Explain:
The bacon is in the fridge, so go there first.

Subtasks:
(1) Approach the fridge.
(2) Open the fridge.

Code:
```python
{CODE}
```

Target States:
(1) Inventory: None
(2) Object Information:
(a) robot, nextto, fridge_1, 1
(b) fridge_1, openable, 0
"""

EXPECTED = Response(
    explain="The bacon is in the fridge, so go there first.",
    subtasks=("Approach the fridge.", "Open the fridge."),
    code=CODE,
    inventory=(),
    target_states=(TargetState("robot", "nextto", "fridge_1", True),
                   TargetState("fridge_1", "openable", None, False)),
)

# The GPT-4 response example of the paper's appendix A.3 (names adapted, indentation restored):
# no code fence, inline subtasks typo and all.
PAPER_EXAMPLE = """Explain:
Since our task goal is to cook bacon and the bacon is inside the fridge on a tray, the first step should be
to approach the fridge, open it, and take out the bacon. Once the bacon is retrieved, we can proceed to cook
it on a suitable appliance like the griddle or stove.
Subtasks:
(1) Approach the fridge.
(2) Open the fridge.
(3) Retrieve the tray containing the bacon from the fridge.
(4) Approach the or stove.
(5) Place the bacon on the stove.
(6) Toggle on the stove to cook the bacon.
Code:
def act(robot, env, camera):
    # Subtask 1: Approach the fridge
    fridge_xyejdx_0 = registry(env, "fridge_xyejdx_0")
    MoveBot(env, robot, fridge_xyejdx_0, camera)
    donothing(env)
Target States:
(1) Inventory: None
(2) Object Information:
(a) robot, nextto, fridge_xyejdx_0, 1
"""


def test_good_response_parses():
    assert parse_response(GOOD) == EXPECTED


def test_response_round_trip():
    assert parse_response(EXPECTED.render()) == EXPECTED
    assert EXPECTED.render() == GOOD


@pytest.mark.parametrize("resp", [
    Response("", ("Grab it",), CODE, ("bacon_1", "tray_1"), ()),
    Response("multi\nline\n explain", ("a", "b", "c"), "import math\n\n" + CODE, None,
             tuple(TargetState(f"obj_{i}", "inside", "box_1", i % 2 == 0) for i in range(30))),
    Response("x", ("y",), "\n\n    " + CODE.replace("\n", "\n    ") + "\n\n", ("a",),
             tuple(TargetState("o", s, None, True) for s in UNARY_STATES)
             + tuple(TargetState("o", r, "p", False) for r in BINARY_RELATIONS)),
])
def test_response_round_trip_variants(resp: Response):
    assert parse_response(resp.render()) == resp


def test_target_state_str():
    assert str(TargetState("fridge_1", "openable", None, True)) == "fridge_1, openable, 1"
    assert str(TargetState("bacon_1", "inside", "fridge_1", True)) == "bacon_1, inside, fridge_1, 1"
    with pytest.raises(ValueError):
        TargetState("a", "inside", None, True)
    with pytest.raises(ValueError):
        TargetState("a", "openable", "b", True)


def test_paper_example_parses():
    r = parse_response(PAPER_EXAMPLE)
    assert r.explain.startswith("Since our task goal is to cook bacon")
    assert len(r.subtasks) == 6 and r.subtasks[3] == "Approach the or stove."
    assert r.code.startswith("def act(robot, env, camera):") and "donothing(env)" in r.code
    assert r.inventory == ()
    assert r.target_states == (TargetState("robot", "nextto", "fridge_xyejdx_0", True),)


VARIANTS = [
    # markdown bold / headings, "Subtask:", numbering styles, lettering styles, brackets, quotes, True/False
    GOOD.replace("Explain:", "**Explain:**").replace("Subtasks:", "## Subtasks").replace("Code:", "**Code**:")
        .replace("Target States:", "### Target states:"),
    GOOD.replace("Subtasks:", "Subtask:").replace("(1) Approach", "1. Approach").replace("(2) Open", "2) Open"),
    GOOD.replace("(a) robot, nextto, fridge_1, 1", "a. [robot, nextto, fridge_1, 1]")
        .replace("(b) fridge_1, openable, 0", "- ('fridge_1', 'openable', False)"),
    GOOD.replace("(a) robot, nextto, fridge_1, 1", "(a)   robot ,nextto,  'fridge_1' , True")
        .replace("(1) Inventory: None", "(1) Inventory: none"),
    GOOD.replace("(1) Inventory: None", "(1) Inventory:").replace("openable", "OPENABLE"),
    GOOD.replace("(1) Inventory: None", "(1) Inventory (describe what you could have): empty"),
    GOOD.replace("```python", "```").replace("\n", "\r\n"),
    GOOD.replace("\n\n", "\n").replace("Explain:\n", "Explain: ") + "\n\n\n",
    "Sure, here is my answer.\n\n" + GOOD.replace("```python\n", "").replace("```\n", ""),
    GOOD.replace("```python\n" + CODE, "```python\n" + "\n".join("  " + l for l in CODE.splitlines())),
]


@pytest.mark.parametrize("text", VARIANTS)
def test_variants_parse_identically(text: str):
    assert parse_response(text) == EXPECTED


def test_toggleable_alias_and_inventory_items():
    text = GOOD.replace("fridge_1, openable, 0", "stove_1, toggleable, 1") \
               .replace("Inventory: None", "Inventory: [bacon_1, 'tray_1']")
    r = parse_response(text)
    assert r.target_states[1] == TargetState("stove_1", "togglable", None, True)
    assert r.inventory == ("bacon_1", "tray_1")


def test_zero_states_with_inventory_line_allowed():
    text = GOOD.split("(2) Object Information:")[0]
    r = parse_response(text)
    assert r.target_states == () and r.inventory == ()


BAD = [
    (GOOD.replace("Explain:", "Explanation -"), r"missing Explain: section"),
    (GOOD.replace("Subtasks:", "Plan:"), r"missing Subtasks: section"),
    (GOOD.split("Code:")[0], r"missing Code: section"),
    (GOOD.split("Target States:")[0], r"missing Target States: section"),
    (GOOD.replace("(1) Approach the fridge.\n(2) Open the fridge.\n", ""), r"Subtasks: no subtasks"),
    (GOOD.replace("(2) Open the fridge.", "Open the fridge."), r"Subtasks: line 'Open the fridge\.' is not a numbered subtask"),
    (GOOD.replace("def act(robot, env, camera):", "def act(robot, env):"),
     r"act must .*exactly \(robot, env, camera\), got \(robot, env\)"),
    (GOOD.replace("def act(", "def run("), r"no top-level function `def act"),
    (GOOD.replace("    donothing(env)", "    donothing(env"), r"Python syntax error at line \d+"),
    (GOOD.replace(f"```python\n{CODE}\n```", "I will approach the fridge."),
     r"Code: no fenced ```python block defining act\(robot, env, camera\) found"),
    (GOOD.replace(f"{CODE}\n```", CODE), r"fence opened at line \d+ is never closed"),
    (GOOD.replace("fridge_1, openable, 0", "fridge_1, smelly, 0"), r"unknown state/relation 'smelly'.*openable"),
    (GOOD.replace("fridge_1, openable, 0", "fridge_1, inside, 0"), r"relation 'inside' .* needs two objects"),
    (GOOD.replace("fridge_1, openable, 0", "fridge_1, openable, table_1, 0"), r"state 'openable' .* takes one"),
    (GOOD.replace("fridge_1, openable, 0", "fridge_1, openable, 2"), r"value '2' .* must be 0 or 1"),
    (GOOD.replace("fridge_1, openable, 0", "fridge_1, 0"), r"should have 3 items .* got 2"),
    (GOOD.replace("(b) fridge_1, openable, 0", "the fridge stays closed"), r"cannot read line 'the fridge"),
    (GOOD.replace("(1) Inventory: None\n(2) Object Information:\n(a) robot, nextto, fridge_1, 1\n"
                  "(b) fridge_1, openable, 0\n", ""), r"no '\(1\) Inventory: \.\.\.' line and no object states"),
    (GOOD.replace("(1) Inventory: None", "(1) Inventory: the bacon"), r"inventory item 'the bacon'"),
    (GOOD + "\nExplain: again\n", r"Explain: section appears twice"),
    (GOOD.replace("Explain:", "Subtasks:", 1).replace("\nSubtasks:\n", "\nExplain:\n"), r"out of order"),
]


@pytest.mark.parametrize("text,pattern", BAD)
def test_malformed_responses_raise(text: str, pattern: str):
    with pytest.raises(ResponseFormatError) as info:
        parse_response(text)
    assert re.search(pattern, str(info.value)), str(info.value)


def _mutate(rng: random.Random, text: str) -> str:
    op = rng.randrange(6)
    if op == 0:
        return text[: rng.randrange(len(text) + 1)]
    if op == 1:
        i, j = sorted(rng.randrange(len(text) + 1) for _ in range(2))
        return text[:i] + text[j:]
    if op == 2:
        lines = text.splitlines()
        rng.shuffle(lines)
        return "\n".join(lines)
    if op == 3:
        chars = list(text)
        for _ in range(rng.randrange(1, 20)):
            chars[rng.randrange(len(chars))] = rng.choice("()[],:`'\"\n\t #*-_ab01\x00\u2022\u00e9{}")
        return "".join(chars)
    if op == 4:
        return "".join(rng.choice("Explain Subtasks Code Target States:()\n```python def act(robot,env,camera)")
                       for _ in range(rng.randrange(300)))
    return text.replace(rng.choice(["(", ")", ",", ":", "\n", "```", "act", "1"]), rng.choice(["", "((", "\n\n", "x"]))


def test_fuzz_parser_only_raises_format_error():
    rng = random.Random(20231012)
    seeds = [GOOD, PAPER_EXAMPLE] + VARIANTS + [t for t, _ in BAD]
    ok = 0
    for _ in range(4000):
        text = _mutate(rng, rng.choice(seeds))
        if rng.random() < 0.3:
            text = _mutate(rng, text)
        try:
            r = parse_response(text)
        except ResponseFormatError as e:
            assert str(e)
        else:
            ok += 1
            assert parse_response(r.render()) == r  # anything accepted renders canonically
    assert ok > 20  # the fuzz also exercises the accepting paths


def test_parser_survives_deep_nesting():
    text = GOOD.replace(CODE, "def act(robot, env, camera):\n    x = " + "(" * 5000 + ")" * 5000)
    with pytest.raises(ResponseFormatError):
        parse_response(text)


# ------------------------------------------------------------------ environment message
ENV = EnvMessage(
    observed_objects=(
        ObservedObject("bacon_1", (("heatable", 0), ("freezable", 0), ("burnable", 0), ("cookable", 0)), 1.89),
        ObservedObject("fridge_1", (("openable", 0),), 2.12),
        ObservedObject("wall_1", (), 3.5),
    ),
    observed_relations=(("bacon_1", "inside", "tray_1"), ("tray_1", "inside", "fridge_1")),
    inventory=(),
    task_goal="cook_bacon",
    original_subtasks=None,
    previous_code=None,
    execution_error=None,
)


def test_env_message_render_format():
    text = ENV.render()
    lines = text.splitlines()
    assert lines[0] == ("Observed Objects: (bacon_1, (['heatable', 0], ['freezable', 0], ['burnable', 0], "
                        "['cookable', 0]), 1.89)(fridge_1, (['openable', 0],), 2.12)(wall_1, (), 3.50)")
    assert lines[1] == "Observed Relations: [('bacon_1', 'inside', 'tray_1'), ('tray_1', 'inside', 'fridge_1')]"
    assert lines[2:7] == ["Inventory: None", "Task Goal: cook_bacon", "Original Subtasks: None",
                          "Previous Action Code: No code", "Execution Error: No error"]
    assert lines[7].startswith("Now, please output Explain, Subtasks (revise if necessary), Code")


@pytest.mark.parametrize("msg", [
    ENV,
    EnvMessage(None, None, ("bacon_1", "tray_1"), "Cook the bacon.\nThen serve it.", ("Approach the fridge.",
               "Open the fridge."), CODE, "Traceback (most recent call last):\n  ...\nValueError: too far"),
    EnvMessage((), (), ("x",), "goal", (), "x = 1\n", "  "),
])
def test_env_message_round_trip(msg: EnvMessage):
    assert parse_env_message(msg.render()) == msg


def test_env_message_vision_omits_observations():
    msg = EnvMessage(None, None, (), "cook_bacon", ("a", "b"), CODE, "boom")
    text = msg.render()
    assert "Observed" not in text
    assert "Original Subtasks:\n(1) a\n(2) b\n" in text
    assert f"Previous Action Code:\n{CODE}\nExecution Error:\nboom\n" in text


PAPER_ENV = """Observed Objects: (bacon_150, (['heatable', 0], ['freezable', 0], ['burnable', 0], ['cookable', 0]), \
1.89)(fridge_xyejdx_0, (['openable', 0], ['heatable', 0], ['freezable', 0]), 2.12)(stove_rgpphy_0, \
(['togglable', 0], ['heatable', 0], ['freezable', 0]), 1.59)
Observed Relations: [('bacon_150', 'inside', 'tray_156'), ('tray_156', 'inside', 'fridge_xyejdx_0')]
Inventory: None
Task Goal: cook_bacon
Original Subtasks: None
Previous Action Code: No code
Execution error: No error
Now, please output Explain, Subtasks (revise if necessary), Code that completing the next subtask, and Target \
States, according to the instruction above.
"""


def test_paper_env_message_parses():
    msg = parse_env_message(PAPER_ENV)
    assert [o.name for o in msg.observed_objects] == ["bacon_150", "fridge_xyejdx_0", "stove_rgpphy_0"]
    assert msg.observed_objects[1] == ObservedObject(
        "fridge_xyejdx_0", (("openable", 0), ("heatable", 0), ("freezable", 0)), 2.12)
    assert msg.observed_relations[1] == ("tray_156", "inside", "fridge_xyejdx_0")
    assert (msg.inventory, msg.task_goal, msg.original_subtasks, msg.previous_code, msg.execution_error) == \
        ((), "cook_bacon", None, None, None)


def test_fuzz_env_parser_only_raises_format_error():
    rng = random.Random(7)
    seeds = [PAPER_ENV, ENV.render(), EnvMessage(None, None, ("a",), "g", ("s",), CODE, "err").render()]
    for _ in range(2000):
        text = _mutate(rng, rng.choice(seeds))
        try:
            msg = parse_env_message(text)
        except EnvMessageFormatError as e:
            assert str(e)
        else:
            assert isinstance(msg, EnvMessage)


def test_env_message_parse_errors():
    with pytest.raises(EnvMessageFormatError, match="lacks"):
        parse_env_message("Inventory: None\nTask Goal: x\n")
    with pytest.raises(EnvMessageFormatError, match="Observed Relations"):
        parse_env_message(ENV.render().replace("[('bacon_1'", "[('bacon_1'))"))
    with pytest.raises(EnvMessageFormatError, match="Observed Objects"):
        parse_env_message(ENV.render().replace("(fridge_1,", "fridge_1,"))


# ------------------------------------------------------------------ system message and vocabulary
def test_vocabulary():
    assert len(UNARY_STATES) == 8 and len(BINARY_RELATIONS) == 12 and len(API_FUNCTIONS) == 16
    assert [f.name for f in API_FUNCTIONS][:4] == ["registry", "donothing", "MoveBot", "EasyGrasp"]
    assert API_FUNCTIONS[2].signature == "MoveBot(env, robot, obj, camera)"


def test_system_message():
    text = system_message(1.5)
    for f in API_FUNCTIONS:
        assert f.signature + ":" in text
    assert "within 1.5 metres" in text
    for name in list(UNARY_STATES) + list(BINARY_RELATIONS):
        assert f"'{name}'" in text
    assert "def act(robot, env, camera):" in text and "(1) Inventory:" in text
    assert not re.search(r"\{(reach_m|api|response_format|unary_states|binary_relations)\}", text)
    assert "within 2 metres" in system_message(2.0)
