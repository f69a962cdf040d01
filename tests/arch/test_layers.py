"""Layers point one way: spec/identity <- robots <- tasks <- data <- onboard <- transport <- learn <- loop <- cli.

A module may import only from its own layer or layers to its left, lazily or not; the robot side (robots, tasks,
data, onboard, transport) never imports torch. Walks the source with ``ast``, so nothing is imported to check it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "robodyna"
LAYERS = ["base", "robots", "tasks", "data", "onboard", "transport", "learn", "loop", "cli"]
BASE_MODULES = {"config", "paths", "spec", "identity", "protocol_version", "lifetime"}
ROBOT_SIDE = {"base", "robots", "tasks", "data", "onboard", "transport"}


def layer_of(module: str) -> str | None:
    """``robodyna.learn.sac`` -> ``learn``; the spec-level top modules -> ``base``; the root facade -> tasks."""
    parts = module.split(".")
    if parts[0] != "robodyna":
        return None
    if len(parts) == 1:
        return "tasks"  # robodyna.make_env: the facade over robots + tasks
    if parts[1] in BASE_MODULES:
        return "base"
    return parts[1] if parts[1] in LAYERS else None


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every absolute module named by an import statement anywhere in the file (lazy imports included)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            pkg_dir = PKG.parent.joinpath(*node.module.split("."))
            for a in node.names:  # from robodyna.robots import registry -> the module itself
                if (pkg_dir / a.name).is_dir() or (pkg_dir / f"{a.name}.py").is_file():
                    out.append((node.lineno, f"{node.module}.{a.name}"))
    return out


def sources() -> list[Path]:
    return sorted(PKG.rglob("*.py"))


def layer_violations() -> list[str]:
    bad = []
    for path in sources():
        mine = layer_of(module_name(path))
        if mine is None or path == PKG / "__init__.py":
            continue
        for line, mod in imports_of(path):
            theirs = layer_of(mod)
            if theirs is not None and LAYERS.index(theirs) > LAYERS.index(mine):
                bad.append(f"{path.relative_to(PKG.parent)}:{line} ({mine}) imports {mod} ({theirs})")
            if mine in ROBOT_SIDE and mod.split(".")[0] == "torch":
                bad.append(f"{path.relative_to(PKG.parent)}:{line} ({mine}, robot side) imports torch")
    return bad


def test_imports_point_only_to_layers_on_the_left() -> None:
    assert layer_violations() == []


def test_every_subpackage_has_a_layer() -> None:
    subpackages = {p.name for p in PKG.iterdir() if (p / "__init__.py").exists()}
    assert subpackages <= set(LAYERS), subpackages - set(LAYERS)


def test_no_import_cycles_between_modules() -> None:
    graph = {module_name(p): {m for _, m in imports_of(p) if m.startswith("robodyna.")} for p in sources()}
    graph = {k: {m for m in v if m in graph and m != k} for k, v in graph.items()}
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if nxt.startswith(node + "."):  # a package importing its own modules
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt] if nxt in stack else [node, nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert cycles == []


@pytest.mark.parametrize("bad_import", ["from robodyna.learn.sac import SAC", "import torch"])
def test_layer_check_catches_an_onboard_module_importing_the_learner(tmp_path: Path, bad_import: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "robodyna"
    (fake / "onboard").mkdir(parents=True)
    (fake / "onboard" / "__init__.py").write_text("")
    (fake / "onboard" / "bad.py").write_text(bad_import + "\n")
    monkeypatch.setattr(__import__(__name__, fromlist=["PKG"]), "PKG", fake)
    assert len(layer_violations()) == 1
