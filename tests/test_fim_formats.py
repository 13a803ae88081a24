"""Exact prompt token sequences for every supported family, against tiny generated vocabularies.

Expected sequences are computed from the tiny vocabulary itself (every text byte is one known token), not from
llama.cpp's tokenizer, so these tests check both the layout and that user text is tokenized as plain text.
"""

import pytest

from codefill.engine.config import BudgetConfig
from codefill.engine.context import Snippet, build_context
from codefill.engine.fim import detect_family, resolve_format
from codefill.engine.llama import LlamaRuntime
from codefill.engine.prompt import PromptBuilder, anchor_step
from tinymodels import make_tiny_vocab

P = "def add(a, b):\n    return "
S = "\n\nprint(add(1, 2))\n"
DOC = P + S
LINE, COL = 1, 11
PATH = "src/app.py"
SNIP = Snippet("lib/util.py", "def u():\n    pass\n")

_loaded = {}


def load(family, tiny_dir, keys=True):
    key = (family, keys)
    if key not in _loaded:
        v = make_tiny_vocab(family, str(tiny_dir), with_fim_keys=keys)
        _loaded[key] = (v, LlamaRuntime(v.path, vocab_only=True))
    return _loaded[key]


def build(rt, *, spm=None, path=PATH, snippets=(), doc=DOC, line=LINE, col=COL, budget=None, heal=False):
    """Prompt tokens; with `heal`, also the healed text (see test_token_healing for what healing does)."""
    fmt = resolve_format(rt, spm=spm)
    ctx = build_context(doc, line, col, path=path, snippets=snippets)
    prompt = PromptBuilder(rt, fmt, budget or BudgetConfig(), heal=heal).build(ctx)
    return (list(prompt.tokens), prompt.heal) if heal else list(prompt.tokens)


@pytest.mark.parametrize("keys", [True, False], ids=["fim-keys", "token-texts"])
@pytest.mark.parametrize(
    "family,expected_name",
    [("qwen", "qwen"), ("starcoder2", "starcoder"), ("starcoder", "starcoder"), ("deepseek", "deepseek"),
     ("codellama", "codellama"), ("codegemma", "codegemma"), ("codestral", "codestral"), ("smollm", "prefix-only")],
)
def test_family_detection(tiny_dir, family, expected_name, keys):
    _v, rt = load(family, tiny_dir, keys)
    assert detect_family(rt).name == expected_name


def test_qwen_repo_level(tiny_dir):
    v, rt = load("qwen", tiny_dir)
    T, s = v.text_ids, v.special
    assert build(rt) == (
        [s["<|repo_name|>"]] + T("src\n") + [s["<|file_sep|>"]] + T(PATH + "\n")
        + [s["<|fim_prefix|>"]] + T(P) + [s["<|fim_suffix|>"]] + T(S) + [s["<|fim_middle|>"]]
    )
    assert build(rt, snippets=[SNIP]) == (
        [s["<|repo_name|>"]] + T("src\n") + [s["<|file_sep|>"]] + T("lib/util.py\ndef u():\n    pass\n")
        + [s["<|file_sep|>"]] + T(PATH + "\n")
        + [s["<|fim_prefix|>"]] + T(P) + [s["<|fim_suffix|>"]] + T(S) + [s["<|fim_middle|>"]]
    )
    # Qwen2.5-Coder was trained prefix-first only: asking for SPM keeps PSM.
    assert build(rt, spm=True) == build(rt)


def test_starcoder2_psm_and_spm(tiny_dir):
    v, rt = load("starcoder2", tiny_dir)
    T, s = v.text_ids, v.special
    head = [s["<repo_name>"]] + T("src\n") + [s["<file_sep>"]] + T(PATH + "\n")
    assert build(rt) == head + [s["<fim_prefix>"]] + T(P) + [s["<fim_suffix>"]] + T(S) + [s["<fim_middle>"]]
    assert build(rt, spm=True) == head + [s["<fim_prefix>"], s["<fim_suffix>"]] + T(S) + [s["<fim_middle>"]] + T(P)


def test_starcoder1_filename(tiny_dir):
    v, rt = load("starcoder", tiny_dir)
    T, s = v.text_ids, v.special
    assert build(rt) == (
        [s["<filename>"]] + T(PATH + "\n") + [s["<fim_prefix>"]] + T(P) + [s["<fim_suffix>"]] + T(S)
        + [s["<fim_middle>"]]
    )


def test_deepseek(tiny_dir):
    v, rt = load("deepseek", tiny_dir)
    T, s = v.text_ids, v.special
    assert build(rt) == (
        [s["<｜begin▁of▁sentence｜>"]] + T("#" + PATH + "\n") + [s["<｜fim▁begin｜>"]] + T(P) + [s["<｜fim▁hole｜>"]]
        + T(S) + [s["<｜fim▁end｜>"]]
    )


def test_codellama_psm_and_spm(tiny_dir):
    v, rt = load("codellama", tiny_dir)
    T, s = v.text_ids, v.special
    # Prefix with SentencePiece's dummy space (Meta's `encode`), suffix without it (`encode_infilling`).
    assert build(rt, path=None) == (
        [s["<s>"], s["▁<PRE>"]] + T(P) + [s["▁<SUF>"]] + T(S, first=False) + [s["▁<MID>"]]
    )
    assert build(rt, path=None, spm=True) == (
        [s["<s>"], s["▁<PRE>"], s["▁<SUF>"]] + T(S, first=False) + [s["▁<MID>"]] + T(P)
    )


def test_codegemma(tiny_dir):
    v, rt = load("codegemma", tiny_dir)
    T, s = v.text_ids, v.special
    assert build(rt) == [s["<bos>"], s["<|fim_prefix|>"]] + T(P) + [s["<|fim_suffix|>"]] + T(S) + [s["<|fim_middle|>"]]
    assert build(rt, snippets=[SNIP]) == (
        [s["<bos>"]] + T("lib/util.py\ndef u():\n    pass\n") + [s["<|file_separator|>"], s["<|fim_prefix|>"]] + T(P)
        + [s["<|fim_suffix|>"]] + T(S) + [s["<|fim_middle|>"]]
    )


def test_codestral_is_suffix_first(tiny_dir):
    v, rt = load("codestral", tiny_dir)
    T, s = v.text_ids, v.special
    assert build(rt, path=None) == [s["<s>"], s["[SUFFIX]"]] + T(S) + [s["[PREFIX]"]] + T(P)


def test_prefix_only(tiny_dir):
    v, rt = load("smollm", tiny_dir)
    T = v.text_ids
    assert build(rt) == T(P)
    assert build(rt, snippets=[SNIP]) == T("# lib/util.py\ndef u():\n    pass\n\n") + T(P)


def test_user_text_never_becomes_a_special_token(tiny_dir):
    v, rt = load("qwen", tiny_dir)
    doc = "x = '<|fim_middle|>'\n"
    toks = build(rt, doc=doc, line=1, col=0, path=None)
    assert toks.count(v.special["<|fim_middle|>"]) == 1  # only the one the format puts at the end
    assert toks[-1] == v.special["<|fim_middle|>"]


def test_prefix_budget_cuts_at_line_boundaries_on_a_stable_grid(tiny_dir):
    v, rt = load("smollm", tiny_dir)
    lines = [f"line{i:03d} = {i}" for i in range(200)]
    doc = "\n".join(lines) + "\n"
    budget = BudgetConfig(prefix_tokens=400, suffix_tokens=0, extra_tokens=0)
    fmt = resolve_format(rt)
    builder = PromptBuilder(rt, fmt, budget)
    starts = []
    for cur in range(100, 140):
        p = builder.build(build_context(doc, cur, 0))
        assert len(p.tokens) <= 400
        assert p.prefix_text == "\n".join(lines[p.prefix_start_line:cur]) + "\n"
        starts.append(p.prefix_start_line)
    # Each line is 15 tokens: 400 tokens hold 26 lines. The start moves on a 6-line grid, not with every line.
    step = anchor_step(400)
    assert step == 6
    assert all(s % step == 0 for s in starts)
    assert len(set(starts)) <= 40 // step + 2  # vs. 40 distinct starts with a plain line cut
    assert all(cur - s >= 13 for cur, s in zip(range(100, 140), starts))  # at least half the lines that fit


def test_suffix_budget_cuts_at_line_boundaries(tiny_dir):
    v, rt = load("qwen", tiny_dir)
    doc = "a = 1\n" + "\n".join(f"b{i} = {i}" for i in range(100))
    budget = BudgetConfig(prefix_tokens=100, suffix_tokens=40, extra_tokens=0)
    p = PromptBuilder(rt, resolve_format(rt), budget).build(build_context(doc, 0, 5))
    # the suffix is the rest of line 0 and as many whole following lines as fit in 40 tokens
    assert p.suffix_text.startswith("\nb0 = 0\nb1 = 1")
    assert all(line.startswith("b") for line in p.suffix_text.split("\n")[1:])
    assert len(v.text_ids(p.suffix_text)) <= 40


def test_snippets_respect_their_budget(tiny_dir):
    v, rt = load("qwen", tiny_dir)
    big = Snippet("big.py", "\n".join(f"x{i} = {i}" for i in range(500)))
    budget = BudgetConfig(prefix_tokens=200, suffix_tokens=50, extra_tokens=120)
    fmt = resolve_format(rt)
    p = PromptBuilder(rt, fmt, budget).build(build_context(DOC, LINE, COL, path=PATH, snippets=[big, SNIP]))
    plain = PromptBuilder(rt, fmt, budget).build(build_context(DOC, LINE, COL, path=PATH))
    assert p.n_snippets >= 1
    assert len(p.tokens) - len(plain.tokens) <= 120 + 2


@pytest.mark.parametrize("family,spm", [("smollm", None), ("starcoder2", True), ("codellama", True), ("codestral", None)])
def test_token_healing_leaves_out_the_last_prefix_token(tiny_dir, family, spm):
    """Where the prompt ends with the prefix, its last token (here the space after `return`) is left out and the
    completion must start with it; formats that end with the middle token are untouched."""
    _v, rt = load(family, tiny_dir)
    full = build(rt, spm=spm, path=None)
    healed, heal = build(rt, spm=spm, path=None, heal=True)
    assert heal == " "
    assert healed == full[:-1]


def test_token_healing_only_for_whitespace_and_words(tiny_dir):
    _v, rt = load("smollm", tiny_dir)
    assert build(rt, doc="x = foo(", line=0, col=8, heal=True)[1] == ""  # punctuation: left alone
    assert build(rt, doc="    ", line=0, col=4, heal=True)[1] == " "  # indentation (one byte per token here)
    assert build(rt, doc="ab", line=0, col=2, heal=True)[1] == "b"  # a word being typed
    _v, rt = load("qwen", tiny_dir)
    assert build(rt, heal=True)[1] == ""  # PSM ends with the middle token: nothing to heal
