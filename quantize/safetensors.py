"""A minimal safetensors reader/writer on numpy (the `safetensors` package pulls nothing we lack, but is not needed).

Format: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets}}, then the data.
Reading memory-maps the file, so a tensor is only read when it is converted.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from .errors import ModelFormatError

_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_,
}


MAX_HEADER = 100 << 20  # bytes of JSON header
_ITEMSIZE = {k: np.dtype(v).itemsize for k, v in _DTYPES.items()}


def _check_header(header, path: str, data_size: int) -> tuple[dict, dict]:
    """(metadata, tensors) of a parsed header, after checking its shape: an object of
    {name: {dtype, shape: [int ≥ 0], data_offsets: [begin, end]}} whose byte ranges match dtype × shape and lie in the
    file. Raises ModelFormatError naming the first bad entry."""
    def bad(what: str) -> ModelFormatError:
        return ModelFormatError(f"invalid safetensors header in {path}: {what}")

    if not isinstance(header, dict):
        raise bad("not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict):
        raise bad("__metadata__ is not an object")

    def is_int(x) -> bool:
        return isinstance(x, int) and not isinstance(x, bool) and x >= 0

    for name, info in header.items():
        label = f"tensor {name[:80]!r}"
        if not isinstance(info, dict):
            raise bad(f"{label} is not an object")
        dt, shape, offs = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(dt, str):
            raise bad(f"{label} has no dtype")
        if not isinstance(shape, list) or len(shape) > 8 or not all(is_int(d) for d in shape):
            raise bad(f"{label} has shape {str(shape)[:80]} (want a list of non-negative integers)")
        if not isinstance(offs, list) or len(offs) != 2 or not all(is_int(o) for o in offs) or offs[0] > offs[1]:
            raise bad(f"{label} has data_offsets {str(offs)[:80]} (want [begin, end])")
        if offs[1] > data_size:
            raise ModelFormatError(f"truncated safetensors file {path} ({label})")
        if dt in _ITEMSIZE:
            count = 1
            for d in shape:
                count *= d
            if count * _ITEMSIZE[dt] != offs[1] - offs[0]:
                raise bad(f"{label}: {dt} × {shape} is {count * _ITEMSIZE[dt]} bytes, data_offsets span "
                          f"{offs[1] - offs[0]}")
    return metadata, header


class SafetensorsFile:
    def __init__(self, path: str):
        self.path = path
        try:
            with open(path, "rb") as fh:
                head = fh.read(8)
                if len(head) < 8:
                    raise ModelFormatError(f"truncated safetensors file: {path}")
                (n,) = struct.unpack("<Q", head)
                size = os.fstat(fh.fileno()).st_size
                if n > MAX_HEADER or n < 2:
                    raise ModelFormatError(f"not a safetensors file: {path} (header length {n})")
                if 8 + n > size:
                    raise ModelFormatError(f"truncated safetensors file: {path} (header of {n} bytes)")
                header = json.loads(fh.read(n))
        except (OSError, ValueError, RecursionError) as exc:
            raise ModelFormatError(f"cannot read safetensors file {path}: {str(exc)[:200]}") from None
        self.data_start = 8 + n
        self.metadata, self.header = _check_header(header, path, size - self.data_start)
        self._mm = (np.memmap(path, dtype=np.uint8, mode="r") if size > self.data_start
                    else np.zeros(0, np.uint8))

    def keys(self) -> list[str]:
        return list(self.header)

    def dtype(self, name: str) -> str:
        return self.header[name]["dtype"]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.header[name]["shape"])

    def get(self, name: str) -> np.ndarray:
        """The tensor as float32 (floating types) or its own integer type."""
        info = self.header[name]
        dt = info["dtype"]
        if dt not in _DTYPES:
            raise ModelFormatError(f"{self.path}: tensor {name} has unsupported dtype {dt}")
        a, b = info["data_offsets"]
        raw = self._mm[self.data_start + a:self.data_start + b]
        arr = raw.view(_DTYPES[dt]).reshape(info["shape"])
        if dt == "BF16":
            return (arr.astype(np.uint32) << 16).view(np.float32)
        if arr.dtype.kind == "f":
            return arr.astype(np.float32)
        return np.array(arr)


def write(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    header: dict = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    names = {np.dtype(v): k for k, v in _DTYPES.items() if k != "BF16"}
    for name, arr in tensors.items():
        n = arr.nbytes
        header[name] = {"dtype": names[arr.dtype], "shape": list(arr.shape), "data_offsets": [offset, offset + n]}
        offset += n
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(blob)))
        fh.write(blob)
        for arr in tensors.values():
            fh.write(np.ascontiguousarray(arr).tobytes())
