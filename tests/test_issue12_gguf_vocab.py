"""Issue 12 #1: a GGUF whose vocabulary holds the same token text twice (published files have this) made llama.cpp
abort the whole process on an assert of its vocabulary maps. check_model_file now reads the metadata first (bounded,
no tensor data) and refuses such files, and hostile counts/ids, with a one-line ModelFormatError."""

import os
import struct
import subprocess
import sys

import gguf
import pytest

from codefill.engine.errors import ModelFormatError
from codefill.engine.llama import check_model_file

from tinymodels import make_tiny_model, make_tiny_vocab


def write_vocab(path, tokens, bos=0, eos=0, extra=None, scores=None, types=None):
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_name("bad vocab")
    w.add_context_length(256)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("default")
    w.add_token_merges(["a b"])
    w.add_token_list(tokens)
    w.add_token_types(types if types is not None else [gguf.TokenType.NORMAL] * len(tokens))
    if scores is not None:
        w.add_token_scores(scores)
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    for k, v in (extra or {}).items():
        w.add_uint32(k, v)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


TOKENS = ["<|endoftext|>", "a", "b", "ab", "c", "ab", "d"]


@pytest.fixture
def dup(tmp_path):
    return write_vocab(tmp_path / "dup.gguf", TOKENS)


def test_duplicate_token_is_a_format_error_naming_it(dup):
    with pytest.raises(ModelFormatError) as e:
        check_model_file(dup)
    msg = str(e.value)
    assert "'ab'" in msg and "3" in msg and "5" in msg and "\n" not in msg


def test_engine_loader_refuses_duplicates_without_aborting(dup):
    code = ("import sys\nfrom codefill.engine.llama import LlamaRuntime\nfrom codefill.engine.errors import "
            "ModelFormatError\ntry:\n    LlamaRuntime(sys.argv[1], vocab_only=True)\nexcept ModelFormatError as e:\n"
            "    print('REFUSED', e)\nelse:\n    print('LOADED')\n")
    p = subprocess.run([sys.executable, "-c", code, dup], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, (p.returncode, p.stderr[-2000:])  # -6 (SIGABRT) before the fix
    assert p.stdout.startswith("REFUSED") and "'ab'" in p.stdout


def test_cli_complete_with_duplicate_vocab_exits_5_on_one_line(dup, tmp_path):
    src = tmp_path / "x.py"
    src.write_text("def f():\n    return \n")
    p = subprocess.run([sys.executable, "-m", "codefill", "complete", f"{src}:2:11", "--model", dup],
                       capture_output=True, text=True, timeout=120, env=dict(os.environ, CODEFILL_NO_PROGRESS="1"))
    assert p.returncode == 5, (p.returncode, p.stderr[-2000:])
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "'ab'" in lines[0] and "Traceback" not in p.stderr


def test_hostile_metadata_is_refused(tmp_path):
    n = len(set(TOKENS))
    good = sorted(set(TOKENS))
    with pytest.raises(ModelFormatError, match="eos_token_id"):
        check_model_file(write_vocab(tmp_path / "eos.gguf", good, eos=n + 100))
    with pytest.raises(ModelFormatError, match="fim_pre_token_id"):
        check_model_file(write_vocab(tmp_path / "fim.gguf", good, extra={"tokenizer.ggml.fim_pre_token_id": 1 << 30}))
    with pytest.raises(ModelFormatError, match="scores"):
        check_model_file(write_vocab(tmp_path / "sc.gguf", good, scores=[0.0] * (n - 2)))
    # a header that claims 2**40 metadata entries, or a string of 2**62 bytes
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 40)
    (tmp_path / "kv.gguf").write_bytes(head + b"\0" * 64)
    with pytest.raises(ModelFormatError, match="metadata"):
        check_model_file(str(tmp_path / "kv.gguf"))
    head = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 62)
    (tmp_path / "key.gguf").write_bytes(head + b"\0" * 64)
    with pytest.raises(ModelFormatError):
        check_model_file(str(tmp_path / "key.gguf"))
    # a token array claiming more elements than the file holds
    body = struct.pack("<Q", 21) + b"tokenizer.ggml.tokens" + struct.pack("<IIQ", 9, 8, 1 << 23)
    (tmp_path / "arr.gguf").write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + body + b"\0" * 64)
    with pytest.raises(ModelFormatError, match="truncated"):
        check_model_file(str(tmp_path / "arr.gguf"))


def test_valid_models_still_pass(tmp_path):
    check_model_file(make_tiny_vocab("qwen", str(tmp_path)).path)
    check_model_file(make_tiny_vocab("codellama", str(tmp_path)).path)
    check_model_file(make_tiny_model("qwen", str(tmp_path), ["a", "b"]).path)
    from codefill.engine.models import embedded_model_path
    check_model_file(embedded_model_path())
