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
IOFOLD_FOR_APPS = (*FOUNDATIONS, "iofold.pipeline", "iofold.composition")
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
