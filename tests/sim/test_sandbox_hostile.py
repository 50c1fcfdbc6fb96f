"""A larger hostile suite for the sandbox, run the way episodes run it: a response's code stepped through
`Episode.step` against the real simulator API (test_sandbox.py covers the basics with a fake API).

Every case must: be refused or contained with a clear Execution error; leave the world as it was (a
failed step restores it); leave the parent process as it was (environment, cwd, signal handlers); and
leave a working sandbox (the same worker, unless the case needed a hard kill, which restarts it).
"""
from __future__ import annotations

import os
import re
import signal
import time

import pytest

from octopus.config import SimParams
from octopus.protocol import Response, TargetState
from octopus.sim.episode import SANDBOX_FACTORY, Episode
from octopus.sim.sandbox import Sandbox, SandboxLimits
from tests.helpers import COOK_BACON, kitchen_task

LIMITS = SandboxLimits(timeout_s=2.0, memory_mb=256)
SIM = SimParams(sandbox_timeout_s=LIMITS.timeout_s, sandbox_memory_mb=LIMITS.memory_mb, max_steps=1000)


def body(*lines: str) -> str:
    return "def act(robot, env, camera):\n" + "".join(f"    {line}\n" for line in lines)


def response(code: str, target: str = "stove_1") -> str:
    return Response("hostile", ("x",), code, None, (TargetState("robot", "nextto", target, True),)).render()


GOOD = response(body("MoveBot(env, robot, registry(env, 'stove_1'), camera)", "donothing(env)"))
STOVE = "MoveBot(env, robot, registry(env, 'stove_1'), camera)"  # a real effect before the hostile part
KILLED = "TimeoutError: code ran longer than 2.0 s"  # the parent's hard kill (the soft timer cannot fire in C)

CASES = [  # (id, code, the whole Execution error as a regex, whether the worker had to be killed; None: a soft
    # timeout, which a loaded machine may turn into the hard kill by descheduling the worker past the grace)
    # memory exhaustion
    ("list_8gb", body(STOVE, "x = [0] * 10**9"), r"MemoryError: code used more than 256 MB", False),
    ("format_width", body("x = '{:>2000000000}'.format(1)"), r"MemoryError: code used more than 256 MB", False),
    ("ljust", body("x = 'a'.ljust(10**10)"), r"MemoryError: code used more than 256 MB", False),
    ("to_bytes", body("x = (1).to_bytes(10**9, 'big')"), r"MemoryError: code used more than 256 MB", False),
    ("growing_dict", body(STOVE, "d = {i: i for i in range(10**9)}"),
     r"(MemoryError: code used more than 256 MB|TimeoutError: code ran longer than 2.0 s)", None),
    # CPU exhaustion
    ("c_loop_sum", body(STOVE, "sum(iter(int, 1))"), KILLED, True),
    ("c_loop_max", body("max(range(10**15))"), KILLED, True),
    ("swallowed_timeout", body(STOVE, "while True:", "    try:", "        while True:", "            pass",
                               "    except BaseException:", "        pass"), KILLED, True),
    # the API log is capped (actions.MAX_CALLS): a flood is an error, never a sandbox out of memory
    ("api_call_flood", body("while True:", "    registry(env, 'bacon_1')"),
     r"ActionError: more than 10,000 API calls in one step; call each function a few times", False),
    ("api_call_flood_swallowed", body("while True:", "    try:", "        registry(env, 'bacon_1')",
                                      "    except Exception:", "        pass"),
     r"TimeoutError: code ran longer than 2.0 s", None),
    # deep recursion (Python and C level)
    ("nested_repr", body("x = []", "for i in range(5000):", "    x = [x]", "print(x)"),
     r"RecursionError: maximum recursion depth exceeded while getting the repr of an object \(line 5\)", False),
    ("nested_compare", body("x = []", "y = []", "for i in range(5000):", "    x = [x]", "    y = [y]", "z = x == y"),
     r"RecursionError: maximum recursion depth exceeded in comparison \(line 7\)", False),
    ("recursive_lambda", body(STOVE, "f = lambda n: f(n + 1)", "f(0)"), r"RecursionError: .* \(line 3\)", False),
    ("recursive_sort_key", body("def k(x):", "    return sorted([1, 2], key=k)", "k(0)"),
     r"RecursionError: .*", False),
    # huge strings and ints
    ("int_to_str", body("x = str(10 ** 5000)"), r"ValueError: Exceeds the limit \(4300 digits\) .*", False),
    ("str_to_int", body("x = int('9' * 100000)"), r"ValueError: Exceeds the limit \(4300 digits\) .*", False),
    ("huge_power", body(STOVE, "x = 7 ** 7 ** 9"), r"TimeoutError: code ran longer than 2.0 s", None),
    ("huge_error_message", body("raise ValueError('x' * 10**7)"), r"ValueError: x{480,500} \(line 2\)", False),
    ("huge_print", body("print('x' * 10**8)"), r"Target states not reached: .*", False),  # ran; output capped
    # threads and processes
    ("threading", body("import threading"), r"ImportError: imports are not allowed \(line 2\)", False),
    ("low_level_thread", "import _thread\n" + body("pass"), r"ImportError: imports are not allowed \(line 1\)", False),
    ("process", body("from multiprocessing import Process"), r"ImportError: imports are not allowed \(line 2\)",
     False),
    ("fork", body("os.fork()"), r"NameError: name 'os' is not defined \(line 2\)", False),
    # signals
    ("kill_parent", body("os.kill(os.getppid(), 9)"), r"NameError: name 'os' is not defined \(line 2\)", False),
    ("signal_module", body("import signal"), r"ImportError: imports are not allowed \(line 2\)", False),
    ("exit", body(STOVE, "exit(0)"), r"NameError: name 'exit' is not defined \(line 3\)", False),
    # /proc and the environment
    ("proc_environ", body("open('/proc/self/environ').read()"),  # `open` is the API's: open(robot, obj)
     r"TypeError: open\(\) missing 1 required positional argument: 'obj' \(line 2\)", False),
    ("proc_via_open", body("open(robot, '/proc/self/environ')"),
     r"ActionError: open: obj must be an object from registry\(env, name\), got str '/proc/self/environ'", False),
    ("proc_via_api", body("registry(env, '/proc/self/environ')"), r"ActionError: there is no object called .*", False),
    ("environ", body("environ['HOME']"), r"NameError: name 'environ' is not defined \(line 2\)", False),
    # attribute and format-string escapes
    ("subclasses", body("().__class__.__base__.__subclasses__()"),
     r'SyntaxError: "__subclasses__" is an invalid attribute name because it starts with "_" \(line 2\)', False),
    ("format_globals", body("x = '{0.__globals__}'.format(act)"),
     r'AttributeError: "__globals__" is an invalid attribute name because it starts with "_" \(line 2\)', False),
    ("format_base", body("x = '{0.__class__.__base__}'.format(())"),
     r'AttributeError: "__class__" is an invalid attribute name .*', False),
    ("format_api_owner", body("x = '{0.__self__.world}'.format(MoveBot)"),
     r'AttributeError: "__self__" is an invalid attribute name .*', False),
    ("format_frame", body("g = (i for i in range(3))", "x = '{0.gi_frame.f_back}'.format(g)"),
     r'AttributeError: "gi_frame" is a restricted name.*\(line 3\)', False),
    ("format_code", body("g = (i for i in range(3))", "x = '{0.gi_code}'.format(g)"),
     r'AttributeError: "gi_code" is a restricted name.*\(line 3\)', False),
    ("format_in_spec", body("x = '{0:{1.__class__}}'.format(1, 2)"), r'AttributeError: "__class__" .*', False),
    ("format_after_index", body("x = '{0[0].__class__}'.format([1])"), r'AttributeError: "__class__" .*', False),
    ("format_map_on_str", body("x = str.format_map('{a.__class__}', {'a': 1})"),
     r"NotImplementedError: Using the format\*\(\) methods of `str` is not safe \(line 2\)", False),
    ("lambda_globals", body("(lambda: 0).__globals__"), r'SyntaxError: "__globals__" .*', False),
    ("api_owner", body("MoveBot.__self__.world"), r'SyntaxError: "__self__" .*', False),
    # the world only changes through the API
    ("rename_a_ref", body("r = registry(env, 'bacon_1')", "r.name = 'stove_1'"),
     r"TypeError: attribute-less object \(assign or del\) \(line 3\)", False),
    ("retarget_a_token", body("robot.kind = 'env'"), r"TypeError: attribute-less object \(assign or del\) \(line 2\)",
     False),
    ("forged_object", body("MoveBot(env, robot, 'stove_1', camera)"),
     r"ActionError: MoveBot: obj must be an object from registry\(env, name\), got str 'stove_1'", False),
    # the worker's pipe to the parent: no handle on it, and print() never reaches it
    ("pipe_fd", body("open(3, 'wb').write(b'R')"), r"ActionError: open: expected `robot` as this argument, got 3", False),
    ("print_to_pipe", body(STOVE, "print('R' + 'x' * 100, file=3, flush=True)", "raise ValueError('after')"),
     r"ValueError: after \(line 4\)", False),
]


@pytest.fixture(scope="module")
def episode():
    with Sandbox(SANDBOX_FACTORY, LIMITS) as sandbox:
        yield Episode(kitchen_task(COOK_BACON), SIM, sandbox=sandbox)


def world_state(episode: Episode) -> tuple:
    w = episode.world
    return w.state_key(), [tuple(p) for p in w.pos], w.heading


def parent_state() -> tuple:
    return (dict(os.environ), os.getcwd(), os.getpid(),
            [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM, signal.SIGCHLD)])


def _params() -> list:
    """The cases that wait out the 2 s clock are marked slow (`make test-fast` skips them)."""
    return [pytest.param(*c[1:], id=c[0], marks=[pytest.mark.slow] if "2.0 s" in c[2] else []) for c in CASES]


@pytest.mark.parametrize("code,expected,killed", _params())
def test_hostile_code_is_contained(episode, code, expected, killed):
    sandbox, start = episode.sandbox, episode.checkpoint()
    world, pid, parent = world_state(episode), sandbox.worker_pid, parent_state()
    t0 = time.monotonic()
    result = episode.step(response(code))
    took = time.monotonic() - t0
    assert re.fullmatch(expected, result.error), result.error
    assert world_state(episode) == world  # nothing it did (before failing) stays in the world
    assert parent_state() == parent
    assert killed is None or (sandbox.worker_pid != pid) == killed
    assert sandbox.worker_pid is not None
    assert took < LIMITS.timeout_s + 10, f"took {took:.1f} s"  # the hard kill plus a restart, with room for load
    good = episode.step(GOOD)  # the sandbox still works, on the same world
    assert good.error is None and good.target_states_met and world_state(episode) != world
    episode.restore(start)


def test_runs_do_not_see_each_other(episode):
    start = episode.checkpoint()
    assert episode.step(response("STASH = [registry]\n" + body(STOVE))).error is None
    result = episode.step(response(body("STASH.append(1)")))
    assert result.error == "NameError: name 'STASH' is not defined (line 2)"
    episode.restore(start)


@pytest.mark.parametrize("factory,expected", [
    ("evil_pickle", r"SandboxError: result cannot be unpickled: posix\.system is not allowed in a sandbox reply .*"),
    ("lying_log", r"Replay mismatch: .*")])
def test_a_worker_taken_over_cannot_reach_into_the_parent(factory, expected, tmp_path, monkeypatch):
    """What agent code could do after a real escape inside the worker: answer with a pickle that runs a command
    in the parent, or claim calls it never made. The parent refuses both and keeps its world."""
    pwned = tmp_path / "pwned"
    monkeypatch.setenv("OCTOPUS_TEST_PWNED", str(pwned))  # the spawned worker inherits it
    with Sandbox(f"tests.sim.sandbox_hostile_api:{factory}", LIMITS) as sandbox:
        ep = Episode(kitchen_task(COOK_BACON), SIM, sandbox=sandbox)
        world = world_state(ep)
        result = ep.step(GOOD)
    assert re.fullmatch(expected, result.error), result.error
    assert not pwned.exists() and world_state(ep) == world
