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


class SafetensorsFile:
    def __init__(self, path: str):
        self.path = path
        try:
            with open(path, "rb") as fh:
                head = fh.read(8)
                if len(head) < 8:
                    raise ModelFormatError(f"truncated safetensors file: {path}")
                (n,) = struct.unpack("<Q", head)
                if n > 100 << 20:
                    raise ModelFormatError(f"not a safetensors file: {path}")
                header = json.loads(fh.read(n))
        except (OSError, ValueError) as exc:
            raise ModelFormatError(f"cannot read safetensors file {path}: {exc}") from None
        self.metadata = header.pop("__metadata__", {}) or {}
        self.header = header
        self.data_start = 8 + n
        size = os.path.getsize(path)
        for name, info in header.items():
            if info["data_offsets"][1] + self.data_start > size:
                raise ModelFormatError(f"truncated safetensors file {path} (tensor {name})")
        self._mm = np.memmap(path, dtype=np.uint8, mode="r") if size > self.data_start else np.zeros(0, np.uint8)

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
