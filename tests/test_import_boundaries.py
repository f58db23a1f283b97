"""Import boundaries: the sandbox stays plain Python, and data flows one way between apps.

Every import counts, including those inside function bodies: a deferred import is still
a dependency. Where a downstream app must follow an upstream one, the layer above the apps
(``iofold/pipeline.py``, ``iofold/composition.py``) calls each by name; apps never find
each other at runtime (``apps.get_model``, ``apps.get_app_configs``, dotted paths in
settings). See docs/architecture.md.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Upstream first: an app may import from apps before it, never after it.
FLOW = ["workspaces", "integrations", "traces", "evals"]
DOWNSTREAM = {app: FLOW[index + 1 :] for index, app in enumerate(FLOW)}
APPS = ["accounts", *FLOW]
# What an app may import from the project package: the foundations below every app, and
# the two modules above them that put the apps together.
FOUNDATIONS = ("iofold.lib", "iofold.exceptions", "iofold.api")
IOFOLD_FOR_APPS = (*FOUNDATIONS, "iofold.pipeline", "iofold.composition", "iofold.workspace_data")
# Ways to find an app or a callable at runtime instead of importing it by name.
RUNTIME_LOOKUPS = {"get_app_configs", "get_app_config", "get_model", "import_string"}


def _sources(package: str) -> list[Path]:
    """Return the package's Python files; migrations are generated, and left out."""
    return [p for p in sorted((ROOT / package).rglob("*.py")) if "migrations" not in p.parts]


def _imports(app: str) -> list[tuple[str, int, str]]:
    """Return ``(file, line, module)`` for every absolute import in the app's sources."""
    found = []
    for path in _sources(app):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            found += [(str(path.relative_to(ROOT)), node.lineno, m) for m in modules]
    return found


def _top(module: str) -> str:
    return module.split(".", 1)[0]


def test_the_scanner_sees_imports():
    assert any(_top(m) == "django" for _, _, m in _imports("workspaces"))


def test_sandbox_imports_nothing_from_django_or_the_apps():
    forbidden = {"django", "rest_framework", "celery", "iofold", *FLOW}
    offenders = [
        f"{file}:{line} imports {module}"
        for file, line, module in _imports("sandbox")
        if _top(module) in forbidden
    ]
    assert offenders == []


@pytest.mark.parametrize("app", [a for a in FLOW if DOWNSTREAM[a]])
def test_apps_never_import_downstream(app):
    offenders = [
        f"{file}:{line} imports {module}"
        for file, line, module in _imports(app)
        if _top(module) in DOWNSTREAM[app]
    ]
    assert offenders == []


@pytest.mark.parametrize("app", APPS)
def test_apps_import_from_iofold_only_its_foundations_and_the_composing_layer(app):
    offenders = [
        f"{file}:{line} imports {module}"
        for file, line, module in _imports(app)
        if _top(module) == "iofold"
        and not any(module == m or module.startswith(m + ".") for m in IOFOLD_FOR_APPS)
    ]
    assert offenders == []


def test_the_foundations_import_no_app():
    offenders = [
        f"{file}:{line} imports {module}"
        for file, line, module in _imports("iofold")
        if file.removesuffix(".py").replace("/", ".").startswith(FOUNDATIONS)
        and _top(module) in APPS
    ]
    assert offenders == []


def _runtime_lookups(package: str, root: Path = ROOT) -> list[str]:
    """Return where the package finds an app or a callable at runtime instead of by name."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        if "migrations" in path.parts:
            continue
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in RUNTIME_LOOKUPS:
                name = node.attr
            elif isinstance(node, ast.Name) and node.id in RUNTIME_LOOKUPS:
                name = node.id
            elif isinstance(node, ast.ImportFrom) and any(
                alias.name in RUNTIME_LOOKUPS for alias in node.names
            ):
                name = "import of " + ", ".join(a.name for a in node.names)
            else:
                continue
            found.append(f"{path.relative_to(root)}:{node.lineno} uses {name}")
    return found


def test_the_scanner_sees_runtime_lookups(tmp_path):
    package = tmp_path / "someapp"
    package.mkdir()
    (package / "hooks.py").write_text(
        "from django.apps import apps\n"
        "from django.utils.module_loading import import_string\n"
        "Trace = apps.get_model('traces', 'Trace')\n"
        "hooks = [c for c in apps.get_app_configs()]\n"
    )
    assert len(_runtime_lookups("someapp", root=tmp_path)) == 3


@pytest.mark.parametrize("package", [*APPS, "sandbox", "iofold"])
def test_no_app_is_wired_by_a_runtime_lookup(package):
    """Wiring is an import by name: no AppConfig hooks, model lookups or dotted paths."""
    assert _runtime_lookups(package) == []


# --- no import cycles inside an app ----------------------------------------------------------

PACKAGES = ["accounts", "workspaces", "integrations", "traces", "evals", "sandbox", "iofold"]


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_graph(app: str) -> dict[str, set[str]]:
    """Return, per module of the app, the modules of the same app it imports.

    Imports inside functions count: a deferred import still ties the two modules'
    responsibilities together, and the cycle it closes is only hidden from the loader.
    Migrations are left out (Django loads them apart). ``from package import name``
    points at ``package.name`` when that is a module, else at the package.
    """
    modules = {
        _module_name(path): path
        for path in sorted((ROOT / app).rglob("*.py"))
        if "migrations" not in path.parts
    }

    def within_app(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    source = node.module or ""
                targets = [
                    f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules else source
                    for alias in node.names
                ]
            else:
                continue
            for target in map(within_app, targets):
                if target is not None and target != name:
                    graph[name].add(target)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_cycle_finder_sees_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def test_the_import_graph_sees_deferred_imports():
    # evals.tasks imports its services inside the task bodies only.
    assert "evals.generation.worker" in _import_graph("evals")["evals.tasks"]


@pytest.mark.parametrize("app", PACKAGES)
def test_no_import_cycles_inside_an_app(app):
    graph = _import_graph(app)
    cycles = [
        {module: sorted(graph[module] & set(cycle)) for module in cycle} for cycle in _cycles(graph)
    ]
    assert cycles == []
