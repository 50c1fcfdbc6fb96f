"""The environment message (paper appendix A.3): what the agent is told each round.

    EnvMessage(observed_objects, observed_relations, inventory, task_goal, ...).render()
    parse_env_message(text)             # EnvMessageFormatError on bad input

Observed Objects and Observed Relations are for text-only agents; a vision-language policy gets the
10 views instead and reads the rest (Inventory, Task Goal, Original Subtasks, Previous Action Code,
Execution Error) as text.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass

from octopus.protocol.api import CLOSING_REQUEST
from octopus.protocol.response import NUMBERED

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
            if not (m := NUMBERED.match(line)):
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

