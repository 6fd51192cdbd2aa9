"""The shape of the package: a pinned surface that catches leaks, no import cycles, no
module touching another's private names, and public signatures that name public types."""

from __future__ import annotations

import ast
import importlib
import inspect
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import attrs

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


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(
        ".__init__"
    )


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _trees() -> Iterator[tuple[str, ast.Module]]:
    for name, path in MODULES.items():
        yield name, ast.parse(path.read_text())


def _package_of(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _imported_from(module: str, node: ast.ImportFrom) -> str:
    """The absolute name of the module ``node`` imports from."""
    if not node.level:
        return node.module or ""
    base = _package_of(module)
    for _ in range(node.level - 1):
        base = base.rpartition(".")[0]
    return f"{base}.{node.module}" if node.module else base


def _is_type_checking(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(module: str, tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import that runs (module level or in a function), ``TYPE_CHECKING`` aside."""

    def visit(nodes: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
        for node in nodes:
            if _is_type_checking(node):
                yield from visit(cast(ast.If, node).orelse)
                continue
            if isinstance(node, ast.Import | ast.ImportFrom):
                yield node
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.stmt):
                    yield from visit([child])
                elif isinstance(child, ast.ExceptHandler):
                    yield from visit(child.body)

    yield from visit(tree.body)


def _dependencies(module: str, tree: ast.Module) -> set[str]:
    """Modules of ours that ``module`` imports when it runs (``from pkg import Name`` is an
    import of ``pkg``; ``from pkg import submodule`` of that submodule)."""
    found: set[str] = set()
    for node in _imports(module, tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        source = _imported_from(module, node)
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            found.add(submodule if submodule in MODULES else source)
    return {name for name in found if name in MODULES and name != module}


def test_no_import_cycles_among_product_modules() -> None:
    """Imports form a DAG, lazy ones in functions included and only ``TYPE_CHECKING``
    blocks aside: each module can be read without its dependants."""
    graph = {name: _dependencies(name, tree) for name, tree in _trees()}
    visiting: list[str] = []
    done: set[str] = set()

    def walk(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, " -> ".join([*visiting[visiting.index(node) :], node])
        visiting.append(node)
        for dep in sorted(graph[node]):
            walk(dep)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        walk(node)


def test_the_cycle_check_sees_imports_of_a_package_and_in_functions() -> None:
    """``from .. import Name`` is an edge to the package, a function's import counts, and a
    ``TYPE_CHECKING`` import does not: the check above would see a cycle through them."""
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "from .. import ACPClient\n"
        "from . import _store\n"
        "if TYPE_CHECKING:\n"
        "    from ..metrics import PrometheusMetrics\n"
        "def f():\n"
        "    from .._runs import poll_source\n"
    )
    assert _dependencies("acp_async.fleet._fleet", tree) == {
        "acp_async",
        "acp_async.fleet._store",
        "acp_async._runs",
    }


# -- private names ---------------------------------------------------------------------

# Another module's private names that a module may still touch, each with why.
ALLOWED_PRIVATE = {
    # argparse has no public name for what add_subparsers() returns; typeshed's private
    # class is the only way to annotate it (in a TYPE_CHECKING block, never run).
    ("acp_async.cli._parser", "_SubParsersAction"),
}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _defined_here(tree: ast.Module) -> set[str]:
    """The names a module binds itself: its functions, classes, variables, arguments,
    ``self.x``/``cls.x`` attributes and ``__slots__``. Its own private names."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.ctx, ast.Store)
            and isinstance(node.value, ast.Name)
            and node.value.id in ("self", "cls")
        ):
            names.add(node.attr)
        elif isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == "__slots__" for target in node.targets
        ):
            names.update(
                item.value for item in ast.walk(node.value) if isinstance(item, ast.Constant)
            )
    return names


def _private_touches(module: str, tree: ast.Module) -> Iterator[str]:
    """Where ``module`` touches a private name of another module: ``obj._x`` with ``obj``
    not ``self``/``cls`` and ``_x`` not bound in this module, or ``from m import _x`` of a
    name (not a module) of another module."""
    own = _defined_here(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            mine = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
            if not mine and node.attr not in own and (module, node.attr) not in ALLOWED_PRIVATE:
                yield f"{module}:{node.lineno}: {ast.unparse(node)}"
        elif isinstance(node, ast.ImportFrom):
            source = _imported_from(module, node)
            for alias in node.names:
                name = alias.name
                if not _private(name) or f"{source}.{name}" in MODULES:
                    continue  # a public name, or a private module (`from .. import _validate`)
                if (module, name) not in ALLOWED_PRIVATE:
                    yield f"{module}:{node.lineno}: from {source} import {name}"


def test_no_module_touches_another_modules_private_names() -> None:
    """A module asks another for a named seam, never for its private names (say
    ``client.runs._fetch_page`` from the fleet): the allow-list says why for each
    exception."""
    found = [touch for name, tree in _trees() for touch in _private_touches(name, tree)]
    assert found == []


def test_the_private_name_check_finds_what_it_should() -> None:
    """The check above flags another's attribute and an imported private name, not self's,
    a name this module binds, or a private module."""
    tree = ast.parse(
        "from .. import _validate\n"
        "from .._config import _credentials\n"
        "class C:\n"
        "    __slots__ = ('_slot',)\n"
        "    def f(self, other):\n"
        "        self._mine = other._slot\n"
        "        return self._mine, other._mine, other.runs._fetch_page, _validate._x\n"
    )
    touches = _private_touches("acp_async.cli._app", tree)
    assert sorted(touch.split(": ", 1)[1] for touch in touches) == [
        "_validate._x",
        "from acp_async._config import _credentials",
        "other.runs._fetch_page",
    ]


def test_the_cli_takes_no_name_out_of_a_private_module() -> None:
    """The CLI uses the library as a user does: names from its public modules, and where
    none exists a private helper module imported whole (``from .. import _validate``), so
    each use says it is private. Never a name out of a private module of the library
    (it imported ``_config.MissingCredentialsError``)."""
    found = []
    for name, tree in _trees():
        if not name.startswith("acp_async.cli"):
            continue
        for node in _imports(name, tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _imported_from(name, node)
            outside = source.startswith("acp_async") and not source.startswith("acp_async.cli")
            private = any(_private(part) for part in source.split("."))
            if outside and private:
                found.append(f"{name}:{node.lineno}: from {source} import ...")
    assert found == []


def test_only_the_fleet_store_imports_redis() -> None:
    """Every Redis command of a fleet is sent by ``fleet._store``: no other module of the
    fleet imports redis at runtime but ``fleet._connection``, which makes and checks
    clients, and ``fleet._classify``, which sorts redis-py's exceptions (it must name
    their classes), both sending nothing (the package's ``__init__`` only checks the
    extra is installed), and the engine both stores share (``_watch``) knows neither
    Redis nor the fleet."""
    importers = set()
    for name, tree in _trees():
        for node in _imports(name, tree):
            targets = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [_imported_from(name, node)]
            )
            if any(target.split(".")[0] == "redis" for target in targets):
                importers.add(name)
            if name.startswith("acp_async._watch"):
                assert not any(t.startswith("acp_async.fleet") for t in targets), name
    fleet_importers = {name for name in importers if name.startswith("acp_async.fleet")}
    assert fleet_importers == {
        "acp_async.fleet",
        "acp_async.fleet._store",
        "acp_async.fleet._connection",
        # Split out of _store so it sends commands and nothing else: deciding what an
        # error means needs redis-py's exception classes, never a client.
        "acp_async.fleet._classify",
    }
    assert not {name for name in importers if name.startswith("acp_async._watch")}


# -- public signatures -----------------------------------------------------------------

PUBLIC_MODULES = [
    "acp_async",
    "acp_async.errors",
    "acp_async.models",
    "acp_async.testing",
    "acp_async.fleet",
    "acp_async.fleet.models",
    "acp_async.metrics",
]


def _public_objects() -> dict[int, str]:
    """Every object a user reaches by a public name (``client.runs`` and
    ``client.config`` included), by id."""
    from acp_async._config import ClientConfig
    from acp_async._runs import Runs

    found = {id(Runs): "Runs", id(ClientConfig): "ClientConfig"}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            found.setdefault(id(getattr(module, name)), f"{module_name}.{name}")
    return found


def _annotation_names(module: ModuleType) -> dict[str, Any]:
    """What each name an annotation of ``module`` may use stands for: its globals, and
    what its ``TYPE_CHECKING`` block imports."""
    names = dict(vars(module))
    tree = ast.parse(inspect.getsource(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and module.__name__ in MODULES:
            source = _imported_from(module.__name__, node)
            for alias in node.names:
                if (alias.asname or alias.name) not in names:
                    imported = importlib.import_module(source)
                    names[alias.asname or alias.name] = getattr(imported, alias.name)
    return names


def _annotations(obj: Any) -> Iterator[tuple[str, str]]:
    """(where, annotation text) for each annotated parameter and return of ``obj``'s
    public functions and methods, and each public attrs field."""
    functions: list[tuple[str, Any]] = []
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if _private(name) and name != "__init__":
                continue
            function = member.__func__ if isinstance(member, classmethod | staticmethod) else member
            function = function.fget if isinstance(function, property) else function
            if inspect.isfunction(function):
                functions.append((f"{obj.__qualname__}.{name}", function))
        if attrs.has(obj):
            for field in attrs.fields(obj):
                if not _private(field.name) and isinstance(field.type, str):
                    yield f"{obj.__qualname__}.{field.name}", field.type
    elif inspect.isfunction(obj):
        functions.append((obj.__qualname__, obj))
    for where, function in functions:
        for name, annotation in function.__annotations__.items():
            if isinstance(annotation, str):
                yield f"{where}({name})", annotation


def test_public_signatures_name_only_public_types() -> None:
    """No private type in a public signature: every type of ours that a public function,
    method or attrs field names is itself public (``RedisFleet(metrics=...)`` named the
    private ``Observer``; ``WatchState.servers`` the private ``ServerState``)."""
    public = _public_objects()
    found = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for exported in module.__all__:
            obj = getattr(module, exported)
            home = importlib.import_module(getattr(obj, "__module__", module_name))
            names = _annotation_names(home)
            for where, annotation in _annotations(obj):
                for node in ast.walk(ast.parse(annotation, mode="eval")):
                    if not isinstance(node, ast.Name) or node.id not in names:
                        continue
                    target = names[node.id]
                    ours = str(getattr(target, "__module__", "")).startswith("acp_async")
                    if ours and id(target) not in public:
                        found.append(f"{where}: {node.id} ({target.__module__})")
    assert found == []


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
