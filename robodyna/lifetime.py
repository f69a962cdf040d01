"""Child processes that end with the process that started them.

``robodyna loop`` starts the trainer service and the controller as processes of their own. If the loop process
dies without its clean stop (``kill -9``, an out-of-memory kill, a job scheduler's SIGKILL), those children would
run on as orphans: a trainer spinning a core forever, a controller holding the robot. The loop names itself in
the children's environment (:func:`child_env`); the child's CLI calls :func:`exit_with_parent` at start-up, which
asks the kernel to send it SIGTERM, its own clean stop, when that parent dies (Linux ``PR_SET_PDEATHSIG``; a
watcher thread polling ``getppid`` elsewhere).

Linux delivers that signal when the *thread* that started the child exits, not only the process: start children
from a thread that outlives them (``LoopRun`` starts both from the thread that runs it).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time

PARENT_PID_ENV = "ROBODYNA_PARENT_PID"
_PR_SET_PDEATHSIG = 1

log = logging.getLogger(__name__)


class ParentGone(RuntimeError):
    """The process that started this one died before this one could tie its life to it."""


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) plus this process named as the parent to outlive nobody."""
    return {**(os.environ if env is None else env), PARENT_PID_ENV: str(os.getpid())}


def exit_with_parent() -> int | None:
    """If ``$ROBODYNA_PARENT_PID`` names a parent, arrange for SIGTERM when it dies; returns its pid (else None).

    The variable is removed from this process's environment, so processes this one starts do not inherit it.
    Raises :class:`ParentGone` when the parent is already gone (the check after the request closes the race).
    """
    raw = os.environ.pop(PARENT_PID_ENV, None)
    if not raw:
        return None
    try:
        pid = int(raw)
    except ValueError:
        raise ValueError(f"${PARENT_PID_ENV}={raw!r} is not a process id") from None
    if not _pdeathsig():
        threading.Thread(target=_watch, args=(pid,), name="exit-with-parent", daemon=True).start()
    if os.getppid() != pid:
        raise ParentGone(f"the process that started this one (pid {pid}) is gone")
    return pid


def _pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(pid: int, every_s: float = 0.5) -> None:
    while os.getppid() == pid:
        time.sleep(every_s)
    log.error("the process that started this one (pid %d) is gone: stopping", pid)
    os.kill(os.getpid(), signal.SIGTERM)
