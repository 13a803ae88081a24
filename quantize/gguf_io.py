"""Reading and writing GGUF files with the `gguf` package: streamed tensor data, atomic files, copied metadata."""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator

import numpy as np

from codefill.engine.errors import ModelFormatError

from . import ggml
from .errors import DiskSpaceError

# Keys the writer sets itself, or that describe the file layout rather than the model.
_SKIP_KEYS = {"general.architecture", "general.alignment", "general.file_type", "general.quantization_version"}


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yield a temporary name next to `path`; it becomes `path` only when the block finishes without error."""
    tmp = path + ".part"
    with contextlib.suppress(FileNotFoundError):
        os.remove(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def check_disk(directory: str, need_bytes: int, what: str) -> None:
    os.makedirs(directory, exist_ok=True)
    free = shutil.disk_usage(directory).free
    if free < need_bytes * 1.05 + (64 << 20):
        raise DiskSpaceError(
            f"not enough disk space in {directory} for {what}: need about {need_bytes / 1e6:.0f} MB, "
            f"{free / 1e6:.0f} MB free"
        )


def open_reader(path: str):
    """A GGUFReader (memory-mapped, read-only). Parsing a 49k-token vocabulary takes seconds, so readers are kept
    for files that have not changed since."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise ModelFormatError(f"cannot read GGUF {path}: {exc.strerror}") from None
    return _open_reader(os.path.realpath(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _open_reader(path: str, _size: int, _mtime: int):
    import gguf

    try:
        return gguf.GGUFReader(path, "r")
    except Exception as exc:  # gguf raises ValueError/struct.error/... on a damaged file
        raise ModelFormatError(f"cannot read GGUF {path}: {exc}") from None


def field_value(reader, key: str, default=None):
    f = reader.fields.get(key)
    if f is None:
        return default
    try:
        return f.contents()
    except Exception:
        return default


def copy_metadata(reader, writer, skip: Iterable[str] = ()) -> None:
    import gguf

    skip = set(skip) | _SKIP_KEYS
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key in skip:
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(key, f.contents(), vtype, sub_type=sub)


@dataclass
class TensorOut:
    """One tensor of an output file: name, ggml shape (ne: columns first), type, and a producer of its bytes."""

    name: str
    ne: tuple[int, ...]
    tid: int
    produce: Callable[[], np.ndarray]  # returns the raw data (any dtype); its byte count must be `nbytes`

    @property
    def n_per_row(self) -> int:
        return int(self.ne[0])

    @property
    def n_rows(self) -> int:
        return int(np.prod(self.ne[1:])) if len(self.ne) > 1 else 1

    @property
    def nbytes(self) -> int:
        return ggml.row_size(self.tid, self.n_per_row) * self.n_rows


def tensor_f32(t) -> np.ndarray:
    """A ReaderTensor's values as float32 (rows, n_per_row), whatever its ggml type."""
    ne = [int(x) for x in t.shape]
    return ggml.dequantize(np.asarray(t.data), int(t.tensor_type), ne[0]).reshape(-1, ne[0])


def encode(values: np.ndarray, tid: int, imatrix: np.ndarray | None = None, n_threads: int = 1) -> np.ndarray:
    """float32 rows → the raw bytes of ggml type `tid` (float types by numpy, quantized ones by ggml)."""
    if tid == ggml.type_id("F32"):
        return np.ascontiguousarray(values, dtype=np.float32)
    if tid == ggml.type_id("F16"):
        return np.ascontiguousarray(values, dtype=np.float16)
    if tid == ggml.type_id("BF16"):
        u = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
        # round to nearest even, keep NaNs quiet
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        r[np.isnan(values)] = 0x7FC0
        return r
    return ggml.quantize(values, tid, imatrix, n_threads)


def write_gguf(
    path: str,
    arch: str,
    tensors: list[TensorOut],
    *,
    kv_from=None,
    kv: dict | None = None,
    skip_keys: Iterable[str] = (),
    file_type: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> int:
    """Write a GGUF file atomically, streaming tensor data one tensor at a time. Returns the file size."""
    import gguf

    total = sum(t.nbytes for t in tensors)
    check_disk(os.path.dirname(os.path.abspath(path)), total, os.path.basename(path))
    with atomic_path(path) as tmp:
        w = gguf.GGUFWriter(tmp, arch)
        if kv_from is not None:
            copy_metadata(kv_from, w, skip_keys)
        for key, value in (kv or {}).items():
            _add_kv(w, key, value)
        if file_type is not None:
            w.add_file_type(file_type)
            if any(ggml.block_size(t.tid) > 1 for t in tensors):
                w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        for t in tensors:
            shape_np = tuple(reversed(t.ne))
            if t.tid == ggml.type_id("F32"):
                w.add_tensor_info(t.name, shape_np, np.dtype(np.float32), t.nbytes)
            elif t.tid == ggml.type_id("F16"):
                w.add_tensor_info(t.name, shape_np, np.dtype(np.float16), t.nbytes)
            else:
                byte_shape = tuple(reversed(t.ne[1:])) + (ggml.row_size(t.tid, t.n_per_row),)
                w.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), t.nbytes,
                                  raw_dtype=gguf.GGMLQuantizationType(t.tid))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_ti_data_to_file()
        done = 0
        for t in tensors:
            data = t.produce()
            if data.nbytes != t.nbytes:
                raise RuntimeError(f"{t.name}: produced {data.nbytes} bytes, expected {t.nbytes}")
            w.write_tensor_data(np.ascontiguousarray(data).reshape(-1).view(np.uint8))
            done += t.nbytes
            if progress:
                progress(done / max(total, 1))
        w.close()
    return os.path.getsize(path)


def _add_kv(w, key: str, value) -> None:
    import gguf

    T = gguf.GGUFValueType
    if isinstance(value, bool):
        w.add_key_value(key, value, T.BOOL)
    elif isinstance(value, int):
        w.add_key_value(key, value, T.UINT32 if 0 <= value < 2**32 else T.INT64)
    elif isinstance(value, float):
        w.add_key_value(key, value, T.FLOAT32)
    elif isinstance(value, str):
        w.add_key_value(key, value, T.STRING)
    elif isinstance(value, (list, tuple)):
        if all(isinstance(v, str) for v in value):
            w.add_key_value(key, list(value), T.ARRAY, sub_type=T.STRING)
        elif all(isinstance(v, int) for v in value):
            w.add_key_value(key, list(value), T.ARRAY, sub_type=T.INT32)
        else:
            w.add_key_value(key, [float(v) for v in value], T.ARRAY, sub_type=T.FLOAT32)
    else:  # pragma: no cover
        raise TypeError(f"unsupported metadata value for {key}: {type(value)}")
