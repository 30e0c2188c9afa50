"""The package layout: imports run one way down the pipeline, with no cycle, and no module is
long. Built from the source (ast), so a lazy import inside a function counts too; imports under
``if TYPE_CHECKING:`` do not (they never run)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "laasp", "baselines")
# Each top-level unit's place in the pipeline; a module may import only from its own rank or below.
RANKS = {
    "harness.errors": 0, "harness.registry": 0,
    "harness.data": 1, "harness.models": 1,
    "harness.train": 2,
    "harness.prune": 3, "harness.api": 3, "harness.pruners": 3, "harness.prunable": 3, "harness.criteria": 3,
    "laasp": 4, "baselines": 4,
    "harness.job": 5,
    "harness.sweep": 6, "harness.results": 6,
    "harness.cli": 7,
}
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skipped


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Project modules that ``name`` imports (``from pkg import sub`` counts as importing ``pkg.sub``)."""
    tree = ast.parse(path.read_text())
    skipped = _type_checking_nodes(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in modules and t != name}
    return found


def unresolved_imports() -> list[str]:
    """Imports of project modules that do not exist (a moved module's old name, say)."""
    modules = project_modules()
    missing = []
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                wanted = [node.module]
            elif isinstance(node, ast.Import):
                wanted = [a.name for a in node.names]
            else:
                continue
            missing += [f"{name} imports {w}" for w in wanted if w.split(".")[0] in PACKAGES and w not in modules]
    return sorted(missing)


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def rank(module: str) -> int:
    for prefix in sorted(RANKS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return RANKS[prefix]
    raise AssertionError(f"{module} has no place in RANKS: add its package to the pipeline table")


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_every_project_import_exists() -> None:
    assert not unresolved_imports()


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_imports_run_down_the_pipeline() -> None:
    upward = sorted(f"{a} (rank {rank(a)}) imports {b} (rank {rank(b)})"
                    for a, deps in import_graph().items() for b in deps if rank(b) > rank(a))
    assert not upward, "\n".join(upward)


def test_nothing_below_the_cli_imports_it() -> None:
    offenders = sorted(a for a, deps in import_graph().items()
                       if not a.startswith("harness.cli") and any(d.startswith("harness.cli") for d in deps))
    assert not offenders, offenders


@pytest.mark.parametrize("name", sorted(project_modules()))
def test_module_is_short(name: str) -> None:
    lines = len(project_modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by concept"


def test_plugin_api_is_one_import() -> None:
    import harness.api as api

    for name in ("PRUNERS", "Pruner", "PruneSchedule", "PrunableNetwork", "CRITERIA", "UserError"):
        assert hasattr(api, name), name


def test_import_paths_of_the_first_readme_still_work() -> None:
    from harness.criteria import CRITERIA, CriterionInput, lowest  # noqa: F401
    from harness.errors import UserError  # noqa: F401
    from harness.prunable import PrunableNetwork  # noqa: F401
    from harness.pruners import PRUNERS, Pruner, PruneSchedule  # noqa: F401
    import harness.api as api

    assert PRUNERS is api.PRUNERS and PrunableNetwork is api.PrunableNetwork and CRITERIA is api.CRITERIA
