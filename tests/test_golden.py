"""Stop rules and post-processing filters pinned by golden cases (tests/golden/*.txt).

A case: `=== document` with ‸ at the cursor, `=== raw` (what the model produced), `=== expected` (what the user
sees), optionally `=== reason` (the stop rule that fired) and `=== mode` (line/block, default auto).
Each section ends at the newline before the next `===` line.
"""

import glob
import os

import pytest

from codefill.engine.context import build_context
from codefill.engine.filters import postprocess, remove_duplicate_suffix_lines
from codefill.engine.stops import apply_stop_rules

CURSOR = "‸"
HERE = os.path.join(os.path.dirname(__file__), "golden")


def parse(path):
    sections, current = {}, None
    with open(path, encoding="utf-8", newline="") as fh:
        for line in fh.read().split("\n"):
            if line.startswith("=== "):
                current = line[4:].strip()
                sections[current] = []
            elif current is not None:
                sections[current].append(line)
    return {k: "\n".join(v[:-1] if v and v[-1] == "" and k == list(sections)[-1] else v) for k, v in sections.items()}


def context_for(document, mode="auto"):
    offset = document.index(CURSOR)
    text = document.replace(CURSOR, "", 1)
    before = text[:offset]
    line = before.count("\n")
    col = len(before) - (before.rfind("\n") + 1)
    return build_context(text, line, col, mode=mode)


CASES = sorted(glob.glob(os.path.join(HERE, "*.txt")))


def test_there_are_golden_cases():
    assert len(CASES) >= 20


@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p)[:-4] for p in CASES])
def test_golden(path):
    case = parse(path)
    ctx = context_for(case["document"], case.get("mode", "auto"))
    cut, reason = apply_stop_rules(ctx, case["raw"])
    assert postprocess(ctx, cut) == case["expected"]
    if "reason" in case:
        assert reason == case["reason"]


def test_duplicate_suffix_lines_removed():
    ctx = context_for("if x:\n    ‸\n    b = 2\n    c = 3\n")
    assert remove_duplicate_suffix_lines(ctx, "a = 1\n    b = 2\n    c = 3") == "a = 1"
    assert remove_duplicate_suffix_lines(ctx, "a = 1\n    b = 3") == "a = 1\n    b = 3"
