"""Every import between apps runs the way docs/architecture.md draws it.

The order is read from the ``core ← accounts ← …`` line of the architecture doc, so the doc and
this test cannot drift apart. An app may import from apps to its left only; apps in one
parenthesised group are peers and import none of each other. Function-level imports count too:
an exception hidden inside a function is still an arrow.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
APPS = ROOT / "apps"
DOC = ROOT / "docs" / "architecture.md"


def documented_order() -> dict[str, int]:
    """``{app: rank}`` from the doc's arrow line; peers share a rank."""
    for line in DOC.read_text().splitlines():
        if line.strip().startswith("core ←"):
            ranks: dict[str, int] = {}
            for rank, part in enumerate(line.split("←")):
                for name in re.findall(r"[a-z_]+", part):
                    ranks[name] = rank
            return ranks
    raise AssertionError(f"{DOC} has no 'core ← …' line giving the import order")


def imported_apps(source: str, module: str) -> list[tuple[int, str]]:
    """``(line, app)`` for every ``apps.<app>`` module the source imports, wherever it stands."""
    found = []
    if module.endswith(".__init__"):
        package = module.removesuffix(".__init__")
    else:
        package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the module's package
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                names = [".".join([*base, node.module] if node.module else base)]
            else:
                names = [node.module or ""]
                # `from apps import releases`
                if node.module == "apps":
                    names = [f"apps.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if len(parts) >= 2 and parts[0] == "apps":
                found.append((node.lineno, parts[1]))
    return found


def violations(source: str, path: str, order: dict[str, int]) -> list[str]:
    """Arrows against the order in one file (``path`` is relative to the repository)."""
    module = path.removesuffix(".py").replace("/", ".")
    owner = module.split(".")[1]
    problems = []
    for line, target in imported_apps(source, module):
        if target == owner:
            continue
        if owner not in order or target not in order:
            problems.append(f"{path}:{line}: {owner} → {target}: an app the doc does not place")
        elif order[target] >= order[owner]:
            problems.append(
                f"{path}:{line}: {owner} imports {target}, which is not to its left "
                "in docs/architecture.md"
            )
    return problems


def test_every_import_between_apps_runs_left():
    order = documented_order()
    problems = []
    for file in sorted(APPS.rglob("*.py")):
        rel = file.relative_to(ROOT).as_posix()
        if rel.count("/") < 2:  # apps/__init__.py
            continue
        problems += violations(file.read_text(), rel, order)
    assert not problems, "\n".join(problems)


def test_every_app_is_placed_in_the_doc():
    order = documented_order()
    apps = {p.name for p in APPS.iterdir() if (p / "apps.py").exists()}
    assert apps <= set(order), f"not in the doc's import order: {sorted(apps - set(order))}"


@pytest.mark.parametrize(
    ("path", "source", "wrong"),
    [
        ("apps/projects/views.py", "from apps.releases.selectors import environment_matrix", True),
        ("apps/core/api/views.py", "def f():\n    from apps.accounts import permissions\n", True),
        ("apps/webhooks/x.py", "import apps.notifications.services", True),
        ("apps/monitoring/x.py", "from apps.webhooks.models import WebhookDelivery", False),
        ("apps/releases/x.py", "from apps.monitoring import selectors", True),
        ("apps/pipelines/x.py", "from ..projects.models import Project", False),
        ("apps/projects/x.py", "from ..releases import selectors", True),
        ("apps/releases/services/__init__.py", "from ...webhooks import services", True),
        ("apps/releases/x.py", "from apps.training.models import ModelVersion", False),
        ("apps/releases/services/x.py", "from ..models import Release", False),
        ("apps/projects/x.py", "from apps import pipelines", True),
    ],
)
def test_the_check_itself(path, source, wrong):
    """The checker catches a wrong arrow, also one hidden in a function, and lets right ones by."""
    assert bool(violations(source, path, documented_order())) is wrong


MAX_MODULE_LINES = 650


def test_no_module_is_over_650_lines():
    """A module that grows past this holds more than one noun: split it (migrations aside)."""
    long = {
        str(path.relative_to(ROOT)): lines
        for path in APPS.rglob("*.py")
        if "migrations" not in path.parts
        and (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"over {MAX_MODULE_LINES} lines: {long}"
