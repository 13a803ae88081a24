import pytest

from codefill.engine.context import build_context, decide_mode, offset_of, read_source_file
from codefill.engine.errors import BinaryFileError, EmptyFileError, InputFileError, PositionError


@pytest.mark.parametrize(
    "prefix,suffix,mode",
    [
        ("x = foo(", ")\n", "line"),  # code after the cursor
        ("    return ", "\n", "line"),  # mid-expression
        ("def f(x):", "\n", "block"),  # after a block opener
        ("def f(x):\n    ", "\n", "block"),  # empty line in a block
        ("", "", "block"),
        ("items = [", "\n", "block"),
        ("if x:  # comment", "\n", "block"),
        ("x = 1", "  \n", "line"),
    ],
)
def test_decide_mode(prefix, suffix, mode):
    assert decide_mode(prefix, suffix) == mode


def test_offsets_and_errors():
    text = "ab\ncd\r\nef"
    assert offset_of(text, 0, 2) == 2
    assert offset_of(text, 1, 2) == 5  # before the \r
    assert offset_of(text, 2, 2) == len(text)
    with pytest.raises(PositionError, match="line 4"):
        offset_of(text, 3, 0)
    with pytest.raises(PositionError, match="column 4"):
        offset_of(text, 0, 3)
    with pytest.raises(PositionError):
        offset_of(text, -1, 0)


def test_context_lines():
    ctx = build_context("def f(x):\n    return x\n\nprint(f(1))\n", 1, 11)
    assert ctx.line_prefix == "    return "
    assert ctx.line_suffix == "x"
    assert list(ctx.following_lines()) == ["", "print(f(1))", ""]
    assert list(ctx.preceding_lines()) == ["def f(x):"]
    for text in ("", "a", "a\n", "\n\n", "a\nb\n\nc", "\na\n"):
        for cut in range(len(text) + 1):
            c = build_context(text, text[:cut].count("\n"), cut - (text.rfind("\n", 0, cut) + 1))
            assert list(c.following_lines()) == (c.suffix.split("\n")[1:])
            assert list(c.preceding_lines()) == c.prefix.split("\n")[:-1][::-1]
    assert ctx.mode == "line"
    with pytest.raises(BinaryFileError):
        build_context("a\x00b", 0, 0)


def test_read_source_file(tmp_path):
    good = tmp_path / "a.py"
    good.write_text("\ufeffx = 1\n", encoding="utf-8")
    assert read_source_file(str(good)) == "x = 1\n"
    (tmp_path / "e.py").write_bytes(b"")
    with pytest.raises(EmptyFileError):
        read_source_file(str(tmp_path / "e.py"))
    (tmp_path / "b.bin").write_bytes(b"\x89PNG\x00\x00")
    with pytest.raises(BinaryFileError):
        read_source_file(str(tmp_path / "b.bin"))
    (tmp_path / "l1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(BinaryFileError, match="not UTF-8"):
        read_source_file(str(tmp_path / "l1.txt"))
    with pytest.raises(InputFileError):
        read_source_file(str(tmp_path / "missing.py"))
    with pytest.raises(InputFileError):
        read_source_file(str(tmp_path))


@pytest.mark.parametrize("text,line,col,keeps", [
    ("def f(x):\n    y = x\n    \n", 2, 4, True),  # right after the indentation the editor chose
    ("def f(x):\n    if x:\n        \n", 2, 8, True),  # the editor indented the block already
    ("def f(x):\n    if x:\n    \n", 2, 4, False),  # the block is not entered yet: the completion may indent
    ("def f(x):\n\tif x:\n\t\t\n", 2, 2, True),  # tabs
    ("def f(x):\n    y = x\n\n", 2, 0, False),  # column 0: nothing chosen
    ("def f(x):\n    y = \n", 1, 8, False),  # code before the cursor
])
def test_completion_keeps_the_indentation_after_an_indented_cursor(text, line, col, keeps):
    from codefill.engine.stops import StopRules

    assert StopRules(build_context(text, line, col, mode="line")).no_leading_space is keeps


class _CountingVocab:
    """A vocabulary that counts characters as tokens and how often it was asked."""

    def __init__(self):
        self.calls = 0

    def tokenize(self, text):
        self.calls += 1
        return list(text)


def test_token_counts_are_kept_within_a_character_bound():
    from codefill.engine.prompt import TokenCounter

    vocab = _CountingVocab()
    count = TokenCounter(vocab, max_chars=10_000, max_line_chars=500)
    assert count("def f():\n") == 9 and count("def f():\n") == 9 and vocab.calls == 1  # memoised
    # a person typing in one long minified line: every keystroke is a new line text, never kept
    long_line = "x" * 50_000
    for i in range(50):
        assert count(long_line + "y" * i) == 50_000 + i
    assert count.kept_chars == 9
    # many short lines: the oldest go, the characters kept stay within the bound
    for i in range(5_000):
        count(f"line {i}\n")
    assert count.kept_chars <= 10_000
    calls = vocab.calls
    count("line 4999\n")
    assert vocab.calls == calls  # the newest are still there
    count("line 0\n")
    assert vocab.calls == calls + 1  # the oldest were dropped
