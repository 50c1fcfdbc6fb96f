"""The API vocabulary the agent writes against, and the system message that teaches it (paper appendix A.3).

    API_FUNCTIONS, API_NAMES          # the 16 functions (registry, donothing, MoveBot, EasyGrasp, ...)
    UNARY_STATES, BINARY_RELATIONS    # what Target States may name
    system_message(reach_m=1.5)       # ``prompts/system.txt`` with the API and the response format filled in

Imports nothing from the simulator: models, training, validation and data read these texts alone.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

# --------------------------------------------------------------------------- vocabulary
#: What the agent sees each round: 8 egocentric views every 45 degrees, then two bird's-eye views (paper §3.1).
VIEW_NAMES: tuple[str, ...] = (*(f"EGO-{45 * k}" for k in range(8)), "BEV-I", "BEV-II")
N_VIEWS = len(VIEW_NAMES)

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
#: the names agent code may call (and nothing else of the simulator)
API_NAMES: frozenset[str] = frozenset(f.name for f in API_FUNCTIONS)


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
    template = resources.files("octopus").joinpath("protocol/prompts/system.txt").read_text(encoding="utf-8")
    values = {"reach_m": f"{reach_m:g}", "api": render_api(), "response_format": RESPONSE_FORMAT,
              "unary_states": str(list(UNARY_STATES)), "binary_relations": str(list(BINARY_RELATIONS))}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)

