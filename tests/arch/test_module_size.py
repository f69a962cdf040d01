"""Modules stay readable: one past ``MAX_LINES`` is split by concept (the trainer service's policies-out part went to
``robodyna/loop/publish.py`` this way)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAX_LINES = 600


def long_modules(root: Path, max_lines: int = MAX_LINES) -> dict[str, int]:
    """Python modules under ``root`` longer than ``max_lines``, with their line counts."""
    sizes = {str(p.relative_to(root)): len(p.read_text().splitlines()) for p in sorted(root.rglob("*.py"))}
    return {k: n for k, n in sizes.items() if n > max_lines}


def test_no_package_or_tool_module_is_longer_than_600_lines() -> None:
    long = {**long_modules(ROOT / "robodyna"), **long_modules(ROOT / "tools")}
    assert not long, f"split these modules by concept: {long}"


def test_a_module_one_line_too_long_is_reported(tmp_path: Path) -> None:
    (tmp_path / "ok.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "long.py").write_text("x = 1\n" * (MAX_LINES + 1))
    assert long_modules(tmp_path) == {"pkg/long.py": MAX_LINES + 1}
