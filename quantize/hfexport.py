"""GGUF (llama architecture, BPE vocabulary) → a Hugging Face model directory.

The embedded SmolLM2 model ships only as a Q4_1 GGUF and nothing can be downloaded offline, so the tests and the
benchmark rebuild its Hugging Face form from it: dequantized weights as safetensors (Q/K rows un-permuted back to
HF order), config.json, tokenizer.json (vocabulary, merges, pre-tokenizer, added tokens) and tokenizer_config.json.
`codefill quantize` then starts from that directory like from any downloaded model.
"""

from __future__ import annotations

import json
import os

import numpy as np

from . import safetensors
from .convert import unpermute
from .errors import UnsupportedArchitectureError
from .gguf_io import field_value, open_reader, tensor_f32

_PRE_TOKENIZERS = {
    "smollm": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
    "starcoder": {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]},
    "gpt-2": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
}

_HF_NAMES = {
    "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj", "attn_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}


def export_llama(gguf_path: str, out_dir: str, dtype: str = "F16") -> str:
    r = open_reader(gguf_path)
    arch = field_value(r, "general.architecture")
    if arch != "llama":
        raise UnsupportedArchitectureError(f"hfexport handles llama GGUF files, not {arch}")
    pre = field_value(r, "tokenizer.ggml.pre", "gpt-2")
    if field_value(r, "tokenizer.ggml.model") != "gpt2" or pre not in _PRE_TOKENIZERS:
        raise UnsupportedArchitectureError(f"hfexport handles BPE vocabularies with {sorted(_PRE_TOKENIZERS)} only")
    g = lambda k, d=None: field_value(r, f"llama.{k}", d)  # noqa: E731
    n_head, n_head_kv = int(g("attention.head_count")), int(g("attention.head_count_kv"))
    os.makedirs(out_dir, exist_ok=True)
    np_dtype = {"F16": np.float16, "F32": np.float32}[dtype]
    tensors: dict[str, np.ndarray] = {}
    tied = True
    for t in r.tensors:
        w = tensor_f32(t)
        ne = [int(x) for x in t.shape]
        w = w.reshape(tuple(reversed(ne))) if len(ne) > 1 else w.reshape(-1)
        parts = t.name.split(".")
        if t.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            name = "model.norm.weight"
        elif t.name == "output.weight":
            name, tied = "lm_head.weight", False
        elif parts[0] == "blk" and parts[2] in _HF_NAMES:
            name = f"model.layers.{parts[1]}.{_HF_NAMES[parts[2]]}.weight"
            if parts[2] == "attn_q":
                w = unpermute(w, n_head)
            elif parts[2] == "attn_k":
                w = unpermute(w, n_head_kv)
        else:
            raise UnsupportedArchitectureError(f"hfexport: unexpected tensor {t.name}")
        tensors[name] = np.ascontiguousarray(w.astype(np_dtype))
    safetensors.write(os.path.join(out_dir, "model.safetensors"), tensors, {"format": "pt"})

    tokens = list(field_value(r, "tokenizer.ggml.tokens"))
    types = list(field_value(r, "tokenizer.ggml.token_type"))
    merges = list(field_value(r, "tokenizer.ggml.merges", []))
    special = {k: field_value(r, f"tokenizer.ggml.{k}_token_id") for k in ("bos", "eos", "unknown", "padding")}
    added = [{"id": i, "content": tokens[i], "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for i, ty in enumerate(types) if int(ty) == 3]
    tok_json = {
        "version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
        "normalizer": None, "pre_tokenizer": _PRE_TOKENIZERS[pre],
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                  "vocab": {t: i for i, t in enumerate(tokens)}, "merges": merges},
    }
    with open(os.path.join(out_dir, "tokenizer.json"), "w", encoding="utf-8") as fh:
        json.dump(tok_json, fh, ensure_ascii=False)
    tc = {"add_bos_token": bool(field_value(r, "tokenizer.ggml.add_bos_token", False)),
          "add_prefix_space": False, "model_max_length": int(g("context_length", 2048)),
          "tokenizer_class": "GPT2Tokenizer"}
    for key, gkey in (("bos_token", "bos"), ("eos_token", "eos"), ("unk_token", "unknown"), ("pad_token", "padding")):
        if special[gkey] is not None:
            tc[key] = tokens[int(special[gkey])]
    tmpl = field_value(r, "tokenizer.chat_template")
    if tmpl:
        tc["chat_template"] = tmpl
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as fh:
        json.dump(tc, fh, ensure_ascii=False, indent=1)
    n_embd = int(g("embedding_length"))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "_name_or_path": field_value(r, "general.name", "model"),
        "hidden_size": n_embd, "intermediate_size": int(g("feed_forward_length")),
        "num_hidden_layers": int(g("block_count")), "num_attention_heads": n_head, "num_key_value_heads": n_head_kv,
        "head_dim": int(g("rope.dimension_count", n_embd // n_head)),
        "max_position_embeddings": int(g("context_length", 2048)), "rms_norm_eps": float(g("attention.layer_norm_rms_epsilon")),
        "rope_theta": float(g("rope.freq_base", 10000.0)), "tie_word_embeddings": tied,
        "vocab_size": len(tokens), "hidden_act": "silu", "torch_dtype": "float16" if dtype == "F16" else "float32",
        "bos_token_id": special["bos"], "eos_token_id": special["eos"],
    }
    with open(os.path.join(out_dir, "config.json"), "w", encoding="utf-8") as fh:
        json.dump(config, fh, indent=1)
    return out_dir
