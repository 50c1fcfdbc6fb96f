"""Message formats shared by the simulator, the agents and the data pipeline.

The agent reads an *environment message* (:class:`EnvMessage`) and answers with a
*response* (:class:`Response`) made of four sections -- Explain, Subtasks, Code and
Target States -- following appendix A.3 of the Octopus paper (arXiv 2310.08588).
This module holds the vocabulary (states, relations, API functions), the renderers
and the parsers; the system prompt template lives in ``prompts/system.txt``.
"""
from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass
from importlib import resources

# --------------------------------------------------------------------------- vocabulary
#: Target States format1 state names -> BDDL unary predicates.
UNARY_STATES: dict[str, str] = {
    "cookable": "cooked", "burnable": "burnt", "freezable": "frozen", "heatable": "hot",
    "openable": "open", "togglable": "toggled_on", "foldable": "folded", "unfoldable": "unfolded",
}
#: Spellings accepted by the parsers and mapped to the canonical state name.
STATE_ALIASES: dict[str, str] = {"toggleable": "togglable"}
#: Target States format2 relation names (BDDL binary predicates).
BINARY_RELATIONS: tuple[str, ...] = ("inside", "nextto", "ontop", "under", "touching", "covered",
                                     "contains", "saturated", "filled", "attached", "overlaid", "draped")


@dataclass(frozen=True)
class ApiFunction:
    """One function the agent's code may call."""

    name: str
    params: tuple[str, ...]
    description: str

    @property
    def signature(self) -> str:
        """``name(p1, p2)``."""
        return f"{self.name}({', '.join(self.params)})"

    @property
    def is_utility(self) -> bool:
        """True for the bookkeeping functions (registry, donothing), False for actions."""
        return self.name in ("registry", "donothing")


_R = ("robot", "obj")
API_FUNCTIONS: tuple[ApiFunction, ...] = (
    ApiFunction("registry", ("env", "obj_name"),
                "look up an object by its exact name and return a handle to it; register every "
                "object before using it, only once, and name the variable after the string, "
                'e.g. apple_1 = registry(env, "apple_1").'),
    ApiFunction("donothing", ("env",), "let the simulator advance one step and capture the scene; "
                "call it right after every action."),
    ApiFunction("MoveBot", ("env", "robot", "obj", "camera"),
                "move the robot to stand in front of obj. Only large objects resting on the floor "
                "(tables, fridges, ovens, ...) can be targets, never small items (apples, plates, ...). "
                "Always pass camera as the camera argument."),
    ApiFunction("EasyGrasp", _R, "pick up obj and add it to the inventory."),
    ApiFunction("put_ontop", ("robot", "obj1", "obj2"), "place obj1, held by the robot, on top of obj2."),
    ApiFunction("put_inside", ("robot", "obj1", "obj2"), "place obj1, held by the robot, inside obj2."),
    *(ApiFunction(name, _R, f"{verb} the given object.") for name, verb in (
        ("open", "open"), ("close", "close"), ("toggle_on", "switch on"), ("toggle_off", "switch off"),
        ("cook", "cook"), ("burn", "burn"), ("freeze", "freeze"), ("heat", "heat"), ("fold", "fold"),
        ("unfold", "unfold"))),
)


def render_api() -> str:
    """The Utility Functions and Action List sections of the system message."""
    util = [f"{f.signature}: {f.description}" for f in API_FUNCTIONS if f.is_utility]
    acts = [f"{f.signature}: {f.description}" for f in API_FUNCTIONS if not f.is_utility]
    return "Utility Functions:\n" + "\n".join(util) + "\n\nAction List:\n" + "\n".join(acts)


ACT_PARAMS: tuple[str, ...] = ("robot", "env", "camera")

#: The response skeleton shown to the model (the system message's format requirement).
RESPONSE_FORMAT = """Explain:
...

Subtasks:
(1) ...
(2) ...
(3) ...
# list ALL subtasks, including those already completed (e.g. if subtasks 1 and 2 succeeded and
# subtask 3 failed, repeat subtasks 1 and 2 and give the revised plan from subtask 3 on)

Code:
```python
# helper functions only if really needed
def act(robot, env, camera):
    # Subtask N: <the subtask this code completes>; one subtask per act function
    ...
```

Target States:
(1) Inventory: ...   # everything held after this subtask, comma-separated, or None
(2) Object Information:
(a) ...   # e.g. (a) robot, nextto, fridge_1, 1
(b) ...
(c) ..."""

CLOSING_REQUEST = ("Now, please output Explain, Subtasks (revise if necessary), Code that completes the "
                   "next subtask, and Target States, following the instructions above. Use only the "
                   "functions provided above and keep strictly to the response format.")

_PLACEHOLDER = re.compile(r"\{(reach_m|api|response_format|unary_states|binary_relations)\}")


def system_message(reach_m: float) -> str:
    """The system message: ``prompts/system.txt`` with its placeholders filled.

    Only the known ``{placeholder}`` names are substituted, so other braces stay literal.
    """
    template = resources.files("octopus").joinpath("sim/prompts/system.txt").read_text(encoding="utf-8")
    values = {"reach_m": f"{reach_m:g}", "api": render_api(), "response_format": RESPONSE_FORMAT,
              "unary_states": str(list(UNARY_STATES)), "binary_relations": str(list(BINARY_RELATIONS))}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


# --------------------------------------------------------------------------- response
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
        out = ["Explain:", self.explain, "", "Subtasks:"]
        out += [f"({i}) {s}" for i, s in enumerate(self.subtasks, 1)]
        out += ["", "Code:", "```python", self.code, "```", "", "Target States:"]
        n = 1
        if self.inventory is not None:
            out.append(f"(1) Inventory: {', '.join(self.inventory) if self.inventory else 'None'}")
            n = 2
        if self.target_states or self.inventory is None:
            out.append(f"({n}) Object Information:")
            out += [f"({_letters(i)}) {t}" for i, t in enumerate(self.target_states)]
        return "\n".join(out) + "\n"


_SECTIONS = ("explain", "subtasks", "code", "target_states")
_TITLES = {"explain": "Explain:", "subtasks": "Subtasks:", "code": "Code:", "target_states": "Target States:"}
_HEADER = re.compile(
    r"^[ \t]{0,3}(?:#{1,6}[ \t]*)?[*_]{0,2}[ \t]*(explain|subtasks?|code|target[ \t]+states?)[ \t]*"
    r"(?:\([^)\n]*\))?[ \t]*[*_]{0,2}[ \t]*(:)?[ \t]*[*_]{0,2}[ \t]*(.*)$", re.I)
_NUMBERED = re.compile(r"^\s*(?:\(\d+\)|\d+[.)])\s*(.*)$")
_INVENTORY = re.compile(r"^\s*(?:\(\d+\)|\d+[.)])?\s*[*_]{0,2}inventory\b[^:]*:[*_]{0,2}\s*(.*)$", re.I)
_OBJ_INFO = re.compile(r"^\s*(?:\(\d+\)|\d+[.)])?\s*[*_]{0,2}object\s+information\b[^:]*:[*_]{0,2}\s*(.*)$",
                       re.I)
_STATE_LINE = re.compile(r"^\s*(?:\([a-z]{1,2}\)|[a-z]{1,2}[.)]|[-*\u2022])\s*(.*)$", re.I)
_NAME = re.compile(r"^[\w.\-]+$")
_CODE_START = re.compile(r"^\s*(?:def |async def |import |from |class |@|#)")
_EMPTY_INVENTORY = {"", "none", "empty", "nothing", "[]", "()"}
_STATE_HELP = (f"format1 states: {', '.join(UNARY_STATES)}; format2 relations: {', '.join(BINARY_RELATIONS)}")


def _split_sections(text: str) -> dict[str, tuple[int, list[str]]]:
    """Find the four section headers (outside code fences); return name -> (line no, body lines)."""
    found: dict[str, tuple[int, list[str]]] = {}
    order: list[str] = []
    current: list[str] | None = None
    in_fence, fence_line = False, 0
    for no, line in enumerate(text.splitlines(), 1):
        m = None if in_fence else _HEADER.match(line)
        if m and (m.group(2) or (not m.group(3).strip() and re.search(r"[#*_]", line))):
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
        m = _NUMBERED.match(line)
        if not m or not m.group(1).strip():
            raise ResponseFormatError(f"Subtasks: line {line.strip()!r} is not a numbered subtask like '(1) ...'")
        subtasks.append(m.group(1).strip())
    if not subtasks:
        raise ResponseFormatError("Subtasks: no subtasks found; expected numbered lines like '(1) ...'")
    return tuple(subtasks)


def check_code(code: str) -> None:
    """Raise :class:`ResponseFormatError` unless ``code`` parses and defines ``act(robot, env, camera)``."""
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        raise ResponseFormatError(f"Code: Python syntax error at line {e.lineno}: {e.msg}") from None
    except (ValueError, RecursionError, MemoryError) as e:
        raise ResponseFormatError(f"Code: cannot be parsed as Python: {e}") from None
    acts = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "act"]
    if not acts:
        raise ResponseFormatError("Code: no top-level function `def act(robot, env, camera):` defined")
    a = acts[-1]
    params = tuple(p.arg for p in a.args.posonlyargs + a.args.args)
    if isinstance(a, ast.AsyncFunctionDef) or params != ACT_PARAMS or a.args.vararg or a.args.kwarg \
            or a.args.kwonlyargs:
        raise ResponseFormatError(f"Code: act must be a plain function taking exactly (robot, env, camera), "
                                  f"got ({ast.unparse(a.args)}) at line {a.lineno}")


def _extract_code(lines: list[str]) -> str:
    body = "\n".join(lines)
    m = re.search(r"```[ \t]*(?:python3?|py)?[ \t]*\n(.*?)\n?[ \t]*```", body, re.S | re.I)
    if m:
        code = m.group(1)
    else:
        start = next((i for i, l in enumerate(lines) if _CODE_START.match(l)), None)
        if start is None or not any(re.match(r"\s*def\s+act\b", l) for l in lines[start:]):
            raise ResponseFormatError("Code: no fenced ```python block defining act(robot, env, camera) found")
        code = "\n".join(lines[start:])
    code = textwrap.dedent(code).strip("\n").rstrip()
    check_code(code)
    return code


def _split_items(text: str) -> list[str]:
    """``[a, 'b', 1].  // note`` -> ["a", "b", "1"]: drop comments, brackets, quotes."""
    s = re.sub(r"\s+(?:#|//).*$", "", text).strip().rstrip(".;").strip()
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


# --------------------------------------------------------------------------- environment message
class EnvMessageFormatError(ValueError):
    """An environment message text cannot be parsed."""


@dataclass(frozen=True)
class ObservedObject:
    """An object in view: its format1 states with 0/1 values and its distance in metres."""

    name: str
    states: tuple[tuple[str, int], ...]
    distance: float

    def render(self) -> str:
        """``(fridge_1, (['openable', 0],), 2.12)``; the distance is written with 2 decimals."""
        st = ", ".join(f"[{s!r}, {int(v)}]" for s, v in self.states) + ("," if len(self.states) == 1 else "")
        return f"({self.name}, ({st}), {self.distance:.2f})"


@dataclass(frozen=True)
class EnvMessage:
    """What the agent is told each round (observations are None for vision policies)."""

    observed_objects: tuple[ObservedObject, ...] | None
    observed_relations: tuple[tuple[str, str, str], ...] | None
    inventory: tuple[str, ...]
    task_goal: str
    original_subtasks: tuple[str, ...] | None
    previous_code: str | None
    execution_error: str | None

    def __post_init__(self) -> None:
        subtasks = tuple(s.strip() for s in self.original_subtasks or ())
        object.__setattr__(self, "original_subtasks", subtasks or None)
        code = (self.previous_code or "").strip("\n").rstrip()
        object.__setattr__(self, "previous_code", code or None)
        object.__setattr__(self, "execution_error", (self.execution_error or "").strip() or None)
        object.__setattr__(self, "task_goal", self.task_goal.strip())
        object.__setattr__(self, "inventory", tuple(self.inventory))

    def render(self) -> str:
        """The text of the message (paper appendix A.3 layout), ending with the closing request."""
        out = []
        if self.observed_objects is not None:
            out.append("Observed Objects: " + ("".join(o.render() for o in self.observed_objects) or "None"))
        if self.observed_relations is not None:
            out.append(f"Observed Relations: {[tuple(r) for r in self.observed_relations]}")
        out.append(f"Inventory: {', '.join(self.inventory) if self.inventory else 'None'}")
        out.append(f"Task Goal: {self.task_goal}")
        if self.original_subtasks:
            out += ["Original Subtasks:"] + [f"({i}) {s}" for i, s in enumerate(self.original_subtasks, 1)]
        else:
            out.append("Original Subtasks: None")
        out += ["Previous Action Code:", self.previous_code] if self.previous_code else \
            ["Previous Action Code: No code"]
        out += ["Execution Error:", self.execution_error] if self.execution_error else ["Execution Error: No error"]
        return "\n".join(out + [CLOSING_REQUEST]) + "\n"


_ENV_KEYS = (("observed_objects", "observed objects:"), ("observed_relations", "observed relations:"),
             ("inventory", "inventory:"), ("task_goal", "task goal:"), ("original_subtasks", "original subtasks:"),
             ("previous_code", "previous action code:"), ("execution_error", "execution error:"))
_STATE = re.compile(r"\[\s*['\"](\w+)['\"]\s*,\s*([01])\s*\]")
_STATES = re.compile(rf"\s*(?:{_STATE.pattern}\s*(?:,\s*|$))*")
_OBJ = re.compile(r"\s*\(\s*([^\s,()]+)\s*,\s*\(([^()]*)\)\s*,\s*([-+\w.]+)\s*\)")


def _parse_objects(s: str) -> tuple[ObservedObject, ...]:
    objs, pos = [], 0
    while s.strip() not in ("", "None") and pos < len(s.rstrip()):
        m = _OBJ.match(s, pos)
        if not m:
            raise EnvMessageFormatError(f"Observed Objects: cannot read {s[pos:pos + 60]!r}")
        if not _STATES.fullmatch(m.group(2)):
            raise EnvMessageFormatError(f"Observed Objects: cannot read the states {m.group(2)!r} of {m.group(1)}")
        states = tuple((n, int(v)) for n, v in _STATE.findall(m.group(2)))
        try:
            objs.append(ObservedObject(m.group(1), states, float(m.group(3))))
        except ValueError:
            raise EnvMessageFormatError(f"Observed Objects: bad distance {m.group(3)!r}") from None
        pos = m.end()
    return tuple(objs)


def parse_env_message(text: str) -> EnvMessage:
    """Parse the text made by :meth:`EnvMessage.render`; raises only :class:`EnvMessageFormatError`."""
    try:
        return _parse_env_message(text)
    except EnvMessageFormatError:
        raise
    except Exception as e:  # safety net, as in parse_response
        raise EnvMessageFormatError(f"unreadable environment message ({type(e).__name__}: {e})") from e


def _parse_env_message(text: str) -> EnvMessage:
    body: dict[str, list[str]] = {}
    idx, current = 0, None
    for line in text.splitlines():
        if line.startswith("Now, please output"):
            break
        low = line.lower()
        nxt = next((j for j in range(idx, len(_ENV_KEYS)) if low.startswith(_ENV_KEYS[j][1])), None)
        if nxt is not None:
            key, head = _ENV_KEYS[nxt]
            idx, current = nxt + 1, key
            rest = line[len(head):].strip()
            body[key] = [rest] if rest else []
        elif current is not None:
            body[current].append(line)
        elif line.strip():
            raise EnvMessageFormatError(f"unexpected text before the first section: {line!r}")
    missing = [h for k, h in _ENV_KEYS[2:] if k not in body]
    if missing:
        raise EnvMessageFormatError(f"environment message lacks the section(s) {missing}")
    get = {k: "\n".join(v).strip("\n").rstrip() for k, v in body.items()}
    relations = None
    if "observed_relations" in get:
        try:
            rel = ast.literal_eval(get["observed_relations"])
            relations = tuple((str(a), str(r), str(b)) for a, r, b in rel)
        except Exception as e:
            raise EnvMessageFormatError(f"Observed Relations: not a list of (a, relation, b) triples: {e}") from None
    subtasks = None
    if get["original_subtasks"].strip() not in ("", "None"):
        subtasks = []
        for line in filter(str.strip, get["original_subtasks"].splitlines()):
            if not (m := _NUMBERED.match(line)):
                raise EnvMessageFormatError(f"Original Subtasks: line {line!r} is not numbered like '(1) ...'")
            subtasks.append(m.group(1).strip())
    inv = get["inventory"].strip()
    code, error = get["previous_code"], get["execution_error"]
    return EnvMessage(
        observed_objects=_parse_objects(get["observed_objects"]) if "observed_objects" in get else None,
        observed_relations=relations,
        inventory=() if inv in ("", "None") else tuple(i.strip() for i in inv.split(",")),
        task_goal=get["task_goal"], original_subtasks=tuple(subtasks) if subtasks else None,
        previous_code=None if code.strip() == "No code" else code,
        execution_error=None if error.strip() == "No error" else error)
