"""Child processes that end with the process that started them.

``robodyna loop`` starts the trainer service and the controller as processes of their own. If the loop process
dies without its clean stop (``kill -9``, an out-of-memory kill, a job scheduler's SIGKILL), those children would
run on as orphans: a trainer spinning a core forever, a controller holding the robot. The loop names itself in
the children's environment (:func:`child_env`); the child's CLI calls :func:`exit_with_parent` at start-up, which
asks the kernel to send it SIGTERM, its own clean stop, when that parent dies (Linux ``PR_SET_PDEATHSIG``; a
watcher thread polling ``getppid`` elsewhere). A clean stop that hangs once the parent is gone (a wait on a peer
that died with it, a stuck join) is bounded: a watcher thread ends the process ``grace_s`` after the parent died
(``os._exit``; what a recorder handed to its writer process still lands, and the trainer acks only what it persisted).

Linux delivers that signal when the *thread* that started the child exits, not only the process: start children
from a thread that outlives them (``LoopRun`` starts both from the thread that runs it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time

PARENT_PID_ENV = "ROBODYNA_PARENT_PID"
EXIT_GRACE_S = 45.0  # longest clean stop after the parent died, then os._exit
_PR_SET_PDEATHSIG = 1
_parent: int | None = None

log = logging.getLogger(__name__)


class ParentGone(RuntimeError):
    """The process that started this one died before this one could tie its life to it."""


def child_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """``env`` (default: this process's environment) plus this process named as the parent to outlive nobody."""
    return {**(os.environ if env is None else env), PARENT_PID_ENV: str(os.getpid())}


def exit_with_parent(grace_s: float = EXIT_GRACE_S) -> int | None:
    """If ``$ROBODYNA_PARENT_PID`` names a parent, arrange for SIGTERM when it dies; returns its pid (else None).

    The process's clean stop then has ``grace_s`` seconds before it is ended with exit code 1 (:func:`_watch`).
    The variable is removed from this process's environment, so processes this one starts do not inherit it.
    Raises :class:`ParentGone` when the parent is already gone (the check after the request closes the race).
    """
    global _parent
    raw = os.environ.pop(PARENT_PID_ENV, None)
    if not raw:
        return None
    try:
        pid = int(raw)
    except ValueError:
        raise ValueError(f"${PARENT_PID_ENV}={raw!r} is not a process id") from None
    _parent = pid
    signal_it = not _pdeathsig()
    threading.Thread(target=_watch, args=(pid, signal_it, grace_s), name="exit-with-parent", daemon=True).start()
    if os.getppid() != pid:
        raise ParentGone(f"the process that started this one (pid {pid}) is gone")
    return pid


def parent_gone() -> bool:
    """True when :func:`exit_with_parent` tied this process to a parent that has since died (stop fast: nobody
    restarts the peers it started)."""
    return _parent is not None and os.getppid() != _parent


def _pdeathsig() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch(pid: int, signal_it: bool, grace_s: float, every_s: float = 0.5) -> None:
    """Wait for the parent to die; send SIGTERM (where the kernel does not), then end the process after ``grace_s``."""
    while os.getppid() == pid:
        time.sleep(every_s)
    if signal_it:
        log.error("the process that started this one (pid %d) is gone: stopping", pid)
        os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace_s)
    # straight to fd 2, not through logging: a clean stop stuck inside a handler holds its lock
    msg = (f"{time.strftime('%Y-%m-%d %H:%M:%S')} ERROR {__name__}: the process that started this one (pid {pid}) "
           f"died {grace_s:.0f} s ago and the clean stop has not ended: exiting\n")
    with contextlib.suppress(OSError):
        os.write(2, msg.encode())
    os._exit(1)
