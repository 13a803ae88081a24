"""Quantize an F16/BF16/F32 GGUF with ggml's kernels and an optional importance matrix, per a per-tensor plan."""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from . import ggml
from .errors import ModelFormatError
from .gguf_io import TensorOut, encode, field_value, open_reader, tensor_f32, write_gguf
from .imatrix import ImportanceMatrix
from .recipes import MIXES, TensorInfo, plan_size, standard_plan

SOURCE_TYPES = {"F32", "F16", "BF16"}


class Source:
    """A full-precision GGUF opened for quantizing."""

    def __init__(self, path: str, allow_requantize: bool = False):
        self.path = path
        self.reader = open_reader(path)
        self.arch = field_value(self.reader, "general.architecture")
        if not self.arch:
            raise ModelFormatError(f"{path} has no general.architecture")
        self.tensors = [TensorInfo(t.name, tuple(int(x) for x in t.shape)) for t in self.reader.tensors]
        self.types = {t.name: int(t.tensor_type) for t in self.reader.tensors}
        self._by_name = {t.name: t for t in self.reader.tensors}
        bad = {ggml.type_name(v) for k, v in self.types.items() if ggml.type_name(v) not in SOURCE_TYPES}
        if bad and not allow_requantize:
            raise ModelFormatError(
                f"{os.path.basename(path)} is already quantized ({', '.join(sorted(bad))}); quantize from an "
                "F16/BF16/F32 GGUF or a Hugging Face model"
            )
        a = self.arch
        self.n_head = int(field_value(self.reader, f"{a}.attention.head_count", 1) or 1)
        self.n_head_kv = int(field_value(self.reader, f"{a}.attention.head_count_kv", self.n_head) or self.n_head)

    def values(self, name: str) -> np.ndarray:
        return tensor_f32(self._by_name[name])

    def raw(self, name: str) -> np.ndarray:
        return np.asarray(self._by_name[name].data)

    def standard_plan(self, mix: str, has_imatrix: bool) -> dict[str, str]:
        return standard_plan(self.tensors, mix, has_imatrix=has_imatrix, n_head=self.n_head, n_head_kv=self.n_head_kv)

    def plan_bytes(self, plan: dict[str, str]) -> int:
        return plan_size(self.tensors, plan, self.types)


def quantize_file(
    src: Source,
    out_path: str,
    plan: dict[str, str],
    *,
    imatrix: ImportanceMatrix | None = None,
    file_type: int | None = None,
    n_threads: int = 2,
    extra_kv: dict | None = None,
    progress: Callable[[float], None] | None = None,
) -> int:
    """Write `out_path` with each tensor in its planned type. Returns the file size."""
    outs = []
    for t in src.tensors:
        tname = plan.get(t.name, "KEEP")
        if tname == "KEEP":
            tid = src.types[t.name]
            outs.append(TensorOut(t.name, t.ne, tid, lambda n=t.name: src.raw(n)))
            continue
        tid = ggml.type_id(tname)
        imp = imatrix.importance(t.name) if imatrix is not None else None
        if imp is not None and imp.shape[0] != t.n_per_row:
            raise ModelFormatError(f"importance matrix for {t.name} has {imp.shape[0]} columns, tensor has {t.n_per_row}")
        if imp is None and ggml.requires_imatrix(tid):
            raise ModelFormatError(f"{tname} for {t.name} requires an importance matrix")

        def produce(t=t, tid=tid, imp=imp):
            return encode(src.values(t.name), tid, imp, n_threads)

        outs.append(TensorOut(t.name, t.ne, tid, produce))
    kv = dict(extra_kv or {})
    if imatrix is not None:
        kv.setdefault("quantize.imatrix.dataset", (imatrix.datasets or ["unknown"])[0])
        kv.setdefault("quantize.imatrix.entries_count", len(imatrix.sums))
        kv.setdefault("quantize.imatrix.chunks_count", int(imatrix.chunk_count))
    if file_type is None:
        file_type = 1024  # LLAMA_FTYPE_GUESSED: a custom mix
    return write_gguf(out_path, src.arch, outs, kv_from=src.reader, kv=kv, file_type=file_type, progress=progress,
                      skip_keys=[k for k in kv])


def quantize_mix(src: Source, out_path: str, mix: str, imatrix: ImportanceMatrix | None = None, **kw) -> int:
    mix = mix.upper()
    plan = src.standard_plan(mix, has_imatrix=imatrix is not None)
    return quantize_file(src, out_path, plan, imatrix=imatrix, file_type=MIXES[mix][1], **kw)
