"""Speculative decoding without a draft model (decode.PromptLookup drafts, LlamaRuntime.verify checks a draft in one
batch, decode._run_drafted takes the agreeing tokens): the greedy answers are exactly those of one token at a time.

The loop's mechanics (stop rules, stop tokens, limits, cancellation and the deadline inside an accepted run) are
checked on a fake backend whose greedy chain is known; the answers, the KV cache bookkeeping and the switch on the
embedded model. Drafts are exact on the CPU with one thread (LlamaRuntime.verify_exact), so those tests load the
model with n_threads=1 and pin the draft cost so that drafts are taken whatever the machine's speed.
"""

from __future__ import annotations

import json.decoder
import math
import os
import types

import numpy as np
import pytest

from codefill.engine import decode
from codefill.engine.context import CompletionContext
from codefill.engine.decode import HealingIndex, Limits, PromptLookup, Stream, draft_length, run
from codefill.engine.llama import LlamaRuntime, speculation
from codefill.engine.sampler import Draw, Sampler
from codefill.engine.stops import StopRules
from codefill.engine.types import StopReason

HERE = os.path.dirname(os.path.abspath(__file__))
TEXTWRAP = os.path.join(HERE, "data", "textwrap_py311.py")  # CPython 3.11's textwrap, a copy
JSON_DECODER = json.decoder.__file__


# ------------------------------------------------------------------------------------------------ drafting


def test_lookup_takes_the_longest_earlier_match():
    # the history ends with 2 3 4: "2 3 4" occurred at 1..3 (followed by 5 9 9), "3 4" alone more recently (then 7)
    pl = PromptLookup([1, 2, 3, 4, 5, 9, 9, 3, 4, 7, 0, 2, 3, 4])
    assert pl.match() == (4, 3)
    assert pl.propose(5, cost=0.0) == [5, 9, 9, 3, 4]
    assert pl.propose(2, cost=0.0) == [5, 9]


def test_lookup_takes_the_most_recent_of_equal_matches_and_grows_with_appends():
    pl = PromptLookup([7, 8, 1, 7, 8, 2, 0])
    assert pl.propose(3, cost=0.0) == []  # "2 0" never occurred before
    pl.append(7)
    pl.append(8)
    assert pl.propose(1, cost=0.0) == [2]  # "7 8" was followed by 1, then (more recently) by 2
    for _ in range(200):  # past the buffer's first size
        pl.append(5)
    assert pl.n == 209 and pl.propose(3, cost=0.0) == [5, 5, 5]  # a run: what follows repeats


def test_lookup_continues_a_period():
    pl = PromptLookup([9, 1, 2, 3, 1, 2])  # "1 2" last came 3 tokens back: the history repeats 1 2 3
    assert pl.propose(7, cost=0.0) == [3, 1, 2, 3, 1, 2, 3]


def test_lookup_without_history_or_room():
    assert PromptLookup([]).propose(4, cost=0.0) == []
    assert PromptLookup([3, 3]).propose(4, cost=0.0) == []  # a match needs a token after it
    assert PromptLookup([1, 2, 1, 2]).propose(0, cost=0.0) == []


def test_draft_length_follows_the_cost():
    assert draft_length(8, 0.0, 10) == 10 and draft_length(8, 0.0, 3) == 3
    assert [draft_length(n, 0.08, 10) for n in (2, 8)] == [6, 7]
    assert draft_length(2, 0.72, 10) == 0 and draft_length(8, 0.72, 10) == 1  # a busy CPU: only long matches
    assert all(draft_length(n, 2.0, 10) == 0 for n in range(2, 9))  # a batch dearer than its tokens: none


def test_long_matches_still_probe_when_drafts_are_too_dear():
    pl = PromptLookup([1, 2, 3, 4, 5, 6, 7, 8, 9, 1, 2, 3, 4, 5, 6, 7, 8])
    proposals = [pl.propose(4, cost=2.0) for _ in range(2 * decode.PROBE_EVERY)]
    assert proposals.count([9]) == 2 and proposals.count([]) == 2 * decode.PROBE_EVERY - 2


def test_the_switch():
    assert speculation(None, True) and not speculation(None, False)
    assert speculation("auto", True) and not speculation(" AUTO ", False)
    assert speculation("1", False) and speculation("on", False)
    assert not speculation("0", True) and not speculation("off", True)


# ------------------------------------------------------------------------------------------------ the loop, on a fake


class ChainBackend:
    """One sequence whose greedy next token is `succ[last token]`; logits (hence log-probabilities) also depend on
    the position, so a draw made from the wrong position would show. `verify` does what LlamaRuntime.verify does."""

    PIECES = {0: b"a", 1: b"b", 2: b"c", 3: b"\n", 4: b"d", 5: b"e", 6: b"f", 7: b"g", 8: b"h", 9: b""}
    path, n_seq, n_vocab, n_threads, accelerated, enumerable = "chain", 1, 10, 1, False, True

    def __init__(self, prompt, succ, *, eog=9, drafts=True, n_ctx=4096):
        self.tokens = list(prompt)
        self.succ = succ
        self.eog = eog
        self.n_ctx = n_ctx
        self.speculative = drafts
        self.verify_cost = 0.0
        self.fed = self.verified = 0

    def logits(self, upto: int) -> np.ndarray:
        last, pos = self.tokens[upto - 1], upto
        x = np.linspace(-2.0, 0.0, self.n_vocab, dtype=np.float32) + np.float32((pos % 7) * 0.1)
        x[self.succ[last]] = 4.0 + (pos % 5) * 0.5
        return x

    def seq_tokens(self, seq=0):
        return self.tokens

    def is_eog(self, t):
        return t == self.eog

    def token_piece(self, t, special=False):
        return self.PIECES[t]

    def draw(self, seq, sampler, allowed=None) -> Draw:
        return sampler.draw(self.logits(len(self.tokens)), allowed)

    def feed(self, tokens):
        self.tokens.append(tokens[0])
        self.fed += 1

    def verify(self, seq, tokens, sampler):
        n0 = len(self.tokens)
        self.tokens.extend(tokens)
        self.verified += 1
        draws = []
        for i in range(len(tokens)):
            draws.append(sampler.draw(self.logits(n0 + i + 1)))
            if i + 1 == len(tokens) or draws[-1].token != tokens[i + 1]:
                break
        del self.tokens[n0 + len(draws) :]
        return draws


class NoVerify(ChainBackend):
    """A backend without `verify` (like remote.RemoteBackend): decodes one token at a time."""

    verify = None


CYCLE = {0: 1, 1: 2, 2: 3, 3: 0, 4: 5, 5: 6, 6: 9, 7: 8, 8: 7, 9: 9}  # a b c \n a b c ...; d e f <eog>; g h g h ...


def line_rules(mode="line"):
    return StopRules(CompletionContext(prefix="x = ", suffix="\n", line=0, character=4, mode=mode))


def decode_chain(prompt, *, drafts=True, backend=ChainBackend, max_tokens=40, stop_ids=frozenset(), mode="line",
                 cancelled=lambda: False, **kw):
    b = backend(prompt, CYCLE, drafts=drafts, **kw)
    s = Stream(0, Sampler(), line_rules(mode))
    batches = run(b, [s], Limits(max_tokens, None, frozenset(stop_ids)), HealingIndex(b), cancelled)
    return b, s, batches


def same(a: Stream, b: Stream):
    assert (a.text, a.reason, a.tokens, a.decoded) == (b.text, b.reason, b.tokens, b.decoded)
    assert np.allclose(a.logprobs, b.logprobs, equal_nan=True) and np.allclose(a.entropies, b.entropies)


def test_a_stop_rule_cuts_inside_an_accepted_run():
    prompt = [0, 1, 2, 3] * 4 + [0]  # "abc\n" four times, then "a"
    b1, plain, _ = decode_chain(prompt, drafts=False)
    b2, spec, batches = decode_chain(prompt)
    same(plain, spec)
    assert spec.text == "bc" and spec.reason == StopReason.NEWLINE and spec.decoded == 3
    assert spec.verified == 1 and spec.accepted == spec.drafted > spec.decoded  # the draft ran past the newline
    assert b2.fed == 0 and batches == 1
    assert len(b2.tokens) > len(prompt) + spec.decoded  # the sequence holds what it was fed and verified


def test_block_mode_and_the_token_limit_inside_accepted_runs():
    prompt = [0, 1, 2, 3] * 6 + [0]
    for max_tokens in (1, 2, 3, 5, 9, 10, 11, 17):
        _, plain, _ = decode_chain(prompt, drafts=False, max_tokens=max_tokens, mode="block")
        b, spec, _ = decode_chain(prompt, max_tokens=max_tokens, mode="block")
        same(plain, spec)
        assert spec.decoded == max_tokens  # MAX_TOKENS, or BLANK where the final check sees the last line blank
        assert len(b.tokens) <= len(prompt) + max_tokens  # no draft past the limit


def test_end_of_generation_and_stop_tokens_inside_accepted_runs():
    prompt = [4, 5, 6, 9, 7, 8, 4]  # "d e f <eog>", then "d" again
    _, plain, _ = decode_chain(prompt, drafts=False, mode="block")
    b, spec, _ = decode_chain(prompt, mode="block")
    same(plain, spec)
    assert spec.text == "ef" and spec.reason == StopReason.EOS and spec.accepted >= 2
    _, plain, _ = decode_chain(prompt, drafts=False, mode="block", stop_ids={6})
    _, spec, _ = decode_chain(prompt, mode="block", stop_ids={6})
    same(plain, spec)
    assert spec.text == "e" and spec.reason == StopReason.EOS and spec.accepted >= 1


def test_cancellation_and_the_deadline_inside_accepted_runs(monkeypatch):
    prompt = [7, 8] * 8

    def after(n):
        calls = [0]

        def cancelled():
            calls[0] += 1
            return calls[0] > n

        return cancelled

    for n in (1, 3, 6):
        _, plain, _ = decode_chain(prompt, drafts=False, mode="block", cancelled=after(n))
        _, spec, _ = decode_chain(prompt, mode="block", cancelled=after(n))
        assert plain.reason == spec.reason == StopReason.CANCELLED and plain.tokens == spec.tokens
        assert spec.decoded == n and spec.accepted > 0

    # The deadline is checked after each token, drawn or accepted: a clock that passes it at the n-th check.
    for n in (1, 4, 7):
        results = []
        for drafts in (False, True):
            clock = iter(range(1000))
            monkeypatch.setattr(decode, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
            b = ChainBackend(prompt, CYCLE, drafts=drafts)
            s = Stream(0, Sampler(), line_rules("block"))
            run(b, [s], Limits(40, deadline=n - 1), HealingIndex(b))
            results.append(s)
        same(*results)
        assert results[1].reason == StopReason.TIME and results[1].decoded == n


def test_no_drafts_without_verify_sampling_several_streams_or_the_switch_off():
    prompt = [0, 1, 2, 3] * 4 + [0]
    b, s, batches = decode_chain(prompt, backend=NoVerify)
    assert s.text == "bc" and s.drafted == 0 and b.fed == batches == 2
    b, s, _ = decode_chain(prompt, drafts=False)
    assert s.drafted == 0 and b.verified == 0
    b = ChainBackend(prompt, CYCLE)
    s = Stream(0, Sampler(temperature=0.8, seed=1), line_rules())
    run(b, [s], Limits(3), HealingIndex(b))
    assert b.verified == 0 and s.drafted == 0


def test_the_draft_fits_the_context():
    prompt = [0, 1, 2, 3] * 4 + [0]
    room = len(prompt) + 9  # what 10 tokens need (the last is not fed)
    _, plain, _ = decode_chain(prompt, drafts=False, mode="block", max_tokens=10, n_ctx=room)
    b, spec, _ = decode_chain(prompt, mode="block", max_tokens=10, n_ctx=room)
    same(plain, spec)
    assert spec.accepted and len(b.tokens) == room


# ------------------------------------------------------------------------------------------------ the embedded model


@pytest.fixture(scope="module")
def engine1():
    """The embedded model on one thread (where drafts are exact), drafting whatever this machine's speed."""
    from codefill.engine import Engine, EngineConfig

    eng = Engine.load(EngineConfig(n_threads=1))
    rt = eng.backend
    assert rt.verify_exact
    rt.verify_cost, rt.measure_verify_cost = 0.1, False
    yield eng
    eng.close()


def _positions(path: str, n: int) -> list[tuple[int, int]]:
    """n code lines spread over the file; at each: after the indentation, mid-line, at the line's end."""
    with open(path, encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    code = [i for i, ln in enumerate(lines) if ln.strip() and not ln.strip().startswith(("#", '"', "'"))]
    out = []
    for i in code[len(code) // (2 * n) :: len(code) // n][:n]:
        ln = lines[i]
        indent = len(ln) - len(ln.lstrip())
        out += [(i, indent), (i, indent + max(1, (len(ln) - indent) // 2)), (i, len(ln))]
    return out


def _answer(eng, req, drafts: bool):
    rt = eng.backend
    rt.speculative = drafts
    rt.clear()  # a cold cache: the prompt is evaluated the same way both times
    counts = rt.drafted_tokens, rt.accepted_tokens, rt.verify_batches
    c = eng.sample(req, 1).candidates[0]
    return c, (rt.drafted_tokens - counts[0], rt.accepted_tokens - counts[1], rt.verify_batches - counts[2])


def _assert_same_answer(a, b):
    ca, cb = a.completion, b.completion
    assert (ca.text, ca.raw, ca.stop_reason, a.tokens, a.decoded_tokens) == (
        cb.text, cb.raw, cb.stop_reason, b.tokens, b.decoded_tokens)
    assert len(ca.token_logprobs) == len(cb.token_logprobs)
    assert all(math.isclose(x, y, abs_tol=1e-4) for x, y in zip(ca.token_logprobs, cb.token_logprobs))
    assert all(math.isclose(x, y, abs_tol=1e-4) for x, y in zip(a.entropies, b.entropies))


@pytest.mark.slow
@pytest.mark.parametrize("path", [TEXTWRAP, JSON_DECODER], ids=os.path.basename)
def test_greedy_answers_are_those_of_one_token_at_a_time(engine1, path):
    from codefill.engine import CompletionRequest

    with open(path, encoding="utf-8") as fh:
        text = fh.read()
    drafted = accepted = 0
    for line, ch in _positions(path, 4):
        req = CompletionRequest(text=text, line=line, character=ch, path=path, time_budget_ms=None, use_cache=False)
        plain, off = _answer(engine1, req, False)
        spec, on = _answer(engine1, req, True)
        assert off == (0, 0, 0)
        _assert_same_answer(plain, spec)
        drafted, accepted = drafted + on[0], accepted + on[1]
    assert accepted > 0 and drafted > accepted  # drafts were taken and refused: both paths ran


REPETITIVE = "import argparse\n\n\ndef build(parser):\n" + "".join(
    f'    parser.add_argument("--{name}", type=int, default={i}, help="the {name} value")\n'
    for i, name in enumerate(["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"], 1)
) + '    parser.add_argument("--iota'


@pytest.mark.slow
def test_drafts_are_taken_on_repetitive_code(engine1):
    from codefill.engine import CompletionRequest

    last = REPETITIVE.count("\n")
    for mode in ("line", "block"):
        req = CompletionRequest(text=REPETITIVE + "\n", line=last, character=len(REPETITIVE.split("\n")[-1]),
                                path="cli.py", mode=mode, time_budget_ms=None, use_cache=False)
        plain, _ = _answer(engine1, req, False)
        spec, (drafted, accepted, verifies) = _answer(engine1, req, True)
        _assert_same_answer(plain, spec)
        assert spec.completion.text.startswith('", type=int, default=9, help="the ')  # the lines above, repeated
        assert accepted >= 10 and verifies < spec.decoded_tokens  # fewer batches than tokens


@pytest.mark.slow
def test_a_stop_rule_inside_an_accepted_run_leaves_the_cache_consistent(engine1):
    from codefill.engine import CompletionRequest

    eng, rt = engine1, engine1.backend
    last = REPETITIVE.count("\n")
    req = CompletionRequest(text=REPETITIVE + "\n", line=last, character=len(REPETITIVE.split("\n")[-1]),
                            path="cli.py", mode="line", time_budget_ms=None, use_cache=False)
    p = eng.prepare(req)
    results = []
    for drafts in (False, True):
        rt.speculative = drafts
        rt.clear()
        rt.evaluate(p.tokens)
        rt.fork(1, p.max_tokens)
        s = Stream(0, Sampler(), StopRules(p.context, eng.config.decode.max_lines), p.prompt.heal)
        run(rt, [s], Limits(p.max_tokens, None, eng.format.stop_ids), HealingIndex(rt))
        held = list(rt.seq_tokens(0))
        # what the sequence holds is what the KV cache holds
        assert rt.L.llama_memory_seq_pos_max(rt.mem, 0) + 1 == len(held)
        assert held[: len(p.tokens)] == list(p.tokens)
        rt.rewind()
        # The next request starts from what the sequence holds (evaluate keeps the shared prefix). (Not compared
        # with a cold answer: a prompt re-evaluated from the cache is batched otherwise, which moves close choices
        # with or without drafts; see tests/recorded.py.)
        warm = eng.sample(req, 1).candidates[0]
        assert rt.L.llama_memory_seq_pos_max(rt.mem, 0) + 1 == len(rt.seq_tokens(0))
        results.append((s, held, warm))
    (plain, held_plain, warm_plain), (spec, held_spec, warm_spec) = results
    same(plain, spec)
    assert spec.reason == StopReason.NEWLINE and spec.accepted > 0
    assert len(held_spec) > len(p.tokens) + spec.decoded  # the accepted run went on past the stop
    assert held_spec[: len(held_plain)] == held_plain
    _assert_same_answer(warm_plain, warm_spec)


@pytest.mark.slow
def test_the_token_limit_inside_an_accepted_run(engine1):
    from codefill.engine import CompletionRequest

    last = REPETITIVE.count("\n")
    for max_tokens in (2, 5, 9):
        req = CompletionRequest(text=REPETITIVE + "\n", line=last, character=len(REPETITIVE.split("\n")[-1]),
                                path="cli.py", mode="block", max_tokens=max_tokens, time_budget_ms=None,
                                use_cache=False)
        plain, _ = _answer(engine1, req, False)
        spec, _ = _answer(engine1, req, True)
        _assert_same_answer(plain, spec)
        assert spec.completion.stop_reason == StopReason.MAX_TOKENS and spec.decoded_tokens == max_tokens


@pytest.mark.slow
def test_one_thread_batches_give_the_logits_of_one_token_at_a_time():
    """What verify_exact rests on (a llama.cpp upgrade that broke it would fail here): past 512 cached tokens, where
    several threads take another attention path for a single token, a batch of 20 (more than a verify batch holds:
    decode.DRAFT_TOKENS + 1) gives one token's logits at each position."""
    from codefill.engine.models import resolve_model

    rt = LlamaRuntime(resolve_model(None), n_ctx=1024, n_threads=1)
    try:
        with open(TEXTWRAP, encoding="utf-8") as fh:
            toks = rt.tokenize(fh.read())[:560]
        prompt, rest = toks[:540], toks[540:]
        rt.sync(prompt)
        one = []
        for t in rest:
            rt.decode_one(t)
            one.append(rt.logits(0))
        rt.clear()
        rt.evaluate(prompt)
        draws = rt.verify(0, rest, Sampler())  # the greedy draws stop at the first token that is not `rest`'s
        for i in range(len(rest)):  # every position of the batch, kept or not
            x = np.ctypeslib.as_array(rt.L.llama_get_logits_ith(rt.ctx, i), shape=(rt.n_vocab,))
            assert np.array_equal(x, one[i]), i
        assert [d.token for d in draws[:-1]] == rest[1 : len(draws)]
        assert len(rt.seq_tokens(0)) == len(prompt) + len(draws)
        assert rt.L.llama_memory_seq_pos_max(rt.mem, 0) + 1 == len(rt.seq_tokens(0))
        assert np.array_equal(rt.logits(0), one[len(draws) - 1])  # the last kept token's logits are the current
    finally:
        rt.close()


@pytest.mark.slow
def test_the_switch_at_construction(monkeypatch):
    from codefill.engine.models import resolve_model

    path = resolve_model(None)
    cases = [(None, 1, True), (None, 2, False), ("0", 1, False), ("1", 2, True), ("auto", 1, True)]
    for env, threads, on in cases:
        if env is None:
            monkeypatch.delenv("CODEFILL_SPECULATIVE", raising=False)
        else:
            monkeypatch.setenv("CODEFILL_SPECULATIVE", env)
        rt = LlamaRuntime(path, n_ctx=256, n_threads=threads)
        try:
            assert rt.speculative is on and rt.verify_exact is (threads == 1)
        finally:
            rt.close()
