"""A process ``robodyna loop`` starts ends when the loop dies, even when its clean stop hangs (real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import process_alive
from tests.transport.conftest import until

CHILD = """
import signal, sys, time
from robodyna.lifetime import exit_with_parent, parent_gone

def on_term(signum, frame):  # a clean stop that never ends
    with open(sys.argv[1], "a") as f:
        f.write(f"term parent_gone={parent_gone()}\\n")

signal.signal(signal.SIGTERM, on_term)
exit_with_parent(grace_s=1.0)
with open(sys.argv[1], "a") as f:
    f.write(f"ready parent_gone={parent_gone()}\\n")
while True:
    time.sleep(0.1)
"""

PARENT = """
import subprocess, sys
from robodyna.lifetime import child_env
p = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], env=child_env(), stderr=open(sys.argv[3], "wb"))
print(p.pid, flush=True)
p.wait()
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_a_child_whose_clean_stop_hangs_is_ended_grace_s_after_its_parent_dies(tmp_path: Path) -> None:
    marks, err = tmp_path / "marks.txt", tmp_path / "child.err"
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD, str(marks), str(err)], stdout=subprocess.PIPE,
                              text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        assert until(lambda: marks.exists() and "ready" in marks.read_text(), 60), "the child never started"
        assert "ready parent_gone=False" in marks.read_text()
        time.sleep(1.5)  # longer than grace_s: nothing ends the child while its parent lives
        assert process_alive(child)
        parent.kill()
        parent.wait()
        assert until(lambda: not process_alive(child), 20), "the child outlived its parent's death by 20 s"
    finally:
        if process_alive(child):
            os.kill(child, signal.SIGKILL)
    assert "term parent_gone=True" in marks.read_text()  # its clean stop was asked for, and knew why
    assert "clean stop has not ended: exiting" in err.read_text()
