"""Property-based fuzzing (hypothesis) of the paper-format response parser and the code checker.

Properties: `parse_response` raises nothing but `ResponseFormatError` (arbitrary text, unicode, mutations
of real oracle-teacher responses, huge inputs); every response it accepts renders to text it parses back
to the same response; every valid generated response round-trips; time stays bounded (linear) on huge
inputs. `check_code` returns None or one line, never raises. Derandomized and bounded: a few seconds.
"""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from octopus.protocol import (BINARY_RELATIONS, UNARY_STATES, Response, ResponseFormatError, TargetState,
                              check_code, parse_response)

FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

PAPER_EXAMPLE = """Explain:
The bacon is inside the fridge, so the first step is to approach the fridge and open it.
Subtasks:
(1) Approach the fridge.
(2) Open the fridge.
Code:
def act(robot, env, camera):
    # Subtask 1: Approach the fridge
    fridge_1 = registry(env, "fridge_1")
    MoveBot(env, robot, fridge_1, camera)
    donothing(env)
Target States:
(1) Inventory: None
(2) Object Information:
(a) robot, nextto, fridge_1, 1
"""


@pytest.fixture(scope="module")
def teacher_responses() -> list[str]:
    """What the oracle teacher writes for a real kitchen episode (good steps and its deliberate mistakes)."""
    from octopus.agents import make_teacher
    from octopus.config import CollectParams, SimParams
    from tests.helpers import COOK_BACON, kitchen_env
    sim = SimParams(sandbox_timeout_s=1.0)
    env, obs, info = kitchen_env(COOK_BACON, sim=sim)
    teacher = make_teacher("oracle", CollectParams(), sim, seed=0)
    texts, done = [], False
    while not done:
        proposals = teacher.propose(obs, info, n=3)
        texts += [p.text for p in proposals]
        obs, _, terminated, truncated, info = env.step(next(p for p in proposals if p.explore is None).text)
        done = terminated or truncated
    env.close()
    assert len(texts) >= 6 and all(parse_response(t) for t in texts[::3])
    return texts + [PAPER_EXAMPLE]


def parse_or_error(text: str) -> Response | None:
    """The one allowed outcome besides a Response: ResponseFormatError with a message."""
    try:
        response = parse_response(text)
    except ResponseFormatError as err:
        assert str(err).strip()
        return None
    assert isinstance(response, Response)
    assert parse_response(response.render()) == response  # anything accepted renders canonically
    return response


# ---------------------------------------------------------------------- arbitrary text
@settings(FUZZ, max_examples=150)
@given(st.text(max_size=3000))
@example("\ud800Explain:\x00")  # a lone surrogate and a NUL
@example("Explain:\nSubtasks:\nCode:\nTarget States:\n")
@example("```")
def test_arbitrary_text_only_raises_the_format_error(text):
    parse_or_error(text)


KEYWORDS = st.sampled_from(["Explain:", "Subtasks:", "Code:", "Target States:", "```", "```python\n", "(1) ",
                            "(a) ", "def act(robot, env, camera):\n    ", "donothing(env)\n", "Inventory: ",
                            "Object Information:", ", ", ", 1", ", inside, ", "\n", "\n\n", "    ", "\t", "#", "**",
                            "//", "é", "\u2028", "\u00a0", "𝒳", "\x00", ":", "(", ")"])


@settings(FUZZ, max_examples=200)
@given(st.lists(KEYWORDS | st.text(max_size=20), max_size=60).map("".join))
def test_keyword_soup_only_raises_the_format_error(text):
    parse_or_error(text)


# ---------------------------------------------------------------------- near-valid: mutations of real responses
def _mutate(text: str, data) -> str:
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        n = len(text)
        i = data.draw(st.integers(0, n), label="at")
        j = data.draw(st.integers(i, min(n, i + 80)), label="to")
        op = data.draw(st.sampled_from(["delete", "insert", "replace", "duplicate_line", "swap_lines",
                                        "truncate", "case", "blow_up"]), label="op")
        if op == "delete":
            text = text[:i] + text[j:]
        elif op in ("insert", "replace"):
            piece = data.draw(KEYWORDS | st.text(max_size=12), label="piece")
            text = text[:i] + piece + text[j if op == "replace" else i:]
        elif op in ("duplicate_line", "swap_lines") and text:
            lines = text.split("\n")
            a = data.draw(st.integers(0, len(lines) - 1), label="line")
            b = data.draw(st.integers(0, len(lines) - 1), label="other")
            if op == "duplicate_line":
                lines.insert(a, lines[a])
            else:
                lines[a], lines[b] = lines[b], lines[a]
            text = "\n".join(lines)
        elif op == "truncate":
            text = text[:i]
        elif op == "case":
            text = text[:i] + text[i:j].swapcase() + text[j:]
        else:  # a degenerate generation: one character repeated thousands of times
            text = text[:i] + data.draw(st.sampled_from(" \t(,#*`\nx"), label="char") * 20_000 + text[i:]
    return text


@settings(FUZZ, max_examples=400)
@given(st.data())
def test_mutated_teacher_responses_parse_or_fail_cleanly_fast(teacher_responses, data):
    original = data.draw(st.sampled_from(teacher_responses), label="original")
    text = _mutate(original, data)
    t0 = time.process_time()
    parse_or_error(text)
    assert time.process_time() - t0 < 2.0, f"{len(text)} characters took {time.process_time() - t0:.1f} s"


def test_the_teacher_responses_themselves_parse(teacher_responses):
    for text in teacher_responses:
        assert parse_or_error(text) is not None


# ---------------------------------------------------------------------- valid responses round-trip
_TEXT_CHARS = st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters=":#*_`\x85")
# object names: \w, '.', '-', never ending in '.' or '-' (read as punctuation), never a word meaning "empty"
NAMES = st.from_regex(r"[^\W_]|[^\W_][\w.\-]{0,14}[^\W_]", fullmatch=True).filter(
    lambda n: n.lower() not in ("none", "empty", "nothing")).map(
    lambda n: "robot" if n.lower() == "robot" else n)  # the parser spells the robot in lower case
STATES = st.builds(lambda s, r, v: TargetState(s, r, None, v), NAMES, st.sampled_from(sorted(UNARY_STATES)),
                   st.booleans()) | st.builds(TargetState, NAMES, st.sampled_from(sorted(BINARY_RELATIONS)), NAMES,
                                              st.booleans())
IDENT = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
COMMENT = st.text(_TEXT_CHARS.filter(lambda c: c not in "\\\"'"), max_size=30)
STATEMENT = st.one_of(
    st.builds(lambda v, n: f'{v} = registry(env, "{n}")', IDENT, NAMES),
    st.builds(lambda c: f"# {c}", COMMENT),
    st.builds(lambda c: f'print("{c}")', COMMENT),
    st.just("donothing(env)"),
    st.builds(lambda v: f"for {v} in range(3):\n        donothing(env)", IDENT))
CODE = st.lists(STATEMENT, max_size=8).map(
    lambda body: "def act(robot, env, camera):\n" + "".join(f"    {s}\n" for s in body) + "    donothing(env)")
RESPONSES = st.builds(
    Response,
    explain=st.text(_TEXT_CHARS | st.just("\n"), max_size=200),
    subtasks=st.lists(st.text(_TEXT_CHARS, min_size=1, max_size=60).filter(str.strip), min_size=1, max_size=5)
    .map(tuple),
    code=CODE,
    inventory=st.none() | st.lists(NAMES, max_size=3).map(tuple),
    target_states=st.lists(STATES, max_size=6).map(tuple),
).filter(lambda r: r.inventory is not None or r.target_states)


@settings(FUZZ, max_examples=200)
@given(RESPONSES)
def test_valid_responses_round_trip(response):
    assert parse_response(response.render()) == response
    assert check_code(response.code, allowed_names=()) is None  # the checker accepts what the generator writes


# ---------------------------------------------------------------------- the code checker
@settings(FUZZ, max_examples=200)
@given(st.text(max_size=2000) | CODE | st.lists(KEYWORDS | STATEMENT, max_size=30).map("\n".join))
def test_the_code_checker_returns_a_line_never_raises(code):
    for allowed in (None, ()):
        problem = check_code(code, allowed_names=allowed)
        assert problem is None or (isinstance(problem, str) and problem.strip())


# ---------------------------------------------------------------------- huge inputs: bounded time
GOOD = parse_response(PAPER_EXAMPLE).render()
HUGE = {
    "1M characters of text": "lorem ipsum " * 90_000,
    "200k spaces in a Target States line": GOOD.replace("(a) robot", " " * 200_000 + "(a) robot"),
    "200k spaces inside a state": GOOD.replace("robot, nextto", "robot," + " " * 200_000 + "x, nextto"),
    "200k spaces after a header": GOOD.replace("Explain:", "#" + " " * 200_000 + "Explain x"),
    "200k spaces in the code": GOOD.replace("    donothing(env)", "    donothing(env)" + " " * 200_000 + "x"),
    "200k spaces after a fence": GOOD.replace("```python", "```" + " " * 200_000 + "pythonx"),
    "20k target states": GOOD + "(b) fridge_1, openable, 1\n" * 20_000,
    "20k subtasks": GOOD.replace("(1) ", "(1) x\n" * 20_000 + "(1) ", 1),
    "deep nesting in the code": GOOD.replace("donothing(env)", "x = " + "(" * 100_000 + ")" * 100_000),
    "a 1M-character code block": GOOD.replace("donothing(env)", "donothing(env)\n    x = 1" * 100_000),
}


@pytest.mark.parametrize("name", HUGE)
def test_huge_inputs_take_bounded_time(name):
    t0 = time.process_time()
    parse_or_error(HUGE[name])
    check_code(HUGE[name], max_code_chars=10**7)
    took = time.process_time() - t0
    assert took < 5.0, f"{name}: {took:.1f} s (before the fix, 16k leading spaces in a state line took 11 s)"
