"""The shape of the code, checked: no import cycles, imports that follow the layers, short functions.

Every import counts, wherever it is written: at the top of a module, inside a function (a lazy
import) and under ``if TYPE_CHECKING:`` (a type-only import is still a dependency, and the cycle it
closes is still a cycle in the design). A lazy import keeps a heavy library (torch, ray, numpy...)
out of `tunefleet --help`; it never hides a cycle, since it is an edge here like any other.

The layers, top first (a layer may import only the layers its row names, and itself without a
cycle): the command line registers the front ends; a front end (a `tunefleet` command, the MCP
server, a benchmark script) parses, prints and calls the library; the library's operations (the
run API in controller/job.py, audit, export, the HTML report) drive the tuning run (tuner, resume),
which drives the strategies and evaluations (learn) over the fleet (SSH, the agent's client); the
spec layer (what may run: the spec, the catalog, the gate, profiles) and the records (run
folders, results, history) are data both use; the agent (node_agent/) imports nothing of the
controller, nor anything outside the standard library.

Run as a script for a report of what a change broke:
``python -m tests.unit.test_layers`` (cycles, imports against the layers, functions over the limit).
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("controller", "node_agent", "bench")
MAX_FUNCTION_LINES = 80
MAX_CLI_LINES = 350

# layer -> the modules in it: a name covers the module and its submodules, `=name` the module alone
# (`=controller` is the package's __init__), a name ending in * every module whose name begins so
# (controller.mcp* is controller/mcp.py, controller/mcp_server.py, controller/mcp/...).
LAYERS: dict[str, tuple[str, ...]] = {
    "cli": ("controller.cli",),
    "front ends": ("controller.commands", "controller.mcp*", "controller.frontend"),
    "benchmarks": ("bench",),
    "views": ("controller.live", "controller.report", "controller.tblog"),
    "operations": ("controller.job", "controller.audit", "controller.export", "controller.htmlreport",
                   "controller.svgplot"),
    "tuning": ("controller.tuner", "controller.resume"),
    "learn": ("controller.learn",),
    "planning": ("controller.strategist",),
    "records": ("controller.runs", "controller.result", "controller.history"),
    "spec": ("controller.spec", "controller.knob", "controller.rewards", "controller.coupled", "controller.training",
             "controller.priors", "controller.statemetrics", "controller.catalog", "controller.timing",
             "controller.benchcheck", "controller.gate", "controller.conflicts", "controller.lifecycle",
             "controller.pairs", "controller.profiles"),
    "fleet": ("controller.fleet",),
    "base": ("=controller", "controller.errors"),
    "agent": ("node_agent",),
}
ORDER = tuple(LAYERS)
_BELOW_FRONT_ENDS = ORDER[ORDER.index("views"):]
# layer -> the layers it may import (besides itself). Front ends may use any layer of the library;
# below them, exactly the dependencies the code has, so a new one is a decision, made here.
ALLOWED: dict[str, frozenset[str]] = {
    "cli": frozenset({"front ends", "base"}),
    "front ends": frozenset(_BELOW_FRONT_ENDS),
    "benchmarks": frozenset(_BELOW_FRONT_ENDS),
    "views": frozenset({"learn", "spec", "fleet", "base"}),
    "operations": frozenset({"tuning", "learn", "records", "spec", "fleet", "base"}),
    "tuning": frozenset({"learn", "records", "spec", "fleet", "base", "agent"}),
    "learn": frozenset({"spec", "fleet", "base", "agent"}),
    "planning": frozenset({"spec", "fleet", "base"}),
    "records": frozenset({"base"}),
    "spec": frozenset({"fleet", "base", "agent"}),
    "fleet": frozenset({"base", "agent"}),
    "base": frozenset(),
    "agent": frozenset(),
}


# --- the graph ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Import:
    source: str  # the importing module
    target: str  # the imported module of the project, or the top-level name of another package
    line: int
    internal: bool


def modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the project's packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The project module an import of ``name`` loads (its longest known prefix), else None."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _absolute(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """Every import in one file, top level or not: `import a.b`, `from a import b` (b a module or a
    name in a), relative ones."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(module, path.name == "__init__.py", node)
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            target = _resolve(name, known)
            if target is None:
                out.append(Import(module, name.split(".")[0], node.lineno, internal=False))
            elif target != module:
                out.append(Import(module, target, node.lineno, internal=True))
    return out


def graph(root: Path = ROOT) -> list[Import]:
    known = modules(root)
    return [i for m, p in known.items() for i in imports_of(m, p, known)]


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """The groups of two or more nodes that reach each other (Tarjan), each sorted: the cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(v: str) -> None:  # recursion depth is bounded by the number of modules (a few hundred)
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return sorted(groups)


def component(module: str, root: Path = ROOT) -> str:
    """What a package-level cycle is counted between: each subpackage of controller as one (the
    learn package, the strategist...), the agent as one, every other module as itself."""
    parts = module.split(".")
    if parts[0] == "node_agent":
        return "node_agent"
    if parts[0] == "controller" and len(parts) > 1 and (root / "controller" / parts[1]).is_dir():
        return ".".join(parts[:2])
    return module


def cycles(imports: list[Import], root: Path = ROOT) -> dict[str, list[list[str]]]:
    """Import cycles between modules, and between packages (a module of one importing a module
    of the other and back, which no single module pair shows)."""
    by_module: dict[str, set[str]] = {}
    by_component: dict[str, set[str]] = {}
    for i in imports:
        if i.internal:
            by_module.setdefault(i.source, set()).add(i.target)
            a, b = component(i.source, root), component(i.target, root)
            if a != b:
                by_component.setdefault(a, set()).add(b)
    return {"modules": strongly_connected(by_module), "packages": strongly_connected(by_component)}


# --- the layers --------------------------------------------------------------------------------

def layer_of(module: str) -> str | None:
    """The layer whose most specific name covers the module."""
    best, length = None, -1
    for layer, names in LAYERS.items():
        for name in names:
            if name.endswith("*"):
                hit = module.startswith(name[:-1])
            elif name.startswith("="):
                hit = module == name[1:]
            else:
                hit = module == name or module.startswith(name + ".")
            if hit and len(name) > length:
                best, length = layer, len(name)
    return best


def layer_violations(imports: list[Import]) -> list[str]:
    out = []
    for i in imports:
        if not i.internal:
            continue
        a, b = layer_of(i.source), layer_of(i.target)
        if a is not None and b is not None and a != b and b not in ALLOWED[a]:
            out.append(f"{i.source}:{i.line} imports {i.target}: {a} may not import {b} "
                       f"(allowed: {', '.join(sorted(ALLOWED[a])) or 'nothing'})")
    return out


# --- function length ---------------------------------------------------------------------------

def long_functions(root: Path = ROOT, limit: int = MAX_FUNCTION_LINES) -> list[tuple[int, str]]:
    """(lines, where) of every function or method longer than ``limit`` lines, decorators and
    parameter declarations included, longest first."""
    out = []
    for path in modules(root).values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                lines = node.end_lineno - start + 1
                if lines > limit:
                    out.append((lines, f"{path.relative_to(root)}:{node.lineno} {node.name}"))
    return sorted(out, reverse=True)


# --- the checks --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def imports() -> list[Import]:
    return graph()


def _lines(items) -> str:
    return "\n".join(" <-> ".join(i) if isinstance(i, list) else str(i) for i in items)


def test_no_module_imports_another_that_imports_it_back(imports):
    found = cycles(imports)["modules"]
    assert found == [], "import cycles (python -m tests.unit.test_layers shows the imports):\n" + _lines(found)


def test_no_package_imports_another_that_imports_it_back(imports):
    found = cycles(imports)["packages"]
    assert found == [], "import cycles between packages:\n" + _lines(found)


def test_every_module_has_a_layer():
    found = [m for m in modules() if layer_of(m) is None]
    assert found == [], "modules in no layer (add them to LAYERS):\n" + _lines(found)


def test_the_layer_table_only_points_down():
    assert set(ALLOWED) == set(LAYERS)
    for layer, allowed in ALLOWED.items():
        above = [b for b in allowed if ORDER.index(b) <= ORDER.index(layer)]
        assert above == [], f"{layer} may import a layer above it or beside it: {above}"


def test_every_import_follows_the_layers(imports):
    found = layer_violations(imports)
    assert found == [], "imports against the layers:\n" + _lines(found)


def test_the_agent_imports_only_the_standard_library_and_itself(imports):
    agent = [i for i in imports if i.source.split(".")[0] == "node_agent"]
    assert agent, "no import found in node_agent/: the walk is broken"
    outside = [f"{i.source}:{i.line} imports {i.target}" for i in agent
               if (i.internal and not i.target.startswith("node_agent"))
               or (not i.internal and i.target not in sys.stdlib_module_names)]
    assert outside == [], "the agent imports outside the standard library:\n" + _lines(outside)


def test_no_function_is_longer_than_the_limit():
    found = long_functions()
    assert found == [], f"functions over {MAX_FUNCTION_LINES} lines:\n" + _lines(f"{n} {w}" for n, w in found)


def test_every_package_is_installed():
    """pyproject.toml names the packages setuptools ships: one left out imports in a checkout and is
    missing from an install (controller.commands was)."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    packages = {".".join(init.relative_to(ROOT).parent.parts)
                for top in ("controller", "node_agent") for init in (ROOT / top).rglob("__init__.py")}
    assert sorted(packages - listed) == []


def test_the_command_line_module_stays_a_thin_registry():
    lines = len((ROOT / "controller" / "cli.py").read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_CLI_LINES


# --- the checker, on trees made to break each rule -----------------------------------------------

def _tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for package in PACKAGES:
        (root / package).mkdir(exist_ok=True)
        (root / package / "__init__.py").touch()
    return root


def test_a_cycle_hidden_in_a_function_or_behind_type_checking_is_found(tmp_path):
    root = _tree(tmp_path, {
        "controller/a.py": "from controller import b\n",
        "controller/b.py": "def f():\n    from controller.a import x\n",
        "controller/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import D\n",
        "controller/d.py": "from . import c\n",
    })
    assert cycles(graph(root), root)["modules"] == [["controller.a", "controller.b"], ["controller.c", "controller.d"]]


def test_a_cycle_between_packages_is_found_though_no_module_pair_has_one(tmp_path):
    root = _tree(tmp_path, {
        "controller/spec.py": "def f():\n    from controller.learn import training\n",
        "controller/learn/__init__.py": "",
        "controller/learn/training.py": "",
        "controller/learn/search.py": "from controller.spec import f\n",
    })
    found = cycles(graph(root), root)
    assert found["modules"] == [] and found["packages"] == [["controller.learn", "controller.spec"]]


def test_an_import_against_the_layers_is_reported(tmp_path):
    root = _tree(tmp_path, {
        "node_agent/agent.py": "def f():\n    from controller import errors\n",
        "controller/errors.py": "",
        "controller/fleet/__init__.py": "",
        "controller/fleet/client.py": "import node_agent.agent\nfrom controller.job import run\n",
        "controller/job.py": "",
    })
    found = layer_violations(graph(root))
    assert len(found) == 2
    assert found[0].startswith("controller.fleet.client:2 imports controller.job: fleet may not import operations")
    assert found[1].startswith("node_agent.agent:2 imports controller.errors: agent may not import base")


def test_a_front_end_beside_the_commands_may_use_the_library():
    assert layer_of("controller.commands.mcp") == layer_of("controller.mcp_server") == "front ends"
    assert layer_of("controller.mcp.tools") == layer_of("controller.mcpserver.tools") == "front ends"
    assert layer_of("controller.frontend") == "front ends"  # what the front ends share
    assert "operations" in ALLOWED["front ends"] and "front ends" in ALLOWED["cli"]


def test_a_long_function_is_measured_with_its_signature(tmp_path):
    params = "".join(f"    p{i}: int = 0,\n" for i in range(60))
    root = _tree(tmp_path, {"bench/long.py": "@staticmethod\ndef f(\n" + params + "):\n" + "    pass\n" * 19})
    assert long_functions(root) == [(82, "bench/long.py:2 f")]


def report(root: Path = ROOT) -> int:
    imports = graph(root)
    found = cycles(imports, root)
    for kind, groups in found.items():
        print(f"import cycles between {kind}: {len(groups)}")
        of = (lambda m: m) if kind == "modules" else (lambda m: component(m, root))
        for group in groups:
            print("   ", " <-> ".join(group))
            for i in imports:
                if i.internal and of(i.source) in group and of(i.target) in group and of(i.source) != of(i.target):
                    print(f"        {i.source}:{i.line} imports {i.target}")
    violations = layer_violations(imports)
    print(f"imports against the layers: {len(violations)}")
    for v in violations:
        print("   ", v)
    long = long_functions(root)
    print(f"functions over {MAX_FUNCTION_LINES} lines: {len(long)}")
    for lines, where in long:
        print(f"    {lines} {where}")
    return 1 if violations or long or any(found.values()) else 0


if __name__ == "__main__":
    sys.exit(report(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT))
