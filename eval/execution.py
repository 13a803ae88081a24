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
  outside the temporary directory (and /dev/null), `dir_fd=` arguments resolved to the directory they name, sqlite3
  databases included; starting processes (fork, exec, spawn, os.system, subprocess); signalling other processes;
  network connections. Paths are resolved with private copies of getcwd/realpath (a program that chdirs and patches
  os.getcwd does not fool it); os.open (whose audit event lacks dir_fd) and os.mkfifo/os.mknod (no audit event) are
  wrapped.

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

from codefill.process import kill_group

OUTPUT_LIMIT = 1 << 20  # bytes of stdout/stderr (and of any file) a program may write
MEMORY_LIMIT = 2 << 30  # address space
PROGRAM = "program.py"
OUTPUT = "output.txt"

# Installed in the child before the program runs. `root` is the temporary directory (realpath).
_GUARD = r"""
import os as _os, sys as _sys
def _install(root):
    import posix, posixpath, stat, types
    # Private copies of what the checks use: a program that patches os.getcwd, os.lstat or os.readlink (say, after a
    # chdir) must not change where the guard thinks a path leads.
    snap = types.SimpleNamespace(**{k: getattr(_os, k) for k in dir(_os) if not k.startswith("__")})
    snap.path = posixpath
    g = dict(vars(posixpath))
    g.update(os=snap, stat=types.SimpleNamespace(S_ISLNK=stat.S_ISLNK))
    for k, v in list(g.items()):
        if isinstance(v, types.FunctionType):
            g[k] = types.FunctionType(v.__code__, g, k, v.__defaults__, v.__closure__)
            g[k].__kwdefaults__ = v.__kwdefaults__
    realpath, join, isabs = g["realpath"], g["join"], g["isabs"]
    getcwd, fspath, fsdecode, readlink = _os.getcwd, _os.fspath, _os.fsdecode, _os.readlink
    sep = _os.sep
    allowed = (root + sep, )
    write_flags = _os.O_WRONLY | _os.O_RDWR | _os.O_APPEND | _os.O_CREAT | _os.O_TRUNC
    # event -> ((index of a path argument, index of its dir_fd argument or None), ...)
    path_events = {
        "os.remove": ((0, 1),), "os.rename": ((0, 2), (1, 3)), "os.rmdir": ((0, 1),), "os.mkdir": ((0, 2),),
        "os.chmod": ((0, 2),), "os.chown": ((0, 3),), "os.truncate": ((0, None),), "os.utime": ((0, 3),),
        "os.symlink": ((0, None), (1, 2)), "os.link": ((0, 2), (1, 3)), "shutil.rmtree": ((0, 1),),
        "os.chflags": ((0, None),), "os.lchflags": ((0, None),), "os.setxattr": ((0, None),),
        "os.removexattr": ((0, None),), "sqlite3.connect": ((0, None),),
    }
    denied = {
        "os.system", "os.exec", "os.spawn", "os.posix_spawn", "os.fork", "os.forkpty", "subprocess.Popen",
        "os.kill", "os.killpg", "signal.pthread_kill", "socket.connect", "socket.bind", "socket.sendto",
        "os.startfile", "pty.spawn",
    }

    def base(dir_fd):
        # the directory a relative path is taken from: the real cwd, or the directory a dir_fd refers to
        if dir_fd is None or dir_fd == -1 or dir_fd == getattr(_os, "AT_FDCWD", -100):
            return getcwd()
        try:
            return readlink("/proc/self/fd/%d" % dir_fd)
        except (OSError, TypeError, ValueError):
            return None  # cannot tell: refuse

    def inside(path, dir_fd=None):
        if isinstance(path, int):  # a descriptor the program already holds
            return True
        try:
            p = fspath(path)
        except TypeError:
            return False
        if isinstance(p, bytes):
            p = fsdecode(p)
        if p == "/dev/null":
            return True
        if not isabs(p):
            b = base(dir_fd)
            if b is None:
                return False
            p = join(b, p)
        full = realpath(p)
        return full == root or full.startswith(allowed)

    def sqlite_path(db):
        try:
            db = fspath(db)
        except TypeError:
            return db
        if isinstance(db, bytes):
            db = fsdecode(db)
        if db in ("", ":memory:"):
            return "/dev/null"
        if db.startswith("file:"):  # a URI (with uri=True): file:path?query
            from urllib.parse import unquote
            rest, _, query = db[5:].partition("?")
            if "mode=memory" in query:
                return "/dev/null"
            if rest.startswith("//"):
                host, _, rest = rest[2:].partition("/")
                rest = "/" + rest
            return unquote(rest.split("#", 1)[0]) or "/dev/null"
        return db

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (any(c in mode for c in "wax+") if isinstance(mode, str) else bool(flags & write_flags))
            if writing and not inside(path):
                raise PermissionError("codefill sandbox: writing outside the task directory: %r" % (path,))
        elif event in path_events:
            for i, d in path_events[event]:
                if i >= len(args):
                    continue
                path = sqlite_path(args[i]) if event == "sqlite3.connect" else args[i]
                fd = args[d] if d is not None and d < len(args) else None
                if not inside(path, fd):
                    raise PermissionError("codefill sandbox: %s outside the task directory: %r" % (event, args[i]))
        elif event in denied:
            raise PermissionError("codefill sandbox: %s is not allowed" % event)

    # os.open's audit event does not carry dir_fd, and mkfifo/mknod raise no event at all: check them here.
    def wrap(real, name):
        def checked(path, *a, dir_fd=None, **kw):
            flags = a[0] if a else kw.get("flags", 0)
            if (name != "open" or flags & write_flags) and not inside(path, dir_fd):
                raise PermissionError("codefill sandbox: %s outside the task directory: %r" % (name, path))
            return real(path, *a, dir_fd=dir_fd, **kw) if dir_fd is not None else real(path, *a, **kw)
        checked.__name__ = checked.__qualname__ = name
        return checked

    for name in ("open", "mkfifo", "mknod"):
        real = getattr(posix, name, None)
        if real is not None:
            w = wrap(real, name)
            setattr(posix, name, w)
            setattr(_os, name, w)

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
            kill_group(proc, wait_s=5.0)
        size = os.path.getsize(out_path)
        with open(out_path, "rb") as fh:
            fh.seek(max(0, size - tail))
            output = fh.read().decode("utf-8", errors="replace")
        if rc == -signal.SIGXCPU:
            status = "timeout"
        return ExecResult(status == "passed", status, rc, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


