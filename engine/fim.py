"""Fill-in-the-middle formats of the model families, detected from the GGUF and assembled at token level.

llama-cpp-python's own FIM path (`create_completion(suffix=…)`) uses token id 0 for the FIM tokens, so prompts are
built here from token ids: special tokens are looked up by id (from `tokenizer.ggml.fim_*` keys, which llama.cpp also
fills in from known token texts), and user text is tokenized with special-token parsing off, so a file that contains
the text `<fim_prefix>` cannot inject a control token.

Formats (⟨X⟩ is a special token):
- qwen (Qwen2.5-Coder): [⟨repo_name⟩repo\n] [⟨file_sep⟩path\ncode\n]… [⟨file_sep⟩path\n] ⟨fim_prefix⟩P⟨fim_suffix⟩S⟨fim_middle⟩
- starcoder (StarCoder, StarCoder2, stable-code, SantaCoder): StarCoder2 has ⟨repo_name⟩/⟨file_sep⟩ as above, StarCoder
  has ⟨filename⟩path\n; PSM ⟨fim_prefix⟩P⟨fim_suffix⟩S⟨fim_middle⟩ or SPM ⟨fim_prefix⟩⟨fim_suffix⟩S⟨fim_middle⟩P
- deepseek (DeepSeek-Coder): ⟨bos⟩ [#path\ncode\n]… #path\n ⟨fim▁begin⟩P⟨fim▁hole⟩S⟨fim▁end⟩
- codellama: ⟨bos⟩⟨PRE⟩ P ⟨SUF⟩S ⟨MID⟩ (suffix without SentencePiece's leading space, as Meta's `encode_infilling`),
  SPM ⟨bos⟩⟨PRE⟩⟨SUF⟩S⟨MID⟩ P
- codegemma: ⟨bos⟩ [path\ncode⟨file_separator⟩]… ⟨|fim_prefix|⟩P⟨|fim_suffix|⟩S⟨|fim_middle|⟩
- codestral: ⟨bos⟩[SUFFIX]S[PREFIX]P (suffix first by design; the middle follows the prefix)
- prefix-only (models without FIM tokens, e.g. the embedded SmolLM2): [⟨bos⟩] [snippets as comments] P
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence

from .errors import ModelFormatError


class Vocab(Protocol):
    """What prompt building needs from a model (implemented by LlamaRuntime, vocab-only loads included)."""

    def tokenize(self, text: str, *, add_special: bool = False, parse_special: bool = False) -> list[int]: ...
    def token_text(self, token: int) -> str: ...
    def token_piece(self, token: int, special: bool = False) -> bytes: ...
    def special_token(self, text: str) -> int | None: ...
    def fim_ids(self) -> dict[str, int]: ...
    def metadata(self) -> dict[str, str]: ...

    @property
    def bos(self) -> int | None: ...

    @property
    def add_bos(self) -> bool: ...


@dataclass(frozen=True)
class Family:
    name: str
    pre: tuple[str, ...] = ()  # accepted texts of each FIM token, first is canonical
    suf: tuple[str, ...] = ()
    mid: tuple[str, ...] = ()
    rep: tuple[str, ...] = ()  # repository name token
    sep: tuple[str, ...] = ()  # file separator token (path follows it)
    filename: tuple[str, ...] = ()  # StarCoder 1's ⟨filename⟩ (path of the current file only)
    file_end: tuple[str, ...] = ()  # CodeGemma's ⟨file_separator⟩ after each extra file
    stops: tuple[str, ...] = ()  # special tokens that end a completion besides the vocabulary's end-of-generation
    spm: bool = False  # trained with suffix-first order too
    spm_only: bool = False
    path_as_comment: bool = False  # DeepSeek-Coder: files introduced by a `#path` comment line
    infill_suffix: bool = False  # CodeLlama: strip SentencePiece's dummy leading space from the suffix
    fim: bool = True


QWEN = Family(
    "qwen",
    pre=("<|fim_prefix|>",), suf=("<|fim_suffix|>",), mid=("<|fim_middle|>",),
    rep=("<|repo_name|>",), sep=("<|file_sep|>",),
    stops=("<|endoftext|>", "<|fim_pad|>", "<|file_sep|>", "<|repo_name|>", "<|im_end|>", "<|fim_prefix|>",
           "<|fim_suffix|>", "<|fim_middle|>"),
)
CODEGEMMA = Family(
    "codegemma",
    pre=("<|fim_prefix|>",), suf=("<|fim_suffix|>",), mid=("<|fim_middle|>",),
    file_end=("<|file_separator|>",),
    stops=("<|file_separator|>", "<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>", "<eos>", "<end_of_turn>"),
)
STARCODER = Family(
    "starcoder",
    pre=("<fim_prefix>",), suf=("<fim_suffix>",), mid=("<fim_middle>",),
    rep=("<repo_name>", "<reponame>"), sep=("<file_sep>",), filename=("<filename>",),
    stops=("<|endoftext|>", "<file_sep>", "<fim_prefix>", "<fim_suffix>", "<fim_middle>", "<fim_pad>", "<filename>",
           "<repo_name>", "<reponame>"),
    spm=True,
)
DEEPSEEK = Family(
    "deepseek",
    pre=("<｜fim▁begin｜>",), suf=("<｜fim▁hole｜>",), mid=("<｜fim▁end｜>",),
    stops=("<｜end▁of▁sentence｜>", "<|EOT|>", "<｜fim▁begin｜>", "<｜fim▁hole｜>", "<｜fim▁end｜>"),
    path_as_comment=True,
)
CODELLAMA = Family(
    "codellama",
    pre=("▁<PRE>", "<PRE>"), suf=("▁<SUF>", "<SUF>"), mid=("▁<MID>", "<MID>"),
    stops=("▁<EOT>", "<EOT>", "</s>"),
    spm=True, infill_suffix=True,
)
CODESTRAL = Family(
    "codestral",
    pre=("[PREFIX]",), suf=("[SUFFIX]",), mid=(),
    stops=("</s>", "[PREFIX]", "[SUFFIX]"),
    spm=True, spm_only=True,
)
PREFIX_ONLY = Family("prefix-only", fim=False)

FAMILIES = (QWEN, CODEGEMMA, STARCODER, DEEPSEEK, CODELLAMA, CODESTRAL)


@dataclass(frozen=True)
class Format:
    """A family resolved against one vocabulary: token ids, ready to assemble prompts."""

    family: Family
    pre: int | None = None
    suf: int | None = None
    mid: int | None = None
    rep: int | None = None
    sep: int | None = None
    filename: int | None = None
    file_end: int | None = None
    bos: int | None = None  # prepended when the vocabulary asks for it
    stop_ids: frozenset[int] = field(default_factory=frozenset)
    spm: bool = False

    @property
    def name(self) -> str:
        return self.family.name

    @property
    def is_fim(self) -> bool:
        return self.family.fim


def _find(vocab: Vocab, texts: Sequence[str], known: int | None = None) -> int | None:
    if known is not None and texts and vocab.token_text(known) in texts:
        return known
    for text in texts:
        tid = vocab.special_token(text)
        if tid is not None:
            return tid
    return None


def detect_family(vocab: Vocab) -> Family:
    """The family whose FIM tokens this vocabulary has (ids from GGUF keys first, then known texts)."""
    ids = vocab.fim_ids()
    meta = vocab.metadata()
    arch = meta.get("general.architecture", "")
    pre_text = vocab.token_text(ids["pre"]) if "pre" in ids and "suf" in ids else None
    candidates = []
    for fam in FAMILIES:
        if pre_text is not None and pre_text not in fam.pre:
            continue
        if _find(vocab, fam.pre) is None or _find(vocab, fam.suf) is None:
            continue
        if fam.mid and _find(vocab, fam.mid) is None:
            continue
        candidates.append(fam)
    if not candidates:
        return PREFIX_ONLY
    if len(candidates) > 1 and QWEN in candidates and CODEGEMMA in candidates:
        # Same FIM texts: Gemma vocabularies have ⟨|file_separator|⟩, Qwen's have ⟨|file_sep|⟩.
        if arch.startswith("gemma") or _find(vocab, CODEGEMMA.file_end) is not None:
            return CODEGEMMA
        return QWEN
    return candidates[0]


def resolve_format(vocab: Vocab, family: Family | None = None, spm: bool | None = None) -> Format:
    family = family or detect_family(vocab)
    bos = vocab.bos if vocab.add_bos else None
    if not family.fim:
        return Format(family=family, bos=bos)
    ids = vocab.fim_ids()
    pre = _find(vocab, family.pre, ids.get("pre"))
    suf = _find(vocab, family.suf, ids.get("suf"))
    mid = _find(vocab, family.mid, ids.get("mid")) if family.mid else None
    # A family named by the caller (not detected) may lack its tokens in this vocabulary: refuse it here, or the prompt
    # would carry None where the FIM tokens go and fail far from the cause (ctypes, at the first decode).
    needed = ((family.pre, pre), (family.suf, suf), (family.mid, mid))
    missing = [texts[0] for texts, tid in needed if texts and tid is None]
    if missing:
        raise ModelFormatError(f"the vocabulary has no {family.name} FIM tokens ({', '.join(missing)} missing); "
                               "without them it gets prefix-only prompts")
    stop_ids = frozenset(t for t in (vocab.special_token(s) for s in family.stops) if t is not None)
    use_spm = family.spm_only or (bool(spm) and family.spm)
    return Format(
        family=family,
        pre=pre,
        suf=suf,
        mid=mid,
        rep=_find(vocab, family.rep) if family.rep else None,
        sep=_find(vocab, family.sep) if family.sep else None,
        filename=_find(vocab, family.filename) if family.filename else None,
        file_end=_find(vocab, family.file_end) if family.file_end else None,
        bos=bos,
        stop_ids=stop_ids,
        spm=use_spm,
    )
