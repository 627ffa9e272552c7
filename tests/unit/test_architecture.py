"""The layering of docs/architecture.md, checked on the source: walk every module's imports
(ast, nothing is imported) and fail on an import cycle or an import against the layers.

What counts:
- cycles: imports that run when a module is imported (module level, class bodies, module-level
  `try`/`if`), not those inside functions (they run later, once everything is loaded) nor
  under `if TYPE_CHECKING:`. Importing `a.b.c` also runs `a` and `a.b`, so those are edges
  too, except the importer's own parent packages (already loading when it runs);
- layering: every import, wherever it sits (a function-level import is a dependency too).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import smiless

ROOT = Path(smiless.__file__).parent.parent

#: The outermost layer: nothing else may import it (the `python -m smiless` entry point is its door).
CLI = "smiless.cli"
CLI_DOORS = frozenset({"smiless.__main__"})
#: The pure core (no I/O) and what it must not reach.
PURE = ("smiless.policy", "smiless.sim")
EDGES = (
    "smiless.services",
    "smiless.backends",
    "smiless.store",
    "smiless.server",
    "grpc",
    "grpc_health",
    "redis",
    "docker",
    "ray",
)
#: Services talk over gRPC; what they share lives here.
SERVICES = "smiless.services"
SERVICES_SHARED = frozenset({"smiless.services", "smiless.services.common"})


@dataclass(frozen=True)
class Import:
    importer: str
    target: str  # a module of the package when it is one, else the name as written
    line: int
    eager: bool  # runs when the importer is imported


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of `package` under `root` (a package is named by its __init__)."""
    out: dict[str, Path] = {}
    for path in sorted((root / package.replace(".", "/")).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST, eager: bool) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child, eager
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield from _walk(child, False)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), False)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), eager)
        else:
            yield from _walk(child, eager)


def imports(root: Path, package: str) -> list[Import]:
    """Every import in the package's modules, resolved to the package's module names."""
    modules = module_names(root, package)
    out: list[Import] = []
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        tree = ast.parse(path.read_text(), str(path))
        for node, eager in _walk(tree, True):
            if isinstance(node, ast.Import):
                out.extend(Import(name, a.name, node.lineno, eager) for a in node.names)
                continue
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append(Import(name, sub if sub in modules else base, node.lineno, eager))
    return out


def graph(found: list[Import], modules: set[str]) -> dict[str, set[str]]:
    """Eager edges between the package's modules, parent packages of the target included."""
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for imp in found:
        if not imp.eager or (imp.target not in modules and not any(within(imp.target, m) for m in modules)):
            continue
        parts = imp.target.split(".")
        for k in range(1, len(parts) + 1):
            target = ".".join(parts[:k])
            if target in modules and target != imp.importer and not within(imp.importer, target):
                edges[imp.importer].add(target)
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def _service(name: str) -> str | None:
    """The service a module belongs to (smiless.services.X...), None for the shared ones."""
    parts = name.split(".")
    if len(parts) < 3 or not within(name, SERVICES) or name in SERVICES_SHARED:
        return None
    return parts[2]


def layering_violations(found: list[Import]) -> list[str]:
    bad = []
    for imp in found:
        where = f"{imp.importer}:{imp.line} imports {imp.target}"
        if within(imp.target, CLI) and not within(imp.importer, CLI) and imp.importer not in CLI_DOORS:
            bad.append(f"{where}: only the CLI imports the CLI")
        mine, theirs = _service(imp.importer), _service(imp.target)
        if mine and theirs and mine != theirs:
            bad.append(f"{where}: a service uses another's internals (share through services.common)")
        if any(within(imp.importer, p) for p in PURE) and any(within(imp.target, e) for e in EDGES):
            bad.append(f"{where}: the pure core reaches an edge")
    return list(dict.fromkeys(bad))


def check(root: Path, package: str) -> list[str]:
    """Every violation in the package: its cycles, then its imports against the layers."""
    found = imports(root, package)
    modules = set(module_names(root, package))
    out = [f"import cycle: {' -> '.join(c)}" for c in cycles(graph(found, modules))]
    return out + layering_violations(found)


# --- the package itself ----------------------------------------------------------------------
def test_smiless_keeps_its_layers() -> None:
    assert check(ROOT, "smiless") == []


def test_the_walk_sees_the_package() -> None:
    """Guard against a checker that passes because it reads nothing."""
    found = imports(ROOT, "smiless")
    assert any(i.importer == "smiless.cli.main" and i.target == "smiless.cli.replay" for i in found)
    assert any(i.importer == "smiless.replay.report" and i.target == "smiless.sim.workload" for i in found)
    assert len(module_names(ROOT, "smiless")) > 100


# --- the checker on a synthetic package ------------------------------------------------------
def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


LAYERED = {
    "smiless/__init__.py": "",
    "smiless/__main__.py": "from smiless.cli.main import app\n",
    "smiless/cli/__init__.py": "",
    "smiless/cli/app.py": "import typer\n",
    "smiless/cli/main.py": "from smiless.cli import run\nfrom smiless.cli.app import app\n",
    "smiless/cli/run.py": "from .app import app\nfrom smiless.services.gateway import service\n",
    "smiless/services/__init__.py": "def build():\n    from smiless.services.gateway import service\n",
    "smiless/services/common.py": "import grpc\n",
    "smiless/services/gateway/__init__.py": "",
    "smiless/services/gateway/service.py": "from smiless.services import common\nfrom . import router\n",
    "smiless/services/gateway/router.py": "from smiless.policy import rule\n",
    "smiless/services/optimizer/__init__.py": "",
    "smiless/services/optimizer/service.py": "from smiless.services.common import x\n",
    "smiless/policy/__init__.py": "",
    "smiless/policy/rule.py": (  # a type-only import runs never: no cycle
        "import numpy\nfrom typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from smiless.sim import engine\n"
    ),
    "smiless/sim/__init__.py": "from smiless.sim.engine import run\n",
    "smiless/sim/engine.py": "from smiless.policy import rule\n",
}


def test_a_layered_package_passes(tmp_path: Path) -> None:
    write(tmp_path, LAYERED)
    assert check(tmp_path, "smiless") == []


def test_a_function_level_import_does_not_make_a_cycle(tmp_path: Path) -> None:
    write(tmp_path, LAYERED | {"smiless/policy/rule.py": "def f():\n    from smiless.sim import engine\n"})
    assert check(tmp_path, "smiless") == []


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"smiless/policy/rule.py": "from smiless.sim import engine\n"},
            "import cycle: smiless.policy.rule -> smiless.sim -> smiless.sim.engine",
        ),
        (  # subcommands that import the entry point that imports them
            {"smiless/cli/run.py": "from smiless.cli.main import app\n"},
            "import cycle: smiless.cli.main -> smiless.cli.run",
        ),
        (  # importing a submodule runs its package's __init__ too
            {"smiless/policy/rule.py": "import smiless.sim.model\n", "smiless/sim/model.py": ""},
            "import cycle: smiless.policy.rule -> smiless.sim -> smiless.sim.engine",
        ),
        (
            {"smiless/services/gateway/router.py": "from smiless.cli.app import console\n"},
            "smiless.services.gateway.router:1 imports smiless.cli.app: only the CLI imports the CLI",
        ),
        (
            {"smiless/services/gateway/router.py": "def f():\n    from ...cli import app\n"},
            "smiless.services.gateway.router:2 imports smiless.cli.app: only the CLI imports the CLI",
        ),
        (
            {"smiless/services/optimizer/service.py": "from smiless.services.gateway.router import R\n"},
            "smiless.services.optimizer.service:1 imports smiless.services.gateway.router: a service",
        ),
        (
            {"smiless/sim/engine.py": "def f():\n    import redis.asyncio\n"},
            "smiless.sim.engine:2 imports redis.asyncio: the pure core reaches an edge",
        ),
        (
            {"smiless/policy/rule.py": "from smiless.services import common\n"},
            "smiless.policy.rule:1 imports smiless.services.common: the pure core reaches an edge",
        ),
    ],
)
def test_a_violation_fails(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    write(tmp_path, LAYERED | files)
    found = check(tmp_path, "smiless")
    assert any(v.startswith(expected) for v in found), found
