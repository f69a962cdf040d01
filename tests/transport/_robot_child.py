"""An emulated controller for the kill tests: records rows into its episode store (resuming after a SIGKILL) while
a :class:`RobotLink` streams them to the trainer; exits 0 once ``TOTAL`` rows are recorded and acknowledged.

Usage: python _robot_child.py STORE ENDPOINT KEYS NAME TOTAL RATE_ROWS_S
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from robodyna.data.store import EpisodeStore, EpisodeWriter
from robodyna.transport.keys import RobotKeys
from robodyna.transport.robot import LinkConfig, RobotLink
from tests.transport.conftest import reacher_meta, rows

CHUNK = 2000


def main() -> int:
    store, endpoint, keys, name = Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    total, rate = int(sys.argv[5]), float(sys.argv[6])
    logging.basicConfig(level=logging.WARNING, format="robot %(asctime)s %(levelname)s %(name)s: %(message)s")
    resume = (store / "segments").is_dir() and any((store / "segments").iterdir())
    done = EpisodeStore(store).num_transitions if resume else 0
    cfg = LinkConfig(batch_rows=8192, window_rows=1 << 16, heartbeat_s=0.1, deadline_s=1.0, backoff_min_s=0.05,
                     backoff_max_s=0.3, poll_s=0.01)
    link = RobotLink(endpoint, store, name, RobotKeys.load(keys, name), config=cfg)
    deadline = time.monotonic() + 120  # stops by itself whatever happens
    with EpisodeWriter(store, reacher_meta(), resume=resume, flush_every=CHUNK) as w:
        link.start()
        while done < total and time.monotonic() < deadline:
            n = min(CHUNK, total - done)
            b = rows(n, done, ep_len=700)
            w.append_batch(b)
            w.flush()
            done += n
            time.sleep(n / rate)
    ok = link.wait_acked(total, max(0.0, deadline - time.monotonic()))
    link.stop()
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
