"""Issue 12 #1 and #14 (quantizer side): convert de-duplicates added tokens (llama.cpp aborts on a vocabulary with a
text twice), and malformed tokenizer.json / safetensors headers are format errors, not raw tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import struct

import pytest

from codefill.engine.llama import check_model_file
from codefill.quantize import convert as conv
from codefill.quantize.errors import ModelFormatError
from codefill.quantize.gguf_io import field_value, open_reader
from codefill.quantize.safetensors import SafetensorsFile


def _copy(tiny_hf, tmp_path, name="m"):
    d = tmp_path / name
    shutil.copytree(tiny_hf("qwen2"), d)
    return d


def _edit_tokenizer(d, fn):
    p = d / "tokenizer.json"
    tok = json.loads(p.read_text(encoding="utf-8"))
    tok = fn(tok)
    p.write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")


def test_convert_deduplicates_added_tokens(tiny_hf, tmp_path):
    d = _copy(tiny_hf, tmp_path)

    ids = {}

    def add_dups(tok):
        n = max(tok["model"]["vocab"].values())
        n = max(n, max(a["id"] for a in tok["added_tokens"])) + 1
        ids.update(bpe=tok["model"]["vocab"]["de"], added=n)
        # an added token repeating a BPE token's text, and two added tokens with the same text
        tok["added_tokens"].append({"id": n, "content": "de", "special": False})
        tok["added_tokens"].append({"id": n + 1, "content": "<extra>", "special": True})
        tok["added_tokens"].append({"id": n + 2, "content": "<extra>", "special": True})
        return tok

    _edit_tokenizer(d, add_dups)
    out = conv.convert(str(d), str(tmp_path / "out.gguf"))
    check_model_file(out)  # llama.cpp would abort on a duplicate
    tokens = field_value(open_reader(out), "tokenizer.ggml.tokens")
    assert len(tokens) == len(set(tokens))
    # the added token keeps its text (the HF tokenizer matches added tokens first); the others become placeholders
    n = ids["added"]
    assert tokens[n] == "de" and tokens[ids["bpe"]].startswith("[DUP")
    assert tokens[n + 1] == "<extra>" and tokens[n + 2].startswith("[DUP")


@pytest.mark.parametrize("edit, match", [
    (lambda tok: [tok], "not a JSON object"),
    (lambda tok: {**tok, "added_tokens": {"a": 1}}, "added_tokens"),
    (lambda tok: {**tok, "added_tokens": [{"content": "<x>"}]}, "added_tokens"),
    (lambda tok: {**tok, "added_tokens": [{"id": 3, "content": None}]}, "added_tokens"),
    (lambda tok: {**tok, "model": {**tok["model"], "vocab": {"a": "7"}}}, "id"),
    (lambda tok: {**tok, "model": {**tok["model"], "vocab": {"a": -4}}}, "id"),
    (lambda tok: {**tok, "model": {**tok["model"], "vocab": ["a", "b"]}}, "vocab"),
    (lambda tok: {**tok, "model": {**tok["model"], "merges": [1, 2]}}, "merges"),
    (lambda tok: {**tok, "pre_tokenizer": "ByteLevel"}, "tokenizer"),
])
def test_malformed_tokenizer_json_is_a_format_error(tiny_hf, tmp_path, edit, match):
    d = _copy(tiny_hf, tmp_path)
    _edit_tokenizer(d, edit)
    with pytest.raises(ModelFormatError, match=match):
        conv.inspect_hf(str(d))


def test_huge_token_id_is_refused_without_allocating(tiny_hf, tmp_path):
    d = _copy(tiny_hf, tmp_path)
    _edit_tokenizer(d, lambda tok: {**tok, "model": {**tok["model"], "vocab": {**tok["model"]["vocab"], "zz": 3_000_000_000}}})
    with pytest.raises(ModelFormatError, match="id"):
        conv.inspect_hf(str(d))


def _st(path, header, data=b""):
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return str(path)


@pytest.mark.parametrize("header, data, match", [
    (b"[1, 2]", b"", "not a JSON object"),
    ({"w": [1, 2]}, b"", "not an object"),
    ({"w": {"dtype": "F32", "shape": [2]}}, b"\0" * 8, "data_offsets"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, b"\0" * 8, "data_offsets"),
    ({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "bytes"),
    ({"w": {"dtype": "F32", "shape": ["2"], "data_offsets": [0, 8]}}, b"\0" * 8, "shape"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}, b"\0" * 8, "data_offsets"),
    ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}, "__metadata__": [1]}, b"\0" * 8, "metadata"),
    ({"w": {"dtype": "F32", "shape": [3_000_000_000], "data_offsets": [0, 12_000_000_000]}}, b"", "truncated"),
])
def test_malformed_safetensors_header_is_a_format_error(tmp_path, header, data, match):
    with pytest.raises(ModelFormatError, match=match):
        f = SafetensorsFile(_st(tmp_path / "x.safetensors", header, data))
        for k in f.keys():
            f.get(k)


def test_safetensors_header_length_beyond_the_file(tmp_path):
    p = tmp_path / "y.safetensors"
    p.write_bytes(struct.pack("<Q", 50 << 20) + b"{}")
    with pytest.raises(ModelFormatError, match="truncated|safetensors"):
        SafetensorsFile(str(p))


def test_valid_safetensors_still_reads(tmp_path):
    import numpy as np

    from codefill.quantize.safetensors import write

    p = str(tmp_path / "ok.safetensors")
    write(p, {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.zeros(0, np.int8)}, {"k": "v"})
    f = SafetensorsFile(p)
    assert f.get("a").tolist() == [[0, 1, 2], [3, 4, 5]] and f.metadata == {"k": "v"} and f.shape("b") == (0,)
