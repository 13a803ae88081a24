"""ctypes access to the ggml library that llama-cpp-python bundles: quantization kernels and the tensor struct.

We quantize with ggml's own kernels (`ggml_quantize_chunk`, the function llama-quantize calls) so our files hold
exactly the bits llama.cpp would write for the same type and importance matrix, and we dequantize with ggml's
`to_float` rows. Type and op enums are read from the library at run time (`ggml_type_name`, `ggml_op_name`), never
hard-coded, so a newer bundled ggml cannot silently shift them.
"""

from __future__ import annotations

import ctypes
import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

GGML_MAX_DIMS = 4
GGML_MAX_OP_PARAMS = 64
GGML_MAX_SRC = 10
GGML_MAX_NAME = 64


class GGMLTensor(ctypes.Structure):
    """Mirror of `struct ggml_tensor` (ggml/include/ggml.h, ggml 0.25.x). `check_tensor_layout()` verifies it."""


GGMLTensor._fields_ = [
    ("type", ctypes.c_int),
    ("buffer", ctypes.c_void_p),
    ("ne", ctypes.c_int64 * GGML_MAX_DIMS),
    ("nb", ctypes.c_size_t * GGML_MAX_DIMS),
    ("op", ctypes.c_int),
    ("op_params", ctypes.c_int32 * (GGML_MAX_OP_PARAMS // 4)),
    ("flags", ctypes.c_int32),
    ("src", ctypes.POINTER(GGMLTensor) * GGML_MAX_SRC),
    ("view_src", ctypes.POINTER(GGMLTensor)),
    ("view_offs", ctypes.c_size_t),
    ("data", ctypes.c_void_p),
    ("name", ctypes.c_char * GGML_MAX_NAME),
    ("extra", ctypes.c_void_p),
    ("padding", ctypes.c_char * 8),
]


class _InitParams(ctypes.Structure):
    _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]


@functools.lru_cache(maxsize=1)
def lib() -> ctypes.CDLL:
    import llama_cpp

    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    names = ["libggml-base.so", "libggml-base.dylib", "ggml-base.dll"]
    for n in names:
        p = os.path.join(libdir, n)
        if os.path.exists(p):
            L = ctypes.CDLL(p)
            break
    else:  # pragma: no cover - depends on the wheel
        raise OSError(f"ggml base library not found in {libdir}")
    L.ggml_type_name.restype = ctypes.c_char_p
    L.ggml_type_name.argtypes = [ctypes.c_int]
    L.ggml_op_name.restype = ctypes.c_char_p
    L.ggml_op_name.argtypes = [ctypes.c_int]
    L.ggml_type_size.restype = ctypes.c_size_t
    L.ggml_type_size.argtypes = [ctypes.c_int]
    L.ggml_blck_size.restype = ctypes.c_int64
    L.ggml_blck_size.argtypes = [ctypes.c_int]
    L.ggml_row_size.restype = ctypes.c_size_t
    L.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
    L.ggml_quantize_chunk.restype = ctypes.c_size_t
    L.ggml_quantize_chunk.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                      ctypes.c_int64, ctypes.c_void_p]
    L.ggml_quantize_init.restype = None
    L.ggml_quantize_init.argtypes = [ctypes.c_int]
    L.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
    L.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
    L.ggml_backend_tensor_get.restype = None
    L.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    L.ggml_backend_tensor_set.restype = None
    L.ggml_backend_tensor_set.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    L.ggml_nbytes.restype = ctypes.c_size_t
    L.ggml_nbytes.argtypes = [ctypes.c_void_p]
    L.ggml_is_contiguous.restype = ctypes.c_bool
    L.ggml_is_contiguous.argtypes = [ctypes.c_void_p]
    L.ggml_get_name.restype = ctypes.c_void_p
    L.ggml_get_name.argtypes = [ctypes.c_void_p]
    L.ggml_nelements.restype = ctypes.c_int64
    L.ggml_nelements.argtypes = [ctypes.c_void_p]
    L.ggml_init.restype = ctypes.c_void_p
    L.ggml_init.argtypes = [_InitParams]
    L.ggml_free.restype = None
    L.ggml_free.argtypes = [ctypes.c_void_p]
    L.ggml_new_tensor_2d.restype = ctypes.c_void_p
    L.ggml_new_tensor_2d.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    L.ggml_set_name.restype = ctypes.c_void_p
    L.ggml_set_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    L.ggml_get_type_traits.restype = ctypes.c_void_p
    L.ggml_get_type_traits.argtypes = [ctypes.c_int]
    return L


@functools.lru_cache(maxsize=1)
def type_ids() -> dict[str, int]:
    """Upper-case ggml type name → enum value: the gguf package's list, each checked against the library's name."""
    import gguf

    L = lib()
    out = {}
    for t in gguf.GGMLQuantizationType:
        raw = L.ggml_type_name(int(t.value))
        if raw and raw.decode().upper() == t.name:
            out[t.name] = int(t.value)
    return out


def type_id(name: str) -> int:
    try:
        return type_ids()[name.upper()]
    except KeyError:
        raise ValueError(f"unknown ggml type {name!r}") from None


def type_name(tid: int) -> str:
    return lib().ggml_type_name(tid).decode().upper()


@functools.lru_cache(maxsize=1)
def op_ids() -> dict[str, int]:
    """The matrix-multiplication op enums, found by name (they sit near index 30 in every recent ggml)."""
    L = lib()
    out = {}
    for i in range(48):
        raw = L.ggml_op_name(i)
        if raw:
            out[raw.decode()] = i
    if "MUL_MAT" not in out:  # pragma: no cover
        raise RuntimeError("GGML_OP_MUL_MAT not found in the bundled ggml")
    return out


def block_size(tid: int) -> int:
    return int(lib().ggml_blck_size(tid))


def row_size(tid: int, n: int) -> int:
    return int(lib().ggml_row_size(tid, n))


def row_compatible(tid: int, n_per_row: int) -> bool:
    return n_per_row % block_size(tid) == 0


def requires_imatrix(tid: int) -> bool:
    return bool(lib().ggml_quantize_requires_imatrix(tid))


_init_lock = threading.Lock()
_initialised: set[int] = set()


def _quantize_init(tid: int) -> None:
    with _init_lock:
        if tid not in _initialised:
            lib().ggml_quantize_init(tid)
            _initialised.add(tid)


def quantize(data: np.ndarray, tid: int, imatrix: np.ndarray | None = None, n_threads: int = 1) -> np.ndarray:
    """Quantize a 2-D float32 array (rows × n_per_row) to ggml type `tid`; returns the raw bytes as uint8 (rows, row_bytes).

    `imatrix` is one importance weight per column (n_per_row floats), or None. Rows are split over threads
    (ctypes releases the GIL during the call).
    """
    L = lib()
    a = np.ascontiguousarray(data, dtype=np.float32)
    n_per_row = a.shape[-1]
    nrows = a.size // n_per_row
    a = a.reshape(nrows, n_per_row)
    if not row_compatible(tid, n_per_row):
        raise ValueError(f"{type_name(tid)} needs rows divisible by {block_size(tid)}, got {n_per_row}")
    if imatrix is not None:
        imatrix = np.ascontiguousarray(imatrix, dtype=np.float32)
        if imatrix.shape != (n_per_row,):
            raise ValueError(f"imatrix has {imatrix.shape} values, need {n_per_row}")
    if requires_imatrix(tid) and imatrix is None:
        raise ValueError(f"{type_name(tid)} requires an importance matrix")
    _quantize_init(tid)
    rb = row_size(tid, n_per_row)
    out = np.empty((nrows, rb), dtype=np.uint8)
    imp = imatrix.ctypes.data if imatrix is not None else None
    src = a.ctypes.data
    dst = out.ctypes.data

    def run(r0: int, r1: int) -> int:
        # `start` is an element index into src; dst is offset by the caller-visible row size
        return L.ggml_quantize_chunk(tid, src, dst, r0 * n_per_row, r1 - r0, n_per_row, imp)

    if n_threads <= 1 or nrows < 2 * n_threads:
        written = run(0, nrows)
    else:
        step = (nrows + n_threads - 1) // n_threads
        with ThreadPoolExecutor(n_threads) as ex:
            written = sum(ex.map(lambda r0: run(r0, min(nrows, r0 + step)), range(0, nrows, step)))
    if written != out.nbytes:  # pragma: no cover - would be a ggml bug
        raise RuntimeError(f"ggml_quantize_chunk wrote {written} bytes, expected {out.nbytes}")
    return out


class _TypeTraits(ctypes.Structure):
    # struct ggml_type_traits { const char * type_name; int64_t blck_size; int64_t blck_size_interleave;
    #   size_t type_size; bool is_quantized; ggml_to_float_t to_float; ggml_from_float_t from_float_ref; }
    _fields_ = [("type_name", ctypes.c_char_p), ("blck_size", ctypes.c_int64), ("blck_size_interleave", ctypes.c_int64),
                ("type_size", ctypes.c_size_t), ("is_quantized", ctypes.c_bool), ("to_float", ctypes.c_void_p),
                ("from_float_ref", ctypes.c_void_p)]


_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)


@functools.lru_cache(maxsize=None)
def _to_float(tid: int):
    tr = ctypes.cast(lib().ggml_get_type_traits(tid), ctypes.POINTER(_TypeTraits)).contents
    if tr.type_name.decode().upper() != type_name(tid):  # pragma: no cover - layout guard
        raise RuntimeError("ggml_type_traits layout mismatch")
    if not tr.to_float:
        raise ValueError(f"no dequantization for {type_name(tid)}")
    return _TO_FLOAT(tr.to_float)


def dequantize(raw: np.ndarray, tid: int, n_per_row: int) -> np.ndarray:
    """Raw bytes of a tensor (any shape whose total is rows × row_size) → float32 (rows, n_per_row)."""
    if tid == type_id("F32"):
        return np.frombuffer(np.ascontiguousarray(raw).tobytes(), dtype=np.float32).reshape(-1, n_per_row).copy()
    if tid == type_id("F16"):
        return np.frombuffer(np.ascontiguousarray(raw).tobytes(), dtype=np.float16).reshape(-1, n_per_row).astype(np.float32)
    if tid == type_id("BF16"):
        u = np.frombuffer(np.ascontiguousarray(raw).tobytes(), dtype=np.uint16).astype(np.uint32) << 16
        return u.view(np.float32).reshape(-1, n_per_row).copy()
    buf = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    rb = row_size(tid, n_per_row)
    nrows = buf.size // rb
    out = np.empty((nrows, n_per_row), dtype=np.float32)
    _to_float(tid)(buf.ctypes.data, out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), nrows * n_per_row)
    return out


def fake_quantize(data: np.ndarray, tid: int, imatrix: np.ndarray | None = None, n_threads: int = 1) -> np.ndarray:
    """Quantize then dequantize: the float32 values a quantized tensor stands for."""
    n = data.shape[-1]
    return dequantize(quantize(data, tid, imatrix, n_threads), tid, n).reshape(data.shape)


def check_tensor_layout() -> None:
    """Make a real ggml tensor and check our struct mirror reads its name, shape and data where ggml keeps them."""
    L = lib()
    ctx = L.ggml_init(_InitParams(1 << 20, None, False))
    try:
        t = L.ggml_new_tensor_2d(ctx, type_id("F32"), 7, 3)
        L.ggml_set_name(t, b"layout-probe")
        s = ctypes.cast(t, ctypes.POINTER(GGMLTensor)).contents
        name_addr = ctypes.addressof(s) + GGMLTensor.name.offset
        ok = (
            L.ggml_get_name(t) == name_addr
            and s.name == b"layout-probe"
            and tuple(s.ne[:2]) == (7, 3)
            and s.nb[1] == 28
            and L.ggml_nelements(t) == 21
            and s.data is not None
        )
        if not ok:
            raise RuntimeError("struct ggml_tensor layout does not match the bundled ggml; imatrix collection disabled")
    finally:
        L.ggml_free(ctx)
