"""Suffix ranking (issue 15 #3): a prefix-only model judges candidates by how likely it then finds the text after the
hole. The embedded model (SmolLM2-135M, no FIM tokens) for the real cases, its vocabulary for the tokenizer
boundaries, a tiny FIM model for "a FIM model is not scored"."""

from __future__ import annotations

import math

import numpy as np
import pytest

from codefill.engine import (Candidate, Completion, CompletionRequest, Engine, EngineConfig, Position, Range,
                             StopReason)
from codefill.engine.llama import LlamaRuntime
from codefill.engine.models import embedded_model_path
from codefill.engine.selection import SelectionWeights, default_method, rank
from codefill.engine.suffix import _CHARS_PER_TOKEN, continuation, suffix_score, tokenize_exact
from codefill.engine.types import SuffixScore

import tinymodels


@pytest.fixture(scope="module")
def vocab():
    rt = LlamaRuntime(embedded_model_path(), vocab_only=True)
    yield rt
    rt.close()


@pytest.fixture(scope="module")
def eng():
    """One thread: batched and one-token evaluation then give the same logits (LlamaRuntime.verify_exact)."""
    e = Engine.load(EngineConfig(n_threads=1, n_seq=2, windows=0))
    yield e
    e.close()


def _cand(text: str, index: int, reason=StopReason.NEWLINE, logprobs=(-0.5,)) -> Candidate:
    c = Completion(text=text, range=Range(Position(0, 0), Position(0, 0)), stop_reason=reason, mode="line", raw=text,
                   token_logprobs=logprobs)
    return Candidate(c, index=index, seed=index, greedy=index == 0)


def _pieces(vocab, toks) -> bytes:
    return b"".join(vocab.token_piece(t) for t in toks)


# ------------------------------------------------------------------ tokenizer boundaries (the embedded vocabulary)


def test_candidate_and_suffix_are_tokenized_together_as_the_document_holds_them(vocab):
    heal, text, suffix = "    ", "return x", "\n\n\ndef g():\n    pass\n"
    cont = continuation(vocab, heal, text, suffix, window=64)
    assert _pieces(vocab, cont.tokens) == (heal + text + suffix).encode()
    head = _pieces(vocab, cont.tokens[: cont.n_candidate])
    assert head == (heal + text).encode()  # here the boundary is a token boundary
    assert cont.tokens == tuple(vocab.tokenize(heal + text + suffix))


def test_a_token_across_the_hole_counts_as_suffix(vocab):
    # "retu" + "rn x": the joint tokenization has " return" (or "return") as one token that straddles the hole
    cont = continuation(vocab, "", "    retu", "rn x\n", window=8)
    head = _pieces(vocab, cont.tokens[: cont.n_candidate])
    assert (b"    retu").startswith(head) and head != b"    retu"  # the straddling token is not the candidate's
    assert _pieces(vocab, cont.tokens) == b"    return x\n"


def test_the_window_counts_suffix_tokens_and_a_cut_token_is_dropped(vocab):
    suffix = "".join(f"    value_{i} = compute({i})\n" for i in range(200))  # far longer than any window
    cont = continuation(vocab, "", "x = 1", suffix, window=16)
    assert len(cont.tokens) - cont.n_candidate == 16
    short = continuation(vocab, "", "x = 1", "\n", window=16)  # the end of the file: all of it, nothing dropped
    assert _pieces(vocab, short.tokens) == b"x = 1\n"
    # a window that reaches past the characters tokenized drops the last token (it may be part of a longer one):
    # 64 characters of a 5000-space run are a couple of whitespace tokens, the last of them cut short
    text = " " * 5000 + "y\n"
    cut = continuation(vocab, "", "x =", text, window=4)
    whole = vocab.tokenize("x =" + text[: 4 * _CHARS_PER_TOKEN])
    assert len(cut.tokens) == len(whole) - 1 and cut.tokens == tuple(whole[:-1])
    assert text.encode().startswith(_pieces(vocab, cut.tokens[cut.n_candidate:]))


def test_an_empty_candidate_scores_the_suffix_alone_and_unicode_boundaries_are_bytes(vocab):
    cont = continuation(vocab, "", "", "pass\n", window=8)
    assert cont.n_candidate == 0 and _pieces(vocab, cont.tokens) == b"pass\n"
    cont = continuation(vocab, "", "s = 'é", "'\n", window=8)
    assert _pieces(vocab, cont.tokens) == "s = 'é'\n".encode()
    assert tokenize_exact(vocab, "") == []


def test_suffix_score_sums_the_two_parts():
    from codefill.engine.suffix import Continuation

    s = suffix_score(Continuation((1, 2, 3, 4), 1), [-1.0, -0.5, -0.25, -2.0])
    assert (s.candidate_logprob, s.candidate_tokens, s.suffix_logprob, s.suffix_tokens) == (-1.0, 1, -2.75, 3)
    assert s.joint == -3.75 and s.token_logprobs == (-0.5, -0.25, -2.0)


# ------------------------------------------------------------------ the backend's scores


def test_score_equals_one_token_at_a_time_log_softmax_across_waves(eng):
    """Three continuations on a runtime of two sequences (two waves), in one batch each: the log-probabilities are
    those of evaluating the continuation one token at a time on its own."""
    rt = eng.backend
    prompt = rt.tokenize("def add(a, b):\n    return", add_special=False)
    conts = [rt.tokenize(" a + b\n"), rt.tokenize(" a * b  # product\n"), rt.tokenize(" sum([a, b])\n")]
    rt.evaluate(prompt)
    got = rt.score(prompt, conts)
    for c, lp in zip(conts, got):
        rt.clear()
        rt.sync(prompt)
        want = []
        for t in c:
            x = rt.logits(0).astype(np.float64)
            want.append(x[t] - (x.max() + math.log(np.exp(x - x.max()).sum())))
            rt.decode_one(t)
        np.testing.assert_allclose(lp, want, atol=2e-3)
    assert got[0].sum() > got[2].sum()  # and they say something: "a + b" is the likelier return


def test_after_scoring_the_prompt_is_still_ready_for_candidates(eng):
    """Scoring on sequence 0 must not leave a stale prompt behind: the next decode from the same prompt gives the
    same greedy answer as before."""
    req = CompletionRequest(text="def mul(a, b):\n    return \n", line=1, character=11, path="m.py",
                            time_budget_ms=None, use_cache=False)
    before = eng.sample(req, 2).candidates
    eng.score_suffix(req, [_cand("a * b", 0), _cand("a + b", 1)])
    after = eng.sample(req, 2).candidates
    assert [c.text for c in after] == [c.text for c in before]
    assert after[0].completion.timings.prompt_evaluated <= 1  # the prompt was kept, not evaluated again


# ------------------------------------------------------------------ ranking on the real model


def _doc(name: str) -> CompletionRequest:
    src = f"def show(xs):\n    \n    for v in {name}:\n        print(v)\n"
    return CompletionRequest(text=src, line=1, character=4, path="show.py", time_budget_ms=None, use_cache=False)


@pytest.mark.parametrize("used", ["values", "items"])
def test_the_candidate_the_suffix_uses_wins_over_the_one_it_contradicts(eng, used):
    """Two candidates the model finds about as likely on their own; the loop after the hole reads one of the two
    names. Suffix ranking must follow the suffix either way (so it cannot pass by keeping the order given)."""
    items, values = _cand("items = sorted(xs)", 0), _cand("values = sorted(xs)", 1)
    scored = eng.score_suffix(_doc(used), [items, values])
    by = {c.text.split()[0]: c.suffix for c in scored}
    other = "items" if used == "values" else "values"
    assert by[used].suffix_logprob > by[other].suffix_logprob + 3.0  # nats: the suffix is strong evidence here
    assert abs(by[used].candidate_logprob - by[other].candidate_logprob) < 3.0  # not the candidates themselves
    assert eng.choose(_doc(used), [items, values], "suffix")[0].text.startswith(used)
    assert eng.choose(_doc(used), [items, values], "first")[0] is items  # the order alone would not do it


def test_identical_texts_are_scored_once_and_cancelled_ones_never(eng):
    a, b, dup = _cand("values = list(xs)", 0), _cand("items = list(xs)", 1), _cand("values = list(xs)", 2)
    gone = _cand("", 3, reason=StopReason.CANCELLED)
    out = eng.score_suffix(_doc("values"), [a, b, dup, gone])
    assert out[0].suffix == out[2].suffix and out[0].suffix is not None
    assert out[3].suffix is None
    import threading

    stop = threading.Event()
    stop.set()
    assert all(c.suffix is None for c in eng.score_suffix(_doc("values"), [a, b], cancel=stop))


# ------------------------------------------------------------------ selection (hand-made scores)


class _C:
    def __init__(self, text, lp=-1.0, suffix=None):
        self.text, self.token_logprobs, self.suffix = text, (lp,), suffix


def _ctx():
    from codefill.engine import build_context

    return build_context("def f(x):\n    \n    return y\n", 1, 4, path="f.py")


def test_suffix_rank_uses_the_joint_score_drops_what_auto_drops_and_unscored_go_last():
    s = lambda suf, cand: SuffixScore(suf, 4, cand, 2)  # noqa: E731
    likely_alone = _C("y = x", suffix=s(-9.0, -1.0))  # joint -10
    fits = _C("y = x + 1", suffix=s(-3.0, -4.0))  # joint -7: the suffix pays for its own unlikelihood
    broken = _C("y = (x", suffix=s(-0.5, -0.5))  # breaks the syntax: dropped like auto drops it
    unscored = _C("y = 2 * x", lp=-0.01)
    ranked = rank([likely_alone, broken, unscored, fits], _ctx(), "suffix")
    assert ranked[0] is fits and ranked[1] is likely_alone and ranked[2] is unscored and ranked[-1] is broken
    only_suffix = rank([likely_alone, fits], _ctx(), "suffix", SelectionWeights(suffix_candidate_weight=0.0))
    assert only_suffix[0] is fits
    alone_wins = rank([_C("y = x", suffix=s(-5.0, -1.0)), _C("y = x + 1", suffix=s(-4.0, -4.0))], _ctx(), "suffix")
    assert alone_wins[0].text == "y = x"  # the joint, not the suffix alone


def test_the_default_selection_is_suffix_for_lines_and_auto_for_blocks():
    assert (default_method("line"), default_method("block")) == ("suffix", "auto")


def test_suffix_without_any_score_is_auto():
    cands = [_C("y = x", -2.0), _C("y = x + 1", -0.5), _C("y = x + 1", -0.7)]
    assert rank(cands, _ctx(), "suffix") == rank(cands, _ctx(), "auto")


def test_a_fim_model_is_not_scored_and_suffix_ranks_as_auto(tmp_path):
    """A FIM model reads the suffix in its prompt already: the engine does not score, `choose` ranks as auto."""
    tiny = tinymodels.make_tiny_model("starcoder", str(tmp_path), ["a", "b"])
    e = Engine.load(EngineConfig(model_path=tiny.path, n_threads=1, n_seq=2, n_ctx=256, windows=0))
    try:
        assert e.format.is_fim and not e.scores_suffix
        req = CompletionRequest(text="x = \ny = 2\n", line=0, character=4, path="t.py", time_budget_ms=None)
        cands = [_cand("1", 0, logprobs=(-2.0,)), _cand("b", 1, logprobs=(-0.1,))]
        assert all(c.suffix is None for c in e.score_suffix(req, cands))
        assert e.choose(req, cands, "suffix") == rank(cands, e.prepare(req).context, "auto")
    finally:
        e.close()
