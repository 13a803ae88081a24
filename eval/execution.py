"""Run untrusted generated code: a subprocess per program, in a fresh temporary directory, with a timeout.

What keeps a crash, hang, runaway output or a stray file operation of generated code away from the harness and the
machine:

- a new interpreter per program (`sys.executable -I -B`: isolated mode, no user site, no PYTHON* variables, no
  bytecode written), cwd = a new temporary directory that is removed afterwards, a minimal environment with HOME and
  TMPDIR inside that directory, stdin closed, its own session/process group;
- a wall-clock timeout: on expiry the whole process group is killed (and it is killed after a normal exit too, so
  nothing the program left behind keeps running);
- resource limits where the OS has them (`resource.setrlimit` between fork and exec): CPU seconds, address space,
  file size, no core files; stdout and stderr go to a file in the temporary directory whose size the file-size limit
  caps (1 MiB), so an infinite print ends the program (SIGXFSZ) instead of filling memory or disk;
- an audit hook (`sys.addaudithook`, installed before the program runs and impossible to remove from Python) that
  refuses, with PermissionError: opening files for writing, creating, removing, renaming or changing files anywhere
  outside the temporary directory (and /dev/null); starting processes (fork, exec, spawn, os.system, subprocess);
  signalling other processes; network connections.

The audit hook is a guard against accidents of generated code (a completion that writes to a relative path, calls
`shutil.rmtree`, or kills its parent), not a security boundary against code written to escape: ctypes or a C
extension can go around it. Run benchmarks from code you did not write inside a container or VM.

Exit status decides: `passed` iff the program exits 0 within the timeout.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

OUTPUT_LIMIT = 1 << 20  # bytes of stdout/stderr (and of any file) a program may write
MEMORY_LIMIT = 2 << 30  # address space
PROGRAM = "program.py"
OUTPUT = "output.txt"

# Installed in the child before the program runs. `root` is the temporary directory (realpath).
_GUARD = r"""
import os as _os, sys as _sys
def _install(root):
    join, realpath, fspath = _os.path.join, _os.path.realpath, _os.fspath
    sep = _os.sep
    allowed = (root + sep, )
    write_flags = _os.O_WRONLY | _os.O_RDWR | _os.O_APPEND | _os.O_CREAT | _os.O_TRUNC
    path_events = {
        "os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,),
        "os.chown": (0,), "os.truncate": (0,), "os.utime": (0,), "os.symlink": (0, 1), "os.link": (0, 1),
        "shutil.rmtree": (0,), "os.chflags": (0,), "os.lchflags": (0,), "os.setxattr": (0,),
        "os.removexattr": (0,),
    }
    denied = {
        "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty", "subprocess.Popen",
        "os.kill", "os.killpg", "signal.pthread_kill", "socket.connect", "socket.bind", "socket.sendto",
        "os.startfile", "pty.spawn",
    }

    def inside(path):
        if isinstance(path, int):  # a descriptor the program already holds
            return True
        try:
            p = fspath(path)
        except TypeError:
            return False
        if isinstance(p, bytes):
            p = _os.fsdecode(p)
        if p == "/dev/null":
            return True
        full = realpath(p if _os.path.isabs(p) else join(_os.getcwd(), p))
        return full == root or full.startswith(allowed)

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & write_flags))
            if writing and not inside(path):
                raise PermissionError("codefill sandbox: writing outside the task directory: %r" % (path,))
        elif event in path_events:
            for i in path_events[event]:
                if i < len(args) and not inside(args[i]):
                    raise PermissionError("codefill sandbox: %s outside the task directory: %r" % (event, args[i]))
        elif event in denied:
            raise PermissionError("codefill sandbox: %s is not allowed" % event)

    _sys.addaudithook(hook)
_install(_os.path.realpath(_os.getcwd()))
del _install
import runpy as _runpy
_sys.argv = ["@PROGRAM@"]
_runpy.run_path("@PROGRAM@", run_name="__main__")
""".replace("@PROGRAM@", PROGRAM)


@dataclass(frozen=True)
class ExecResult:
    passed: bool
    status: str  # "passed" | "failed" (nonzero exit) | "timeout" (wall clock or CPU limit) | "crashed" (signal)
    returncode: int | None  # None on a wall-clock timeout
    output: str  # the tail of stdout+stderr (for reports and repair rounds)


def _limits(timeout: float):
    def apply():  # runs in the child between fork and exec
        try:
            import resource

            cpu = int(timeout) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
            resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))
            if sys.platform != "darwin":  # macOS does not enforce RLIMIT_AS and may refuse it
                resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.nice(10)  # behind the model and the editor
        except (ImportError, ValueError, OSError):
            pass

    return apply if os.name == "posix" else None


def run_program(code: str, timeout: float = 10.0, tail: int = 2000) -> ExecResult:
    """Run Python `code` in isolation (see the module docstring); passed iff it exits 0 within `timeout` seconds.

    Thread-safe: several can run at once from a thread pool (each gets its own directory and process).
    """
    tmp = os.path.realpath(tempfile.mkdtemp(prefix="codefill-exec-"))
    try:
        with open(os.path.join(tmp, PROGRAM), "w", encoding="utf-8") as fh:
            fh.write(code)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8"}
        out_path = os.path.join(tmp, OUTPUT)
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-B", "-c", _GUARD], cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, preexec_fn=_limits(timeout), start_new_session=True, close_fds=True,
            )
            try:
                rc = proc.wait(timeout=timeout)
                status = "passed" if rc == 0 else ("crashed" if rc < 0 else "failed")
            except subprocess.TimeoutExpired:
                rc, status = None, "timeout"
            _kill_group(proc)
        size = os.path.getsize(out_path)
        with open(out_path, "rb") as fh:
            fh.seek(max(0, size - tail))
            output = fh.read().decode("utf-8", errors="replace")
        if rc == -signal.SIGXCPU:
            status = "timeout"
        return ExecResult(status == "passed", status, rc, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the program's process group (whatever it left running), then reap the program."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError, OSError):
        if proc.poll() is None:
            proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
