"""Greedy completions on the embedded model equal the answers recorded before the decode refactor (tests/recorded.py).

Greedy decoding is deterministic for one model file, llama.cpp build and CPU; a change to the sampler, the stop rules,
token healing, the prompt or post-processing that alters any answer fails here, position by position.

On another CPU, llama.cpp's kernels round differently and a near-tie between two tokens may go the other way; from
there the answers rightly part. So the answers are compared through their traces (each drawn token with its margin
over the best other allowed token): where every drawn token is the same, the answer must be the same to the
character; where the traces part, they must part at a token that was a near-tie both where it was recorded and here.
A change to the prompt or the sampler moves the distribution itself, and the first token that differs is then no tie.
"""

import json
import math

import pytest

import recorded
from recorded import TIE, margin, parting

pytestmark = pytest.mark.slow

with open(recorded.RECORDED, encoding="utf-8") as _fh:
    ROWS = json.load(_fh)["answers"]
DOCS = recorded.texts()

@pytest.mark.parametrize("row", ROWS, ids=lambda r: "{file}:{line}:{character}:{mode}".format(**r["position"]))
def test_greedy_answer_is_unchanged(engine, row):
    got = recorded.answer(engine, row["position"], DOCS[row["position"]["file"]])
    want = row["answer"]
    i = parting(want["trace"], got["trace"])
    if i is not None:
        # another machine's rounding: allowed only at a near-tie, seen as one both there and here
        here, there = margin(got["trace"], i), margin(want["trace"], i)
        assert here <= TIE and there <= TIE, (
            f"the answer parts from the recording at drawn token {i} where the choice was no tie "
            f"(margin {here:.3f} here, {there:.3f} where recorded)", got["raw"], want["raw"])
        return
    assert (got["text"], got["raw"], got["stop_reason"], got["mode"]) == (
        want["text"], want["raw"], want["stop_reason"], want["mode"])
    assert got["kept_tokens"] == want["kept_tokens"]  # tokens that made the text (after stop rules)
    if want["logprob_mean"] is None:
        assert got["logprob_mean"] is None
    else:
        # the same tokens: log-probabilities move only by rounding (means moved by up to 0.075 between two CPUs)
        assert math.isclose(got["logprob_mean"], want["logprob_mean"], abs_tol=0.1)


def test_parting_finds_the_first_step_the_traces_differ():
    a = [[5, 2.0], [7, 0.1], [9, 3.0]]
    assert parting(a, [list(x) for x in a]) is None
    assert parting(a, [[5, 2.0], [8, 0.1], [9, 3.0]]) == 1
    assert parting(a, a[:2]) == 2 and margin(a[:2], 2) == math.inf
    assert margin([[1, None]], 0) == math.inf  # a forced token (one allowed) is never a tie


def test_the_recording_covers_what_the_decode_loop_decides():
    reasons = {r["answer"]["stop_reason"] for r in ROWS}
    modes = {r["answer"]["mode"] for r in ROWS}
    assert {"newline", "dedent", "max_tokens"} <= reasons and modes == {"line", "block"}
    assert any(r["position"].get("snippet") for r in ROWS)
    # empty only where the line ended at once, or (a hole inside a word) the model wrote exactly the rest of the line
    assert all(r["answer"]["raw"] or r["answer"]["stop_reason"] in ("newline", "suffix") for r in ROWS)
    # the traces are what the comparison across machines stands on: most tokens are no tie
    margins = [m for r in ROWS for _, m in r["answer"]["trace"] if m is not None]
    assert len(margins) > 500 and sum(m > TIE for m in margins) > 0.8 * len(margins)
