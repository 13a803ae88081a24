"""llama.cpp's vocabulary-only GGUF files (`ggml-vocab-*.gguf`, most with `.inp`/`.out` tokenization vectors), taken
from the source distribution of the INSTALLED llama-cpp-python on PyPI (the registries are all CI reaches) into a
cache directory keyed by that version, once.

    python tests/vocabs.py            # fetch if needed (a 77 MB download, a few seconds on a fast link), print the path
    python tests/vocabs.py --version  # the llama-cpp-python version whose vocabularies it fetches

Cache: $CODEFILL_TOOLS_DIR, else ~/.cache/codefill-tools/, then vocabs/<version>/ggml-vocab-*. The version is the
installed one, not a pin: the vectors are llama.cpp's expectations of the tokenizer that ships with that build.
pip downloads only this one package's source (`--no-binary llama-cpp-python`: `--no-binary :all:` gets the same
file, but makes pip build the build backend's dependencies from source too: 33 s instead of 4 s here, and cmake from
source where there is no system cmake), and it does not build it; only `vendor/llama.cpp/models/ggml-vocab-*` is kept.
"""

from __future__ import annotations

import glob
import importlib.metadata
import os
import shutil
import struct
import sys
import tarfile
import tempfile

from codefill.process import StepFailed, run_logged

PACKAGE = "llama-cpp-python"
MEMBER_DIR = "vendor/llama.cpp/models/"
PREFIX = "ggml-vocab-"
DOWNLOAD_TIMEOUT_S = 900
# What the tests need: without these the cache is incomplete (a partial extraction, or an sdist that moved them).
REQUIRED = ("starcoder", "refact", "deepseek-coder", "qwen2", "llama-spm", "gpt-2", "phi-3", "command-r")


class VocabsUnavailable(RuntimeError):
    """The vocabularies could not be fetched (no network, no such version on PyPI, the sdist's layout changed)."""


def version() -> str:
    try:
        return importlib.metadata.version(PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise VocabsUnavailable(f"{PACKAGE} is not installed in {sys.prefix}") from None


def tools_dir() -> str:
    return os.environ.get("CODEFILL_TOOLS_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "codefill-tools")


def cache_dir() -> str:
    return os.path.join(tools_dir(), "vocabs", version())


def _complete(directory: str) -> bool:
    return os.path.exists(os.path.join(directory, ".complete")) and all(
        os.path.exists(os.path.join(directory, f"{PREFIX}{name}.gguf")) for name in REQUIRED)


def _say(msg: str) -> None:
    print(f"[vocabs] {msg}", file=sys.stderr, flush=True)


def _download(work: str) -> str:
    """pip download, its output in a log, a line every 15 s while it runs (CI logs show it is alive)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", PACKAGE,
           f"{PACKAGE}=={version()}", "-d", work, "--progress-bar", "off"]
    try:
        run_logged(cmd, log_path=os.path.join(work, "pip-download.log"), say=_say, timeout=DOWNLOAD_TIMEOUT_S)
    except StepFailed as exc:
        raise VocabsUnavailable(f"pip download of {PACKAGE}=={version()}: {exc}") from None
    sdists = glob.glob(os.path.join(work, "*.tar.gz"))
    if not sdists:
        raise VocabsUnavailable(f"pip download of {PACKAGE}=={version()} gave no source distribution: "
                                f"{os.listdir(work)}")
    return sdists[0]


def _extract(sdist: str, target: str) -> list[str]:
    """The sdist's `vendor/llama.cpp/models/ggml-vocab-*` files, flat, into `target`; their names."""
    names = []
    with tarfile.open(sdist) as tf:
        for member in tf:
            # <package>-<version>/vendor/llama.cpp/models/ggml-vocab-…: nothing deeper, nothing but plain files.
            _top, _, rel = member.name.partition("/")
            if not member.isfile() or not rel.startswith(MEMBER_DIR):
                continue
            base = rel[len(MEMBER_DIR):]
            if "/" in base or not base.startswith(PREFIX):
                continue
            src = tf.extractfile(member)
            with open(os.path.join(target, base), "wb") as out:
                shutil.copyfileobj(src, out)
            names.append(base)
    return names


def ensure_vocabs() -> str:
    """The cache directory holding the `ggml-vocab-*` files, fetching them first if they are not there. Safe to call
    from parallel processes (a lock file; the directory appears complete or not at all). Raises VocabsUnavailable."""
    target = cache_dir()
    if _complete(target):
        return target
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    import fcntl

    with open(target + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _complete(target):
            return target
        _say(f"fetching llama.cpp's vocabulary files from the {PACKAGE} {version()} source distribution into {target}")
        work = tempfile.mkdtemp(prefix="codefill-vocabs-", dir=parent)
        try:
            sdist = _download(work)
            _say(f"downloaded {os.path.basename(sdist)} ({os.path.getsize(sdist) / 1e6:.0f} MB); extracting "
                 f"{MEMBER_DIR}{PREFIX}*")
            staged = os.path.join(work, "vocabs")
            os.makedirs(staged)
            try:
                names = _extract(sdist, staged)
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise VocabsUnavailable(f"cannot extract {os.path.basename(sdist)}: {exc}") from None
            missing = [n for n in REQUIRED if f"{PREFIX}{n}.gguf" not in names]
            if missing:
                raise VocabsUnavailable(f"{os.path.basename(sdist)} has no {MEMBER_DIR}{PREFIX}{{{','.join(missing)}}}"
                                        f".gguf (found {len(names)} {PREFIX}* files)")
            with open(os.path.join(staged, ".complete"), "w") as fh:
                fh.write("\n".join(sorted(names)) + "\n")
            shutil.rmtree(target, ignore_errors=True)  # a partial directory from an interrupted older layout
            os.replace(staged, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    _say(f"{len(names)} files in {target}")
    return target


# ---------------------------------------------------------------- derived vocabularies
# GGUF value types (gguf.GGUFValueType) and the sizes of the fixed-size ones; token types (gguf.TokenType).
_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY, _BOOL, _INT32, _FLOAT32 = 8, 9, 7, 5, 6
_CONTROL, _UNUSED = 3, 5


def _enc(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def with_added_tokens(src: str, dst: str, tokens: dict[int, str], n_tokens: int = 0,
                      bools: dict[str, bool] | None = None) -> str:
    """Write `dst`: the vocabulary-only GGUF `src` with control tokens at the given ids (over placeholders, or past the
    end: the vocabulary grows to `n_tokens` or past the last id, with unused placeholders between) and boolean
    metadata set. How a family's vocabulary is
    made from its base model's: Qwen2.5-Coder's is Qwen2's with <|fim_prefix|>… at 151659-151664 (placeholders in
    Qwen2's), CodeLlama's is Llama 2's with ▁<PRE>… at 32007-32010. Metadata only, read and written byte for byte
    (gguf-py's reader takes 6 s over Qwen2's 151,936 tokens; this, 0.2 s)."""
    import numpy as np

    with open(src, "rb") as fh:
        data = fh.read()
    magic, version, n_tensors, n_kv = struct.unpack_from("<4sIQQ", data, 0)
    assert magic == b"GGUF" and n_tensors == 0, (magic, n_tensors)
    off, records = 24, {}

    def string(off):
        (n,) = struct.unpack_from("<Q", data, off)
        return data[off + 8 : off + 8 + n].decode("utf-8"), off + 8 + n

    for _ in range(n_kv):
        start = off
        key, off = string(off)
        (vt,) = struct.unpack_from("<I", data, off)
        off += 4
        body = off
        if vt == _STRING:
            _, off = string(off)
        elif vt == _ARRAY:
            at, n = struct.unpack_from("<IQ", data, off)
            off += 12
            if at == _STRING:
                for _ in range(n):
                    (m,) = struct.unpack_from("<Q", data, off)
                    off += 8 + m
            else:
                off += _SIZES[at] * n
        else:
            off += _SIZES[vt]
        records[key] = (start, body, off)

    def items(key):
        start, body, end = records[key]
        at, n = struct.unpack_from("<IQ", data, body)
        if at == _STRING:
            out, pos = [], body + 12
            for _ in range(n):
                s, pos = string(pos)
                out.append(s)
            return out
        return np.frombuffer(data, dtype={_INT32: "<i4", _FLOAT32: "<f4"}[at], count=n, offset=body + 12).copy()

    toks = items("tokenizer.ggml.tokens")
    types = items("tokenizer.ggml.token_type")
    scores = items("tokenizer.ggml.scores") if "tokenizer.ggml.scores" in records else None
    n = max(len(toks), max(tokens) + 1, n_tokens)
    for i in range(len(toks), n):
        toks.append(f"[PAD{i}]")
    types = np.concatenate([types, np.full(n - len(types), _UNUSED, "<i4")])
    if scores is not None:
        scores = np.concatenate([scores, np.zeros(n - len(scores), "<f4")])
    for i, text in tokens.items():
        toks[i] = text
        types[i] = _CONTROL
    new = {"tokenizer.ggml.tokens": _enc("tokenizer.ggml.tokens") + struct.pack("<IIQ", _ARRAY, _STRING, n)
           + b"".join(_enc(t) for t in toks),
           "tokenizer.ggml.token_type": _enc("tokenizer.ggml.token_type") + struct.pack("<IIQ", _ARRAY, _INT32, n)
           + types.astype("<i4").tobytes()}
    if scores is not None:
        new["tokenizer.ggml.scores"] = (_enc("tokenizer.ggml.scores") + struct.pack("<IIQ", _ARRAY, _FLOAT32, n)
                                        + scores.astype("<f4").tobytes())
    for key, v in (bools or {}).items():
        new[key] = _enc(key) + struct.pack("<IB", _BOOL, v)
    kvs = [new.pop(k) if k in new else data[s:e] for k, (s, _b, e) in records.items()] + list(new.values())
    out = struct.pack("<4sIQQ", b"GGUF", version, 0, len(kvs)) + b"".join(kvs)
    out += b"\0" * (-len(out) % 32)  # general.alignment's default: llama.cpp aligns the (empty) data section
    tmp = dst + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(out)
    os.replace(tmp, dst)
    return dst


def main() -> None:
    if "--version" in sys.argv[1:]:
        print(version())
        return
    try:
        print(ensure_vocabs())
    except VocabsUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
