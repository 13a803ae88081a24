"""Greedy completions on the embedded model equal the answers recorded before the decode refactor (tests/recorded.py).

Greedy decoding is deterministic for one model file and llama.cpp build; a change to the sampler, the stop rules,
token healing, the prompt or post-processing that alters any answer fails here, position by position."""

import json
import math

import pytest

import recorded

pytestmark = pytest.mark.slow

with open(recorded.RECORDED, encoding="utf-8") as _fh:
    ROWS = json.load(_fh)["answers"]
DOCS = recorded.texts()


@pytest.mark.parametrize("row", ROWS, ids=lambda r: "{file}:{line}:{character}:{mode}".format(**r["position"]))
def test_greedy_answer_is_unchanged(engine, row):
    got = recorded.answer(engine, row["position"], DOCS[row["position"]["file"]])
    want = row["answer"]
    assert (got["text"], got["raw"], got["stop_reason"], got["mode"]) == (
        want["text"], want["raw"], want["stop_reason"], want["mode"])
    assert got["kept_tokens"] == want["kept_tokens"]  # tokens that made the text (after stop rules)
    if want["logprob_mean"] is None:
        assert got["logprob_mean"] is None
    else:
        # float32 and float64 sums in the sampler may move the last digits (each answer starts from a cold cache)
        assert math.isclose(got["logprob_mean"], want["logprob_mean"], abs_tol=0.02)  # same tokens; another CPU and llama.cpp build round differently


def test_the_recording_covers_what_the_decode_loop_decides():
    reasons = {r["answer"]["stop_reason"] for r in ROWS}
    modes = {r["answer"]["mode"] for r in ROWS}
    assert {"newline", "dedent", "max_tokens"} <= reasons and modes == {"line", "block"}
    assert any(r["position"].get("snippet") for r in ROWS)
    assert all(r["answer"]["raw"] or r["answer"]["stop_reason"] == "newline" for r in ROWS)
