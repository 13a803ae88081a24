"""Run untrusted generated code: a subprocess per program, in a fresh temporary directory, with a timeout.

- `sys.executable -I` (isolated: no user site, no PYTHON* variables), cwd = a new temporary directory that is removed
  afterwards, a clean environment, its own process group (killed whole on timeout);
- resource limits where the OS has them: CPU seconds, address space, file size (caps runaway output files), and
  stdout/stderr go to files in the temporary directory whose size the file-size limit caps, so an infinite print
  cannot fill memory;
- nothing outside the temporary directory is written by the harness; the program can still try (it runs as the
  user), which is why it runs in its own empty working directory with HOME and TMPDIR pointing inside it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

OUTPUT_LIMIT = 1 << 20  # bytes of stdout/stderr a program may write
MEMORY_LIMIT = 2 << 30


@dataclass(frozen=True)
class ExecResult:
    passed: bool
    status: str  # "passed" | "failed" | "timeout" | "crashed"
    returncode: int | None
    output: str  # the tail of stdout+stderr (for debugging rounds and reports)


def _limits(timeout: float):
    def apply():  # runs in the child between fork and exec
        try:
            import resource

            cpu = int(timeout) + 1
            resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
            resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, OUTPUT_LIMIT))
            if sys.platform != "darwin":
                resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            os.nice(10)  # behind the model and the editor
        except (ImportError, ValueError, OSError):
            pass

    return apply if os.name == "posix" else None


def run_program(code: str, timeout: float = 10.0, tail: int = 2000) -> ExecResult:
    """Run Python `code` in isolation; passed iff it exits 0 within `timeout` seconds."""
    tmp = tempfile.mkdtemp(prefix="codefill-exec-")
    try:
        path = os.path.join(tmp, "program.py")
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(code)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp, "TMPDIR": tmp, "PYTHONHASHSEED": "0",
               "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
        out_path = os.path.join(tmp, "output.txt")
        with open(out_path, "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-I", "program.py"], cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, preexec_fn=_limits(timeout), start_new_session=True,
            )
            try:
                rc = proc.wait(timeout=timeout)
                status = "passed" if rc == 0 else ("crashed" if rc < 0 else "failed")
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                rc, status = None, "timeout"
        with open(out_path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(out_path) - tail))
            output = fh.read().decode("utf-8", errors="replace")
        if status == "failed" and rc in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            status = "timeout"
        return ExecResult(status == "passed", status, rc, output)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError, AttributeError):
        proc.kill()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass
