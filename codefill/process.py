"""Child processes that must not outlive what started them (the evaluation sandbox's programs, `codefill fill
--until`'s command): they run in their own session, and their whole process group is killed at the end."""

from __future__ import annotations

import os
import signal
import subprocess


def kill_group(proc: subprocess.Popen, wait_s: float = 10.0) -> None:
    """SIGKILL `proc`'s process group (it is the session leader: the program and whatever it started, in the
    background too), then reap it."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError, OSError):
        if proc.poll() is None:
            proc.kill()
    try:
        proc.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        pass
