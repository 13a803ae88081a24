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
