"""Hugging Face directory → GGUF: the embedded model round trip, and tiny models per architecture."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from codefill.engine.models import embedded_model_path
from codefill.quantize import convert as conv
from codefill.quantize.errors import MissingFilesError, UnsupportedArchitectureError
from codefill.quantize.gguf_io import field_value, open_reader
from codefill.quantize.llm import EvalModel

from tinyhf import ARCHS

PROMPTS = [
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "import os\nimport sys\n\nclass Config:\n    def __init__(self, path):\n        self.path",
    "for i in range(10):\n    print(i * 2",
]


def _logits(path: str) -> list[np.ndarray]:
    with EvalModel(path, n_ctx=128, n_threads=1) as m:
        return [m.eval_logits(m.tokenize(p)) for p in PROMPTS]


def _log_softmax(x):
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.slow
def test_embedded_model_round_trip_gives_the_same_logits(smol_hf, tmp_path):
    """HF directory rebuilt from the shipped GGUF → convert → same tokenizer, same weights, same logits."""
    out = conv.convert(smol_hf, str(tmp_path / "smol-F16.gguf"))
    orig = embedded_model_path()
    a, b = open_reader(orig), open_reader(out)
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                "tokenizer.ggml.add_bos_token", "llama.rope.freq_base", "llama.attention.head_count_kv",
                "llama.context_length", "llama.rope.dimension_count"):
        assert field_value(a, key) == field_value(b, key), key
    assert {t.name for t in a.tensors} == {t.name for t in b.tensors}
    assert all(int(t.tensor_type) in (0, 1) for t in b.tensors)  # F32 norms, F16 matrices

    # F16 reference made straight from the shipped file, through llama.cpp's own loader on both sides:
    # every weight is the same F16 value, so llama.cpp must produce the same logits.
    from codefill.quantize.quant import Source, quantize_file

    ref = str(tmp_path / "direct-F16.gguf")
    src = Source(orig, allow_requantize=True)
    quantize_file(src, ref, {t.name: ("F16" if len(t.ne) > 1 else "KEEP") for t in src.tensors}, file_type=1)
    converted = _logits(out)
    for x, y in zip(converted, _logits(ref)):
        np.testing.assert_allclose(x, y, rtol=0, atol=1e-4)
    # …and, independently of our dequantization, close to the shipped Q4_1 file itself (llama.cpp quantizes the
    # activations to 8 bits for Q4_1 matrices, so the match is close, not exact)
    for x, y in zip(converted, _logits(orig)):
        kld = (np.exp(_log_softmax(y)) * (_log_softmax(y) - _log_softmax(x))).sum(-1)
        assert kld.mean() < 0.02
        assert (x.argmax(-1) == y.argmax(-1)).mean() >= 0.85


@pytest.mark.parametrize("arch", ARCHS)
def test_tiny_models_convert_and_load(tiny_gguf, arch):
    path = tiny_gguf(arch)
    r = open_reader(path)
    assert field_value(r, "general.architecture") == arch
    assert field_value(r, "tokenizer.ggml.pre") == {"qwen2": "qwen2", "starcoder2": "starcoder"}.get(arch, "smollm")
    with EvalModel(path, n_ctx=64, n_threads=1) as m:
        toks = m.tokenize("defdef 12")
        tokens = list(field_value(r, "tokenizer.ggml.tokens"))
        # merges applied ("def"), digits split one by one (the pre-tokenizer llama.cpp was told about)
        assert [tokens[t] for t in toks] == ["def", "def", "Ġ", "1", "2"]
        logits = m.eval_logits(toks)
        assert logits.shape == (5, len(tokens)) and np.isfinite(logits).all()
        assert m.L.llama_vocab_fim_pre(m.vocab) == tokens.index(
            "<|fim_prefix|>" if arch == "qwen2" else "<fim_prefix>")
        assert m.L.llama_vocab_fim_mid(m.vocab) == tokens.index(
            "<|fim_middle|>" if arch == "qwen2" else "<fim_middle>")


def _numpy_llama_logits(hf_dir: str, tokens: list[int]) -> np.ndarray:
    """Reference forward pass of a tiny HF llama in numpy (rotate-half RoPE, GQA, SwiGLU)."""
    from codefill.quantize.safetensors import SafetensorsFile

    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    f = SafetensorsFile(os.path.join(hf_dir, "model.safetensors"))
    W = {k: f.get(k).astype(np.float64) for k in f.keys()}
    n_head, n_kv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    hd = d // n_head
    eps = cfg["rms_norm_eps"]
    x = W["model.embed_tokens.weight"][tokens]
    T = len(tokens)
    pos = np.arange(T)[:, None]
    inv = cfg["rope_theta"] ** (-np.arange(0, hd, 2) / hd)
    ang = pos * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(v):  # v: T, heads, hd
        half = hd // 2
        rot = np.concatenate([-v[..., half:], v[..., :half]], -1)
        return v * cos[:, None, :] + rot * sin[:, None, :]

    def rms(v, w):
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * w

    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, W[p + "input_layernorm.weight"])
        q = rope((h @ W[p + "self_attn.q_proj.weight"].T).reshape(T, n_head, hd))
        k = rope((h @ W[p + "self_attn.k_proj.weight"].T).reshape(T, n_kv, hd))
        v = (h @ W[p + "self_attn.v_proj.weight"].T).reshape(T, n_kv, hd)
        rep = n_head // n_kv
        k, v = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd)
        att = att + np.triu(np.full((T, T), -np.inf), 1)[None]
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        o = np.einsum("hts,shd->thd", att, v).reshape(T, d)
        x = x + o @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"])
        g = h @ W[p + "mlp.gate_proj.weight"].T
        x = x + ((g / (1 + np.exp(-g))) * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W["model.norm.weight"])
    return x @ W["model.embed_tokens.weight"].T


def test_llama_conversion_matches_a_numpy_forward_pass(tiny_hf, tiny_gguf):
    """Q/K permutation, GQA, rope base and norms survive conversion: llama.cpp ≈ an independent numpy model."""
    toks = [5, 77, 140, 9, 200, 33, 61, 2]
    with EvalModel(tiny_gguf("llama"), n_ctx=64, n_threads=1) as m:
        got = m.eval_logits(toks)
    want = _numpy_llama_logits(tiny_hf("llama"), toks)
    np.testing.assert_allclose(got, want, atol=2e-2 * np.abs(want).max())
    assert (got.argmax(-1) == want.argmax(-1)).all()


def test_unsupported_architecture_is_refused_before_writing(tiny_hf, tmp_path):
    d = tiny_hf("llama", seed=3)
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in os.listdir(d):
        (bad / name).write_bytes(open(os.path.join(d, name), "rb").read())
    cfg = json.loads((bad / "config.json").read_text())
    cfg["architectures"] = ["MambaForCausalLM"]
    (bad / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "out.gguf"
    with pytest.raises(UnsupportedArchitectureError, match="MambaForCausalLM"):
        conv.convert(str(bad), str(out))
    assert not out.exists() and not (tmp_path / "out.gguf.part").exists()


@pytest.mark.parametrize("missing", ["tokenizer.json", "model.safetensors", "config.json"])
def test_missing_files_are_named(tiny_hf, tmp_path, missing):
    d = tiny_hf("qwen2")
    for name in os.listdir(d):
        if name != missing:
            (tmp_path / name).write_bytes(open(os.path.join(d, name), "rb").read())
    with pytest.raises(MissingFilesError):
        conv.convert(str(tmp_path), str(tmp_path / "x.gguf"))
    assert not (tmp_path / "x.gguf").exists()


def test_unknown_pre_tokenizer_is_refused(tiny_hf, tmp_path):
    d = tiny_hf("qwen2")
    for name in os.listdir(d):
        (tmp_path / name).write_bytes(open(os.path.join(d, name), "rb").read())
    tok = json.loads((tmp_path / "tokenizer.json").read_text())
    tok["pre_tokenizer"] = {"type": "Whitespace"}
    (tmp_path / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(UnsupportedArchitectureError, match="pre-tokenizer"):
        conv.inspect_hf(str(tmp_path))


@pytest.mark.parametrize("out_type", ["BF16", "F32"])
def test_other_output_types_give_the_same_model(tiny_hf, tiny_gguf, tmp_path, out_type):
    path = conv.convert(tiny_hf("qwen2"), str(tmp_path / f"t-{out_type}.gguf"), out_type)
    r = open_reader(path)
    assert {int(t.tensor_type) for t in r.tensors if len(t.shape) > 1} == {30 if out_type == "BF16" else 0}
    toks = [5, 60, 7, 99, 3]
    with EvalModel(path, n_ctx=32, n_threads=1) as a, EvalModel(tiny_gguf("qwen2"), n_ctx=32, n_threads=1) as b:
        x, y = a.eval_logits(toks), b.eval_logits(toks)
    np.testing.assert_allclose(x, y, atol=0.05 * np.abs(y).max())
