"""Tiny random Hugging Face models (config, safetensors, BPE tokenizer) per architecture, for the quantizer tests."""

from __future__ import annotations

import json
import os

import numpy as np

from codefill.quantize import safetensors
from tinymodels import bytes_to_unicode  # GPT-2's byte alphabet, shared with the prompt-format tests

ARCHS = ["llama", "qwen2", "starcoder2", "stablelm"]

_QWEN_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


SPECIALS = {
    "llama": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"],
    "qwen2": ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
              "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>"],
    "starcoder2": ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<repo_name>",
                   "<file_sep>"],
    "stablelm": ["<|endoftext|>", "<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>"],
}


def make_tiny_hf(directory: str, arch: str, *, seed: int = 0, n_embd: int = 64, n_layer: int = 2,
                 n_head: int = 4, n_head_kv: int = 2, n_ff: int = 128, tied: bool = True) -> str:
    """A random tiny model in Hugging Face layout: config.json, model.safetensors, tokenizer.json/_config."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    specials = SPECIALS[arch]
    b2u = bytes_to_unicode()
    vocab = {ch: i for i, ch in enumerate(b2u.values())}
    merges = [["Ġ", "Ġ"], ["d", "e"], ["de", "f"]]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    added = []
    for s in specials:
        added.append({"id": len(vocab), "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True})
        vocab[s] = len(vocab)
    n_vocab = len(vocab) + (-len(vocab)) % 32  # padded like real checkpoints; the gap becomes [PAD] tokens
    if arch == "qwen2":
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": _QWEN_RE}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]}
    else:
        pre = {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    tok = {"version": "1.0", "added_tokens": added, "normalizer": None, "pre_tokenizer": pre,
           "post_processor": None, "decoder": {"type": "ByteLevel"},
           "model": {"type": "BPE", "vocab": {t: i for t, i in vocab.items() if t not in specials},
                     "merges": [" ".join(m) for m in merges]}}
    with open(os.path.join(directory, "tokenizer.json"), "w", encoding="utf-8") as fh:
        json.dump(tok, fh, ensure_ascii=False)
    with open(os.path.join(directory, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
        json.dump({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "add_bos_token": False}, fh)
    hd = n_embd // n_head

    def w(*shape, scale=0.08):
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    t: dict[str, np.ndarray] = {"model.embed_tokens.weight": w(n_vocab, n_embd, scale=0.5)}
    norm_bias = arch in ("starcoder2", "stablelm")
    for i in range(n_layer):
        p = f"model.layers.{i}."
        t[p + "self_attn.q_proj.weight"] = w(n_head * hd, n_embd)
        t[p + "self_attn.k_proj.weight"] = w(n_head_kv * hd, n_embd)
        t[p + "self_attn.v_proj.weight"] = w(n_head_kv * hd, n_embd)
        t[p + "self_attn.o_proj.weight"] = w(n_embd, n_head * hd)
        if arch in ("qwen2", "starcoder2", "stablelm"):
            t[p + "self_attn.q_proj.bias"] = w(n_head * hd)
            t[p + "self_attn.k_proj.bias"] = w(n_head_kv * hd)
            t[p + "self_attn.v_proj.bias"] = w(n_head_kv * hd)
        if arch == "starcoder2":
            t[p + "self_attn.o_proj.bias"] = w(n_embd)
            t[p + "mlp.c_fc.weight"] = w(n_ff, n_embd)
            t[p + "mlp.c_fc.bias"] = w(n_ff)
            t[p + "mlp.c_proj.weight"] = w(n_embd, n_ff)
            t[p + "mlp.c_proj.bias"] = w(n_embd)
        else:
            t[p + "mlp.gate_proj.weight"] = w(n_ff, n_embd)
            t[p + "mlp.up_proj.weight"] = w(n_ff, n_embd)
            t[p + "mlp.down_proj.weight"] = w(n_embd, n_ff)
        for ln in ("input_layernorm", "post_attention_layernorm"):
            t[p + ln + ".weight"] = (1 + w(n_embd, scale=0.1)).astype(np.float32)
            if norm_bias:
                t[p + ln + ".bias"] = w(n_embd, scale=0.1)
    t["model.norm.weight"] = (1 + w(n_embd, scale=0.1)).astype(np.float32)
    if norm_bias:
        t["model.norm.bias"] = w(n_embd, scale=0.1)
    if not tied:
        t["lm_head.weight"] = w(n_vocab, n_embd)
    safetensors.write(os.path.join(directory, "model.safetensors"),
                      {k: v.astype(np.float16) if v.ndim == 2 else v for k, v in t.items()})
    hf_arch = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "starcoder2": "Starcoder2ForCausalLM",
               "stablelm": "StableLmForCausalLM"}[arch]
    config = {"architectures": [hf_arch], "model_type": arch, "hidden_size": n_embd, "intermediate_size": n_ff,
              "num_hidden_layers": n_layer, "num_attention_heads": n_head, "num_key_value_heads": n_head_kv,
              "max_position_embeddings": 1024, "rope_theta": 10000.0, "rms_norm_eps": 1e-5, "norm_epsilon": 1e-5,
              "layer_norm_eps": 1e-5, "vocab_size": n_vocab, "tie_word_embeddings": tied, "use_bias": True,
              "partial_rotary_factor": 0.25, "use_qkv_bias": True, "bos_token_id": 0, "eos_token_id": 0}
    with open(os.path.join(directory, "config.json"), "w") as fh:
        json.dump(config, fh, indent=1)
    return directory


