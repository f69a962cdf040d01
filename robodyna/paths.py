"""Where robot folders and config folders live (``$ROBODYNA_ROBOTS`` / ``$ROBODYNA_CONFIGS`` or the repository's)."""

from __future__ import annotations

import os
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]


def robots_root() -> Path:
    """The folder of robot folders (``$ROBODYNA_ROBOTS`` or the repository's ``robots/``)."""
    return Path(os.environ.get("ROBODYNA_ROBOTS", _ROOT / "robots"))


def configs_root() -> Path:
    """The folder of YAML configs (``$ROBODYNA_CONFIGS`` or the repository's ``configs/``)."""
    return Path(os.environ.get("ROBODYNA_CONFIGS", _ROOT / "configs"))
