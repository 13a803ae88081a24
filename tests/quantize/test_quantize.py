"""ggml quantization, importance matrices, llama.cpp's mix rules and the mixed recipe's allocation."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest

from codefill.engine.models import embedded_model_path
from codefill.quantize import ggml, gguf_io, imatrix as imx, mixed, recipes
from codefill.quantize.errors import DiskSpaceError, TargetSizeError
from codefill.quantize.quant import Source, quantize_mix

# relative RMS error bounds for Gaussian rows (about 2× what the types achieve)
BOUNDS = {"Q8_0": 0.01, "Q6_K": 0.03, "Q5_K": 0.06, "Q5_1": 0.07, "Q5_0": 0.08, "Q4_K": 0.12, "Q4_1": 0.14,
          "Q4_0": 0.16, "IQ4_NL": 0.15, "Q3_K": 0.25, "Q2_K": 0.5}


@pytest.mark.parametrize("tname", sorted(BOUNDS))
def test_quantized_tensors_dequantize_within_the_expected_error(tname):
    import gguf

    rng = np.random.default_rng(1)
    x = rng.standard_normal((16, 512)).astype(np.float32)
    tid = ggml.type_id(tname)
    raw = ggml.quantize(x, tid, n_threads=2)
    assert raw.shape == (16, ggml.row_size(tid, 512))
    y = ggml.dequantize(raw, tid, 512)
    rel = np.sqrt(((x - y) ** 2).mean() / (x ** 2).mean())
    assert rel < BOUNDS[tname]
    # the gguf package's independent numpy dequantizer reads our bytes the same way
    ref = gguf.quants.dequantize(raw, gguf.GGMLQuantizationType[tname])
    np.testing.assert_allclose(ref.reshape(y.shape), y, rtol=1e-5, atol=1e-6)


def test_imatrix_changes_the_result_and_reduces_weighted_error():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 256)).astype(np.float32)
    imp = np.exp(rng.standard_normal(256) * 2).astype(np.float32)  # a few columns matter much more
    for tname in ("Q4_0", "Q4_K", "IQ4_NL", "Q3_K"):
        tid = ggml.type_id(tname)
        plain = ggml.quantize(x, tid)
        weighted = ggml.quantize(x, tid, imp)
        assert not np.array_equal(plain, weighted), tname

        def werr(raw):
            d = ggml.dequantize(raw, tid, 256) - x
            return float((d * d * imp).sum())

        assert werr(weighted) < 0.9 * werr(plain), tname


def test_rows_that_do_not_fit_the_block_are_refused():
    with pytest.raises(ValueError, match="divisible"):
        ggml.quantize(np.zeros((2, 576), np.float32), ggml.type_id("Q4_K"))


def test_ggml_tensor_struct_mirror_matches_the_library():
    """The mirror reads what the imatrix and sensitivity callbacks read (op, sources, type, shape, name) from graph
    nodes that the library itself builds, and op_ids() names those ops as the library does."""
    import ctypes

    ggml.check_tensor_layout()
    ops = ggml.op_ids()
    assert {"MUL_MAT", "GET_ROWS"} <= set(ops)
    # our own handle on the same library: the prototypes declared here stay out of ggml.lib()'s
    L = ctypes.CDLL(ggml.lib()._name)

    class InitParams(ctypes.Structure):  # struct ggml_init_params (ggml.h)
        _fields_ = [("mem_size", ctypes.c_size_t), ("mem_buffer", ctypes.c_void_p), ("no_alloc", ctypes.c_bool)]

    L.ggml_op_name.restype = ctypes.c_char_p
    L.ggml_op_name.argtypes = [ctypes.c_int]
    assert all(L.ggml_op_name(i).decode() == name for name, i in ops.items())
    L.ggml_init.restype = ctypes.c_void_p
    L.ggml_init.argtypes = [InitParams]
    L.ggml_free.argtypes = [ctypes.c_void_p]
    for fn in ("ggml_mul_mat", "ggml_get_rows"):
        getattr(L, fn).restype = ctypes.c_void_p
        getattr(L, fn).argtypes = [ctypes.c_void_p] * 3
    L.ggml_new_tensor_1d.restype = ctypes.c_void_p
    L.ggml_new_tensor_1d.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int64]
    L.ggml_new_tensor_2d.restype = ctypes.c_void_p
    L.ggml_new_tensor_2d.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    L.ggml_set_name.restype = ctypes.c_void_p
    L.ggml_set_name.argtypes = [ctypes.c_void_p, ctypes.c_char_p]

    def mirror(ptr):
        return ctypes.cast(ptr, ctypes.POINTER(ggml.GGMLTensor)).contents

    ctx = L.ggml_init(InitParams(1 << 20, None, True))  # no_alloc: graph structure only
    try:
        f32 = ggml.type_id("F32")
        w = L.ggml_new_tensor_2d(ctx, f32, 16, 8)  # a weight: 8 rows of 16
        x = L.ggml_new_tensor_2d(ctx, f32, 16, 5)  # activations: 5 columns
        L.ggml_set_name(w, b"blk.0.attn_q.weight")
        idx = L.ggml_new_tensor_1d(ctx, ggml.type_id("I32"), 3)
        mm, gr, plain = mirror(L.ggml_mul_mat(ctx, w, x)), mirror(L.ggml_get_rows(ctx, w, idx)), mirror(w)
        assert mm.op == ops["MUL_MAT"] and gr.op == ops["GET_ROWS"] and plain.op not in (mm.op, gr.op)
        assert ctypes.addressof(mm.src[0].contents) == w and ctypes.addressof(mm.src[1].contents) == x
        assert ctypes.addressof(gr.src[0].contents) == w and ctypes.addressof(gr.src[1].contents) == idx
        assert not plain.src[0]
        assert mm.src[0].contents.name == b"blk.0.attn_q.weight"
        assert mm.type == f32 and tuple(mm.ne[:2]) == (8, 5)  # one output per weight row and input column
        assert tuple(gr.ne[:2]) == (16, 3)
    finally:
        L.ggml_free(ctx)


def test_standard_mixes_match_llama_quantize_file_sizes():
    """Per-tensor rules reproduce llama-quantize: every stock file in docs/quantization-baseline.md is our tensor
    data plus the same metadata overhead (metadata does not depend on the mix)."""
    r = gguf_io.open_reader(embedded_model_path())
    ts = [recipes.TensorInfo(t.name, tuple(int(x) for x in t.shape)) for t in r.tensors]
    keep = {t.name: ggml.type_id("F32") for t in r.tensors}
    stock = {"Q8_0": 144_811_072, "Q6_K": 138_382_912, "Q5_K_M": 112_103_488, "Q4_K_M": 105_454_144,
             "Q3_K_M": 93_510_208, "Q2_K": 88_201_792}
    overheads = {m: size - recipes.plan_size(ts, recipes.standard_plan(ts, m, has_imatrix=False, n_head=9, n_head_kv=3), keep)
                 for m, size in stock.items()}
    assert len(set(overheads.values())) == 1, overheads
    plan = recipes.standard_plan(ts, "Q4_K_M", has_imatrix=False, n_head=9, n_head_kv=3)
    assert plan["token_embd.weight"] == "Q8_0"  # tied embedding, row 576 not a multiple of 256
    assert plan["blk.0.ffn_down.weight"] == "Q6_K"  # use_more_bits(0, 30)
    assert plan["blk.4.ffn_down.weight"] == "Q4_K"
    assert plan["blk.0.attn_v.weight"] == "Q8_0"  # Q6_K falls back on 576-wide rows
    assert plan["blk.4.attn_q.weight"] == "Q5_0"  # Q4_K falls back


def test_quantize_file_with_imatrix_on_a_tiny_model(tiny_gguf, tmp_path):
    src = Source(tiny_gguf("llama"))
    im = imx.ImportanceMatrix()
    rng = np.random.default_rng(0)
    for t in src.tensors:
        if recipes.quantizable(t) and t.name.startswith("blk."):
            im.add(t.name, rng.standard_normal((32, t.n_per_row)).astype(np.float32) * rng.uniform(0.1, 3, t.n_per_row))
    a = quantize_mix(src, str(tmp_path / "a.gguf"), "Q4_0")
    b = quantize_mix(src, str(tmp_path / "b.gguf"), "Q4_0", imatrix=im)
    assert a == os.path.getsize(tmp_path / "a.gguf") and b == os.path.getsize(tmp_path / "b.gguf")
    ra, rb = gguf_io.open_reader(str(tmp_path / "a.gguf")), gguf_io.open_reader(str(tmp_path / "b.gguf"))
    ta = {t.name: np.asarray(t.data) for t in ra.tensors}
    tb = {t.name: np.asarray(t.data) for t in rb.tensors}
    assert not np.array_equal(ta["blk.0.attn_q.weight"], tb["blk.0.attn_q.weight"])
    assert gguf_io.field_value(rb, "quantize.imatrix.entries_count") == len(im.sums)
    assert gguf_io.field_value(rb, "general.file_type") == 2
    from codefill.quantize.llm import EvalModel

    with EvalModel(str(tmp_path / "b.gguf"), n_ctx=32, n_threads=1) as m:
        assert np.isfinite(m.eval_logits([1, 2, 3, 4])).all()


def test_imatrix_collected_through_the_eval_callback_matches_numpy(tiny_gguf, tiny_hf, tmp_path):
    """Layer 0's attention input is rms_norm(embedding) * attn_norm: its per-column squared sums are known."""
    from codefill.quantize.safetensors import SafetensorsFile

    text = "def add(a, b):\n    return a + b\n" * 40
    im = imx.collect(tiny_gguf("llama"), text, n_ctx=64, max_chunks=2, n_threads=1)
    assert im.chunk_count == 2
    names = {n for n in im.sums}
    assert {f"blk.{i}.{r}.weight" for i in range(2) for r in mixed.ROLES} <= names
    assert im.counts["blk.0.attn_q.weight"][0] == 128
    assert im.sums["blk.0.ffn_down.weight"].shape == (1, 128)

    from codefill.quantize.llm import EvalModel

    with EvalModel(tiny_gguf("llama"), n_ctx=64) as m:
        toks = m.tokenize(text)[:128]
    f = SafetensorsFile(os.path.join(tiny_hf("llama"), "model.safetensors"))
    x = f.get("model.embed_tokens.weight").astype(np.float64)[toks]
    h = x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5) * f.get("model.layers.0.input_layernorm.weight")
    np.testing.assert_allclose(im.sums["blk.0.attn_q.weight"][0], (h * h).sum(0), rtol=2e-2)

    path = str(tmp_path / "imatrix.gguf")
    im.save(path)
    back = imx.ImportanceMatrix.load(path)
    assert back.chunk_count == 2 and back.chunk_size == 64
    np.testing.assert_allclose(back.importance("blk.1.ffn_up.weight"), im.importance("blk.1.ffn_up.weight"), rtol=1e-6)


def test_allocation_is_optimal_on_a_small_problem():
    rng = np.random.default_rng(5)
    types = ["A", "B", "C"]
    sens = mixed.Sensitivity()
    for i in range(5):
        n = f"t{i}"
        sens.bytes[n] = {"A": 100 * (i + 1), "B": 60 * (i + 1), "C": 40 * (i + 1)}
        e = sorted(rng.uniform(0, 1, 3))
        sens.errors[n] = {"A": e[0], "B": e[1], "C": e[2]}
        sens.coef[n] = float(rng.uniform(0.5, 2))
    for budget in (800, 1000, 1200):
        plan, pred, used = mixed.allocate(sens, budget)
        assert used <= budget
        best = min(
            (sum(sens.predicted(f"t{i}", q) for i, q in enumerate(c)), c)
            for c in itertools.product(types, repeat=5)
            if sum(sens.bytes[f"t{i}"][q] for i, q in enumerate(c)) <= budget
        )
        # greedy on convex hulls is optimal up to one partially-affordable step
        assert pred <= best[0] + max(max(sens.predicted(n, "C") for n in sens.errors), 1e-9)
    with pytest.raises(TargetSizeError):
        mixed.allocate(sens, 10)
    plan, _, _ = mixed.allocate(sens, 10**6, exclude={"A"})
    assert "A" not in plan.values()


def test_failed_write_leaves_no_file(tmp_path):
    def boom():
        raise RuntimeError("disk on fire")

    t = gguf_io.TensorOut("x.weight", (32, 2), ggml.type_id("F32"), boom)
    out = tmp_path / "m.gguf"
    with pytest.raises(RuntimeError):
        gguf_io.write_gguf(str(out), "llama", [t])
    assert list(tmp_path.iterdir()) == []


def test_not_enough_disk_is_refused_up_front(tmp_path):
    with pytest.raises(DiskSpaceError, match="not enough disk"):
        gguf_io.check_disk(str(tmp_path), 10**18, "everything")


def test_quantized_source_is_refused(tiny_gguf, tmp_path):
    from codefill.quantize.errors import ModelFormatError

    q = str(tmp_path / "q.gguf")
    quantize_mix(Source(tiny_gguf("qwen2")), q, "Q8_0")
    with pytest.raises(ModelFormatError, match="already quantized"):
        Source(q)
