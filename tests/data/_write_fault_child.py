"""Child process for the deterministic crash test: SIGKILLs itself in the middle of writing one segment.

Usage: python _write_fault_child.py STORE EPISODES KILL_SEGMENT OFFSET MODE

Records EPISODES deterministic episodes (explicit timestamps, so two runs write identical bytes). The
``KILL_SEGMENT``-th segment file this process opens for writing (0-based; -1: none) is written through a file
object that SIGKILLs the process as soon as ``OFFSET`` bytes of it have reached the file: the store is left
exactly as a crash at that byte of that write leaves it (whatever name the writer wrote it under). Prints
``committed N`` after each episode the writer acknowledged (``wait()`` returned).

The hook replaces the name ``open`` in :mod:`robodyna.data.store_format`, through which ``write_segment``
opens its file; if the writer stops opening segment files that way the hook never fires and the parent test
fails on the child's clean exit (update the hook, do not drop the test).
"""

from __future__ import annotations

import builtins
import io
import os
import signal
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _crash_child import ACT_DIM, episode_length, meta, obs_of  # noqa: E402

from robodyna.data import store_format  # noqa: E402
from robodyna.data.store import EpisodeWriter  # noqa: E402


class KillAtByte(io.FileIO):
    """A file that SIGKILLs its process once ``offset`` bytes have been written to it."""

    def __init__(self, path: str, offset: int) -> None:
        super().__init__(path, "w")
        self.offset, self.written = offset, 0
        if offset == 0:
            os.kill(os.getpid(), signal.SIGKILL)

    def write(self, data: object) -> int:
        mv = memoryview(data).cast("B")  # type: ignore[arg-type]
        if self.written + len(mv) >= self.offset:
            super().write(mv[: self.offset - self.written])
            os.kill(os.getpid(), signal.SIGKILL)
        n = super().write(mv) or 0
        self.written += n
        return n


def main() -> None:
    root, episodes, kill_seg, offset, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), \
        sys.argv[5]
    opened = {"segments": 0}

    def fault_open(file: object, mode: str = "r", *args: object, **kwargs: object) -> object:
        if "w" in mode and "seg-" in os.path.basename(str(file)):
            n = opened["segments"]
            opened["segments"] += 1
            if n == kill_seg:
                return KillAtByte(str(file), offset)
        return builtins.open(file, mode, *args, **kwargs)  # type: ignore[call-overload]

    store_format.open = fault_open  # type: ignore[attr-defined]
    committed = 0
    with EpisodeWriter(root, meta(), resume=True, flush_every=16, background=mode == "background") as w:
        for ep in range(episodes):
            w.begin_episode({"seed": ep})
            n = episode_length(ep)
            for t in range(n):
                w.append(obs_of(ep, t), np.full(ACT_DIM, t, np.float32), ep + t * 1e-3, obs_of(ep, t + 1), False,
                         t == n - 1, intervention=t % 3, time_wall_s=1e9 + ep + t * 1e-3, time_mono_s=ep + t * 1e-3)
            w.wait()
            committed += n
            print(f"committed {committed}", flush=True)
    print("done", flush=True)


if __name__ == "__main__":
    main()
