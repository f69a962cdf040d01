"""Run logging: long-format CSV (``metrics.csv``: step, key, value) and TensorBoard scalars."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class RunLogger:
    """Write scalars to ``run_dir/metrics.csv`` and (optionally) TensorBoard under ``run_dir/tb``."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "metrics.csv"
        new = not path.exists()
        self._fh = path.open("a", newline="")
        self._csv = csv.writer(self._fh)
        if new:
            self._csv.writerow(["step", "key", "value"])
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tb"))
            except ImportError:  # pragma: no cover - tensorboard is a train dependency
                log.warning("tensorboard is not installed; logging to CSV only")

    def scalars(self, step: int, values: dict[str, Any]) -> None:
        for key, value in values.items():
            self._csv.writerow([step, key, value])
            if self._tb is not None and isinstance(value, (int, float)):
                self._tb.add_scalar(key, float(value), step)

    def text(self, step: int, key: str, value: str) -> None:
        self._csv.writerow([step, key, value])
        if self._tb is not None:
            self._tb.add_text(key, value, step)

    def flush(self) -> None:
        self._fh.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        self.flush()
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
