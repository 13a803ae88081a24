"""Issue 15 #1: the FIM families against real vocabularies, not only the ones tests/tinymodels.py generates.

The vocabularies are llama.cpp's vocabulary-only GGUF files from the installed llama-cpp-python's source distribution
(tests/vocabs.py fetches them from PyPI once and caches them; a run that cannot get them fails, it does not skip):
`starcoder` (StarCoder2's special tokens: <repo_name>, <file_sep>), `refact` (StarCoder 1's: <filename>, <reponame>),
`deepseek-coder` (<｜fim▁begin｜>…), and vocabularies without FIM tokens (`qwen2` is Qwen2 base, `llama-spm`, `gpt-2`,
`phi-3`, `command-r` …). Every file is loaded the way codefill loads a model's vocabulary (LlamaRuntime, vocab_only).

Families the sdist has no vocabulary for are made the way their models made theirs: Qwen2.5-Coder's is Qwen2's real
BPE with <|fim_prefix|>… at their real ids, CodeLlama's Llama 2's real SentencePiece with ▁<PRE>… (vocabs.py).

Expected prompts are assembled here from ids read off the vocabulary's own token list (each special token's text,
found by scanning every id) and from plain tokenization of each piece of text, which the `.inp`/`.out` vectors
(llama.cpp's own expectations) check first; they are compared with what PromptBuilder produces.
"""

from __future__ import annotations

import os

import pytest

from codefill.engine.config import BudgetConfig, EngineConfig
from codefill.engine.context import Snippet, build_context
from codefill.engine.decode import HealingIndex
from codefill.engine.errors import ModelFormatError
from codefill.engine.fim import DEEPSEEK, QWEN, STARCODER, detect_family, resolve_format
from codefill.engine.llama import LlamaRuntime
from codefill.engine.prompt import PromptBuilder

import vocabs

pytestmark = pytest.mark.slow  # the first run downloads a 77 MB source distribution; later ones read the cache

P = "def add(a, b):\n    return "
S = "\n\nprint(add(1, 2))\n"
DOC = P + S
LINE, COL = 1, 11
PATH = "src/app.py"
SNIP = Snippet("lib/util.py", "def u():\n    pass\n")

# Vocabularies whose .inp/.out vectors llama.cpp ships (bert-bge lower-cases, gemma-4 and command-r are 256k tokens).
VECTORS = ("bert-bge", "command-r", "deepseek-coder", "deepseek-llm", "falcon", "gemma-4", "gpt-2", "llama-bpe",
           "llama-spm", "mpt", "phi-3", "qwen2", "qwen35", "refact", "starcoder")
# Byte-level BPE vocabularies: detokenizing gives back the text byte for byte.
BYTE_LEVEL = ("deepseek-coder", "deepseek-llm", "gpt-2", "llama-bpe", "qwen2", "refact", "starcoder")
NO_FIM = ("qwen2", "qwen35", "llama-spm", "llama-bpe", "gpt-2", "phi-3", "command-r", "deepseek-llm", "falcon", "mpt",
          "gemma-4", "baichuan", "aquila", "gpt-neox")


# Families with no vocabulary in the sdist, made the way their models made them: the base model's real vocabulary
# with the family's special tokens at their real ids (see vocabs.with_added_tokens).
QWEN_CODER = {151659: "<|fim_prefix|>", 151660: "<|fim_middle|>", 151661: "<|fim_suffix|>", 151662: "<|fim_pad|>",
              151663: "<|repo_name|>", 151664: "<|file_sep|>"}
CODELLAMA = {32007: "▁<PRE>", 32008: "▁<SUF>", 32009: "▁<MID>", 32010: "▁<EOT>"}  # of 32,016
DERIVED = {  # name: (base vocabulary, added tokens, vocabulary size, boolean metadata)
    "qwen2.5-coder": ("qwen2", QWEN_CODER, 0, None),
    "codellama": ("llama-spm", CODELLAMA, 32016, None),
    # The same without SentencePiece's dummy space: the independent reference for CodeLlama's suffix tokens.
    "codellama-no-space-prefix": ("llama-spm", CODELLAMA, 32016, {"tokenizer.ggml.add_space_prefix": False}),
}


class Vocabs:
    """name -> the vocabulary loaded as codefill loads a model's (LlamaRuntime, vocab_only), once per session. Without
    the files every test that asks for one fails (in its body: a failure, not a setup error or a skip), saying why."""

    def __init__(self, directory: str | None, problem: str, derived_dir):
        self.directory, self.problem = directory, problem
        self.derived_dir = derived_dir
        self._loaded: dict[str, LlamaRuntime] = {}

    def file(self, name: str) -> str:
        if self.directory is None:
            pytest.fail(f"llama.cpp's vocabulary files are needed and could not be fetched: {self.problem} "
                        f"(they come from PyPI; `python tests/vocabs.py` fetches them into {vocabs.cache_dir()})",
                        pytrace=False)
        return os.path.join(self.directory, f"ggml-vocab-{name}.gguf")

    def __call__(self, name: str) -> LlamaRuntime:
        if name not in self._loaded:
            if name in DERIVED:
                base, tokens, size, bools = DERIVED[name]
                path = vocabs.with_added_tokens(self.file(base), str(self.derived_dir / f"{name}.gguf"), tokens, size,
                                                bools)
            else:
                path = self.file(name)
            self._loaded[name] = LlamaRuntime(path, vocab_only=True)
        return self._loaded[name]


@pytest.fixture(scope="session")
def vocab(tmp_path_factory) -> Vocabs:
    try:  # once per session (a lock and the cache make parallel sessions safe)
        directory, problem = vocabs.ensure_vocabs(), ""
    except vocabs.VocabsUnavailable as exc:
        directory, problem = None, str(exc)
    return Vocabs(directory, problem, tmp_path_factory.mktemp("derived-vocabs"))


class Ref:
    """Ids read off the vocabulary's token list, and plain tokenization, to build expected prompts from."""

    def __init__(self, rt: LlamaRuntime):
        self.rt = rt
        attr = rt.L.llama_vocab_get_attr
        special = 8 | 16  # LLAMA_TOKEN_ATTR_CONTROL | LLAMA_TOKEN_ATTR_USER_DEFINED
        self.ids: dict[str, list[int]] = {}
        for t in range(rt.n_vocab):
            if attr(rt.vocab, t) & special:
                self.ids.setdefault(rt.token_text(t), []).append(t)

    def s(self, text: str) -> int:
        ids = self.ids.get(text, [])
        assert len(ids) == 1, f"{text!r}: {ids}"
        return ids[0]

    def T(self, text: str) -> list[int]:
        return self.rt.tokenize(text) if text else []


@pytest.fixture(scope="session")
def ref(vocab):
    refs: dict[str, Ref] = {}

    def get(name: str) -> Ref:
        if name not in refs:
            refs[name] = Ref(vocab(name))
        return refs[name]

    return get


def build(rt, *, spm=None, path=PATH, snippets=(), doc=DOC, line=LINE, col=COL, heal=False):
    fmt = resolve_format(rt, spm=spm)
    ctx = build_context(doc, line, col, path=path, snippets=snippets)
    prompt = PromptBuilder(rt, fmt, BudgetConfig(), heal=heal).build(ctx)
    return (list(prompt.tokens), prompt.heal) if heal else list(prompt.tokens)


def read_vectors(path: str) -> list[tuple[str, list[int]]]:
    """llama.cpp's tests/test-tokenizer-0.cpp format: inputs separated by "\\n__ggml_vocab_test__\\n", one line of
    token ids per input."""
    with open(path + ".inp", encoding="utf-8", newline="") as fh:
        raw = fh.read()
    with open(path + ".out", encoding="utf-8", newline="") as fh:
        out = fh.read().split("\n")
    sep = "\n__ggml_vocab_test__\n"
    inputs, pos = [], 0
    while pos < len(raw):
        nxt = raw.find(sep, pos)
        if nxt < 0:
            inputs.append(raw[pos:])
            break
        inputs.append(raw[pos:nxt])
        pos = nxt + len(sep)
    if out and out[-1] == "":
        out.pop()
    assert len(inputs) == len(out), (len(inputs), len(out))
    return [(text, [int(t) for t in ids.split()]) for text, ids in zip(inputs, out)]


# ---------------------------------------------------------------------------------------------- the files themselves


def test_the_cache_holds_the_installed_versions_vocabularies(vocab):
    for name in vocabs.REQUIRED:
        path = vocab.file(name)
        assert os.path.dirname(path) == vocabs.cache_dir() and os.path.getsize(path) > 100_000
    assert vocabs.version() in vocabs.cache_dir()


@pytest.mark.parametrize("name", VECTORS)
def test_tokenization_vectors(vocab, name):
    """llama.cpp's own tokenizer tests (add_special and parse_special off, as codefill tokenizes user text)."""
    rt = vocab(name)
    cases = read_vectors(vocab.file(name))
    assert len(cases) >= 40
    wrong = [(text, rt.tokenize(text), ids) for text, ids in cases if rt.tokenize(text) != ids]
    assert not wrong, wrong[:3]
    if name in BYTE_LEVEL:
        assert [rt.detokenize(ids) for _, ids in cases] == [text for text, _ in cases]


# ---------------------------------------------------------------------------------------------- family detection


@pytest.mark.parametrize("name,family", [("starcoder", "starcoder"), ("refact", "starcoder"),
                                         ("deepseek-coder", "deepseek"), ("qwen2.5-coder", "qwen"),
                                         ("codellama", "codellama")] + [(n, "prefix-only") for n in NO_FIM])
def test_family_detection(vocab, name, family):
    assert detect_family(vocab(name)).name == family


@pytest.mark.parametrize("name,texts", [
    ("starcoder", dict(pre="<fim_prefix>", suf="<fim_suffix>", mid="<fim_middle>", rep="<repo_name>",
                       sep="<file_sep>")),
    ("refact", dict(pre="<fim_prefix>", suf="<fim_suffix>", mid="<fim_middle>", rep="<reponame>",
                    filename="<filename>")),
    ("deepseek-coder", dict(pre="<｜fim▁begin｜>", suf="<｜fim▁hole｜>", mid="<｜fim▁end｜>", bos="<｜begin▁of▁sentence｜>")),
    ("qwen2.5-coder", dict(pre="<|fim_prefix|>", suf="<|fim_suffix|>", mid="<|fim_middle|>", rep="<|repo_name|>",
                           sep="<|file_sep|>")),
    ("codellama", dict(pre="▁<PRE>", suf="▁<SUF>", mid="▁<MID>", bos="<s>")),
])
def test_format_ids_are_the_vocabularys_own(ref, name, texts):
    r = ref(name)
    fmt = resolve_format(r.rt)
    for slot in ("pre", "suf", "mid", "rep", "sep", "filename", "file_end", "bos"):
        want = r.s(texts[slot]) if slot in texts else None
        assert getattr(fmt, slot) == want, slot
    stops = {"starcoder": ("<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>",
                           "<repo_name>"),
             "refact": ("<|endoftext|>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<filename>",
                        "<reponame>"),
             "deepseek-coder": ("<｜end▁of▁sentence｜>", "<|EOT|>", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
             "qwen2.5-coder": ("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|im_end|>",
                               "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>"),
             "codellama": ("▁<EOT>", "</s>")}
    assert fmt.stop_ids == {r.s(t) for t in stops[name]}


# ---------------------------------------------------------------------------------------------- exact prompts


def test_starcoder2_tokens_psm_and_spm(ref):
    """codefill's layout (fim.py). Not pinned as right, only as what it is: the StarCoder2 paper's repository format
    has no line break after the repository name and the current file's path after <fim_prefix>
    (`<repo_name>r<file_sep>p0\ncode0<file_sep><fim_prefix>p1\npre<fim_suffix>suf<fim_middle>`), and StarCoder 1's
    none after <reponame> either (`<reponame>r<filename>p\ncode`): a question for engine/prompt.py."""
    r = ref("starcoder")
    T, s = r.T, r.s
    head = [s("<repo_name>")] + T("src\n") + [s("<file_sep>")] + T(PATH + "\n")
    assert build(r.rt) == head + [s("<fim_prefix>")] + T(P) + [s("<fim_suffix>")] + T(S) + [s("<fim_middle>")]
    assert build(r.rt, spm=True) == (
        head + [s("<fim_prefix>"), s("<fim_suffix>")] + T(S) + [s("<fim_middle>")] + T(P))
    assert build(r.rt, snippets=[SNIP]) == (
        [s("<repo_name>")] + T("src\n") + [s("<file_sep>")] + T("lib/util.py\ndef u():\n    pass\n")
        + [s("<file_sep>")] + T(PATH + "\n")
        + [s("<fim_prefix>")] + T(P) + [s("<fim_suffix>")] + T(S) + [s("<fim_middle>")])
    assert build(r.rt, path=None) == [s("<fim_prefix>")] + T(P) + [s("<fim_suffix>")] + T(S) + [s("<fim_middle>")]


def test_starcoder1_tokens_filename_and_reponame(ref):
    """StarCoder 1's vocabulary (refact's is StarCoder's plus 64 tokens) has <reponame> and <filename>, no
    <file_sep>: snippets go in as comments."""
    r = ref("refact")
    T, s = r.T, r.s
    fim = [s("<fim_prefix>")] + T(P) + [s("<fim_suffix>")] + T(S) + [s("<fim_middle>")]
    assert build(r.rt) == [s("<reponame>")] + T("src\n") + [s("<filename>")] + T(PATH + "\n") + fim
    assert build(r.rt, snippets=[SNIP]) == (
        [s("<reponame>")] + T("src\n") + T("# lib/util.py\ndef u():\n    pass\n\n") + [s("<filename>")]
        + T(PATH + "\n") + fim)
    assert build(r.rt, path=None, spm=True) == (
        [s("<fim_prefix>"), s("<fim_suffix>")] + T(S) + [s("<fim_middle>")] + T(P))


def test_deepseek_coder_tokens(ref):
    r = ref("deepseek-coder")
    T, s = r.T, r.s
    bos = s("<｜begin▁of▁sentence｜>")
    assert r.rt.add_bos and r.rt.bos == bos  # the GGUF says add_bos_token = true
    fim = [s("<｜fim▁begin｜>")] + T(P) + [s("<｜fim▁hole｜>")] + T(S) + [s("<｜fim▁end｜>")]
    assert build(r.rt) == [bos] + T("#" + PATH + "\n") + fim
    assert build(r.rt, snippets=[SNIP]) == (
        [bos] + T("# lib/util.py\ndef u():\n    pass\n\n") + T("#" + PATH + "\n") + fim)
    assert build(r.rt, spm=True) == build(r.rt)  # DeepSeek-Coder was trained prefix-first only


def test_qwen25_coder_tokens_repo_level(ref):
    r = ref("qwen2.5-coder")
    T, s = r.T, r.s
    fim = [s("<|fim_prefix|>")] + T(P) + [s("<|fim_suffix|>")] + T(S) + [s("<|fim_middle|>")]
    assert not r.rt.add_bos
    assert build(r.rt) == [s("<|repo_name|>")] + T("src\n") + [s("<|file_sep|>")] + T(PATH + "\n") + fim
    assert build(r.rt, snippets=[SNIP]) == (
        [s("<|repo_name|>")] + T("src\n") + [s("<|file_sep|>")] + T("lib/util.py\ndef u():\n    pass\n")
        + [s("<|file_sep|>")] + T(PATH + "\n") + fim)
    assert build(r.rt, spm=True) == build(r.rt)  # trained prefix-first only
    assert build(r.rt, path=None) == fim


@pytest.mark.parametrize("prefix,suffix", [(P, S), ("def f(a, b):\n    return ", "a\n")],
                         ids=["suffix-starts-with-newline", "suffix-starts-with-a-word"])
def test_codellama_tokens_suffix_without_the_dummy_space(ref, prefix, suffix):
    """On Llama 2's real SentencePiece vocabulary: the prefix with SentencePiece's dummy space (Meta's `encode`), the
    suffix without it (`encode_infilling`), here tokenized by the same vocabulary with add_space_prefix off."""
    r, plain = ref("codellama"), ref("codellama-no-space-prefix")
    T, s = r.T, r.s
    assert T(suffix) != plain.T(suffix)  # the dummy space makes a difference here
    doc, line, col = prefix + suffix, prefix.count("\n"), len(prefix.split("\n")[-1])
    assert build(r.rt, path=None, doc=doc, line=line, col=col) == (
        [s("<s>"), s("▁<PRE>")] + T(prefix) + [s("▁<SUF>")] + plain.T(suffix) + [s("▁<MID>")])
    assert build(r.rt, path=None, doc=doc, line=line, col=col, spm=True) == (
        [s("<s>"), s("▁<PRE>"), s("▁<SUF>")] + plain.T(suffix) + [s("▁<MID>")] + T(prefix))


@pytest.mark.parametrize("name,markers", [
    ("starcoder", ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<file_sep>", "<repo_name>", "<|endoftext|>")),
    ("refact", ("<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<filename>", "<reponame>", "<|endoftext|>")),
    ("deepseek-coder", ("<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>", "<｜begin▁of▁sentence｜>",
                        "<｜end▁of▁sentence｜>")),
    ("qwen2.5-coder", ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<|file_sep|>", "<|repo_name|>",
                       "<|endoftext|>", "<|im_end|>")),
    ("codellama", ("▁<PRE>", "▁<SUF>", "▁<MID>", "▁<EOT>", "<s>", "</s>")),
])
def test_user_text_never_becomes_a_control_token(ref, name, markers):
    """A file that contains the family's marker texts: each control token appears only where the format puts it,
    and the text comes back as text."""
    r = ref(name)
    texts = [m.replace("▁", " ") for m in markers]  # as they would stand in a file (SentencePiece's ▁ is a space)
    doc = "".join(f"x{i} = '{m}'\n" for i, m in enumerate(texts)) + "y = 1\n"
    clean = build(r.rt, doc="x = 1\ny = 1\n", line=1, col=0)
    toks = build(r.rt, doc=doc, line=len(markers), col=0)
    for m in markers:
        assert toks.count(r.s(m)) == clean.count(r.s(m)), m
    after_pre = toks[toks.index(resolve_format(r.rt).pre) + 1:]
    assert r.rt.detokenize(after_pre).lstrip(" ").startswith(doc[: doc.rindex("y = 1")])


# ---------------------------------------------------------------------------------------------- token healing


@pytest.mark.parametrize("name,spm", [("starcoder", True), ("refact", True), ("codellama", True), ("qwen2", None),
                                      ("gpt-2", None), ("llama-spm", None), ("deepseek-llm", None)])
@pytest.mark.parametrize("prefix,completion", [(P, "a + b"), ("def f():\n    ", "return 1")])
def test_token_healing_on_a_real_tokenizer(vocab, name, spm, prefix, completion):
    """The last prefix token (a real BPE's " " after `return`, or the indentation) is left out and the completion must
    start with its text; the tokenization the model saw in training for prefix + completion then starts with the
    healed prompt, and its next token is one the healing index allows."""
    rt = vocab(name)
    doc = prefix + "\n"
    line, col = prefix.count("\n"), len(prefix.split("\n")[-1])
    full = build(rt, spm=spm, path=None, doc=doc, line=line, col=col)
    healed, heal = build(rt, spm=spm, path=None, doc=doc, line=line, col=col, heal=True)
    pre = rt.tokenize(prefix)
    assert heal and heal == rt.token_piece(pre[-1]).decode() and prefix.endswith(heal) and not heal.strip()
    assert healed == full[:-1] and full[-len(pre):] == pre
    whole = rt.tokenize(prefix + completion)
    assert whole[: len(pre) - 1] == pre[:-1]
    nxt = whole[len(pre) - 1]
    assert nxt in set(HealingIndex(rt).candidates(heal.encode()).tolist())
    assert rt.token_piece(nxt).startswith(heal.encode()) or heal.encode().startswith(rt.token_piece(nxt))


def test_token_healing_leaves_punctuation_and_psm_alone(vocab):
    rt = vocab("qwen2")
    assert build(rt, doc="x = foo(", line=0, col=8, path=None, heal=True)[1] == ""
    assert build(rt, doc="    retu", line=0, col=8, path=None, heal=True)[1] == "u"  # " ret" + "u": a word being typed
    assert build(vocab("starcoder"), heal=True)[1] == ""  # PSM ends with <fim_middle>: nothing to heal


# ---------------------------------------------------------------------------------------------- no FIM tokens


@pytest.mark.parametrize("name,bos", [("qwen2", None), ("gpt-2", None), ("llama-spm", "<s>"), ("phi-3", "<s>"),
                                      ("command-r", "<BOS_TOKEN>")])
def test_prefix_only_prompts(ref, name, bos):
    """No FIM tokens: the prefix alone, after BOS where the vocabulary asks for it, snippets as comments before it;
    the suffix is left out (it still drives post-processing)."""
    r = ref(name)
    T = r.T
    head = [r.s(bos)] if bos else []
    assert (r.rt.bos if r.rt.add_bos else None) == (head[0] if head else None)
    assert build(r.rt) == head + T(P)
    assert build(r.rt, spm=True) == head + T(P)
    assert build(r.rt, snippets=[SNIP]) == head + T("# lib/util.py\ndef u():\n    pass\n\n") + T(P)
    # The cursor at the very start of a file: begin where a document begins (<|endoftext|> in GPT-style vocabularies).
    start = build(r.rt, doc="x = 1\n", line=0, col=0, path=None)
    assert start == (head or [r.s("<|endoftext|>")])


def test_prefix_only_is_what_the_engine_reports(vocab):
    """What `codefill models` and `complete --json` print from: family prefix-only, fim false."""
    from codefill.engine.engine import Engine

    eng = Engine(vocab("qwen2"), EngineConfig())
    assert eng.family == "prefix-only" and eng.model_info()["fim"] is False and not eng.format.is_fim


@pytest.mark.parametrize("family", [QWEN, STARCODER, DEEPSEEK], ids=lambda f: f.name)
def test_a_fim_family_forced_on_a_vocabulary_without_its_tokens_is_a_clear_error(vocab, family):
    """Qwen2 base has no <|fim_prefix|> (Qwen2.5-Coder added them): forcing a FIM family on it is refused with a
    one-line error naming the missing tokens, instead of a prompt with `None` where the FIM tokens go."""
    rt = vocab("qwen2")
    with pytest.raises(ModelFormatError) as e:
        resolve_format(rt, family=family)
    msg = str(e.value)
    assert family.name in msg and family.pre[0] in msg and "\n" not in msg
