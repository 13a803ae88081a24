"""Selection without tests, on hand-made candidates (no model)."""

from dataclasses import dataclass

import pytest

from codefill.engine import build_context
from codefill.engine.selection import METHODS, clusters, distinct, normalize, rank, select, syntax_ok


@dataclass
class C:
    text: str
    token_logprobs: tuple = (-1.0,)


DOC = "def area(r):\n    \n    return result\n"


def ctx(doc=DOC, line=1, col=4, path="geo.py"):
    return build_context(doc, line, col, path=path)


def test_normalize_ignores_spacing_comments_and_quote_style():
    assert normalize("x=f( 1 )  # why", "python") == normalize("x = f(1)", "python")
    assert normalize("s = 'a'", "python") == normalize('s = "a"', "python")
    assert normalize("x = 1", "python") != normalize("x = 2", "python")
    assert normalize("a  +\n b", None) == "a + b"


def test_logprob_is_length_normalised():
    short = C("result = 1", (-2.0, -2.0))
    long = C("result = 3.14159 * r * r", (-0.5,) * 8)  # lower total, higher mean
    assert select([short, long], ctx(), "logprob") is long


def test_cluster_prefers_agreement_over_one_confident_outlier():
    loner = C("result = r", (-0.1,))
    a = C("result = 3.14 * r ** 2", (-0.9,))
    b = C("result = 3.14*r**2  # area", (-1.2,))
    d = C("result=3.14 * r**2", (-1.0,))
    ranked = rank([loner, a, b, d], ctx(), "cluster")
    assert ranked[0] is a  # the most likely member of the largest cluster
    assert ranked[-1] is loner
    assert clusters([loner, a, b, d], "python") == [[0], [1, 2, 3]]
    assert distinct([loner, a, b, d]) == [loner, a]


def test_syntax_check_of_the_buffer_with_the_candidate():
    c = ctx()
    assert syntax_ok(c, "result = r * r") is True
    assert syntax_ok(c, "result = (r * r") is False
    broken_elsewhere = build_context("def area(r):\n    \n    x = 1\n    return (\n", 1, 4, path="geo.py")
    assert syntax_ok(broken_elsewhere, "result = r") is None
    assert syntax_ok(build_context('{"a": }', 0, 6, path="x.json"), "1") is True
    assert syntax_ok(build_context('{"a": }', 0, 6, path="x.json"), "1,,") is False
    assert syntax_ok(build_context("int x = ;", 0, 8, path="x.c"), "1") is None  # no parser for C here


def test_a_large_python_buffer_is_judged_around_the_cursor_not_parsed_whole(monkeypatch):
    """Parsing a 1.5 MB module per candidate made ~45 MB of AST objects each time in the language server; a large
    buffer is judged on the top-level statements around the cursor (from the def/class/decorator line above it to the
    next one), with the same verdicts, and only once without the completion."""
    from codefill.engine import selection

    filler = "".join(f"def f{i}(a, b):\n    return a + b * {i}\n\n\n" for i in range(6000))  # ~240 KB each side
    text = filler + "class Area:\n    @staticmethod\n    def area(r):\n        \n        return result\n\n\n" + filler
    line = filler.count("\n") + 3
    c = build_context(text, line, 8, path="geo.py")
    parsed = []
    real = selection._parse_python
    monkeypatch.setattr(selection, "_parse_python", lambda src: parsed.append(src) or real(src))
    selection._parses_without.cache_clear()
    assert syntax_ok(c, "result = r * r") is True
    assert syntax_ok(c, "result = (r * r") is False
    assert syntax_ok(c, "result = [r") is False
    assert max(len(p) for p in parsed) < 200 and len(parsed) == 4  # the class alone; the hole's buffer once
    assert parsed[0].startswith("class Area:") and parsed[0].endswith("return result\n\n\n")
    # no top-level line within reach above the cursor: not judged (a guess would be worse)
    far = build_context("x = [\n" + "    1,\n" * 60000 + "    \n]\n", 60001, 4, path="big.py")
    assert syntax_ok(far, "2,") is None
    # a small buffer is still parsed whole: an error far from the cursor is seen
    assert syntax_ok(build_context("def g(:\n    pass\n\ndef h():\n    \n", 4, 4, path="s.py"), "x = 1") is None


def test_syntax_ranks_breaking_candidates_last():
    bad = C("result = (r * r", (-0.1,))
    good = C("result = r * r", (-2.0,))
    assert rank([bad, good], ctx(), "syntax") == [good, bad]


def test_auto_drops_syntax_errors_even_in_the_largest_cluster():
    bad = [C("result = (r * r", (-0.2,)) for _ in range(3)]
    good = C("result = r * r", (-1.5,))
    assert select(bad + [good], ctx(), "auto") is good


def test_auto_drops_empty_and_combines_agreement_with_likelihood():
    empty = C("", ())
    x = C("result = r * r", (-1.0,))
    y = C("result = r*r", (-1.1,))
    z = C("result = 2 * r", (-0.8,))
    assert select([empty, z, x, y], ctx(), "auto") is x  # two agree; z alone is only 0.2 nats more likely
    lonely = C("result = 2 * r", (-0.05,))  # far more likely than the pair: likelihood wins
    assert select([x, y, lonely], ctx(), "auto") is lonely


def test_auto_keeps_something_when_everything_is_bad():
    bad = [C("result = (r", (-0.3,)), C("result = [r", (-0.2,))]
    assert select(bad, ctx(), "auto") is bad[1]
    assert select([C("", ())], ctx(), "auto").text == ""


def test_first_and_unknown_methods():
    cs = [C("a = 1", (-3.0,)), C("a = 2", (-0.1,))]
    assert select(cs, ctx(), "first") is cs[0]
    assert set(METHODS) == {"first", "logprob", "cluster", "syntax", "auto", "suffix"}
    with pytest.raises(ValueError):
        select(cs, ctx(), "vote")
    with pytest.raises(ValueError):
        select([], ctx(), "auto")
