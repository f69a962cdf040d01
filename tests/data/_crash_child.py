"""Child process for the crash tests: records deterministic episodes into a store until killed.

Usage: python _crash_child.py STORE SEED [background|sync|process]. Prints ``ready`` once the writer is open and
``committed N`` each time N transitions (absolute count in the store) are known to have landed on disk.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from robodyna.data.store import EpisodeStore, EpisodeWriter, StoreMeta

OBS_DIM, ACT_DIM = 5, 2


def episode_length(ep: int) -> int:
    return 5 + (ep * 7919) % 37


def obs_of(ep: int, step: int) -> np.ndarray:
    return np.array([ep * 1000 + step, step, ep, 0.5, -1.0], dtype=np.float32)


def meta() -> StoreMeta:
    return StoreMeta("crashbot", [f"o{i}" for i in range(OBS_DIM)], ["m"] * OBS_DIM, ["a0", "a1"], ["N*m"] * 2, 1000.0)


def main() -> None:
    root, seed = sys.argv[1], int(sys.argv[2])
    mode = sys.argv[3] if len(sys.argv) > 3 else "background"
    w = EpisodeWriter(root, meta(), resume=True, flush_every=16, background=mode != "sync",
                      writer_process=mode == "process", lock_wait_s=30.0)
    committed = EpisodeStore(root).num_transitions
    print("ready", flush=True)
    rng = np.random.default_rng(seed)
    appended = 0
    while True:
        ep = w.begin_episode({"seed": seed})
        n = episode_length(ep)
        for t in range(n):
            w.append(obs_of(ep, t), np.full(ACT_DIM, t, np.float32), ep + t * 1e-3, obs_of(ep, t + 1), False,
                     t == n - 1, intervention=t % 3)
            appended += 1
            if rng.random() < 0.05:
                time.sleep(0.001)
        w.wait()
        print(f"committed {committed + appended}", flush=True)


if __name__ == "__main__":
    main()
