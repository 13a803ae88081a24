"""Idle-time work on the real embedded model (issue 14): warm-up evaluates a place's prompt ahead of the request,
the next completion is decoded into the cache ahead of Tab, and both stop at once for a request.

One thread: there a batch gives bit-for-bit the logits of one token at a time (LlamaRuntime.verify_exact), so a
warmed prompt (evaluated in micro-batches) gives exactly the cold answer.
"""

import textwrap as textwrap_module
import threading
import time

import pytest

from codefill.engine import CompletionRequest, Engine, EngineConfig, StopReason, apply_completion
from recorded import TIE, margin, parting, tracing

pytestmark = pytest.mark.slow

SOURCE = open(textwrap_module.__file__, encoding="utf-8").read()  # real code nobody here wrote


@pytest.fixture(scope="module")
def eng():
    e = Engine.load(EngineConfig(n_threads=1))
    assert e.backend.verify_exact
    yield e
    e.close()


def _req(line, character, **kw):
    kw.setdefault("time_budget_ms", None)
    return CompletionRequest(text=SOURCE, line=line, character=character, path="textwrap.py", **kw)


def _line_end(line):
    return len(SOURCE.split("\n")[line])


def test_a_warmed_place_evaluates_only_the_last_tokens_and_answers_as_cold(eng):
    """A warmed prompt was evaluated in micro-batches, a cold one in one batch: llama.cpp's matrix kernels for
    batches of other sizes round differently, so a near-tie may go the other way (as on another CPU, see
    tests/recorded.py); anything else must be the cold answer."""
    same = 0
    for line in (120, 200, 300, 350, 420):
        req = _req(line, _line_end(line), use_cache=False)
        eng.backend.clear()
        with tracing() as cold_trace:
            cold = eng.complete(req)
        assert cold.timings.prompt_evaluated > 200  # a fresh place: the whole prompt window
        eng.backend.clear()
        eng.complete(_req(line - 60, 0, use_cache=False))  # somewhere else first
        reused, evaluated = eng.warm(req)
        n = len(eng.prepare(req).tokens)
        assert evaluated > 100 and evaluated + reused == n - 1
        with tracing() as warm_trace:
            warm = eng.complete(req)
        assert warm.timings.prompt_evaluated <= 2  # the last token (and what healing changed)
        i = parting(cold_trace, warm_trace)
        if i is None:
            same += 1
            assert (warm.text, warm.raw) == (cold.text, cold.raw)
        else:
            assert margin(cold_trace, i) <= TIE and margin(warm_trace, i) <= TIE, (i, cold.raw, warm.raw)
        assert eng.warm(req) == (n - 1, 0) or eng.warm(req)[1] == 0  # warm again: nothing to do
    assert same >= 1


def test_the_place_left_stays_in_a_warm_window(eng):
    here, there = _req(300, _line_end(300), use_cache=False), _req(150, _line_end(150), use_cache=False)
    eng.backend.clear()
    eng.complete(here)
    eng.warm(there)
    back = eng.complete(here)  # going back costs nothing: its prompt was kept in a window
    assert back.timings.prompt_evaluated <= 2


def test_warm_up_stops_for_a_request(eng):
    """Background work yields: a request that comes while a long prompt is being warmed stops it at its next
    micro-batch, and gets the answer it would have got anyway."""
    long_text = SOURCE * 3
    lines = long_text.split("\n")
    far = CompletionRequest(text=long_text, line=len(lines) - 2, character=0, path="textwrap.py",
                            time_budget_ms=None, use_cache=False)
    near = _req(40, _line_end(40), use_cache=False)
    eng.backend.clear()
    want = eng.complete(near)
    eng.backend.clear()
    n_far = len(eng.prepare(far).tokens)
    assert n_far > 4 * eng.backend.WARM_CHUNK
    result = []
    t = threading.Thread(target=lambda: result.append(eng.warm(far)))
    t.start()
    deadline = time.monotonic() + 60
    while len(eng.backend.seq_tokens(0)) < eng.backend.WARM_CHUNK and time.monotonic() < deadline:
        time.sleep(0.005)
    got = eng.complete(near)
    t.join(60)
    reused, evaluated = result[0]
    assert 0 < evaluated <= n_far - 1 - eng.backend.WARM_CHUNK  # it stopped before the end
    assert (got.text, got.raw) == (want.text, want.raw)


def test_the_next_completion_is_ready_when_the_suggestion_is_accepted(eng):
    line = 300
    shown = eng.complete(_req(line, _line_end(line)))
    assert shown.text
    after = apply_completion(SOURCE, shown)
    at = _line_end(line) + len(shown.text.split("\n")[-1]) if "\n" not in shown.text else len(shown.text.split("\n")[-1])
    at_line = line + shown.text.count("\n")
    nxt = CompletionRequest(text=after, line=at_line, character=at, path="textwrap.py", time_budget_ms=None)
    eng.backend.clear()
    ahead = eng.precompute(nxt)
    assert ahead is not None  # (often empty at the end of a line: the next piece is on the next line)
    assert eng.precompute(nxt) is None  # already in the cache
    hit = eng.complete(nxt)
    assert hit.stop_reason == StopReason.CACHE and hit.text == ahead.text
    eng.backend.clear()
    cold = eng.complete(CompletionRequest(text=after, line=at_line, character=at, path="textwrap.py",
                                          time_budget_ms=None, use_cache=False))
    assert cold.raw == ahead.raw  # what a request would have decoded itself


def test_the_next_completion_stops_for_a_request_and_keeps_nothing(eng):
    # A block at a function's start: long enough to be caught decoding.
    opener = next(i for i, ln in enumerate(SOURCE.split("\n")) if ln.startswith("    def ") and i > 100)
    nxt = _req(opener + 1, 0, mode="block", max_tokens=128)
    other = _req(40, _line_end(40), use_cache=False)
    eng.backend.clear()
    result = []
    t = threading.Thread(target=lambda: result.append(eng.precompute(nxt)))
    t.start()
    deadline = time.monotonic() + 60
    # wait until it is decoding (its prompt evaluated: sequence 0 holds more than the prompt)
    n_prompt = len(eng.prepare(nxt).tokens)
    while len(eng.backend.seq_tokens(0)) <= n_prompt and time.monotonic() < deadline:
        time.sleep(0.002)
    eng.complete(other)
    t.join(60)
    assert result == [None]
    assert eng.complete(nxt).stop_reason != StopReason.CACHE  # nothing cut short was kept
