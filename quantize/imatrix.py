"""Importance matrix: mean squared activation entering each weight matrix, per input column.

Collected like llama.cpp's `llama-imatrix`: calibration text in chunks of n_ctx tokens runs through the model with
an eval callback (`cb_eval`); for every MUL_MAT / MUL_MAT_ID node whose weight is a `blk.*` tensor, the activations
(`src[1]`, F32, one row per token) are squared and summed per column. Saved in the GGUF imatrix format that current
llama.cpp (`llama-imatrix`, `llama-quantize --imatrix`) reads and writes: `general.type = imatrix`,
`imatrix.datasets`, `imatrix.chunk_count`, `imatrix.chunk_size`, and per weight `<name>.in_sum2` (sum of squares,
F32 [n_per_row, n_mat]) and `<name>.counts` (rows seen, F32 [1, n_mat]). The importance of column j is
in_sum2[j] / counts.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import ggml
from .corpus import chunks
from .errors import CalibrationError
from .gguf_io import atomic_path, field_value, open_reader
from .llm import EvalModel


@dataclass
class ImportanceMatrix:
    sums: dict[str, np.ndarray] = field(default_factory=dict)  # name → float64 [n_mat, n_per_row]
    counts: dict[str, np.ndarray] = field(default_factory=dict)  # name → float64 [n_mat]
    chunk_count: int = 0
    chunk_size: int = 0
    datasets: list[str] = field(default_factory=list)

    def importance(self, name: str) -> np.ndarray | None:
        """Per-column mean squared activation for weight `name` (first expert for 3-D weights), or None."""
        if name not in self.sums:
            return None
        c = self.counts[name][0]
        if c <= 0:
            return None
        return (self.sums[name][0] / c).astype(np.float32)

    def add(self, name: str, x: np.ndarray) -> None:
        """x: activations [n_rows, n_per_row]."""
        s = np.einsum("ij,ij->j", x, x, dtype=np.float64)
        if name not in self.sums:
            self.sums[name] = np.zeros((1, x.shape[1]))
            self.counts[name] = np.zeros(1)
        self.sums[name][0] += s
        self.counts[name][0] += x.shape[0]

    def save(self, path: str) -> None:
        import gguf

        with atomic_path(path) as tmp:
            w = gguf.GGUFWriter(tmp, "")  # imatrix files carry no architecture key
            w.kv_data[0].pop("general.architecture", None)
            w.add_type("imatrix")
            w.add_key_value("imatrix.datasets", self.datasets or ["unknown"], gguf.GGUFValueType.ARRAY,
                            sub_type=gguf.GGUFValueType.STRING)
            w.add_key_value("imatrix.chunk_count", int(self.chunk_count), gguf.GGUFValueType.UINT32)
            w.add_key_value("imatrix.chunk_size", int(self.chunk_size), gguf.GGUFValueType.UINT32)
            for name in sorted(self.sums):
                w.add_tensor(f"{name}.in_sum2", self.sums[name].astype(np.float32))
                w.add_tensor(f"{name}.counts", self.counts[name].astype(np.float32).reshape(-1, 1))
            w.write_header_to_file()
            w.write_kv_data_to_file()
            w.write_tensors_to_file()
            w.close()

    @classmethod
    def load(cls, path: str) -> "ImportanceMatrix":
        r = open_reader(path)
        if field_value(r, "general.type") != "imatrix":
            raise CalibrationError(f"{path} is not a GGUF importance matrix")
        m = cls(chunk_count=int(field_value(r, "imatrix.chunk_count", 0)),
                chunk_size=int(field_value(r, "imatrix.chunk_size", 0)),
                datasets=list(field_value(r, "imatrix.datasets", [])))
        tensors = {t.name: np.asarray(t.data, dtype=np.float64) for t in r.tensors}
        for k, v in tensors.items():
            if k.endswith(".in_sum2"):
                name = k[: -len(".in_sum2")]
                m.sums[name] = v.reshape(-1, int(r.tensors[[t.name for t in r.tensors].index(k)].shape[0]))
                m.counts[name] = tensors[name + ".counts"].reshape(-1)
        return m


class _Collector:
    def __init__(self, imatrix: ImportanceMatrix, process_output: bool = False):
        self.im = imatrix
        self.process_output = process_output
        self.L = ggml.lib()
        ops = ggml.op_ids()
        self.ops = {ops["MUL_MAT"], ops.get("MUL_MAT_ID", -1)}
        self.f32 = ggml.type_id("F32")
        self.errors: list[str] = []
        import llama_cpp

        @llama_cpp.ggml_backend_sched_eval_callback
        def cb(t, ask, _user):  # pragma: no cover - called from C (exercised by the tests through llama.cpp)
            try:
                return self._on(t, ask)
            except Exception as exc:  # never let an exception cross into C
                self.errors.append(repr(exc))
                return False

        self.callback = cb

    def _weight_name(self, t: ggml.GGMLTensor) -> str | None:
        if t.op not in self.ops or not t.src[0] or not t.src[1]:
            return None
        w = t.src[0].contents
        name = w.name.decode(errors="replace")
        if not name.startswith("blk.") and not (
            self.process_output and name in ("output.weight", "token_embd.weight")
        ):
            return None
        x = t.src[1].contents
        if x.type != self.f32 or x.ne[1] < 16 and t.op == min(self.ops):
            return None
        return name

    def _on(self, ptr, ask: bool) -> bool:
        t = ctypes.cast(ptr, ctypes.POINTER(ggml.GGMLTensor)).contents
        name = self._weight_name(t)
        if ask:
            return name is not None
        if name is None:
            return True
        xp = t.src[1]
        x = xp.contents
        if not self.L.ggml_is_contiguous(ctypes.cast(xp, ctypes.c_void_p)):
            return True
        n_per_row = int(x.ne[0])
        nbytes = int(self.L.ggml_nbytes(ctypes.cast(xp, ctypes.c_void_p)))
        buf = np.empty(nbytes // 4, dtype=np.float32)
        self.L.ggml_backend_tensor_get(ctypes.cast(xp, ctypes.c_void_p), buf.ctypes.data, 0, nbytes)
        if t.op == min(self.ops):
            self.im.add(name, buf.reshape(-1, n_per_row))
        else:  # MUL_MAT_ID (mixture of experts): not used by the supported dense architectures
            self.errors.append(f"MUL_MAT_ID for {name} not collected")
        return True


def collect(
    model_path: str,
    text: str,
    *,
    n_ctx: int = 512,
    max_chunks: int | None = 60,
    n_threads: int | None = None,
    dataset_name: str = "calibration",
    process_output: bool = True,
    progress: Callable[[float], None] | None = None,
) -> ImportanceMatrix:
    """Run calibration text through the model and gather the importance matrix (llama-imatrix -c n_ctx --chunks N).

    `process_output` also records the output projection (`output.weight`, or `token_embd.weight` when the embedding
    is tied), like `llama-imatrix --process-output`; the mixed recipe uses it for the embedding's quantization.
    """
    ggml.check_tensor_layout()
    im = ImportanceMatrix(chunk_size=n_ctx, datasets=[dataset_name])
    col = _Collector(im, process_output)
    with EvalModel(model_path, n_ctx=n_ctx, n_threads=n_threads, cb_eval=col.callback) as m:
        toks = m.tokenize(text, add_special=m.add_bos)
        parts = chunks(toks, n_ctx, max_chunks)
        if not parts:
            raise CalibrationError(f"calibration text gives {len(toks)} tokens, fewer than one chunk of {n_ctx}")
        for i, part in enumerate(parts):
            if m.add_bos:
                part = [m.bos] + part[1:]
            # every position's logits, as llama-imatrix does: otherwise llama.cpp prunes the last layer to one row
            m.run(part, all_logits=True)
            im.chunk_count += 1
            if progress:
                progress((i + 1) / len(parts))
    if col.errors and not im.sums:
        raise CalibrationError(f"importance matrix collection failed: {col.errors[0]}")
    if not im.sums:
        raise CalibrationError("the eval callback saw no weight matrices; is this a supported model?")
    return im


def dataset_label(paths: list[str] | None) -> str:
    if not paths:
        return "python-stdlib (random.Random(0) shuffle, first 40 modules, 400k chars)"
    return ",".join(os.path.basename(p) for p in paths)[:200]
