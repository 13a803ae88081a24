"""Validate a GGUF file's metadata before llama.cpp parses it.

llama.cpp trusts the vocabulary it reads: a token text that occurs twice trips an assert on its vocabulary maps
(`token_to_id.size() == id_to_token.size()`) and aborts the whole process, a language server included; a score or
type array shorter than the token list is read past its end. Such files are published. This module reads only the
header and the key/value metadata (no tensor data) with bounds on every count and length, through a read-only memory
map, and raises ModelFormatError with a one-line message for what llama.cpp would abort or misbehave on.
"""

from __future__ import annotations

import mmap
import os
import struct

from .errors import ModelFormatError

GGUF_MAGIC = b"GGUF"

# Value types of the GGUF format.
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_INTS = {0, 1, 2, 3, 4, 5, 10, 11}

MAX_KV = 1 << 16  # metadata entries (real models have tens to a few hundred)
MAX_TENSORS = 1 << 20
MAX_KEY = 1 << 16  # bytes in a key
MAX_ARRAY = 1 << 24  # elements of one array (vocabularies are up to a few hundred thousand tokens)
MAX_TOKEN = 1 << 16  # bytes in one token text
MAX_ARRAY_DEPTH = 2

# Special-token keys whose ids llama.cpp uses directly.
_TOKEN_ID_KEYS = ("bos", "eos", "eot", "eom", "fim_pre", "fim_suf", "fim_mid", "fim_pad", "fim_rep", "fim_sep")


class _Reader:
    def __init__(self, buf, path: str):
        self.buf, self.path, self.off, self.size = buf, path, 0, len(buf)

    def fail(self, what: str) -> ModelFormatError:
        return ModelFormatError(f"invalid GGUF metadata in {self.path}: {what}")

    def need(self, n: int, what: str) -> None:
        if n < 0 or self.off + n > self.size:
            raise self.fail(f"truncated ({what} runs past the end of the file)")

    def unpack(self, fmt: str, what: str):
        n = struct.calcsize(fmt)
        self.need(n, what)
        (v,) = struct.unpack_from(fmt, self.buf, self.off)
        self.off += n
        return v

    def string(self, what: str, limit: int | None = None) -> bytes:
        n = self.unpack("<Q", what)
        if limit is not None and n > limit:
            raise self.fail(f"{what} is {n} bytes long (limit {limit})")
        self.need(n, what)
        s = self.buf[self.off:self.off + n]
        self.off += n
        return s

    def skip_string(self, what: str) -> None:
        n = self.unpack("<Q", what)
        self.need(n, what)
        self.off += n

    def value(self, vtype: int, key: str, depth: int = 0, keep: bool = True):
        """The value (scalars, strings as bytes, arrays as lists when `keep`), or None when skipped."""
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype], key)
        if vtype == _STRING:
            if keep:
                return self.string(key)
            self.skip_string(key)
            return None
        if vtype == _ARRAY:
            if depth >= MAX_ARRAY_DEPTH:
                raise self.fail(f"{key}: arrays nested too deep")
            etype = self.unpack("<I", key)
            count = self.unpack("<Q", key)
            if count > MAX_ARRAY:
                raise self.fail(f"{key} has {count} elements (limit {MAX_ARRAY})")
            if etype in _SCALARS:
                width = struct.calcsize(_SCALARS[etype])
                self.need(count * width, key)
                if keep:
                    out = list(struct.unpack_from(f"<{count}{_SCALARS[etype][1]}", self.buf, self.off))
                else:
                    out = None
                self.off += count * width
                return out
            if etype == _STRING:
                self.need(count * 8, key)  # each string has at least its length
                if not keep:
                    for _ in range(count):
                        self.skip_string(key)
                    return None
                return [self.string(key) for _ in range(count)]
            if etype == _ARRAY:
                self.need(count * 12, key)
                out = [self.value(_ARRAY, key, depth + 1, keep) for _ in range(count)]
                return out if keep else None
            raise self.fail(f"{key}: unknown array element type {etype}")
        raise self.fail(f"{key}: unknown value type {vtype}")


# Keys whose values are read in full; everything else is skipped (bounds still checked).
_KEEP = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"} | {
    f"tokenizer.ggml.{k}_token_id" for k in _TOKEN_ID_KEYS
}


def read_metadata(path: str, keys: set[str] | None = None) -> tuple[int, int, dict[str, tuple[int, object]]]:
    """(version, tensor count, {key: (type, value)}) for the keys in `keys` (default: those check_gguf needs).

    Raises ModelFormatError for a malformed or hostile header; OSError when the file cannot be read."""
    keys = _KEEP if keys is None else keys
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size < 24:
            head = fh.read(4)
            if head[:4] != GGUF_MAGIC:
                raise ModelFormatError(f"not a GGUF model file: {path}")
            raise ModelFormatError(f"truncated GGUF file: {path}")
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            return _read(_Reader(mm, path), keys)


def _read(r: _Reader, keys: set[str]):
    if r.buf[:4] != GGUF_MAGIC:
        raise ModelFormatError(f"not a GGUF model file: {r.path}")
    r.off = 4
    version = r.unpack("<I", "version")
    if version not in (2, 3):
        raise ModelFormatError(f"unsupported GGUF version {version}: {r.path}")
    n_tensors = r.unpack("<Q", "tensor count")
    n_kv = r.unpack("<Q", "metadata count")
    if n_tensors > MAX_TENSORS:
        raise r.fail(f"{n_tensors} tensors (limit {MAX_TENSORS})")
    if n_kv > MAX_KV:
        raise r.fail(f"{n_kv} metadata entries (limit {MAX_KV})")
    out: dict[str, tuple[int, object]] = {}
    seen: set[bytes] = set()
    for i in range(n_kv):
        raw = bytes(r.string(f"key {i}", MAX_KEY))
        try:
            key = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise r.fail(f"key {i} is not UTF-8") from None
        if raw in seen:
            raise r.fail(f"duplicate key {key!r}")
        seen.add(raw)
        vtype = r.unpack("<I", key)
        value = r.value(vtype, key, keep=key in keys)
        if key in keys:
            out[key] = (vtype, value)
    return version, n_tensors, out


def _short(b: bytes) -> str:
    text = repr(b.decode("utf-8", errors="backslashreplace"))
    return text if len(text) <= 80 else text[:77] + "..."


def check_gguf(path: str) -> None:
    """Raise ModelFormatError if the metadata of GGUF `path` would crash or mislead llama.cpp's loader."""
    _, _, kv = read_metadata(path)
    tokens_entry = kv.get("tokenizer.ggml.tokens")
    if tokens_entry is None:
        return  # no vocabulary here; llama.cpp reports that itself
    vtype, tokens = tokens_entry
    if vtype != _ARRAY or not isinstance(tokens, list) or any(not isinstance(t, bytes) for t in tokens):
        raise ModelFormatError(f"invalid GGUF metadata in {path}: tokenizer.ggml.tokens is not an array of strings")
    n = len(tokens)
    if n == 0:
        raise ModelFormatError(f"invalid GGUF metadata in {path}: tokenizer.ggml.tokens is empty")
    first: dict[bytes, int] = {}
    for i, t in enumerate(tokens):
        if len(t) > MAX_TOKEN:
            raise ModelFormatError(f"invalid GGUF metadata in {path}: token {i} is {len(t)} bytes long")
        j = first.setdefault(t, i)
        if j != i:
            raise ModelFormatError(
                f"invalid GGUF vocabulary in {path}: token {_short(t)} occurs twice (ids {j} and {i}); "
                "llama.cpp would abort on this file"
            )
    for key in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
        if key in kv:
            t, v = kv[key]
            if t != _ARRAY or not isinstance(v, list) or len(v) != n:
                have = len(v) if isinstance(v, list) else "not an array"
                raise ModelFormatError(f"invalid GGUF metadata in {path}: {key} has {have} entries for {n} tokens")
    for name in _TOKEN_ID_KEYS:
        key = f"tokenizer.ggml.{name}_token_id"
        if key not in kv:
            continue
        t, v = kv[key]
        if t not in _INTS or isinstance(v, bool):
            raise ModelFormatError(f"invalid GGUF metadata in {path}: {key} is not an integer")
        if not 0 <= v < n:
            raise ModelFormatError(f"invalid GGUF metadata in {path}: {key} = {v} is outside the vocabulary (0..{n - 1})")
