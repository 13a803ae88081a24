"""Per-tensor type choice: llama.cpp's standard mixes, reproduced rule for rule.

Mirrors `llama_tensor_get_type_impl` and `tensor_type_fallback` in llama.cpp's src/llama-quant.cpp (bundled
version, dense models, non-Falcon) for the mixes codefill offers, so `--types Q4_K_M` gives the same per-tensor types
as `llama-quantize … Q4_K_M`. For SmolLM2-135M (width 576, not a multiple of 256) most K-quant choices fall back:
Q2_K/Q3_K → Q4_0, Q4_K → Q5_0, Q5_K → Q5_1, Q6_K → Q8_0; a tied token embedding becomes Q8_0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from . import ggml

# ftype name → (default tensor type, LLAMA_FTYPE value for general.file_type)
MIXES = {
    "F32": ("F32", 0), "F16": ("F16", 1), "BF16": ("BF16", 32),
    "Q4_0": ("Q4_0", 2), "Q4_1": ("Q4_1", 3), "Q8_0": ("Q8_0", 7), "Q5_0": ("Q5_0", 8), "Q5_1": ("Q5_1", 9),
    "Q2_K": ("Q2_K", 10), "Q3_K_S": ("Q3_K", 11), "Q3_K_M": ("Q3_K", 12), "Q3_K_L": ("Q3_K", 13),
    "Q4_K_S": ("Q4_K", 14), "Q4_K_M": ("Q4_K", 15), "Q5_K_S": ("Q5_K", 16), "Q5_K_M": ("Q5_K", 17),
    "Q6_K": ("Q6_K", 18), "IQ4_NL": ("IQ4_NL", 25), "IQ4_XS": ("IQ4_XS", 30),
}

FALLBACK = {
    "IQ1_S": "IQ4_NL", "IQ1_M": "IQ4_NL", "IQ2_XXS": "IQ4_NL", "IQ2_XS": "IQ4_NL", "IQ2_S": "IQ4_NL",
    "IQ3_XXS": "IQ4_NL", "IQ3_S": "IQ4_NL", "IQ4_XS": "IQ4_NL",
    "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
    "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
}


@dataclass
class TensorInfo:
    name: str
    ne: tuple[int, ...]  # ggml order: ne[0] = row length

    @property
    def n_per_row(self) -> int:
        return int(self.ne[0])

    @property
    def n_elements(self) -> int:
        n = 1
        for x in self.ne:
            n *= int(x)
        return n

    @property
    def layer(self) -> int | None:
        m = re.match(r"blk\.(\d+)\.", self.name)
        return int(m.group(1)) if m else None


def quantizable(t: TensorInfo) -> bool:
    """llama.cpp's tensor_allows_quantization for the dense architectures we convert."""
    if len(t.ne) < 2 or not t.name.endswith("weight"):
        return False
    if "_norm.weight" in t.name or "ffn_gate_inp.weight" in t.name:
        return False
    return True


def category(name: str) -> str:
    if name == "output.weight":
        return "output"
    if name == "token_embd.weight":
        return "token_embd"
    for key in ("attn_qkv", "attn_v", "attn_k", "attn_q", "attn_output"):
        if f"{key}.weight" in name:
            return key
    for key in ("ffn_up", "ffn_gate", "ffn_down"):
        if key in name:
            return key
    return "other"


def fallback(t: TensorInfo, type_name: str) -> str:
    if t.n_per_row % ggml.block_size(ggml.type_id(type_name)) == 0:
        return type_name
    new = FALLBACK.get(type_name)
    if new is None:
        raise ValueError(f"no fallback for {type_name} on {t.name} (row {t.n_per_row})")
    if t.n_per_row % ggml.block_size(ggml.type_id(new)) != 0:
        return "F16"
    return new


def _use_more_bits(i: int, n: int) -> bool:
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def standard_plan(tensors: list[TensorInfo], mix: str, *, has_imatrix: bool, n_head: int = 1,
                  n_head_kv: int = 1) -> dict[str, str]:
    """Tensor name → ggml type name for llama.cpp mix `mix` (non-quantizable tensors keep 'KEEP')."""
    mix = mix.upper()
    if mix not in MIXES:
        raise ValueError(f"unknown type {mix!r}; known: {', '.join(MIXES)}")
    default = MIXES[mix][0]
    tied = not any(t.name == "output.weight" for t in tensors)
    n_gqa = max(1, n_head // max(1, n_head_kv))
    n_v = sum(1 for t in tensors if category(t.name) in ("attn_v", "attn_qkv"))
    n_down = sum(1 for t in tensors if category(t.name) == "ffn_down")
    i_v = 0
    plan: dict[str, str] = {}
    for t in tensors:
        if not quantizable(t):
            plan[t.name] = "KEEP"
            continue
        if default in ("F32", "F16", "BF16"):
            plan[t.name] = default
            continue
        cat = category(t.name)
        new = default
        if cat == "output" or (tied and cat == "token_embd"):
            if t.n_per_row % ggml.block_size(ggml.type_id(new)) != 0:
                new = "Q8_0"
            elif new != "Q8_0":
                new = "Q6_K"
        elif cat == "token_embd":
            pass
        elif cat in ("attn_v", "attn_qkv"):  # llama.cpp treats fused QKV like V
            if mix == "Q2_K":
                new = "Q4_K" if n_gqa >= 4 else "Q3_K"
            elif mix == "Q3_K_M":
                new = "Q5_K" if i_v < 2 else "Q4_K"
            elif mix == "Q3_K_L":
                new = "Q5_K"
            elif mix in ("IQ4_NL", "IQ4_XS") and n_gqa >= 4:
                new = "Q5_K"
            elif mix in ("Q4_K_M", "Q5_K_M") and _use_more_bits(i_v, n_v):
                new = "Q6_K"
            elif mix == "Q4_K_S" and i_v < 4:
                new = "Q5_K"
            i_v += 1
        elif cat == "ffn_down":
            i, n = t.layer or 0, n_down
            if mix == "Q2_K":
                new = "Q3_K"
            elif mix == "Q3_K_M":
                new = "Q5_K" if i < n // 16 else "Q4_K"
            elif mix == "Q3_K_L":
                new = "Q5_K"
            elif mix == "Q4_K_M":
                if _use_more_bits(i, n):
                    new = "Q6_K"
            elif i < n // 8 and mix in ("IQ4_NL", "IQ4_XS") and not has_imatrix:
                new = "Q5_K"
            elif mix == "Q5_K_M" and _use_more_bits(i, n):
                new = "Q6_K"
            elif mix == "Q4_K_S" and i < n // 8:
                new = "Q5_K"
            elif mix in ("Q4_0", "Q5_0") and has_imatrix and i < n // 8:
                new = "Q4_1" if mix == "Q4_0" else "Q5_1"
        elif cat == "attn_output":
            if mix == "Q2_K":
                new = "Q3_K"
            elif mix == "Q3_K_M":
                new = "Q4_K"
            elif mix == "Q3_K_L":
                new = "Q5_K"
        plan[t.name] = fallback(t, new)
    return plan


def plan_size(tensors: list[TensorInfo], plan: dict[str, str], keep_types: dict[str, int]) -> int:
    """Bytes of tensor data (without metadata or alignment) for a plan."""
    total = 0
    for t in tensors:
        tname = plan[t.name]
        tid = keep_types[t.name] if tname == "KEEP" else ggml.type_id(tname)
        total += ggml.row_size(tid, t.n_per_row) * (t.n_elements // t.n_per_row)
    return total
