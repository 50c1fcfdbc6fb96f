"""What agent code may be: the one code checker, the restricted compile policy, the runtime guards.

    check_code(code)                 # None, or the first problem as one line the agent can act on
    check_code(code, allowed_names=())   # structure and policy only, any free names allowed

Code from a model is untrusted. RestrictedPython compiles it under a policy stricter than its own (no
imports, no underscore names, no classes/global/async/yield); at run time it sees only guarded
getattr and writes, a small builtin set and the API names. A response's code must also define
``act(robot, env, camera)``. The sandbox (``octopus.sim.sandbox``) runs code compiled here in a
worker process; validation and SFT's metrics call `check_code`, so all three apply the same rules.
"""
from __future__ import annotations

import _string  # type: ignore[import-not-found]  # field-name splitter behind str.format
import ast
import builtins
import functools
import operator
import string
from types import CodeType
from typing import Any, Callable, Iterable

from RestrictedPython import compile_restricted_exec, safe_builtins
from RestrictedPython.Guards import (full_write_guard, guarded_iter_unpack_sequence,
                                     guarded_unpack_sequence, raise_, safer_getattr)
from RestrictedPython.transformer import RestrictingNodeTransformer, copy_locations

from octopus.protocol.api import ACT_PARAMS, API_NAMES

CODE_FILENAME = "<agent code>"
MAX_CODE_CHARS = 20_000  # longer code is rejected before compiling

# ------------------------------------------------------------------------------------ policy
class _AgentPolicy(RestrictingNodeTransformer):
    """RestrictedPython's policy, stricter, with "Class: message" errors for the agent."""

    def _deny(self, node: ast.AST, message: str) -> ast.AST:
        self.error(node, message)
        return node

    def visit_Call(self, node: ast.Call) -> ast.AST:
        """As RestrictedPython but without its static exec/eval ban: they are undefined names."""
        wrap = any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords)
        node = self.node_contents_visit(node)
        if wrap:  # f(*a, **k) -> _apply_(f, *a, **k)
            node.args.insert(0, node.func)
            node.func = ast.Name("_apply_", ast.Load())
            copy_locations(node.func, node.args[0])
        return node


_DENIED = dict.fromkeys(("Import", "ImportFrom"), "ImportError: imports are not allowed")
_DENIED.update(dict.fromkeys(("Yield", "YieldFrom"), "SyntaxError: generators (yield) are not allowed"))
_DENIED.update(dict.fromkeys(("AsyncFunctionDef", "Await", "AsyncFor", "AsyncWith"),
                             "SyntaxError: async code is not allowed"))
_DENIED.update({kind: f"SyntaxError: {what} are not allowed" for kind, what in (
    ("ClassDef", "class definitions"), ("Global", "global statements"), ("Nonlocal", "nonlocal statements"))})
for _kind, _message in _DENIED.items():
    setattr(_AgentPolicy, f"visit_{_kind}", lambda self, node, _m=_message: self._deny(node, _m))


def _format_static(err: str) -> str:
    """'Line 3: msg.' (RestrictedPython) -> 'SyntaxError: msg (line 3)'."""
    line, _, msg = err.partition(": ") if err.startswith("Line ") else ("", "", err)
    msg = msg.split(" at statement:")[0].rstrip(".")
    head = msg.split(":", 1)[0]
    if not (":" in msg and head.isidentifier() and head.endswith("Error")):
        msg = f"SyntaxError: {msg}"
    line = line.removeprefix("Line ")
    return f"{msg} (line {line})" if line.isdigit() else msg


@functools.lru_cache(maxsize=256)
def compile_code(code: str, max_chars: int) -> tuple[CodeType | None, str | None, tuple]:
    """Compile under the policy -> (code object, error, names read but never bound [(name, line)])."""
    if len(code) > max_chars:
        return None, f"ValueError: code is too long ({len(code)} characters, limit {max_chars})", ()
    try:
        tree = ast.parse(code, CODE_FILENAME)
        bound, loaded = set(), set()
        for n in ast.walk(tree):
            if isinstance(n, ast.Name):
                (loaded.add((n.id, n.lineno)) if isinstance(n.ctx, ast.Load) else bound.add(n.id))
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(n.name)
            elif isinstance(n, ast.arg):
                bound.add(n.arg)
            elif isinstance(n, ast.ExceptHandler) and n.name:
                bound.add(n.name)
        free = tuple(sorted((x for x in loaded if x[0] not in bound), key=lambda x: (x[1], x[0])))
        res = compile_restricted_exec(tree, CODE_FILENAME, policy=_AgentPolicy)
    except SyntaxError as e:
        return None, f"SyntaxError: {e.msg} (line {e.lineno})", ()
    except (RecursionError, MemoryError, ValueError) as e:
        return None, f"SyntaxError: code is too deeply nested or malformed ({type(e).__name__})", ()
    if res.errors:
        return None, _format_static(res.errors[0]), ()
    return res.code, None, free


# ------------------------------------------------------------------------------------ guards
class _SafeFormatter(string.Formatter):
    """str.format whose '{0.attr}' fields go through the guarded getattr."""

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, Any]:
        first, rest = _string.formatter_field_name_split(field_name)
        obj = self.get_value(first, args, kwargs)
        for is_attr, key in rest:
            obj = _guarded_getattr(obj, key) if is_attr else obj[key]
        return obj, first


_FORMATTER = _SafeFormatter()


def _guarded_getattr(obj: Any, name: str) -> Any:
    """safer_getattr, but missing attributes raise AttributeError and str.format is made safe."""
    if isinstance(obj, str) and name == "format":
        return lambda *args, **kwargs: _FORMATTER.vformat(obj, args, kwargs)
    if isinstance(obj, str) and name == "format_map":
        return lambda mapping: _FORMATTER.vformat(obj, (), mapping)
    return safer_getattr(obj, name, raise_)


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "|=": operator.ior, "^=": operator.ixor, "&=": operator.iand,
    "@=": operator.imatmul}
_EXTRA_BUILTINS = ("len range min max sum abs enumerate zip sorted reversed list dict tuple set frozenset "
                   "str int float bool isinstance any all map filter round divmod iter next repr").split()
_BUILTINS: dict[str, Any] = {k: v for k, v in safe_builtins.items()
                             if k not in ("__build_class__", "setattr", "delattr", "_getattr_")}
_BUILTINS.update({name: getattr(builtins, name) for name in _EXTRA_BUILTINS})
BUILTIN_NAMES: frozenset[str] = frozenset(_BUILTINS) | {"print", "printed"}


class Output:
    """Target of every print() in one run, silently capped at ``cap`` characters."""

    def __init__(self, cap: int) -> None:
        self.parts: list[str] = []
        self.left = cap

    def _call_print(self, *objects: Any, sep: str | None = " ", end: str | None = "\n",
                    file: Any = None, flush: bool = False) -> None:
        if self.left > 0:  # once full, skip even formatting the arguments
            text = (" " if sep is None else sep).join(map(str, objects)) + ("\n" if end is None else end)
            self.parts.append(text[: self.left])
            self.left -= len(self.parts[-1])

    def __call__(self) -> str:  # what the name 'printed' evaluates to
        return "".join(self.parts)


def make_globals(api: dict[str, Any], out: Output) -> dict[str, Any]:
    """Fresh module globals for one run: guards, safe builtins, then the API names (never underscored ones)."""
    env = {"__builtins__": dict(_BUILTINS), "__name__": "agent_code", "_getattr_": _guarded_getattr,
           "_getitem_": operator.getitem, "_getiter_": iter, "_write_": full_write_guard,
           "_iter_unpack_sequence_": guarded_iter_unpack_sequence, "_unpack_sequence_": guarded_unpack_sequence,
           "_inplacevar_": lambda op, x, y: _INPLACE[op](x, y), "_apply_": lambda f, *a, **k: f(*a, **k),
           "_print_": lambda _getattr_=None: out}
    env.update((k, v) for k, v in api.items() if not k.startswith("_"))
    return env


def act_problem(code: str) -> str | None:
    """None if ``code`` parses and defines a plain ``act(robot, env, camera)`` at top level, else why not."""
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return f"Code: Python syntax error at line {e.lineno}: {e.msg}"
    except (ValueError, RecursionError, MemoryError) as e:
        return f"Code: cannot be parsed as Python: {e}"
    acts = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == "act"]
    if not acts:
        return "Code: no top-level function `def act(robot, env, camera):` defined"
    a = acts[-1]
    params = tuple(p.arg for p in a.args.posonlyargs + a.args.args)
    if isinstance(a, ast.AsyncFunctionDef) or params != ACT_PARAMS or a.args.vararg or a.args.kwarg \
            or a.args.kwonlyargs:
        return (f"Code: act must be a plain function taking exactly (robot, env, camera), "
                f"got ({ast.unparse(a.args)}) at line {a.lineno}")
    return None


def check_code(code: str, allowed_names: Iterable[str] | None = None, *, max_code_chars: int = MAX_CODE_CHARS,
               require_act: bool = True) -> str | None:
    """Static check in-process (nothing runs): None if ``code`` would be run, else the first problem.

    In order: it compiles under the policy; every name it reads but never binds is a sandbox builtin
    or in ``allowed_names`` (default: the 16 API functions; ``()`` allows any); and (``require_act``)
    it defines ``act(robot, env, camera)``.
    """
    _, error, free = compile_code(code, max_code_chars)
    if error is not None:
        return error
    allowed = API_NAMES if allowed_names is None else frozenset(allowed_names)
    if allowed:
        for name, line in free:
            if name not in allowed and name not in BUILTIN_NAMES:
                return f"NameError: name '{name}' is not defined (line {line})"
    return act_problem(code) if require_act else None
