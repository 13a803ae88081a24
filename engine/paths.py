"""Where codefill keeps its files (XDG on Linux, the platform's usual places elsewhere)."""

from __future__ import annotations

import os
import sys


def _base(env: str, fallback_unix: str, fallback_mac: str, fallback_win_env: str) -> str:
    if os.environ.get(env):
        return os.environ[env]
    if sys.platform == "darwin":
        return os.path.expanduser(fallback_mac)
    if sys.platform == "win32":
        return os.environ.get(fallback_win_env) or os.path.expanduser("~")
    return os.path.expanduser(fallback_unix)


def config_dir() -> str:
    return os.environ.get("CODEFILL_CONFIG_DIR") or os.path.join(
        _base("XDG_CONFIG_HOME", "~/.config", "~/Library/Application Support", "APPDATA"), "codefill"
    )


def cache_dir() -> str:
    return os.environ.get("CODEFILL_CACHE_DIR") or os.path.join(
        _base("XDG_CACHE_HOME", "~/.cache", "~/Library/Caches", "LOCALAPPDATA"), "codefill"
    )


def config_file() -> str:
    return os.path.join(config_dir(), "config.toml")


def state_dir() -> str:
    """Where the server keeps its records: $CODEFILL_STATE_DIR, else $XDG_STATE_HOME/codefill, else
    ~/.local/state/codefill (the XDG base directory default; macOS and Windows have no state directory of their
    own, and the same path under the home directory is what other tools use there)."""
    if os.environ.get("CODEFILL_STATE_DIR"):
        return os.environ["CODEFILL_STATE_DIR"]
    base = os.environ.get("XDG_STATE_HOME") or os.path.expanduser(os.path.join("~", ".local", "state"))
    return os.path.join(base, "codefill")


def stats_path() -> str:
    """The acceptance records (lsp/stats.py writes them, `codefill stats` reads them)."""
    return os.path.join(state_dir(), "stats.jsonl")


def stats_files(path: str | None = None) -> list[str]:
    """The files holding records, oldest first: the rotated one, then the current one."""
    path = path or stats_path()
    return [path + ".1", path]
