"""Integration tests on the real embedded model (SmolLM2-135M Q4_1, prefix-only)."""

import os
import sys
import threading
import time

import pytest

from codefill.engine import CompletionRequest, apply_completion
from codefill.engine.errors import ModelFormatError, ModelNotFoundError, PositionError
from codefill.engine.hardware import cpu_advertises_amx, use_extra_buffer_types
from codefill.engine.models import embedded_model_path

SRC = "import math\n\n\ndef circle_area(radius):\n    return \n"


def req(text=SRC, line=4, character=11, **kw):
    kw.setdefault("time_budget_ms", None)
    kw.setdefault("document_id", None)
    return CompletionRequest(text=text, line=line, character=character, path="geometry.py", **kw)


def test_completes_a_line(engine):
    c = engine.complete(req(use_cache=False))
    assert c.mode == "line"
    assert c.text.strip()
    assert "\n" not in c.text
    assert c.stop_reason in ("newline", "eos", "max_tokens")
    assert c.range.start == c.range.end
    assert (c.range.start.line, c.range.start.character) == (4, 11)
    assert c.timings.prompt_tokens > 0 and c.timings.decode_tokens >= len(c.token_logprobs) > 0
    assert c.logprob_min <= c.logprob_mean <= 0
    assert apply_completion(SRC, c).startswith("import math\n\n\ndef circle_area(radius):\n    return " + c.text)


def test_greedy_is_deterministic(engine):
    a = engine.complete(req(use_cache=False))
    b = engine.complete(req(use_cache=False))
    assert (a.text, a.token_logprobs) == (b.text, b.token_logprobs)


def test_block_completion_after_opener(engine):
    text = "def fibonacci(n):\n"
    c = engine.complete(req(text=text, line=0, character=17, use_cache=False))
    assert c.mode == "block"
    assert c.text.startswith("\n")
    body = c.text.split("\n")[1:]
    assert any(line.strip() for line in body), c.text  # a body, not just a line break
    assert all(not line.strip() or line.startswith("    ") for line in body)  # stays in the function


def test_kv_cache_reused_while_typing(engine):
    doc = "def total(items):\n    result = 0\n    for item in items:\n        result += \n"
    first = engine.complete(req(text=doc, line=3, character=18, document_id="kv", use_cache=False))
    typed = doc.replace("result += \n", "result += i\n")
    second = engine.complete(req(text=typed, line=3, character=19, document_id="kv", use_cache=False))
    assert second.timings.prompt_reused >= first.timings.prompt_tokens - 2
    assert second.timings.prompt_evaluated <= 3
    assert second.timings.prompt_reused + second.timings.prompt_evaluated == second.timings.prompt_tokens


def test_typing_through_a_completion_uses_it(engine):
    doc = "def circle_area(radius):\n    return \n"
    first = engine.complete(req(text=doc, line=1, character=11, document_id="typed"))
    assert len(first.text) >= 2
    ch = first.text[0]
    typed = doc.replace("return \n", "return " + ch + "\n")
    second = engine.complete(req(text=typed, line=1, character=12, document_id="typed"))
    assert second.stop_reason == "typed"
    assert second.text  # the rest of the first answer, not nothing
    assert first.text == ch + second.text
    assert second.timings.prompt_tokens == 0 and second.timings.decode_tokens == 0


LONG = "".join(f"def scale_{i}(value):\n    factor = {i * 7 % 13} + len(str(value))\n    return value * factor\n\n\n"
               for i in range(120))


def test_going_back_to_a_recent_place_reuses_its_prompt(engine):
    """Warm windows: the prompt of a place left a moment ago stays in the KV cache, so coming back is cheap — and
    gives exactly the answer a cold prompt gives."""
    rt = engine.backend
    assert rt.windows > 0
    lines = LONG.split("\n")
    a, b = 302, 562  # "    return value * factor" lines far apart: their prompt windows share nothing
    assert lines[a].startswith("    return") and lines[b].startswith("    return")
    here = dict(text=LONG, character=11, document_id="warm", use_cache=False, max_tokens=6)
    rt.clear()
    first = engine.complete(req(line=a, **here))
    assert first.timings.prompt_evaluated == first.timings.prompt_tokens > 200
    other = engine.complete(req(line=b, **here))
    assert other.timings.prompt_reused < 10  # a new place
    back = engine.complete(req(line=a, **here))
    assert back.timings.prompt_reused >= back.timings.prompt_tokens - 2 and back.timings.prompt_evaluated <= 2
    assert back.text == first.text
    # the last prompt token is evaluated alone here and inside a 400-token batch before: llama.cpp's batch-size
    # dependent rounding, as for any KV reuse
    assert back.token_logprobs == pytest.approx(first.token_logprobs, abs=1e-2)


def test_going_round_more_places_than_windows_stays_warm(engine):
    """Four places with three windows: taking a window gives it what sequence 0 held (a swap), so a round of visits
    never evicts the place that comes next."""
    rt = engine.backend
    assert rt.windows == 3
    rt.clear()
    places = [52, 152, 252, 352]  # "    return value * factor" lines, far apart
    here = dict(text=LONG, character=11, use_cache=False, max_tokens=2)
    for i in places:
        engine.complete(req(line=i, **here))
    for i in places:
        c = engine.complete(req(line=i, **here))
        assert c.timings.prompt_evaluated <= 2, (i, c.timings)


def test_warm_windows_leave_a_quarter_of_the_cache_for_decoding(engine):
    rt = engine.backend
    lines = LONG.split("\n")
    places = [i for i, ln in enumerate(lines) if ln.startswith("    return")][::12]
    for i in places:
        engine.complete(req(text=LONG, line=i, character=11, use_cache=False, max_tokens=2))
        kept = [len(rt.seq_tokens(s)) for s in range(rt.n_seq, rt.n_seq + rt.windows)]
        assert sum(kept) <= rt.n_ctx * 3 // 4
    assert sum(1 for s in range(rt.n_seq, rt.n_seq + rt.windows) if rt.seq_tokens(s)) >= 2
    rt.clear()
    assert not any(rt.seq_tokens(s) for s in range(rt.n_seq + rt.windows))


def test_healing_after_indentation_never_adds_more(engine):
    """Healing the indentation "    " allows its prefixes and tokens that start with all of it — with the cursor after
    the indentation, not those that go on with more whitespace; with nothing to heal, no token that starts with
    whitespace."""
    from codefill.engine.decode import HealingIndex

    rt = engine.backend
    healing_candidates = HealingIndex(rt).candidates
    pieces = {t: rt.token_piece(t) for t in range(rt.n_vocab)}
    heal = b"    "
    free = set(healing_candidates(heal).tolist())
    kept = set(healing_candidates(heal, no_space=True).tolist())
    eight = next(t for t, p in pieces.items() if p == b"        ")
    four = next(t for t, p in pieces.items() if p == heal)
    assert {eight, four} <= free and eight not in kept and four in kept
    for t in kept:
        p = pieces[t]
        assert (heal.startswith(p) and len(p) < len(heal)) or (p.startswith(heal) and p[4:5] not in (b" ", b"\t"))
    assert any(len(pieces[t]) > 4 for t in kept)  # "    return" and the like
    after = healing_candidates(b"", no_space=True)
    assert len(after) > 1000 and not any(pieces[t][:1] in (b" ", b"\t") for t in after.tolist())


def test_cancel_event_stops_before_decoding(engine):
    ev = threading.Event()
    ev.set()
    c = engine.complete(req(use_cache=False), cancel=ev)
    assert c.stop_reason == "cancelled" and c.text == ""


def test_newer_request_for_the_same_document_interrupts_an_older_one(engine, monkeypatch):
    long_line = "numbers = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, "
    results = {}

    def older():
        results["old"] = engine.complete(
            req(text=long_line, line=0, character=len(long_line), document_id="race", max_tokens=400, use_cache=False)
        )

    decoding = threading.Event()
    draw = engine.backend.draw

    def observed_draw(*a, **k):  # the older request is decoding once it draws
        decoding.set()
        return draw(*a, **k)

    monkeypatch.setattr(engine.backend, "draw", observed_draw)
    t = threading.Thread(target=older)
    t.start()
    assert decoding.wait(30)
    newer = engine.complete(req(document_id="race", use_cache=False, max_tokens=4))
    t.join(60)
    assert results["old"].stop_reason == "cancelled"
    assert results["old"].timings.decode_tokens < 400
    assert newer.stop_reason != "cancelled"


def test_position_outside_document(engine):
    with pytest.raises(PositionError):
        engine.complete(req(line=99, character=0))


def test_snippets_enter_the_prompt(engine):
    from codefill.engine import Snippet

    plain = engine.prepare(req()).prompt
    with_snip = engine.prepare(req(snippets=(Snippet("util.py", "PI = 3.14159\n"),))).prompt
    assert with_snip.n_snippets == 1
    assert len(with_snip.tokens) > len(plain.tokens)


def test_bad_model_files(tmp_path):
    from codefill.engine.llama import LlamaRuntime

    with pytest.raises(ModelNotFoundError):
        LlamaRuntime(str(tmp_path / "missing.gguf"))
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"not a model at all, just text" * 10)
    with pytest.raises(ModelFormatError):
        LlamaRuntime(str(junk))
    truncated = tmp_path / "truncated.gguf"
    with open(embedded_model_path(), "rb") as fh:
        truncated.write_bytes(fh.read(4096))
    from codefill.engine.errors import CodefillError

    with pytest.raises(CodefillError):
        LlamaRuntime(str(truncated))


def test_amx_flags_are_read_from_cpuinfo(tmp_path):
    no_amx = tmp_path / "cpuinfo"
    no_amx.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f\n")
    amx = tmp_path / "cpuinfo_amx"
    amx.write_text("processor\t: 0\nflags\t\t: fpu avx512f amx_tile amx_int8\n")
    assert cpu_advertises_amx(str(no_amx)) is False
    assert cpu_advertises_amx(str(amx)) is (sys.platform == "linux")
    assert cpu_advertises_amx(str(tmp_path / "missing")) is False


@pytest.mark.skipif(sys.platform != "linux", reason="AMX is only detected from Linux's /proc/cpuinfo")
def test_amx_guard_only_probes_cpus_that_advertise_amx(tmp_path, monkeypatch):
    """The probe is a child process (subprocess.run): a fake runner records whether it ran and plays its outcome;
    /proc/cpuinfo, as the guard reads it, is a fake with or without AMX flags."""
    import builtins
    import subprocess

    from codefill.engine import hardware

    cache = tmp_path / "cache"
    monkeypatch.setenv("CODEFILL_CACHE_DIR", str(cache))
    monkeypatch.delenv("CODEFILL_EXTRA_BUFTS", raising=False)
    flags = {"line": "flags\t\t: fpu sse2 avx2 avx512f\n"}

    def fake_open(file, *a, **kw):
        if str(file) == "/proc/cpuinfo":
            fake = tmp_path / "fake-cpuinfo"
            fake.write_text("processor\t: 0\nmodel name\t: Test CPU\n" + flags["line"])
            file = fake
        return builtins.open(file, *a, **kw)

    monkeypatch.setattr(hardware, "open", fake_open, raising=False)
    probes: list[list[str]] = []
    outcome = {"rc": 0}

    def fake_run(cmd, *a, **kw):
        probes.append(list(cmd))
        if outcome["rc"] == "hang":
            raise subprocess.TimeoutExpired(cmd, kw.get("timeout", 0))
        return subprocess.CompletedProcess(cmd, outcome["rc"], b"", b"")

    monkeypatch.setattr(subprocess, "run", fake_run)

    def model(name):
        p = tmp_path / name
        p.write_bytes(b"GGUF" + name.encode())
        return str(p)

    # A CPU without AMX: repacked buffer types on, no probe, nothing cached.
    a = model("a.gguf")
    assert use_extra_buffer_types(a) is True
    assert probes == [] and not cache.exists()

    # With AMX: one probe per model file, in a child process of this Python, on that file; the verdict is cached.
    flags["line"] = "flags\t\t: fpu avx512f amx_tile amx_int8 amx_bf16\n"
    assert use_extra_buffer_types(a) is True
    assert len(probes) == 1 and probes[0][0] == sys.executable and probes[0][-1] == a
    assert any("probe" in part for part in probes[0])
    assert use_extra_buffer_types(a) is True and len(probes) == 1  # cached: no second probe
    assert cache.exists() and os.listdir(cache)

    # A child that dies (the AMX fault) turns them off, and that verdict is cached too.
    b = model("b.gguf")
    outcome["rc"] = -11
    assert use_extra_buffer_types(b) is False and len(probes) == 2 and probes[-1][-1] == b
    assert use_extra_buffer_types(b) is False and len(probes) == 2
    assert use_extra_buffer_types(a) is True and len(probes) == 2  # each file keeps its own verdict

    # A child that hangs counts as a fault.
    outcome["rc"] = "hang"
    assert use_extra_buffer_types(model("c.gguf")) is False and len(probes) == 3

    # A model the child cannot load at all teaches nothing: on, and asked again next time.
    d = model("d.gguf")
    outcome["rc"] = hardware.PROBE_MODEL_BROKEN
    assert use_extra_buffer_types(d) is True and len(probes) == 4
    assert use_extra_buffer_types(d) is True and len(probes) == 5

    # The environment overrides the guard without probing, AMX or not.
    e = model("e.gguf")
    monkeypatch.setenv("CODEFILL_EXTRA_BUFTS", "off")
    assert use_extra_buffer_types(e) is False
    monkeypatch.setenv("CODEFILL_EXTRA_BUFTS", "on")
    assert use_extra_buffer_types(e) is True
    assert use_extra_buffer_types(b) is True  # even over a cached "off"
    assert len(probes) == 5


def test_cursor_at_the_start_of_a_file(engine):
    """An empty prefix (completing above existing code) used to raise ValueError('empty prompt'): a prefix-only
    model without BOS now starts from the vocabulary's document separator."""
    doc = "import os\n\n\ndef main():\n    pass\n"
    c = engine.complete(req(text=doc, line=0, character=0, max_tokens=8, use_cache=False))
    assert c.timings.prompt_tokens == 1 and c.timings.decode_tokens >= 1
    assert c.stop_reason in ("newline", "eos", "max_tokens")
    assert engine.prepare(req(text=doc, line=0, character=0)).tokens == (engine.backend.special_token("<|endoftext|>"),)
