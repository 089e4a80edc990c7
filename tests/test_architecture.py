"""The layers import one way: the import graph of diffenvs, agents, studies and scripts, read from the source.

Every module is parsed (nothing is imported), and every ``import`` in it counts, at module level
or inside a function: an import placed in a function to dodge a cycle is still a cycle.
``from package import name`` is an edge to the submodule ``package.name`` where there is one,
else to ``package``; a script's ``import train`` is an edge to ``scripts/train.py``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

from agents import registry

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("diffenvs", "agents", "studies")

Graph = dict[str, set[str]]


def find_modules(root: Path, packages: Iterable[str], scripts: str | None = None) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` file of ``packages`` (and the loose ``scripts`` folder)."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    if scripts is not None:
        for path in sorted((root / scripts).glob("*.py")):
            found[f"{scripts}.{path.stem}"] = path
    return found


def _base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` statement imports from (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    package = package[:len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of ``known`` that ``module`` imports anywhere in its file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    scripts = module.rsplit(".", 1)[0] if path.parent.name == module.split(".")[0] and "." in module else None
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                targets.add(alias.name)
                if scripts is not None:  # a script imports a sibling script by its bare name
                    targets.add(f"{scripts}.{alias.name}")
        elif isinstance(node, ast.ImportFrom):
            base = _base(module, path.name == "__init__.py", node)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                targets.add(submodule if submodule in known else base)
                if scripts is not None and not node.level:
                    targets.add(f"{scripts}.{base}")
    return {target for target in targets if target in known and target != module}


def import_graph(root: Path, packages: Iterable[str], scripts: str | None = None) -> Graph:
    """Module -> the project modules it imports."""
    known = find_modules(root, packages, scripts)
    return {module: imports_of(module, path, known) for module, path in known.items()}


def find_cycle(graph: Graph) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]`` of ``graph``, or ``None`` where there is none (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            cycle = visit(module)
            if cycle is not None:
                return cycle
    return None


def reachable(graph: Graph, start: str) -> set[str]:
    """Every module ``start`` imports, directly or through others."""
    seen: set[str] = set()
    stack = [start]
    while stack:
        for target in graph.get(stack.pop(), ()):
            if target not in seen:
                seen.add(target)
                stack.append(target)
    return seen


def in_package(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(ROOT, PACKAGES, "scripts")


# ---- the walker itself ----------------------------------------------------------------------
def write_package(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_walker_finds_a_cycle_through_a_function_local_and_a_relative_import(tmp_path: Path) -> None:
    write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import pkg.b\n",
        "pkg/b.py": "def late():\n    from pkg import c  # a submodule, imported inside a function\n    return c\n",
        "pkg/c.py": "from . import a\nfrom pkg.a import something\nimport numpy\n",
        "pkg/sub/__init__.py": "from .. import c\n",
    })
    graph = import_graph(tmp_path, ["pkg"])
    assert graph == {"pkg": set(), "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": {"pkg.a"}, "pkg.sub": {"pkg.c"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    assert reachable(graph, "pkg.sub") == {"pkg.a", "pkg.b", "pkg.c"}

    (tmp_path / "pkg/b.py").write_text("import numpy\n")  # the cycle broken
    assert find_cycle(import_graph(tmp_path, ["pkg"])) is None


def test_the_walker_resolves_sibling_scripts(tmp_path: Path) -> None:
    write_package(tmp_path, {"pkg/__init__.py": "", "tools/one.py": "import two\nimport pkg\n",
                             "tools/two.py": "from one import main\n"})
    graph = import_graph(tmp_path, ["pkg"], "tools")
    assert graph["tools.one"] == {"tools.two", "pkg"} and find_cycle(graph) == ["tools.one", "tools.two", "tools.one"]


# ---- the project's layers -------------------------------------------------------------------
def test_every_package_is_walked(graph: Graph) -> None:
    assert {"diffenvs", "diffenvs.core.rollout", "agents.cards", "agents.cards.cartpole", "agents.references",
            "studies", "scripts.train"} <= set(graph)
    assert "agents.cards.zermelo" in graph["scripts.train"] or "agents.cards" in graph["scripts.train"]


def test_there_is_no_import_cycle(graph: Graph) -> None:
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


def test_diffenvs_imports_neither_agents_nor_studies(graph: Graph) -> None:
    wrong = {(m, t) for m, targets in graph.items() if in_package(m, "diffenvs") for t in targets
             if in_package(t, "agents") or in_package(t, "studies")}
    assert not wrong


def test_agents_import_no_study(graph: Graph) -> None:
    wrong = {(m, t) for m, targets in graph.items() if in_package(m, "agents") for t in targets if in_package(t, "studies")}
    assert not wrong


def test_cards_and_references_reach_no_agent_plug_in(graph: Graph) -> None:
    """Cards are data: agents import cards, never the reverse (not even through another module)."""
    generic = [m for m in graph if in_package(m, "agents.cards")] + ["agents.references"]
    assert len(generic) > 2
    wrong = {(m, t) for m in generic for t in reachable(graph, m) if any(in_package(t, p) for p in registry.PLUGINS)}
    assert not wrong


def test_references_import_no_environment(graph: Graph) -> None:
    assert not {t for t in graph["agents.references"] if in_package(t, "diffenvs.envs") or in_package(t, "agents.cards")}
