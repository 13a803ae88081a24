"""Every supported architecture, converted, computes what the Hugging Face model computes.

An independent numpy forward pass of each tiny HF checkpoint (the transformers definitions: rotate-half RoPE on the
first `rot` dims of each head, GQA, RMSNorm or LayerNorm with bias, SwiGLU or tanh-GELU MLP, q/k/v/o biases, tied
output) against llama.cpp running the converted GGUF. Loading alone would not catch a tensor mapped to the wrong
slot, a missing bias, a wrong norm epsilon or rope dimension: the logits would just be wrong.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from codefill.quantize.llm import EvalModel
from codefill.quantize.safetensors import SafetensorsFile

TOKENS = [5, 77, 140, 9, 200, 33, 61, 2, 118, 40]


def _forward(hf_dir: str, arch: str, tokens: list[int], drop_biases: bool = False, rot: int | None = None
             ) -> np.ndarray:
    cfg = json.load(open(os.path.join(hf_dir, "config.json")))
    f = SafetensorsFile(os.path.join(hf_dir, "model.safetensors"))
    W = {k: f.get(k).astype(np.float64) for k in f.keys() if not (drop_biases and "proj.bias" in k)}
    n_head, n_kv, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["hidden_size"]
    hd = d // n_head
    if rot is None:
        rot = int(hd * cfg["partial_rotary_factor"]) if arch == "stablelm" else hd
    layer_norm = arch in ("starcoder2", "stablelm")
    eps = {"llama": cfg["rms_norm_eps"], "qwen2": cfg["rms_norm_eps"], "starcoder2": cfg["norm_epsilon"],
           "stablelm": cfg["layer_norm_eps"]}[arch]
    T = len(tokens)
    inv = cfg["rope_theta"] ** (-np.arange(0, rot, 2) / rot)
    ang = np.arange(T)[:, None] * inv[None, :]
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(v):  # T, heads, hd: rotate-half on the first `rot` dims
        r, rest = v[..., :rot], v[..., rot:]
        half = rot // 2
        rh = np.concatenate([-r[..., half:], r[..., :half]], -1)
        return np.concatenate([r * cos[:, None, :] + rh * sin[:, None, :], rest], -1)

    def norm(v, prefix):
        if layer_norm:
            mu = v.mean(-1, keepdims=True)
            var = ((v - mu) ** 2).mean(-1, keepdims=True)
            return (v - mu) / np.sqrt(var + eps) * W[prefix + ".weight"] + W[prefix + ".bias"]
        return v / np.sqrt((v * v).mean(-1, keepdims=True) + eps) * W[prefix + ".weight"]

    def lin(v, name):
        y = v @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    x = W["model.embed_tokens.weight"][tokens]
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = norm(x, p + "input_layernorm")
        q = rope(lin(h, p + "self_attn.q_proj").reshape(T, n_head, hd))
        k = rope(lin(h, p + "self_attn.k_proj").reshape(T, n_kv, hd))
        v = lin(h, p + "self_attn.v_proj").reshape(T, n_kv, hd)
        k, v = np.repeat(k, n_head // n_kv, axis=1), np.repeat(v, n_head // n_kv, axis=1)
        att = np.einsum("thd,shd->hts", q, k) / np.sqrt(hd) + np.triu(np.full((T, T), -np.inf), 1)[None]
        att = np.exp(att - att.max(-1, keepdims=True))
        att /= att.sum(-1, keepdims=True)
        x = x + lin(np.einsum("hts,shd->thd", att, v).reshape(T, d), p + "self_attn.o_proj")
        h = norm(x, p + "post_attention_layernorm")
        if arch == "starcoder2":
            u = lin(h, p + "mlp.c_fc")
            u = 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u ** 3)))
            x = x + lin(u, p + "mlp.c_proj")
        else:
            g = lin(h, p + "mlp.gate_proj")
            x = x + lin((g / (1 + np.exp(-g))) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = norm(x, "model.norm")
    return x @ W.get("lm_head.weight", W["model.embed_tokens.weight"]).T


@pytest.mark.parametrize("arch", ["llama", "qwen2", "starcoder2", "stablelm"])
def test_converted_model_matches_a_numpy_forward_pass(tiny_hf, tiny_gguf, arch):
    with EvalModel(tiny_gguf(arch), n_ctx=64, n_threads=1) as m:
        got = m.eval_logits(TOKENS)
    want = _forward(tiny_hf(arch), arch, TOKENS)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-2 * np.abs(want).max())
    assert (got.argmax(-1) == want.argmax(-1)).mean() >= 0.9


def test_the_comparison_notices_a_wrong_model(tiny_hf, tiny_gguf):
    """The tolerance has teeth: a converter that dropped the attention biases, or rotated the whole head where
    stablelm rotates a quarter of it, would fail the test above."""
    with EvalModel(tiny_gguf("qwen2"), n_ctx=64, n_threads=1) as m:
        got = m.eval_logits(TOKENS)
    wrong = _forward(tiny_hf("qwen2"), "qwen2", TOKENS, drop_biases=True)
    assert not np.allclose(got, wrong, atol=2e-2 * np.abs(wrong).max())
    with EvalModel(tiny_gguf("stablelm"), n_ctx=64, n_threads=1) as m:
        got = m.eval_logits(TOKENS)
    wrong = _forward(tiny_hf("stablelm"), "stablelm", TOKENS, rot=16)
    assert not np.allclose(got, wrong, atol=2e-2 * np.abs(wrong).max())
