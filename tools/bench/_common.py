"""Shared by the benchmarks: writing their JSON results, and a quiet logger for SB3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_json(path: str | Path, result: dict[str, Any]) -> None:
    """Write ``result`` as indented JSON (creating the folder) and say where."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=2))
    print(f"wrote {p}")


def silence_sb3_logger(model: Any) -> None:
    """Give an SB3 model a logger with no outputs. Without one, every ``learn()`` call configures a fresh logger,
    and each of those creates an empty ``SB3-<timestamp>`` folder in the temp directory (thousands per benchmark)."""
    from stable_baselines3.common.logger import Logger

    model.set_logger(Logger(folder=None, output_formats=[]))
