"""Repeated sampling with the real embedded model: one prompt evaluation shared by all candidates."""

import math

import pytest

from codefill.engine import CompletionRequest, Engine, EngineConfig
from codefill.engine.adaptive import AdaptivePolicy, adaptive_complete
from codefill.engine.sampler import Sampler

SRC = (
    "def fahrenheit(celsius):\n"
    "    \"\"\"Convert degrees Celsius to Fahrenheit.\"\"\"\n"
    "    return \n"
    "\n"
    "\n"
    "def celsius(fahrenheit):\n"
    "    return (fahrenheit - 32) * 5 / 9\n"
)


@pytest.fixture(scope="module")
def eng():
    e = Engine.load(EngineConfig(n_seq=4, n_threads=1))
    yield e
    e.close()


def req(**kw):
    base = dict(text=SRC, line=2, character=11, path="temps.py", mode="line", max_tokens=16, time_budget_ms=None,
                use_cache=False)
    base.update(kw)
    return CompletionRequest(**base)


def test_candidates_share_one_prompt_evaluation(eng):
    eng.backend.clear()  # a cold cache: the prompt must be evaluated in full, once
    s = eng.sample(req(), 4)
    n_prompt = s.timings.prompt_tokens
    assert len(s.candidates) == 4
    assert s.timings.prompt_evaluated == n_prompt  # the whole prompt, once for all four
    assert [c.completion.timings.prompt_evaluated for c in s.candidates] == [n_prompt, 0, 0, 0]
    # Candidates advance together: one batch per step, not one decode per token per candidate.
    assert s.batches < s.timings.decode_tokens
    assert s.timings.decode_tokens == sum(c.decoded_tokens for c in s.candidates)
    # The prompt stays cached on sequence 0 afterwards, so the next request at this place reuses it.
    again = eng.sample(req(), 2)
    assert again.timings.prompt_evaluated <= 1


def test_signals_and_reproducibility(eng):
    a = eng.sample(req(seed=7), 4)
    b = eng.sample(req(seed=7), 4)
    assert [c.text for c in a.candidates] == [c.text for c in b.candidates]
    assert a.candidates[0].greedy and not any(c.greedy for c in a.candidates[1:])
    assert [c.seed for c in a.candidates] == [7, 8, 9, 10]
    for c in a.candidates:
        assert len(c.entropies) == len(c.token_logprobs)
        assert all(h >= 0 for h in c.entropies) and all(lp <= 0 for lp in c.token_logprobs)
        assert "\n" not in c.text  # line mode's stop rule applies to each candidate


def test_more_candidates_than_sequences_are_decoded_in_waves(eng):
    s = eng.sample(req(seed=3), 6)  # n_seq is 4
    assert len(s.candidates) == 6
    assert s.timings.prompt_evaluated <= 1
    assert len({c.seed for c in s.candidates}) == 6


def test_greedy_first_candidate_matches_a_single_greedy_sample(eng):
    one = eng.sample(req(), 1)
    many = eng.sample(req(), 3)
    assert one.candidates[0].greedy
    assert one.candidates[0].text.strip() == many.candidates[0].text.strip()


def test_entropy_is_the_full_distributions():
    import numpy as np

    logits = np.log(np.array([0.5, 0.25, 0.25], dtype=np.float32))
    tok, lp, h, _piece = Sampler(0.0).draw(logits)
    assert tok == 0 and math.isclose(lp, math.log(0.5), rel_tol=1e-6)
    assert math.isclose(h, -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25)), rel_tol=1e-6)
    draws = {Sampler(1.0, 1.0, seed=s).draw(logits)[0] for s in range(40)}
    assert draws == {0, 1, 2}
    nucleus = {Sampler(1.0, 0.5, seed=s).draw(logits)[0] for s in range(40)}
    assert nucleus == {0}  # top-p 0.5 keeps the most likely token only


def test_adaptive_spends_samples_only_when_unsure(eng):
    class FixedGate:
        def __init__(self, p):
            self.p = p

        def score(self, *_a, **_k):
            return self.p

    sure = adaptive_complete(eng, req(), gate=FixedGate(0.9), policy=AdaptivePolicy(confident=0.5, few=2, many=3))
    assert sure.n_samples == 1 and sure.chosen is sure.first
    unsure = adaptive_complete(eng, req(), gate=FixedGate(0.1), policy=AdaptivePolicy(confident=0.5, unsure=0.3, few=2, many=3))
    assert unsure.n_samples == 4 and len(unsure.sample_set.candidates) == 4
    assert unsure.decode_tokens > sure.decode_tokens


def test_adaptive_with_the_shipped_gate(eng):
    from codefill.engine.gate import Gate

    gate = Gate.load()
    r = adaptive_complete(eng, req(), gate=gate)
    assert 0.0 <= r.probability <= 1.0
    assert r.probability == pytest.approx(gate.score(r.first, r.sample_set.context))
    assert r.should_show(0.0) == bool(r.completion.text.strip())
    assert not r.should_show(1.01)


class FixedGate:
    threshold = 0.5

    def __init__(self, p):
        self.p = p

    def score(self, *_a, **_k):
        return self.p


def test_adaptive_from_the_engine_keeps_a_sure_answer_and_samples_when_unsure(eng):
    r = req(document_id="adaptive-engine", use_cache=True)
    plain = eng.complete(r)
    sure = adaptive_complete(eng, r, gate=FixedGate(0.9), first="complete")
    assert sure.n_samples == 1 and sure.completion.text == plain.text
    assert sure.completion.stop_reason == "cache"  # the engine's own cache answered: no model work
    unsure = adaptive_complete(eng, r, gate=FixedGate(0.1), first="complete",
                               policy=AdaptivePolicy(confident=0.5, unsure=0.3, few=2, many=3))
    assert unsure.n_samples == 4 and len(unsure.sample_set.candidates) == 4
    assert unsure.sample_set.candidates[0].completion.text == plain.text
    assert unsure.completion in [c.completion for c in unsure.sample_set.candidates]
    assert not unsure.should_show(0.2) and unsure.should_show(0.05) == bool(unsure.completion.text.strip())


def test_typed_through_answers_are_not_judged_again(eng):
    r = req(document_id="adaptive-typed", use_cache=True)
    first = eng.complete(r)
    assert len(first.text) >= 2
    typed = SRC.replace("    return \n", "    return " + first.text[0] + "\n", 1)
    again = adaptive_complete(eng, req(text=typed, character=12, document_id="adaptive-typed", use_cache=True),
                              gate=FixedGate(0.0), first="complete")
    assert again.completion.stop_reason == "typed" and again.n_samples == 1
    assert math.isnan(again.probability)
    assert again.should_show(1.0)  # the user typed what the model predicted: shown whatever the threshold


def test_remember_makes_a_shown_sample_answer_typing(eng):
    r = req(document_id="remember", use_cache=True)
    s = eng.sample(r, 3, include_greedy=False, temperature=1.0)
    shown = next(c.completion for c in s.candidates if len(c.text) >= 2)
    eng.remember(r, shown)
    typed = SRC.replace("    return \n", "    return " + shown.text[0] + "\n", 1)
    nxt = eng.complete(req(text=typed, character=12, document_id="remember", use_cache=True))
    assert nxt.stop_reason == "typed"
    assert nxt.text and shown.text == shown.text[0] + nxt.text  # the rest of the shown sample, not nothing
