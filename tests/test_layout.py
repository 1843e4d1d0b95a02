"""The layout holds: areas in deploy/areas/, no import cycle anywhere (imports inside functions and
under TYPE_CHECKING included), areas reach each other only through declared lookups, never the
stack, and the stack's waves come from the areas' own AFTER declarations."""

from __future__ import annotations

import ast
import importlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import stack

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "deploy"


def module_files() -> dict[str, Path]:
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        files[name] = path
    files["tasks"] = ROOT / "tasks.py"
    return files


MODULES = module_files()


def imported_names(tree: ast.AST, package: str) -> Iterator[tuple[str, tuple[str, ...]]]:
    """(module, names taken from it) for every import statement, wherever it stands."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            yield base, tuple(alias.name for alias in node.names)


def project_edges(name: str) -> set[str]:
    """The project modules `name` imports: `from pkg import mod` counts as importing pkg.mod."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    edges = set()
    for module, names in imported_names(ast.parse(path.read_text()), package):
        submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
        if submodules:
            edges.update(submodules)
        elif module in MODULES:
            edges.add(module)
    edges.discard(name)
    return edges


def import_graph() -> dict[str, set[str]]:
    graph = {name: project_edges(name) for name in MODULES}
    # The stack imports the areas it finds with importlib: edges no import statement shows.
    graph["deploy.stack"] |= set(stack.AREAS.values())
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        cycle = visit(node)
        if cycle:
            return cycle
    return None


def test_no_import_cycle_among_project_modules() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_cycles_through_function_level_imports() -> None:
    tree = ast.parse("def f():\n    from deploy.stack import up\n")
    assert [m for m, _ in imported_names(tree, "deploy.areas")] == ["deploy.stack"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_machinery_stays_small_and_areas_have_their_folder() -> None:
    direct = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(direct) <= 16, direct
    for area in stack.AREAS:
        assert (PACKAGE / "areas" / f"{area}.py").exists()
        assert not (PACKAGE / f"{area}.py").exists()


def area_modules() -> dict[str, str]:
    return {name: name.rpartition(".")[2] for name in MODULES if name.startswith("deploy.areas.")}


def test_areas_never_import_the_stack_or_the_task_composition() -> None:
    for module in area_modules():
        assert not project_edges(module) & {"deploy.stack", "tasks"}, module


def cross_area_uses(module: str) -> Iterator[tuple[str, str]]:
    """(other area, name) for everything `module` takes from another area, by import or attribute."""
    areas = area_modules()
    tree = ast.parse(MODULES[module].read_text())
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in areas:
            for alias in node.names:
                yield areas[node.module], alias.name
        elif isinstance(node, ast.ImportFrom) and node.module == "deploy.areas":
            for alias in node.names:
                bound[alias.asname or alias.name] = alias.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            yield bound[node.value.id], node.attr


def test_areas_use_each_other_only_through_declared_lookups() -> None:
    areas = area_modules()
    used = 0
    for module, own in areas.items():
        for other, name in cross_area_uses(module):
            if other == own:
                continue
            lookups = importlib.import_module(f"deploy.areas.{other}").LOOKUPS
            assert name in lookups, f"{own} uses {other}.{name}, which is not in {other}.LOOKUPS"
            used += 1
    assert used > 0, "the check saw no cross-area use at all: it is not looking"


def test_every_declared_lookup_exists() -> None:
    for module in area_modules():
        loaded = importlib.import_module(module)
        for name in getattr(loaded, "LOOKUPS", ()):
            assert hasattr(loaded, name), f"{module}.LOOKUPS names {name}, which it lacks"


def test_waves_follow_the_declarations() -> None:
    declared = {area: importlib.import_module(module).AFTER for area, module in stack.AREAS.items()}
    position = {area: n for n, wave in enumerate(stack.WAVES) for area in wave}
    for area, needs in declared.items():
        for dep in needs:
            assert position[dep] < position[area], (dep, area)


def test_a_cycle_in_the_declarations_is_an_error() -> None:
    with pytest.raises(stack.AreaOrderError, match="a -> b -> c -> a"):
        stack.compute_waves({"a": ("b",), "b": ("c",), "c": ("a",)})
    with pytest.raises(stack.AreaOrderError, match="'a' declares AFTER 'nowhere'"):
        stack.compute_waves({"a": ("nowhere",)})


def test_slow_areas_share_a_wave_and_what_needs_them_follows() -> None:
    waves = stack.compute_waves(
        {"net": (), "topic": ("net",), "db": ("net",), "cache": ("topic",), "stream": ("db",)},
        slow={"db", "cache"},
    )
    assert waves == (("net",), ("topic",), ("cache", "db"), ("stream",))


def test_readme_and_docs_link_only_to_files_of_the_repository() -> None:
    import re

    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert ROOT / "docs" / "architecture.md" in documents
    linked = set()
    for document in documents:
        for target in re.findall(r"\]\(([^)\s]+)\)", document.read_text(encoding="utf-8")):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            path = (document.parent / target.split("#")[0]).resolve()
            assert path.is_relative_to(ROOT) and path.exists(), f"{document.name} links to {target}"
            linked.add(path)
    assert ROOT / "docs" / "architecture.md" in linked  # the README leads maintainers there


def test_the_tool_sleeps_only_where_ctrl_c_wakes_it() -> None:
    """A wait that sleeps with time.sleep outlives Ctrl-C; deploy.parallel.pause ends at once."""
    package = ROOT / "deploy"
    sleepers = [
        str(path.relative_to(package.parent))
        for path in sorted(package.rglob("*.py"))
        if "emulator" not in path.parts and "time.sleep(" in path.read_text()
    ]
    assert sleepers == []
