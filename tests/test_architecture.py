"""Layering of the package, read from the source (ast): every import, module-level or inside a function.

    octopus.sim        the simulator: knows nothing of agents, models, training, stages or the CLI
    octopus.protocol   the paper's formats: imports nothing of this package but itself
    octopus.model      the policy models: never reach into the simulator
    typer              only the CLI (octopus.cli) reads argv
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "octopus"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, nested ones included.

    `from a import b` yields both `a` and `a.b` (b may be a submodule); relative imports are resolved."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
            out += [(node.lineno, f"{mod}.{a.name}") for a in node.names if a.name != "*"]
    return out


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
IMPORTS = {name: imports(path) for name, path in MODULES.items()}


def within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def violations(importer: str, forbidden) -> list[str]:
    """`module:line imports X` for every import by a module of `importer` that `forbidden(X)` rejects."""
    return [f"{mod}:{line} imports {target}" for mod, found in IMPORTS.items() if within(mod, importer)
            for line, target in found if forbidden(target)]


def test_every_module_is_parsed_including_lazy_imports():
    assert {"octopus.sim.env", "octopus.protocol", "octopus.model.policy", "octopus.cli"} <= set(MODULES)
    # a function-level import is seen: env_for builds the env lazily
    assert any(t == "octopus.sim.env" for _, t in IMPORTS["octopus.agents"])


def test_relative_and_nested_imports_are_resolved(tmp_path):
    pkg = tmp_path / "octopus" / "sim"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from .env import X\n")
    (pkg / "x.py").write_text("from . import y\nfrom ..agents import oracle\n"
                              "class C:\n    def f(self):\n        import typer\n"
                              "        if True:\n            from octopus.model import policy\n")
    root = tmp_path / "octopus"
    assert sorted(imports(pkg / "x.py", root)) == [(1, "octopus.sim"), (1, "octopus.sim.y"), (2, "octopus.agents"),
                                           (2, "octopus.agents.oracle"), (5, "typer"), (7, "octopus.model"),
                                           (7, "octopus.model.policy")]
    assert imports(pkg / "__init__.py", root) == [(1, "octopus.sim.env"), (1, "octopus.sim.env.X")]


SIM_MUST_NOT_IMPORT = ("agents", "model", "training", "evaluation", "data", "orchestration", "validation", "cli")


def test_the_simulator_imports_no_layer_above_it():
    bad = violations("octopus.sim", lambda t: any(within(t, f"octopus.{p}") for p in SIM_MUST_NOT_IMPORT))
    assert not bad, "octopus.sim must not depend on agents, models, training, stages or the CLI:\n" + "\n".join(bad)


def test_the_protocol_imports_only_itself():
    bad = violations("octopus.protocol", lambda t: within(t, "octopus") and not within(t, "octopus.protocol"))
    assert not bad, "octopus.protocol must import nothing of octopus but octopus.protocol:\n" + "\n".join(bad)


def test_the_models_never_reach_into_the_simulator():
    bad = violations("octopus.model", lambda t: within(t, "octopus.sim"))
    assert not bad, "octopus.model must not import octopus.sim:\n" + "\n".join(bad)


def test_only_the_cli_imports_typer():
    bad = [v for v in violations("octopus", lambda t: within(t, "typer")) if not v.startswith("octopus.cli")]
    assert not bad, "typer belongs to octopus.cli only:\n" + "\n".join(bad)


@pytest.mark.parametrize("source, rule", [
    ("def f():\n    from octopus.agents import make_agent\n", "sim"),
    ("import typer\n", "typer"),
])
def test_a_violation_would_be_caught(tmp_path, source, rule):
    """The checks are not vacuous: a planted lazy import is found and named with its line."""
    path = tmp_path / "octopus" / "sim" / "planted.py"
    path.parent.mkdir(parents=True)
    path.write_text(source)
    found = imports(path, tmp_path / "octopus")
    if rule == "sim":
        assert (2, "octopus.agents") in found and (2, "octopus.agents.make_agent") in found
    else:
        assert found == [(1, "typer")]
