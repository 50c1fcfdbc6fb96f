"""The response format (paper appendix A.3): Explain, Subtasks, Code, Target States.

    response = parse_response(text)     # ResponseFormatError (and nothing else) on bad input
    response.code, response.target_states, response.render()

The parser is strict about structure and forgiving about whitespace and markdown decoration.
"""
from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

from octopus.protocol.api import BINARY_RELATIONS, STATE_ALIASES, UNARY_STATES
from octopus.protocol.code import act_problem

class ResponseFormatError(ValueError):
    """A response does not follow the required format; the message says what was expected."""


@dataclass(frozen=True)
class TargetState:
    """One Target States line: format1 ``subject, state, value`` or format2 ``a, relation, b, value``."""

    subject: str
    relation: str
    obj: str | None
    value: bool

    def __post_init__(self) -> None:
        if not ((self.relation in UNARY_STATES and self.obj is None)
                or (self.relation in BINARY_RELATIONS and self.obj is not None)):
            raise ValueError(f"bad target state {self.relation!r} with obj={self.obj!r}: a UNARY_STATES key "
                             "takes no second object, a BINARY_RELATIONS member needs one")

    def __str__(self) -> str:
        mid = f", {self.obj}" if self.obj is not None else ""
        return f"{self.subject}, {self.relation}{mid}, {int(self.value)}"


def _letters(i: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa, ... (up to zz)."""
    return chr(97 + i) if i < 26 else chr(96 + i // 26) + chr(97 + i % 26)


@dataclass(frozen=True)
class Response:
    """A parsed agent response. Text fields are normalised (stripped, code dedented)."""

    explain: str
    subtasks: tuple[str, ...]
    code: str
    inventory: tuple[str, ...] | None
    target_states: tuple[TargetState, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "explain", self.explain.strip())
        object.__setattr__(self, "subtasks", tuple(s.strip() for s in self.subtasks))
        object.__setattr__(self, "code", textwrap.dedent(self.code).strip("\n").rstrip())
        if self.inventory is not None:
            object.__setattr__(self, "inventory", tuple(i.strip() for i in self.inventory))
        object.__setattr__(self, "target_states", tuple(self.target_states))

    def render(self) -> str:
        """The canonical text of this response (``parse_response(r.render()) == r``)."""
        head = self.explain.split("\n", 1)[0]
        # an explanation whose first line reads as a header ("Explain: Code: ...") came inline: keep it there
        out = [f"Explain: {self.explain}"] if _is_header(head) else ["Explain:", self.explain]
        out += ["", "Subtasks:"]
        out += [f"({i}) {s}" for i, s in enumerate(self.subtasks, 1)]
        out += ["", "Code:", "```python", self.code, "```", "", "Target States:"]
        n = 1
        if self.inventory is not None:
            out.append(f"(1) Inventory: {', '.join(self.inventory) if self.inventory else 'None'}")
            n = 2
        if self.target_states or self.inventory is None:
            out.append(f"({n}) Object Information:")
            # letters run out after (zz): the rest are bullets, which the parser reads the same way
            out += [f"({_letters(i)}) {t}" if i < 702 else f"- {t}" for i, t in enumerate(self.target_states)]
        return "\n".join(out) + "\n"


_SECTIONS = ("explain", "subtasks", "code", "target_states")
_TITLES = {"explain": "Explain:", "subtasks": "Subtasks:", "code": "Code:", "target_states": "Target States:"}
# Written so that no two quantifiers can take the same characters: a model's long run of spaces costs linear
# time, not quadratic or worse (the hypothesis fuzzer in tests/protocol bounds the time).
_HEADER = re.compile(
    r"^(?:[ \t]{0,3}#{1,6}[ \t]*(?:[*_]{1,2}[ \t]*)?|[ \t]{0,3}[*_]{1,2}[ \t]*|[ \t]*)"
    r"(explain|subtasks?|code|target[ \t]+states?)[ \t]*"
    r"(?:\([^)\n]*\))?[ \t]*[*_]{0,2}[ \t]*(:)?[ \t]*[*_]{0,2}[ \t]*(.*)$", re.I)
NUMBERED = re.compile(r"^\s*(?:\(\d+\)|\d+[.)])\s*(.*)$")
_INVENTORY = re.compile(r"^\s*(?:(?:\(\d+\)|\d+[.)])\s*)?[*_]{0,2}inventory\b[^:]*:[*_]{0,2}\s*(.*)$", re.I)
_OBJ_INFO = re.compile(r"^\s*(?:(?:\(\d+\)|\d+[.)])\s*)?[*_]{0,2}object\s+information\b[^:]*:[*_]{0,2}\s*(.*)$",
                       re.I)
_FENCE_OPEN = re.compile(r"```[ \t]*(?:(?:python3?|py)[ \t]*)?\n", re.I)
_COMMENT = re.compile(r"\s(?:#|//)")
_STATE_LINE = re.compile(r"^\s*(?:\([a-z]{1,2}\)|[a-z]{1,2}[.)]|[-*\u2022])\s*(.*)$", re.I)
_NAME = re.compile(r"^[\w.\-]+$")
_CODE_START = re.compile(r"^\s*(?:def |async def |import |from |class |@|#)")
_EMPTY_INVENTORY = {"", "none", "empty", "nothing", "[]", "()"}
_STATE_HELP = (f"format1 states: {', '.join(UNARY_STATES)}; format2 relations: {', '.join(BINARY_RELATIONS)}")


def _is_header(line: str) -> bool:
    """Whether a line is read as a section header (outside code fences)."""
    m = _HEADER.match(line)
    return bool(m and (m.group(2) or (not m.group(3).strip() and re.search(r"[#*_]", line))))


def _split_sections(text: str) -> dict[str, tuple[int, list[str]]]:
    """Find the four section headers (outside code fences); return name -> (line no, body lines)."""
    found: dict[str, tuple[int, list[str]]] = {}
    order: list[str] = []
    current: list[str] | None = None
    in_fence, fence_line = False, 0
    for no, line in enumerate(text.splitlines(), 1):
        m = None if in_fence or not _is_header(line) else _HEADER.match(line)
        if m:
            key = m.group(1).lower()
            key = "target_states" if key.startswith("target") else "subtasks" if key.startswith("sub") else key
            if key in found:
                raise ResponseFormatError(f"{_TITLES[key]} section appears twice (lines {found[key][0]} and {no})")
            current = [m.group(3)] if m.group(3).strip() else []
            found[key] = (no, current)
            order.append(key)
            probe = m.group(3)
        else:
            if current is not None:
                current.append(line)
            probe = line
        if probe.lstrip().startswith("```"):
            in_fence, fence_line = not in_fence, no
    if in_fence:
        raise ResponseFormatError(f"the ``` code fence opened at line {fence_line} is never closed")
    for key in (k for k in _SECTIONS if k not in found):
        raise ResponseFormatError(f"missing {_TITLES[key]} section; expected the headers Explain:, Subtasks:, "
                                  "Code:, Target States: in that order")
    if order != list(_SECTIONS):
        raise ResponseFormatError(f"sections out of order: {[_TITLES[k] for k in order]}; expected "
                                  "Explain:, Subtasks:, Code:, Target States:")
    return found


def _parse_subtasks(lines: list[str]) -> tuple[str, ...]:
    subtasks = []
    for line in filter(str.strip, lines):
        m = NUMBERED.match(line)
        if not m or not m.group(1).strip():
            raise ResponseFormatError(f"Subtasks: line {line.strip()!r} is not a numbered subtask like '(1) ...'")
        subtasks.append(m.group(1).strip())
    if not subtasks:
        raise ResponseFormatError("Subtasks: no subtasks found; expected numbered lines like '(1) ...'")
    return tuple(subtasks)


def _extract_code(lines: list[str]) -> str:
    body = "\n".join(lines)
    m = _FENCE_OPEN.search(body)
    end = body.find("```", m.end()) if m else -1
    if end >= 0:  # the first ``` closes the block (its line's trailing blanks go with the strip below)
        code = body[m.end():end]
    else:
        start = next((i for i, l in enumerate(lines) if _CODE_START.match(l)), None)
        if start is None or not any(re.match(r"\s*def\s+act\b", l) for l in lines[start:]):
            raise ResponseFormatError("Code: no fenced ```python block defining act(robot, env, camera) found")
        code = "\n".join(lines[start:])
    code = textwrap.dedent(code).strip("\n").rstrip()
    if problem := act_problem(code):
        raise ResponseFormatError(problem)
    return code


def _split_items(text: str) -> list[str]:
    """``[a, 'b', 1].  // note`` -> ["a", "b", "1"]: drop comments, brackets, quotes."""
    m = _COMMENT.search(text)
    s = (text[:m.start()] if m else text).strip().rstrip(".;").strip()
    if len(s) >= 2 and (s[0], s[-1]) in (("[", "]"), ("(", ")")):
        s = s[1:-1]
    return [p.strip().strip("'\"`").strip() for p in s.split(",")]


def _parse_name(name: str, what: str, line: str) -> str:
    if not _NAME.match(name):
        raise ResponseFormatError(f"Target States: {what} {name!r} in {line!r} is not an object name")
    return "robot" if name.lower() == "robot" else name


def _parse_state(item: str) -> TargetState:
    line = item.strip()
    parts = _split_items(line)
    if len(parts) not in (3, 4):
        raise ResponseFormatError(f"Target States: {line!r} should have 3 items (object, state, value) or "
                                  f"4 items (object1, relation, object2, value), got {len(parts)}")
    rel = STATE_ALIASES.get(parts[1].lower(), parts[1].lower())
    if rel not in UNARY_STATES and rel not in BINARY_RELATIONS:
        raise ResponseFormatError(f"Target States: unknown state/relation {parts[1]!r} in {line!r}; {_STATE_HELP}")
    if len(parts) == 3 and rel in BINARY_RELATIONS:
        raise ResponseFormatError(f"Target States: relation {rel!r} in {line!r} needs two objects "
                                  "(format2: object1, relation, object2, value)")
    if len(parts) == 4 and rel in UNARY_STATES:
        raise ResponseFormatError(f"Target States: state {rel!r} in {line!r} takes one object "
                                  "(format1: object, state, value)")
    value = {"0": False, "1": True, "false": False, "true": True}.get(parts[-1].lower())
    if value is None:
        raise ResponseFormatError(f"Target States: value {parts[-1]!r} in {line!r} must be 0 or 1")
    obj = _parse_name(parts[2], "object", line) if len(parts) == 4 else None
    return TargetState(_parse_name(parts[0], "object", line), rel, obj, value)


def _parse_target_states(lines: list[str]) -> tuple[tuple[str, ...] | None, tuple[TargetState, ...]]:
    inventory: tuple[str, ...] | None = None
    states: list[TargetState] = []
    for line in filter(str.strip, lines):
        if m := _INVENTORY.match(line):
            if inventory is not None:
                raise ResponseFormatError("Target States: the Inventory line appears twice")
            items = _split_items(m.group(1))
            if all(not p or p.lower() in _EMPTY_INVENTORY for p in items):
                inventory = ()
            else:
                inventory = tuple(_parse_name(p, "inventory item", line.strip()) for p in items)
        elif m := _OBJ_INFO.match(line):
            if m.group(1).strip():
                states.append(_parse_state(m.group(1)))
        elif m := _STATE_LINE.match(line):
            states.append(_parse_state(m.group(1)))
        else:
            raise ResponseFormatError(
                f"Target States: cannot read line {line.strip()!r}; expected '(1) Inventory: ...', "
                "'(2) Object Information:' or lettered states like '(a) fridge_1, openable, 1'")
    if inventory is None and not states:
        raise ResponseFormatError("Target States: no '(1) Inventory: ...' line and no object states")
    return inventory, tuple(states)


def parse_response(text: str) -> Response:
    """Parse an agent response; raises only :class:`ResponseFormatError` on bad input."""
    try:
        sec = _split_sections(text)
        explain = "\n".join(sec["explain"][1]).strip()
        subtasks = _parse_subtasks(sec["subtasks"][1])
        code = _extract_code(sec["code"][1])
        inventory, states = _parse_target_states(sec["target_states"][1])
        return Response(explain, subtasks, code, inventory, states)
    except ResponseFormatError:
        raise
    except Exception as e:  # safety net: the contract is that nothing else escapes
        raise ResponseFormatError(f"unreadable response ({type(e).__name__}: {e})") from e

