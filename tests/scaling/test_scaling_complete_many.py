"""Engine.complete_many and selection among Engine.sample's candidates, with the real embedded model."""

import pytest

from codefill.engine import CompletionRequest, Engine, EngineConfig, build_context
from codefill.engine.selection import rank, select

SRC = (
    "def fahrenheit(celsius):\n"
    "    \"\"\"Convert degrees Celsius to Fahrenheit.\"\"\"\n"
    "    return \n"
)


@pytest.fixture(scope="module")
def eng():
    e = Engine.load(EngineConfig(n_seq=4, n_threads=1))
    yield e
    e.close()


def req(**kw):
    base = dict(text=SRC, line=2, character=11, path="temps.py", mode="line", max_tokens=12, time_budget_ms=None,
                use_cache=False, temperature=0.9, top_p=0.95, seed=5)
    base.update(kw)
    return CompletionRequest(**base)


def test_complete_many_evaluates_the_prompt_once_and_keeps_the_seed_contract(eng):
    eng.backend.clear()
    out = eng.complete_many(req(), 4)
    assert len(out) == 4
    n_prompt = out[0].timings.prompt_tokens
    assert [c.timings.prompt_evaluated for c in out] == [n_prompt, 0, 0, 0]
    # Candidate i is the one sampled with seed req.seed + i: the same as sampling it alone with that seed.
    alone = eng.sample(req(seed=7), 1, temperature=0.9, top_p=0.95, include_greedy=False).candidates[0]
    assert out[2].text == alone.text
    assert all(c.mode == "line" for c in out)


def test_complete_many_at_temperature_zero_is_the_greedy_answer_n_times(eng):
    out = eng.complete_many(req(temperature=0.0), 3)
    greedy = eng.complete(req(temperature=0.0))
    assert [c.text for c in out] == [greedy.text] * 3


def test_selection_among_sampled_candidates(eng):
    """Each method's choice, checked against the candidates' own texts and log-probabilities (not by asking the
    selector again)."""
    import math

    from codefill.engine.selection import normalize, syntax_ok

    s = eng.sample(req(temperature=0.0), 4)
    cands = s.candidates
    best = select(cands, s.context, "auto").completion
    assert len(cands) == 4 and cands[0].greedy and not any(c.greedy for c in cands[1:])
    assert cands[0].text == eng.complete(req(temperature=0.0)).text  # candidate 0 is the greedy answer
    assert any(best is c.completion for c in cands)
    ctx = build_context(SRC, 2, 11, path="temps.py", mode="line")

    def mean_lp(c):
        return sum(c.token_logprobs) / len(c.token_logprobs) if c.token_logprobs else -math.inf

    usable = [c for c in cands if c.text.strip() and syntax_ok(ctx, c.text) is not False]
    assert usable, [c.text for c in cands]
    # auto: answers agreeing (same code once normalised) add log(share) to the best mean log-probability among them
    groups: dict[str, list] = {}
    for c in cands:
        groups.setdefault(normalize(c.text, "python"), []).append(c)
    score = {k: math.log(len(g) / len(cands)) + max(mean_lp(c) for c in g if c in usable)
             for k, g in groups.items() if any(c in usable for c in g)}
    winner = max(score, key=score.get)
    assert normalize(best.text, "python") == winner, (best.text, score)
    assert best.text.strip() and syntax_ok(ctx, best.text) is not False
    assert mean_lp(best) == max(mean_lp(c) for c in groups[winner] if c in usable)

    assert select(cands, ctx, "first") is cands[0]
    by_logprob = select(cands, ctx, "logprob")
    assert by_logprob.text.strip() and mean_lp(by_logprob) == max(mean_lp(c) for c in cands if c.text.strip())
    by_agreement = select(cands, ctx, "agreement")
    assert by_agreement is rank(cands, ctx, "cluster")[0]  # the alias
    largest = max(len(g) for k, g in groups.items() if k.strip())
    assert len(groups[normalize(by_agreement.text, "python")]) == largest
