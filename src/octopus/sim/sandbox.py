"""The sandbox's worker process: untrusted agent code (``def act(robot, env, camera): ...``) runs here.

Code is compiled under the policy of ``octopus.protocol.code`` and runs in a persistent 'spawn' worker
process with an address-space limit, a soft in-worker timer and a hard SIGKILL from the parent.
Generic: the simulator API comes from a ``factory`` path ("package.module:function") imported by the
worker; this module never imports the simulator.

    with Sandbox("octopus.sim.actions:sandbox_session", SandboxLimits(timeout_s=2)) as sb:
        result = sb.run(code, world)     # SandboxResult(ok, error, value, stdout, duration_s)
"""
from __future__ import annotations

import contextlib
import gc
import importlib
import multiprocessing as mp
import os
import pickle
import signal
import string
import sys
import threading
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import RestrictedPython

from octopus.protocol import code as policy
from octopus.protocol.code import CODE_FILENAME, MAX_CODE_CHARS, Output, compile_code, make_globals

# Frames in these files are the sandbox's own plumbing, never "the API" when locating an error.
_INTERNAL_FILES = (os.path.dirname(RestrictedPython.__file__), __file__, policy.__file__, string.__file__)
_GRACE_S = 0.5  # the parent kills this long after the in-worker soft timer should have fired
_MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run resource limits (``setup_timeout_s`` bounds worker start, factory(payload), result())."""
    timeout_s: float = 2.0  # wall clock of the agent code per run
    memory_mb: int = 1024  # RLIMIT_AS headroom above the worker's virtual size at start
    max_output_chars: int = 10_000  # cap on captured print() output
    max_code_chars: int = MAX_CODE_CHARS  # longer code is rejected before compiling
    setup_timeout_s: float = 60.0


@dataclass
class SandboxResult:
    """Outcome of one run; ``error`` is one line an agent can act on."""
    ok: bool  # the entry function returned without exception
    error: str | None
    value: Any  # session.result(); None if the worker died or had to be killed
    stdout: str
    duration_s: float


class Session(Protocol):
    """What ``factory(payload)`` returns inside the worker."""
    globals: dict[str, Any]  # API names visible to the code; they override builtins
    args: tuple  # positional arguments of the entry function

    def result(self) -> Any: ...  # picklable; called after the entry function returns or raises


# ------------------------------------------------------------------------------------ worker
class _Timeout(BaseException):
    """Raised by the soft timer; a BaseException so `except Exception` in agent code cannot eat it."""


_timed_out = False


def _on_alarm(signum: int, frame: Any) -> None:
    global _timed_out
    _timed_out = True
    raise _Timeout()


def _describe(e: BaseException, limits: SandboxLimits) -> str:
    """One line; '(line N)' when the innermost non-sandbox frame is the agent's code (not the API)."""
    if isinstance(e, MemoryError):
        return f"MemoryError: code used more than {limits.memory_mb} MB"
    if isinstance(e, _Timeout):
        return f"TimeoutError: code ran longer than {float(limits.timeout_s)} s"
    try:
        text = str(e)
    except Exception:  # noqa: BLE001
        text = ""
    msg = " ".join(f"{type(e).__name__}: {text}".split()).removesuffix(":")[:_MAX_ERROR_CHARS]
    line, tb = None, e.__traceback__
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if not filename.startswith(_INTERNAL_FILES):
            line = tb.tb_lineno if filename == CODE_FILENAME else None
        tb = tb.tb_next
    return f"{msg} (line {line})" if line else msg


_FACTORIES: dict[str, Callable[[Any], Session]] = {}


def _load_factory(path: str) -> Callable[[Any], Session]:
    """Import 'package.module:function' once per distinct path."""
    if path not in _FACTORIES:
        module, _, attr = path.partition(":")
        _FACTORIES[path] = getattr(importlib.import_module(module), attr)
    return _FACTORIES[path]


def _vm_bytes() -> int:
    """Virtual memory size of this process (what RLIMIT_AS limits); 0 where /proc is missing."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _set_rlimits(memory_mb: int) -> None:
    """No core dumps; address space capped at the current virtual size + memory_mb (Linux)."""
    try:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        if vm := _vm_bytes():
            hard = resource.getrlimit(resource.RLIMIT_AS)[1]
            want = vm + memory_mb * 2**20
            resource.setrlimit(resource.RLIMIT_AS, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    except (ImportError, OSError, ValueError):
        pass


def _run_one(request: bytes, factory: str, limits: SandboxLimits, send: Callable[[bytes], None]) -> bytes:
    """Execute one request and return the pickled reply; sends b'S'/b'U' around the timed code."""
    global _timed_out
    _timed_out, ok, error, session, out = False, False, None, None, Output(limits.max_output_chars)
    env: dict[str, Any] = {}
    try:
        code, payload, entry = pickle.loads(request)
        session = _load_factory(factory)(payload)
        code_obj, error, _ = compile_code(code, limits.max_code_chars)
        env = make_globals(session.globals, out)
    except BaseException as e:  # noqa: BLE001 - reported, the worker lives on
        error = error or "SandboxError: session setup failed: " + _describe(e, limits)
    send(b"S")
    if error is None:
        try:
            signal.setitimer(signal.ITIMER_REAL, limits.timeout_s)
            try:
                exec(code_obj, env)
                fn = env.get(entry)
                if fn is None:
                    error = f"NameError: function '{entry}' is not defined"
                elif not callable(fn):
                    error = f"TypeError: '{entry}' is not a function"
                else:
                    fn(*session.args)
                    ok = True
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        except BaseException as e:  # noqa: BLE001 - whatever the agent code raised
            error = _describe(e, limits)
        if _timed_out:  # also when the agent code swallowed _Timeout and then finished
            ok, error = False, f"TimeoutError: code ran longer than {float(limits.timeout_s)} s"
    send(b"U")
    value, stdout = None, out()
    try:
        value = session.result() if session is not None else None
        return pickle.dumps((ok, error, value, stdout), pickle.HIGHEST_PROTOCOL)
    except BaseException as e:  # noqa: BLE001 - result() failed or is not picklable
        what = "failed" if value is None else "is not picklable"
        error = error or f"SandboxError: session.result() {what}: {_describe(e, limits)}"
        return pickle.dumps((False, error, None, stdout), pickle.HIGHEST_PROTOCOL)
    finally:
        env.clear()  # break the functions<->globals cycle: big data is freed now, not at some gc


def _worker_main(conn: Any, factory: str, limits: SandboxLimits) -> None:
    """Worker process: import the factory, set limits, then serve requests until EOF."""
    try:
        _load_factory(factory)
        compile_code("def act():\n    pass\n", 100)  # warm the compiler path
    except BaseException as e:  # noqa: BLE001
        conn.send(("fail", f"{type(e).__name__}: {e}"))
        return
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's business
    _set_rlimits(limits.memory_mb)
    high_water = _vm_bytes() + limits.memory_mb * 2**19  # half the headroom
    conn.send(("ready", os.getpid()))
    while True:
        try:
            request = conn.recv_bytes()
        except (EOFError, OSError):
            return
        conn.send_bytes(b"R" + _run_one(request, factory, limits, conn.send_bytes))
        if _vm_bytes() > high_water:  # garbage cycles (old sessions) must not eat the next run's memory
            gc.collect()


# ------------------------------------------------------------------------------------ parent
_PLAIN_BUILTINS = frozenset("set frozenset bytearray complex slice range list dict tuple int float str bytes bool".split())


class _ResultUnpickler(pickle.Unpickler):
    """Reads a worker's reply, which a process running untrusted code wrote: the pickle may name plain builtin
    types and classes of the factory's own module, never a callable such as os.system (defence in depth: even
    a worker taken over by its code cannot run anything in the parent through its reply)."""

    def __init__(self, data: bytes, module: str) -> None:
        import io
        super().__init__(io.BytesIO(data))
        self.module = module

    def find_class(self, module: str, name: str) -> Any:
        if module == "builtins" and name in _PLAIN_BUILTINS:
            return super().find_class(module, name)
        if module == self.module and "." not in name:
            found = super().find_class(module, name)
            if isinstance(found, type) and not issubclass(found, BaseException):
                return found
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a sandbox reply (only plain data and "
                                     f"classes of {self.module})")


def _stop_worker(state: dict[str, Any]) -> None:
    """Close the pipe and SIGKILL the worker (it holds no state worth a graceful exit)."""
    proc, conn = state.pop("proc", None), state.pop("conn", None)
    if conn is not None:
        conn.close()
    if proc is not None:
        proc.kill()
        proc.join(2.0)


@contextlib.contextmanager
def _without_main_module(factory: str):
    """Start the worker without the caller's `__main__`: spawn would re-run it in the worker, which runs
    a script's unguarded top level again (a script that makes an env at import would recurse) and fails
    for a script read from stdin. The worker needs only this module and the factory's module."""
    main = sys.modules.get("__main__")
    if main is None or factory.partition(":")[0] == "__main__":
        yield
        return
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if k in main.__dict__}
    main.__dict__.pop("__file__", None)
    main.__spec__ = None
    try:
        yield
    finally:
        main.__dict__.update(saved)
        if "__spec__" not in saved:
            del main.__spec__


class Sandbox:
    """Persistent worker process running untrusted code; restarted transparently after a kill or crash.

    The worker starts in the constructor (RuntimeError if the factory cannot be imported). One run
    at a time (a lock serialises callers). Closed by close(), the context manager, or at exit.
    """

    def __init__(self, factory: str, limits: SandboxLimits = SandboxLimits()) -> None:
        if ":" not in factory:
            raise ValueError(f"factory must look like 'package.module:function', got {factory!r}")
        self.factory, self.limits = factory, limits
        self.start_time_s = 0.0  # duration of the last worker start
        self._ctx = mp.get_context("spawn")
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {}  # proc, conn; shared with the exit-time finalizer
        self._closed = False
        self._finalizer = weakref.finalize(self, _stop_worker, self._state)
        self._start()

    @property
    def worker_pid(self) -> int | None:
        proc = self._state.get("proc")
        return proc.pid if proc is not None else None

    def _start(self) -> None:
        t0 = time.perf_counter()
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=_worker_main, args=(child, self.factory, self.limits),
                                 name="octopus-sandbox", daemon=not mp.current_process().daemon)
        with _without_main_module(self.factory):
            proc.start()
        child.close()
        self._state.update(proc=proc, conn=parent)
        try:
            status, info = parent.recv() if parent.poll(self.limits.setup_timeout_s) else ("fail", "timeout")
        except (EOFError, OSError):
            status, info = "fail", f"worker exited with code {proc.exitcode}"
        if status != "ready":
            _stop_worker(self._state)
            raise RuntimeError(f"sandbox worker for {self.factory!r} failed to start: {info}")
        self.start_time_s = time.perf_counter() - t0

    def _fail(self, t0: float, error: str | None) -> SandboxResult:
        """Kill (or reap) the worker, name the crash if error is None, restart for the next run."""
        duration = time.perf_counter() - t0
        proc = self._state.get("proc")
        if error is None and proc is not None:  # the worker died by itself
            proc.join(1.0)
            code = proc.exitcode
            if code is not None and code < 0:
                name = signal.Signals(-code).name if -code in signal.valid_signals() else str(-code)
                error = f"RuntimeError: the sandbox worker was killed by {name}"
                if -code == signal.SIGKILL:
                    error += f" (out of memory? limit {self.limits.memory_mb} MB)"
            else:
                error = f"RuntimeError: the sandbox worker exited unexpectedly (code {code})"
        _stop_worker(self._state)
        try:
            self._start()
        except Exception:  # noqa: BLE001 - retried by the next run
            pass
        return SandboxResult(False, error, None, "", duration)

    def run(self, code: str, payload: Any, entry: str = "act") -> SandboxResult:
        """Exec ``code`` and call ``entry(*session.args)`` in the worker, session = factory(payload).

        Never raises for anything the code does; raises only for caller errors (unpicklable
        payload, closed sandbox, a worker that cannot be restarted).
        """
        request = pickle.dumps((code, payload, entry), pickle.HIGHEST_PROTOCOL)
        lim = self.limits
        phases = ((b"S", lim.setup_timeout_s, f"session setup took longer than {lim.setup_timeout_s} s"),
                  (b"U", lim.timeout_s + _GRACE_S, f"code ran longer than {float(lim.timeout_s)} s"),
                  (b"R", lim.setup_timeout_s, f"session.result() took longer than {lim.setup_timeout_s} s"))
        with self._lock:
            if self._closed:
                raise RuntimeError("sandbox is closed")
            if "proc" not in self._state or not self._state["proc"].is_alive():
                _stop_worker(self._state)
                self._start()
            t0, conn = time.perf_counter(), self._state["conn"]
            try:
                conn.send_bytes(request)
                for tag, wait, timeout_message in phases:
                    if not conn.poll(wait):
                        return self._fail(t0, f"TimeoutError: {timeout_message}")
                    message = conn.recv_bytes()
                    if message[:1] != tag:
                        return self._fail(t0, "RuntimeError: sandbox protocol error")
            except (EOFError, OSError):
                return self._fail(t0, None)
            except BaseException:  # e.g. KeyboardInterrupt: never reuse a half-read pipe
                _stop_worker(self._state)
                raise
            try:  # a reply that is not a 4-tuple is a ValueError/TypeError here, reported below
                ok, error, value, stdout = _ResultUnpickler(message[1:], self.factory.partition(":")[0]).load()
            except Exception as e:  # noqa: BLE001 - e.g. a class the parent cannot import
                ok, error, value, stdout = False, f"SandboxError: result cannot be unpickled: {e}", None, ""
            if not (isinstance(ok, bool) and isinstance(error, (str, type(None))) and isinstance(stdout, str)):
                ok, error, value, stdout = False, "SandboxError: malformed reply from the worker", None, ""
            return SandboxResult(ok, error, value, stdout, time.perf_counter() - t0)

    def close(self) -> None:
        """Terminate the worker; later runs raise RuntimeError."""
        with self._lock:
            self._closed = True
            self._finalizer()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
