"""Import boundaries: the sandbox stays plain Python, and data flows one way between apps.

Every import counts, including those inside function bodies: a deferred import is still
a dependency.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Upstream first: an app may import from apps before it, never after it.
FLOW = ["workspaces", "integrations", "traces", "evals"]
DOWNSTREAM = {app: FLOW[index + 1 :] for index, app in enumerate(FLOW)}


def _imports(app: str) -> list[tuple[str, int, str]]:
    """Return ``(file, line, module)`` for every absolute import in the app's sources."""
    found = []
    for path in sorted((ROOT / app).rglob("*.py")):
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
