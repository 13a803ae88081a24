"""Decoding as the engine's callers see it: what ends a completion (a family's stop tokens, the time budget), prompts
longer than the context, and the per-document memory that `Engine.forget` drops.

The stop-token and time-budget tests run real decodes on tiny generated models (tests/tinymodels.py,
`make_tiny_model`) whose greedy output is a chosen chain of tokens, so what the model emits is known exactly; the
others use the embedded model.
"""

from __future__ import annotations

import re

import pytest

from codefill.engine import CompletionRequest, DecodeConfig, Engine, EngineConfig
from tinymodels import make_tiny_model

# The special tokens that end a completion, per FIM family (the tiny vocabularies have these; see engine/fim.py).
# Most of them llama.cpp does not count as end-of-generation: only the engine's own stop list ends the decode there.
STOPS = {
    "qwen": ["<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|im_end|>", "<|fim_prefix|>",
             "<|fim_suffix|>", "<|fim_middle|>"],
    "starcoder2": ["<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>",
                   "<repo_name>"],
    "starcoder": ["<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<filename>"],
    "deepseek": ["<｜end▁of▁sentence｜>", "<|EOT|>", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"],
    "codellama": ["▁<EOT>", "</s>"],
    "codegemma": ["<|file_separator|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<eos>"],
}
FAMILY = {"starcoder2": "starcoder"}  # the engine's family name where it differs from the vocabulary's

DOC = "x = \n"  # a line completion after "x = " (PSM prompts end with the FIM middle token, not in any chain)


@pytest.fixture(autouse=True)
def _one_amx_probe_is_enough(monkeypatch):
    """These tests load many short-lived model files; on a CPU that advertises AMX each would get its own probe
    (engine/hardware.py). Tiny F32 models have no repacked kernels to lose."""
    from codefill.engine.hardware import cpu_advertises_amx

    if cpu_advertises_amx():
        monkeypatch.setenv("CODEFILL_EXTRA_BUFTS", "off")


def load_chain(tiny_dir, family, chain, name, loop_to=-1, **decode) -> Engine:
    v = make_tiny_model(family, str(tiny_dir), chain, name=name, loop_to=loop_to)
    return Engine.load(EngineConfig(model_path=v.path, n_ctx=2048, n_threads=1, windows=0, decode=DecodeConfig(**decode)))


ENGINE_DEFAULT = object()  # time_budget_ms=ENGINE_DEFAULT: leave the field out, so the engine's default applies


def tiny_req(text=DOC, line=0, character=4, **kw):
    if kw.get("time_budget_ms") is ENGINE_DEFAULT:
        del kw["time_budget_ms"]
    else:
        kw.setdefault("time_budget_ms", None)
    kw.setdefault("use_cache", False)
    kw.setdefault("max_tokens", 8)
    return CompletionRequest(text=text, line=line, character=character, path="x.py", **kw)


CASES = [(fam, stop) for fam, stops in STOPS.items() for stop in stops]


@pytest.mark.parametrize("family,stop", CASES, ids=[f"{f}-{s}" for f, s in CASES])
def test_a_family_stop_token_ends_the_completion_and_is_not_in_it(tiny_dir, family, stop):
    # After "hi" the model emits the stop token, then "hi" again (the chain loops; the stop token may be the FIM middle
    # token the prompt ends with): without the stop the answer would be "hihihi".
    eng = load_chain(tiny_dir, family, ["h", "i", stop], f"after-{CASES.index((family, stop))}", loop_to=0)
    try:
        assert eng.family == FAMILY.get(family, family)
        c = eng.complete(tiny_req())
        assert (c.text, c.raw, c.stop_reason) == ("hi", "hi", "eos")  # the stop token is not part of it
    finally:
        eng.close()
    # The stop token first (and forever after): an empty answer that ends at once, not at the token limit.
    eng = load_chain(tiny_dir, family, [stop], f"first-{CASES.index((family, stop))}")
    try:
        c = eng.complete(tiny_req())
        assert (c.text, c.raw, c.stop_reason) == ("", "", "eos")
    finally:
        eng.close()


def test_a_special_token_that_is_no_stop_does_not_end_the_completion(tiny_dir):
    """The control case of the test above: the chain model goes on through a special token the family does not stop
    at (it has no text of its own), so an engine that ignored its stop list would fail that test."""
    eng = load_chain(tiny_dir, "qwen", ["h", "i", "<|im_start|>", "Z"], "through-im-start")
    try:
        c = eng.complete(tiny_req())
        assert c.stop_reason == "max_tokens" and c.raw == "hiZZZZZ"  # 8 tokens: h, i, the special one, 5 Z
    finally:
        eng.close()


# ---------------------------------------------------------------------------------------------- time budget

LINE = "abcdefg"
UNLIMITED = dict(max_tokens=1500, max_line_tokens=1500, max_lines=10**6)  # only the time budget can end these
# Block mode on a tab-indented empty line of a function body: the model writes "abcdefg", "\tabcdefg", … forever (one
# token per character), every line inside the block, so no stop rule ends it.
BLOCK_DOC = "def f():\n\t\n"
BLOCK_LINES = re.compile(f"{LINE}(\n\t{LINE})*")


@pytest.fixture(scope="module")
def lines_engine(tiny_dir):
    eng = load_chain(tiny_dir, "deepseek", list(LINE) + ["\n", "\t"], "lines", loop_to=0, time_budget_ms=15.0,
                     **UNLIMITED)
    eng.complete(block_req(max_tokens=16))  # the first decode of a context pays for its setup
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def endless_line_engine(tiny_dir):
    eng = load_chain(tiny_dir, "deepseek", list(LINE), "endless-line", loop_to=0, **UNLIMITED)
    eng.complete(tiny_req(mode="line", max_tokens=16))
    yield eng
    eng.close()


def block_req(**kw):
    return tiny_req(text=BLOCK_DOC, line=1, character=1, mode="block", **{"max_tokens": None, **kw})


@pytest.mark.parametrize("budget", [5.0, 10.0, 20.0, 40.0])
def test_a_block_out_of_time_keeps_whole_lines_only(lines_engine, budget):
    c = lines_engine.complete(block_req(time_budget_ms=budget))
    assert c.mode == "block" and c.stop_reason == "time"
    assert c.timings.decode_ms >= budget  # the budget was used, not cut short
    if "\n" not in c.raw:
        pytest.skip(f"{budget} ms decoded less than two lines on this machine")
    # every kept line is a complete line of the model's; the partial last one is dropped
    assert BLOCK_LINES.fullmatch(c.raw), c.raw[-40:]
    assert c.timings.decode_tokens >= len(c.raw)  # one token per character
    assert c.text and c.text.split("\n")[0] == LINE


def test_the_engine_default_budget_applies_and_none_means_no_limit(lines_engine):
    default = lines_engine.complete(block_req(time_budget_ms=ENGINE_DEFAULT))  # EngineConfig's: 15 ms
    assert default.stop_reason == "time" and default.timings.decode_ms >= 15.0
    unlimited = lines_engine.complete(block_req(time_budget_ms=None, max_tokens=200))
    assert unlimited.stop_reason == "max_tokens"
    # the token limit, like the time budget, drops the partial last line (200 = 7 + 21 * 9 + 4: "\n\tab" goes)
    assert unlimited.timings.decode_tokens == 200
    assert unlimited.raw == LINE + f"\n\t{LINE}" * 21
    assert unlimited.text == LINE  # whole copies only, so the loop filter sees all 22 and keeps the first


def test_a_completion_cut_by_time_is_not_cached(lines_engine):
    ask = block_req(time_budget_ms=5.0, use_cache=True, max_tokens=1499)  # a token limit no other test asks for
    first = lines_engine.complete(ask)
    again = lines_engine.complete(ask)
    assert first.stop_reason == again.stop_reason == "time"  # decoded again, not answered from the cache
    assert again.timings.decode_tokens > 0
    done = lines_engine.complete(block_req(time_budget_ms=None, use_cache=True, max_tokens=40))
    assert lines_engine.complete(block_req(time_budget_ms=None, use_cache=True, max_tokens=40)).stop_reason == "cache"
    assert done.stop_reason == "max_tokens"  # (the control: a finished completion is cached)


def test_a_block_that_is_one_unfinished_line_at_the_token_limit_is_nothing(endless_line_engine):
    """A runaway line (issue 15: a drifting pattern repeated for 128 tokens) is not a block suggestion; the same
    line in line mode is kept, cut at the limit (the line-mode runaway cap, `max_line_tokens`)."""
    block = endless_line_engine.complete(block_req(time_budget_ms=None, max_tokens=50))
    assert block.stop_reason == "max_tokens" and block.timings.decode_tokens == 50
    assert block.raw == "" and block.text == ""
    line = endless_line_engine.complete(tiny_req(mode="line", max_tokens=50, time_budget_ms=None))
    assert line.stop_reason == "max_tokens" and line.raw == (LINE * 8)[:50]


@pytest.mark.parametrize("budget", [2.0, 10.0])
def test_a_line_out_of_time_keeps_what_was_decoded(endless_line_engine, budget):
    c = endless_line_engine.complete(tiny_req(mode="line", max_tokens=None, time_budget_ms=budget))
    assert c.mode == "line" and c.stop_reason == "time"
    assert c.timings.decode_ms >= budget
    assert c.raw and "\n" not in c.raw
    assert c.raw == (LINE * (len(c.raw) // len(LINE) + 1))[: len(c.raw)]  # the decoded text, partial word kept
    assert c.timings.decode_tokens == len(c.raw)


@pytest.mark.slow
def test_a_block_of_the_real_model_out_of_time_keeps_whole_lines(engine):
    """The embedded model: a budget that runs out in the middle of a function body keeps the lines decoded whole
    (the unlimited answer up to one of its line breaks)."""
    text = "def fibonacci(n):\n"

    def ask(budget):
        return engine.complete(CompletionRequest(text=text, line=0, character=17, path="fib.py", max_tokens=48,
                                                 time_budget_ms=budget, use_cache=False))

    full = ask(None)
    assert full.mode == "block" and full.raw.count("\n") >= 3, full.raw
    budget = max(full.timings.decode_ms / 2, 1.0)
    for _ in range(8):  # the machine's speed varies: look for a budget that ends after a line, before the answer
        cut = ask(budget)
        if cut.stop_reason != "time" or len(cut.raw) >= len(full.raw):  # time ran out only after the last line
            budget /= 2
        elif not cut.raw.strip():  # not even the first body line
            budget *= 1.6
        else:
            break
    assert cut.stop_reason == "time" and cut.raw.strip(), (budget, cut.raw, full.raw)
    assert len(cut.raw) < len(full.raw) and full.raw.startswith(cut.raw)
    assert full.raw[len(cut.raw)] == "\n"  # it ends where a line of the unlimited answer ends
    assert full.text.startswith(cut.text) and cut.text.strip()


@pytest.mark.slow
def test_a_tiny_budget_on_the_real_model_ends_with_time(engine):
    line = "numbers = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, "
    c = engine.complete(CompletionRequest(text=line, line=0, character=len(line), path="n.py", max_tokens=40,
                                          time_budget_ms=0.01, use_cache=False))
    assert c.mode == "line" and c.stop_reason == "time" and c.timings.decode_tokens <= 1
    block = engine.complete(CompletionRequest(text="def fibonacci(n):\n", line=0, character=17, path="fib.py",
                                              max_tokens=40, time_budget_ms=0.01, use_cache=False))
    assert block.mode == "block" and block.stop_reason == "time"
    # its one token starts the body ("\n    …"): a partial line, dropped
    assert block.raw == "" and block.text == "" and block.timings.decode_tokens <= 1


# ---------------------------------------------------------------------------------------------- long prompts

FILLER = "".join(f"def scale_{i}(value):\n    factor = {i * 7 % 13} + len(str(value))\n    return value * factor\n\n\n"
                 for i in range(150))
TAIL = "def tail(zebra_count):\n    return zebra_"


@pytest.fixture(scope="module")
def small_ctx():
    eng = Engine.load(EngineConfig(n_ctx=256, n_threads=2))
    yield eng
    eng.close()


@pytest.mark.slow
@pytest.mark.parametrize("max_tokens", [8, 24])
def test_a_prompt_longer_than_the_context_keeps_the_end_of_the_prefix(small_ctx, max_tokens):
    doc = FILLER + TAIL
    n_lines = doc.count("\n")
    n_ctx = small_ctx.model_info()["n_ctx"]
    assert n_ctx == 256
    c = small_ctx.complete(CompletionRequest(text=doc, line=n_lines, character=len(TAIL.split("\n")[-1]),
                                             path="scale.py", max_tokens=max_tokens, time_budget_ms=None,
                                             use_cache=False))
    assert c.timings.prompt_tokens <= n_ctx - max_tokens
    assert c.timings.prompt_tokens >= n_ctx // 2  # the room left is used
    # the model saw the cursor line: it completes the parameter named only there
    assert c.mode == "line" and c.text.startswith("count"), c.text


@pytest.mark.slow
def test_max_tokens_beyond_the_context_keeps_the_document(small_ctx):
    """A token limit past the context used to cut the prompt to its first token (then: ValueError 'empty prompt');
    the completion now takes at most half of the context and the prompt keeps the cursor's end of the document."""
    doc = FILLER + TAIL
    n_ctx = small_ctx.model_info()["n_ctx"]
    c = small_ctx.complete(CompletionRequest(text=doc, line=doc.count("\n"), character=len("    return zebra_"),
                                             path="scale.py", max_tokens=300, time_budget_ms=None, use_cache=False))
    assert n_ctx // 2 - 1 <= c.timings.prompt_tokens <= n_ctx // 2
    assert c.timings.decode_tokens <= n_ctx // 2


# ---------------------------------------------------------------------------------------------- Engine.forget


@pytest.mark.slow
def test_forget_drops_the_completion_typing_would_be_answered_from(engine):
    def ask(doc_text, doc_id):
        lines = doc_text.split("\n")
        line = len(lines) - 2  # the cursor at the end of the last line
        return engine.complete(CompletionRequest(text=doc_text, line=line, character=len(lines[line]),
                                                 path="area.py", document_id=doc_id, time_budget_ms=None,
                                                 max_tokens=12))

    kept_doc = "def square_area(side):\n    return \n"
    first = ask(kept_doc, "kept")
    assert len(first.text) >= 2, first.text
    typed = ask(kept_doc.replace("return \n", "return " + first.text[0] + "\n"), "kept")
    assert typed.stop_reason == "typed"  # remembered: typing its first character is answered from it

    doc = "def circle_area(radius):\n    return \n"
    first = ask(doc, "forgotten")
    assert len(first.text) >= 2, first.text
    engine.forget("forgotten")
    after = ask(doc.replace("return \n", "return " + first.text[0] + "\n"), "forgotten")
    assert after.stop_reason not in ("typed", "cancelled")
    assert after.timings.prompt_tokens > 0  # the model answered
    engine.forget("never-seen")  # forgetting an unknown document is harmless


# ---------------------------------------------------------------------------------------------- empty-line holes

BELOW_ZERO = '''def below_zero(operations: list) -> bool:
    """True when the running balance ever falls below zero."""
    balance = 0
    for op in operations:
        balance += op
        if balance < 0:
            
    return False
'''


def _hole(engine, text, line, **kw):
    return engine.complete(CompletionRequest(text=text, line=line, character=len(text.split("\n")[line]), mode="line",
                                             time_budget_ms=None, use_cache=False, **kw))


def test_a_line_that_only_repeats_the_next_one_is_diverted_to_other_code(engine, monkeypatch):
    """The embedded model reads no suffix: at the empty line it writes `return False`, the line below, which a
    filter drops. Diverted at its least sure token it writes what goes before it."""
    from codefill.engine import decode

    monkeypatch.setattr(decode, "DIVERSIONS", 0)
    plain = _hole(engine, BELOW_ZERO, 6)
    assert plain.raw.strip() == "return False" and plain.text == ""  # the control: repeated, then dropped
    monkeypatch.setattr(decode, "DIVERSIONS", 2)
    diverted = _hole(engine, BELOW_ZERO, 6)
    assert diverted.text == "return True" and diverted.stop_reason == "newline"
    assert diverted.timings.decode_tokens > plain.timings.decode_tokens  # the second walk is counted


def test_a_line_hole_at_its_indentation_does_not_end_before_any_code(engine):
    """HumanEval/76 line 2: after `return (x == 1)` the model's first choice on the indented empty line is a line
    break, an empty suggestion; a line completion there starts with code."""
    from codefill.eval.humaneval import build_tasks
    from codefill.eval.runner import request_for

    task = next(t for t in build_tasks("single-line") if t.task_id == "HumanEval/76/single-line/2")
    assert task.prefix.endswith("\n    ")
    c = engine.complete(request_for(task))
    assert c.raw.strip() and not c.raw.startswith(("\n", "\r")) and c.text.strip()


def test_a_line_that_returns_where_the_block_goes_on_is_diverted(engine, monkeypatch):
    """HumanEval/0 line 0: at the first line of the body the model, seeing no code after the cursor, returns at
    once; the (deeper) loop body below could then never run. Decoded again without that `return`, it writes code
    that can."""
    from codefill.engine import decode
    from codefill.eval.humaneval import build_tasks
    from codefill.eval.runner import request_for

    task = next(t for t in build_tasks("single-line") if t.task_id == "HumanEval/0/single-line/0")
    assert task.suffix.lstrip("\n").startswith("        for idx2, elem2 in enumerate(numbers):")
    monkeypatch.setattr(decode, "DIVERSIONS", 0)
    plain = engine.complete(request_for(task))
    assert plain.text.startswith("return ")  # the control
    monkeypatch.setattr(decode, "DIVERSIONS", 2)
    diverted = engine.complete(request_for(task))
    assert diverted.text.strip() and not re.match(r"(return|raise|break|continue)\b", diverted.text)
    assert diverted.stop_reason == "newline"


def test_a_line_that_binds_none_of_the_names_the_suffix_needs_is_started_again_with_one(engine, monkeypatch):
    """HumanEval/1 line 3: the loop body below reads `c`, which nothing defines; the model, reading no suffix,
    writes `for char in paren_string:`. Started again at that loop's unread target with `c`, it writes the loop
    the body needs — and the rest of the line is the model's own."""
    from codefill.engine import decode
    from codefill.eval.humaneval import build_tasks
    from codefill.eval.runner import request_for

    task = next(t for t in build_tasks("single-line") if t.task_id == "HumanEval/1/single-line/3")
    assert task.target.strip() == "for c in paren_string:"
    monkeypatch.setattr(decode, "DIVERSIONS", 0)
    plain = engine.complete(request_for(task))
    assert plain.text.strip() == "for char in paren_string:"  # the control
    monkeypatch.setattr(decode, "DIVERSIONS", 2)
    bound = engine.complete(request_for(task))
    assert bound.text.strip() == "for c in paren_string:" and bound.stop_reason == "newline"
    assert bound.timings.decode_tokens > plain.timings.decode_tokens


def test_a_helper_the_suffix_calls_is_defined_where_the_line_opens_a_block(engine, monkeypatch):
    """The deeper line below reads `n`, the line after it calls `is_prime`: the hole opens the helper's `def`."""
    from codefill.engine import decode

    doc = ("def count_primes(xs):\n    \n        return n > 1 and all(n % k for k in range(2, n))\n"
           "    return sum(1 for x in xs if is_prime(x))\n")
    monkeypatch.setattr(decode, "DIVERSIONS", 0)
    plain = _hole(engine, doc, 1, path="x.py")
    assert plain.text.startswith("return ")  # the control
    monkeypatch.setattr(decode, "DIVERSIONS", 2)
    c = _hole(engine, doc, 1, path="x.py")
    assert c.text.startswith("def is_prime(") and c.stop_reason == "newline"


def test_a_return_before_a_dedent_or_a_comment_is_kept(engine):
    """Where the block ends below the hole (the next code is less indented) a return is what it may hold; comment
    lines in between do not count as code."""
    doc = "def sign(x):\n    if x < 0:\n        \n        # negative\n    return 1\n"
    c = engine.complete(CompletionRequest(text=doc, line=2, character=8, mode="line", time_budget_ms=None,
                                          use_cache=False))
    assert c.text.startswith("return"), c.text


# ---------------------------------------------------------------------------------------------- holes inside a word

def _stream_at(doc: str, mark: str):
    from codefill.engine.context import build_context
    from codefill.engine.decode import Stream
    from codefill.engine.sampler import Sampler
    from codefill.engine.stops import StopRules

    line = doc.count("\n", 0, doc.index(mark))
    return Stream(0, Sampler(0.0, 1.0, 0), StopRules(build_context(doc, line, len(mark), mode="auto")))


def test_a_hole_inside_a_word_ends_where_the_rest_of_the_line_fits():
    s = _stream_at("def f(ops):\n    b = 0\n    for op in oper" + "alance < 0:\n            return True\n", "    for op in oper")
    assert s.rules.mode == "line" and s.join == "alance < 0:"
    later = "ations:\n        balance += op\n        if balance < 0:\n"
    assert s._seek_join(later, final=False) == (len("ations:\n        balance += op\n        if b"), "suffix")
    assert s._seek_join("ations:\n        balance += op\n", final=False) is None  # decoding on
    assert s._seek_join("ations:\n        balance += op\n", final=True) == (7, "newline")  # none fits: one line
    many = "ations:\n" + "        x += 1\n" * 7
    assert s._seek_join(many, final=False) == (7, "newline")  # JOIN_LINES more lines at most
    # the cursor line itself: the model writes the rest as it is (`oper` + `ations: if b` + `alance < 0:`)
    assert s._seek_join("ations: if balance < 0:\n", final=False) == (len("ations: if b"), "suffix")


def test_a_hole_between_words_or_before_a_bracket_stays_one_line():
    assert _stream_at("x = foo(a, b)\n", "x = foo(a, ").join == ""  # after a space: an ordinary line completion
    assert _stream_at("print(x)\n", "print(x").join == ""  # `)`: not inside a word
    assert _stream_at("value = ab\n", "value = a").join == ""  # the rest (`b`) is too short to be looked for


def test_a_real_hole_inside_a_word_spans_lines_to_the_rest_of_its_line(engine):
    doc = "def total(numbers):\n    result = 0\n    for n in num" + "sult += n\n    return result\n"
    c = engine.complete(CompletionRequest(text=doc, line=2, character=len("    for n in num"), mode="auto",
                                          time_budget_ms=None, use_cache=False))
    assert c.mode == "line" and c.stop_reason == "suffix"
    assert c.text == "bers:\n        re"  # the document reads `for n in numbers:` / `result += n` again
