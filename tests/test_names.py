"""engine/names.py: the names the code after a Python cursor needs the hole to bind, and how a line is then started."""

from __future__ import annotations

from codefill.engine.context import build_context
from codefill.engine.names import binding_starts, binds_any, bound, needed


def ctx_at(doc: str, path: str = "x.py"):
    """The context at the `|` of `doc` (removed), in line mode."""
    i = doc.index("|")
    text = doc[:i] + doc[i + 1 :]
    line = text[:i].count("\n")
    return build_context(text, line, i - (text[:i].rfind("\n") + 1), path=path, mode="line")


LOOP = '''def count(s: str) -> int:
    """How many 'a' in s."""
    n = 0
    |
        if c == 'a':
            n += 1
    return n
'''


def test_a_name_the_suffix_reads_and_nothing_defines_is_needed():
    assert needed(ctx_at(LOOP)) == ("c",)


def test_names_defined_before_the_cursor_or_after_it_builtins_and_attributes_are_not():
    doc = '''import math

def f(xs, k=2):
    total = 0
    |
    for x in xs:
        total += math.floor(x) * k + len(xs)
    y = sorted(xs)
    print(y.count, total, [z for z in xs], key=None)
'''
    assert needed(ctx_at(doc)) == ()


def test_strings_and_comments_neither_define_nor_need():
    doc = '''def f(xs):
    """c is the count"""  # c too
    |
        print("d", c)  # e
'''
    assert needed(ctx_at(doc)) == ("c",)


def test_only_the_enclosing_definition_is_read():
    doc = '''def f(xs):
    |
    return xs

def g():
    return later_name
'''
    assert needed(ctx_at(doc)) == ()


def test_other_languages_a_cursor_after_code_and_the_top_level_need_nothing():
    assert needed(ctx_at(LOOP.replace("    |", "    x = |"))) == ()
    assert needed(ctx_at(LOOP, path="x.js")) == ()
    assert needed(ctx_at("|\nprint(c)\n")) == ()


def test_what_a_line_binds():
    assert bound("for i, (a, b) in enumerate(xs):") == {"i", "a", "b"}
    assert bound("x, y = 1, 2") == {"x", "y"}
    assert bound("total += 1") == {"total"}
    assert bound("def helper(p, q=3, *rest):") == {"helper", "p", "q", "rest"}
    assert bound("import os.path, re") == {"os", "path", "re"}
    assert bound("with open(p) as fh:") == {"fh"}
    assert bound("if (m := pat.match(s)):") == {"m"}
    assert bound("if x == y:") == set()
    assert binds_any("for c in s:", ("c",)) and not binds_any("if c in s:", ("c",))


def test_a_line_that_opens_a_block_binds_a_loop_target_in_its_own_loop_where_it_has_one():
    ctx = ctx_at(LOOP)
    assert binding_starts(ctx, "for char in s:", ("c",)) == ["for c"]
    assert binding_starts(ctx, "if len(s) > 1:", ("c",)) == ["for c"]


def test_a_name_the_suffix_calls_is_a_helper_and_comes_first():
    doc = '''def f(xs):
    |
        return p > 1
    return [x for x in xs if is_prime(x)]
'''
    ctx = ctx_at(doc)
    assert needed(ctx) == ("p", "is_prime")
    assert binding_starts(ctx, "result = []", needed(ctx)) == ["def is_prime", "for p"]


def test_a_plain_line_imports_a_module_or_assigns():
    doc = '''def f(x):
    |
    y = math.sqrt(x)
    return y + offset
'''
    ctx = ctx_at(doc)
    assert needed(ctx) == ("math", "offset")
    assert binding_starts(ctx, "if x < 0:", needed(ctx)) == ["import math", "offset"]


def test_a_deeper_next_line_inside_an_open_bracket_is_no_block():
    doc = '''def f(x):
    |
        'a': 1,
    }
    return table[x]
'''
    ctx = ctx_at(doc)
    assert binding_starts(ctx, "x = int(x)", ("table",)) == ["table"]


def test_subscripts_attributes_and_calls_bind_no_name():
    assert bound("a[i] = 0") == set()
    assert bound("self.x = 0") == set()
    assert bound("f(k=1)") == {"k"}  # a keyword argument: not a read of `k`
