"""The shape of the package: a pinned surface that catches leaks, and no import cycles."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import acp_async
from acp_async import ACPClient

PACKAGE = Path(acp_async.__file__).parent
DOCUMENTED_SUBMODULES = {"errors", "models", "testing", "fleet", "cli", "metrics"}


def test_nothing_public_leaks_from_a_fresh_import() -> None:
    """After `import acp_async`, its public names are `__all__` plus the modules it imports."""
    code = "import acp_async, json; print(json.dumps(sorted(vars(acp_async))))"
    names = json.loads(subprocess.check_output([sys.executable, "-c", code], text=True))
    public = {name for name in names if not name.startswith("_")} | {"__version__"}
    assert public == set(acp_async.__all__) | {"errors", "models"}


def test_public_names_are_all_or_documented_submodules() -> None:
    """Whatever else was imported, no undocumented public name appears (say `logging`)."""
    public = {name for name in vars(acp_async) if not name.startswith("_")}
    assert public - set(acp_async.__all__) <= DOCUMENTED_SUBMODULES


def test_client_surface_is_runs_config_closed_close_and_with_options() -> None:
    """The send path is private: a client shows `runs`, `config`, `closed`, `close()` and
    `with_options()`, and so does a client derived by `with_options`."""
    client = ACPClient("tok", base_url="http://127.0.0.1:9")
    for each in (client, client.with_options(timeout=1.0)):
        assert [name for name in dir(each) if not name.startswith("_")] == [
            "close",
            "closed",
            "config",
            "runs",
            "with_options",
        ]
    assert [name for name in dir(client.runs) if not name.startswith("_")] == [
        "iter",
        "list",
        "list_many",
        "pages",
        "wait_for",
        "watch",
    ]


def _runtime_imports(path: Path) -> set[str]:
    """Modules of ours that ``path`` imports when it runs (``TYPE_CHECKING`` blocks aside)."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = f"{base}.{node.module}" if node.level else (node.module or "")
                if node.level and node.module is None:
                    found.update(f"{base}.{alias.name}" for alias in node.names)
                else:
                    found.add(target)
            elif isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and not isinstance(node, ast.FunctionDef):
                    visit([n for n in inner if isinstance(n, ast.stmt)])
                    for handler in inner:
                        if isinstance(handler, ast.ExceptHandler):
                            visit(handler.body)

    visit(ast.parse(path.read_text()).body)
    return {name for name in found if name.startswith("acp_async")}


def test_no_import_cycles_among_product_modules() -> None:
    """Module-level imports form a DAG: each module can be read without its dependants."""
    graph = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        graph[name] = {dep for dep in _runtime_imports(path) if dep != name}
    names = set(graph)
    graph = {node: {d for d in deps if d in names} for node, deps in graph.items()}

    visiting: list[str] = []
    done: set[str] = set()

    def walk(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, " -> ".join([*visiting[visiting.index(node) :], node])
        visiting.append(node)
        for dep in sorted(graph[node]):
            # A package's __init__ re-exports its modules; a module importing the package's
            # public names through it is the usual, harmless direction.
            if dep != node.rpartition(".")[0]:
                walk(dep)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        walk(node)


def _extras_packages() -> list[str]:
    """The import names of every package an extra (but ``dev``) installs, read from
    pyproject.toml, so a package added to an extra is covered at once."""
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    extras = project["project"]["optional-dependencies"]
    names = {
        re.split(r"[<>=!~;\[ ]", requirement, maxsplit=1)[0].strip().replace("-", "_").lower()
        for extra, requirements in extras.items()
        if extra != "dev"
        for requirement in requirements
    }
    return sorted(names)


def test_import_loads_no_optional_dependency() -> None:
    """`import acp_async` loads no package of any extra (speed, cli, redis, metrics)."""
    packages = _extras_packages()
    assert {"orjson", "xxhash", "redis", "hiredis", "prometheus_client"} <= set(packages)
    code = f"import sys, acp_async; print([m for m in {packages!r} if m in sys.modules])"
    assert subprocess.check_output([sys.executable, "-c", code], text=True).strip() == "[]"
