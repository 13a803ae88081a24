"""Child processes: those that must not outlive what started them (the evaluation sandbox's programs, `codefill fill
--until`'s command) run in their own session, and their whole process group is killed at the end; long install and
build steps (the test tools, the benchmark sources) run logged, with a line of progress while they work."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable


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


class StepFailed(Exception):
    """An install or build step that could not start, failed, or ran past its time; the message names the command,
    what went wrong, the last lines of its log and where the log is."""


def last_log_lines(path: str, n: int = 1, width: int = 160) -> list[str]:
    """The last `n` non-blank lines of a log file (each cut to `width`), [] when there is none."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 400 * n))
            lines = [s.strip()[:width] for s in fh.read().decode("utf-8", "replace").splitlines() if s.strip()]
    except OSError:
        return []
    return lines[-n:]


def run_logged(cmd: list[str], *, log_path: str, say: Callable[[str], None], cwd: str | None = None,
               env: dict | None = None, timeout: float | None = None, every: float = 15.0) -> float:
    """Run a long install or build step with its output appended to `log_path`, calling `say` with the command, then
    "… N s <the log's last line>" every `every` seconds while it runs (so a CI log shows it is alive), then "done in
    N s". Returns the seconds it took. StepFailed when it cannot start, exits non-zero, or runs past `timeout` (it is
    then killed)."""
    say(" ".join(cmd) + (f"  (in {cwd})" if cwd else ""))
    name = " ".join(cmd[:3])
    with open(log_path, "ab") as log:
        log.write(f"\n$ {' '.join(cmd)}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        except OSError as exc:
            raise StepFailed(f"cannot run {cmd[0]}: {exc}") from None
        t0 = last = time.monotonic()
        while proc.poll() is None:
            time.sleep(0.5)
            now = time.monotonic()
            if timeout is not None and now - t0 > timeout:
                proc.kill()
                proc.wait()
                raise StepFailed(f"{name} took more than {timeout:.0f} s; see {log_path}")
            if now - last >= every:
                last = now
                tail = last_log_lines(log_path)
                say(f"… {now - t0:.0f} s {tail[0] if tail else ''}".rstrip())
    if proc.returncode != 0:
        tail = " | ".join(last_log_lines(log_path, 3))
        raise StepFailed(f"{name} failed (exit {proc.returncode}): {tail}\nsee {log_path}")
    took = time.monotonic() - t0
    say(f"done in {took:.0f} s")
    return took
