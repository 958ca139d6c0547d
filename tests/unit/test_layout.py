"""The package's plan, kept by a test: what each part may import (docs/PROJECT-STRUCTURE.md),
and how large a module or a function may grow. Reads the source with :mod:`ast`; imports
under ``if TYPE_CHECKING:`` do not count, imports inside functions (lazy ones) do."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "pulling_agent"

FOUNDATION = {"config", "errors", "logs", "timeouts", "uri", "tokens", "text", "encoding"}
HANDLER_API = {"work", "worker"}
# part -> the parts (or single modules, dotted) it may import besides itself and the
# package's face (``pulling_agent`` for __version__); "*" is anything
ALLOWED: dict[str, set[str]] = {
    "face": {"handler_api", "cli.entry", "scheduler.factory"},
    "foundation": set(),
    "handler_api": set(),
    "queue": set(),
    "control": {"queue.database"},
    "client": {"queue"},
    "runtime": {"handler_api", "queue", "control"},
    "fleet": {"handler_api", "queue", "control", "runtime"},
    "scheduler": {"queue", "control", "runtime.handlers", "fleet.registry"},
    "api": {"control", "fleet.service", "scheduler.service"},
    "console": {"queue", "control", "fleet", "scheduler.service", "api.auth"},
    "bootstrap": {
        *("handler_api", "queue", "control", "runtime", "fleet", "scheduler", "api", "console"),
        "client",
    },
    "dev": {"handler_api", "queue", "control", "runtime"},
    "cli": {"*"},
}
CLI_HELPERS = {"cli.remote", "cli.options", "cli.terminal"}
CLI_COMMANDS = {"cli.run", "cli.queue", "cli.doctor", "cli.ctl", "cli.jobs"}
IMPORT_LIGHT = {"cli.entry", "cli.probe"}  # may import only these (and the standard library)
LIGHT_ALLOWED = {"cli.probe", "cli.main", "runtime.signals", "runtime.health", "text"}

MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 100
LARGER = {"runtime.pipeline": 700}  # one component: see docs/PROJECT-STRUCTURE.md


def modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts) or "__init__", path


def part_of(module: str) -> str:
    head = module.split(".")[0]
    if module in ("__init__", "__main__"):
        return "face"
    if head in FOUNDATION:
        return "foundation"
    if head in HANDLER_API:
        return "handler_api"
    return head


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module inside the package) for every import not under TYPE_CHECKING."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _type_checking(node):
            yield from (item for child in node.orelse for item in imports(child))
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "pulling_agent":
                for alias in node.names:  # from pulling_agent import work
                    if (PACKAGE / f"{alias.name}.py").exists() or (PACKAGE / alias.name).is_dir():
                        yield node.lineno, alias.name
                    else:
                        yield node.lineno, "__init__"
            elif node.module.startswith("pulling_agent."):
                yield node.lineno, node.module.removeprefix("pulling_agent.")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pulling_agent."):
                    yield node.lineno, alias.name.removeprefix("pulling_agent.")
        yield from imports(node)


def allowed(importer: str, imported: str) -> bool:
    mine, theirs = part_of(importer), part_of(imported)
    if imported == "__init__" or mine == theirs == "foundation":
        return True
    if importer in IMPORT_LIGHT:
        return imported in LIGHT_ALLOWED
    if importer in CLI_COMMANDS and theirs == "cli":
        return imported in CLI_HELPERS
    if mine == theirs:
        return True
    rules = ALLOWED[mine]
    return (
        "*" in rules
        or theirs == "foundation"
        or theirs in rules
        or any(imported == rule or imported.startswith(rule + ".") for rule in rules)
    )


def violations() -> list[str]:
    found = []
    for module, path in modules():
        for line, imported in imports(ast.parse(path.read_text())):
            if not allowed(module, imported):
                where = path.relative_to(PACKAGE.parent)
                found.append(f"{where}:{line}: {part_of(module)} {module} imports {imported}")
    return found


def test_every_import_follows_the_layers() -> None:
    assert violations() == []


def test_every_module_belongs_to_a_known_part() -> None:
    unknown = {part_of(m) for m, _ in modules()} - set(ALLOWED)
    assert unknown == set(), f"a new part needs its rules in ALLOWED: {unknown}"


@pytest.mark.parametrize(
    ("importer", "imported", "ok"),
    [
        ("encoding", "queue.documents", False),  # foundation imports no subpackage
        ("client.jobs", "runtime.agent", False),  # a producer never loads the agent
        ("runtime.pipeline", "api.app", False),  # the runtime knows nothing of HTTP
        ("api.app", "console.routes", False),
        ("api.app", "scheduler.runner", False),  # only through the service
        ("api.app", "scheduler.service", True),
        ("console.routes", "api.auth", True),
        ("console.routes", "cli.main", False),
        ("bootstrap", "dev.embedded", False),
        ("cli.queue", "cli.ctl", False),  # command modules never import each other
        ("cli.queue", "cli.remote", True),
        ("cli.entry", "cli.main", True),
        ("cli.entry", "config", False),  # import-light
        ("scheduler.runner", "runtime.handlers", True),
        ("scheduler.runner", "runtime.pipeline", False),
    ],
)
def test_the_rules_refuse_what_they_should(importer: str, imported: str, ok: bool) -> None:
    assert allowed(importer, imported) is ok


def test_a_type_checking_import_does_not_count_but_a_lazy_one_does() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from pulling_agent.runtime.agent import Agent\n"
        "def f():\n    from pulling_agent.api.app import create_app\n"
    )
    assert [name for _, name in imports(tree)] == ["api.app"]


def test_modules_and_functions_fit_in_one_sitting() -> None:
    large = []
    for module, path in modules():
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > LARGER.get(module, MAX_MODULE_LINES):
            large.append(f"{module}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    large.append(f"{module}.{node.name}: {length} lines")
    assert large == []


def test_every_package_init_is_a_docstring_or_its_parts_face() -> None:
    public_faces = {PACKAGE, PACKAGE / "client"}  # the public API is defined there
    for init in PACKAGE.rglob("__init__.py"):
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{init} says what its part is"
        if init.parent in public_faces:
            continue
        for node in tree.body[1:]:
            assert isinstance(node, ast.ImportFrom | ast.Assign), (
                f"{init}:{node.lineno}: an __init__ holds a docstring or re-exports, not code"
            )
