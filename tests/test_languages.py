"""Languages other than Python (issue 15 #4): comment syntax, closing braces, and `codefill eval repo`'s holes.

The stop rules' and filters' brace cases are golden cases (tests/golden/block_*brace*.txt,
top_level_block_keeps_blank_lines_inside_braces.txt); here the pieces they rest on, and the holes `eval repo` cuts in
real third-party code installed by bench/lang_sources.py (Debian and npm packages, cached; a failure to install is a
test failure that says why, never a skip).
"""

from __future__ import annotations

import os
import sys

import pytest

from codefill.engine.context import (build_context, comment_lines, comment_prefix, decide_mode, is_closing_line,
                                     is_comment_line, language_for)
from codefill.engine.filters import remove_duplicate_suffix_lines
from codefill.engine.stops import StopRules
from codefill.eval.repo import _holes, build_repo_tasks

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench"))
import lang_sources  # noqa: E402


@pytest.mark.parametrize("line,language,comment", [
    ("# a comment", "python", True),
    ('"""A docstring."""', "python", True),
    ("#include <stdio.h>", "c", False),  # the preprocessor is code
    ("# define X 1", "c", False),
    ("#[derive(Debug, Clone)]", "rust", False),  # an attribute is code
    ("/// Documentation.", "rust", True),
    ("//! Crate docs.", "rust", True),
    ("// a comment", "go", True),
    ("/* a comment */", "c", True),
    ("* continued", "javascript", True),
    ("*/", "typescript", True),
    ("*p = 0;", "c", False),  # a dereference is code
    ("*elt = x;", "rust", False),
    ("-- a comment", "lua", True),
    ("# unknown language", None, True),
])
def test_is_comment_line(line, language, comment):
    assert is_comment_line(line, language) is comment


def test_comment_lines_follow_c_block_comments():
    lines = ["int x;", "/* Return the value,", "   rounded to -1.  */", "return x;", "int y; /* open", "still */ z();"]
    assert comment_lines(lines, "c") == [False, True, True, False, False, True]
    # Python has no /* */: a line after one is code
    assert comment_lines(["x = '/*'", "y = 1"], "python") == [False, False]


@pytest.mark.parametrize("line,closing", [("}", True), ("});", True), ("]", True), ("},", True), ("end", True),
                                          ("} else {", False), ("return;", False), ("ending()", False)])
def test_is_closing_line(line, closing):
    assert is_closing_line(line) is closing


def test_language_from_file_name():
    assert [language_for(p) for p in ("a.mts", "a.cts", "a.d.ts", "a.h", "a.rs", "a.go", "A.JS")] == [
        "typescript", "typescript", "typescript", "c", "rust", "go", "javascript"]
    # named, not extended: their comments are `#`, not C's `//`
    assert [language_for(p) for p in ("src/Makefile", "Dockerfile", "CMakeLists.txt", "rules.mk", "x.pl")] == [
        "makefile", "dockerfile", "cmake", "makefile", "perl"]
    assert comment_prefix(language_for("build/Makefile")) == "#"


def test_duplicate_suffix_lines_keep_a_brace_that_closes_an_inner_block():
    # the completion's last `}` closes its own `if`; the `}` after the cursor closes the function, one level up
    doc = "fn f(a: bool) {\n    \n}\n"
    ctx = build_context(doc, 1, 4, mode="block")
    assert remove_duplicate_suffix_lines(ctx, "if a {\n        g();\n    }") == "if a {\n        g();\n    }"
    # at the suffix's own indentation it is the suffix's `}`, repeated
    assert remove_duplicate_suffix_lines(ctx, "g();\n}") == "g();"


def test_rust_attributes_and_c_preprocessor_lines_are_line_holes():
    rust = "#[derive(Debug, Clone)]\npub struct Point {\n    x: i32,\n    y: i32,\n}\n"
    targets = {t.target for t in _holes("src/lib.rs", rust) if t.mode == "line"}
    assert "#[derive(Debug, Clone)]" in targets
    c = "#include <stdlib.h>\n/* Return the sum,\n   or -1 on overflow.  */\nint sum (int a, int b)\n{\n  return a + b;\n}\n"
    targets = {t.target for t in _holes("sum.c", c) if t.mode == "line"}
    assert "#include <stdlib.h>" in targets
    assert "or -1 on overflow.  */" not in targets  # inside a comment
    assert "int sum (int a, int b)" in targets
    py = "# a comment that is long\nx = compute(1)\n"
    assert {t.target for t in _holes("a.py", py) if t.mode == "line"} == {"x = compute(1)"}


@pytest.fixture(scope="module")
def sources():
    try:
        return {lang: lang_sources.ensure(lang) for lang in lang_sources.SOURCES}
    except lang_sources.SourcesUnavailable as exc:
        pytest.fail(f"the third-party sources of bench/lang_sources.py could not be installed: {exc}")


def test_eval_repo_holes_in_real_third_party_code(sources):
    """Each language's folder gives line and block holes; every block hole follows a line ending in `{` or `:` and
    is the deeper-indented body up to its closing line, which stays in the suffix."""
    exts = {"javascript": (".js",), "typescript": (".ts",), "go": (".go",), "rust": (".rs",), "c": (".c", ".h")}
    for lang, root in sources.items():
        assert lang_sources.packages(lang), f"{lang}: no PACKAGES.tsv"
        tasks = build_repo_tasks(root, limit=60, seed=0)
        assert {t.problem_id.endswith(exts[lang]) for t in tasks} == {True}, lang
        lines = [t for t in tasks if t.mode == "line"]
        blocks = [t for t in tasks if t.mode == "block"]
        assert len(lines) == 30 and len(blocks) == 30, lang
        for t in lines:
            assert not is_comment_line(t.target.strip(), lang), (lang, t.task_id, t.target)
        for t in blocks:
            opener = t.prefix.rstrip(" \t").split("\n")[-2]
            assert opener.rstrip().endswith(("{", ":")), (lang, t.task_id, opener)
            closing = next(ln for ln in t.suffix.split("\n")[1:] if ln.strip())
            width = lambda s: len(s.expandtabs(4)) - len(s.expandtabs(4).lstrip())  # noqa: E731
            assert width(closing) <= width(opener), (lang, t.task_id, closing)


@pytest.mark.parametrize("above", ["  if (x) { // why", "  if (x) { /* why */", "  if x:  # why", "  items.map(x =>"])
def test_an_opener_before_a_trailing_comment_lets_the_block_be_entered(above):
    # an editor without smart indent leaves the cursor at the opener's indentation: the completion may indent
    ctx = build_context(above + "\n  \n", 1, 2, mode="block")
    assert StopRules(ctx).no_leading_space is False
    assert StopRules(build_context("  x = 1;\n  \n", 1, 2, mode="block")).no_leading_space is True


def test_decide_mode_after_an_opener_with_a_c_comment():
    assert decide_mode("if (x) { /* why */", "\n") == "block"
    assert decide_mode("x = f(a) /* why */", "\n") == "line"
