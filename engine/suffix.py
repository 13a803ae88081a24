"""The text after the hole as evidence, for models that cannot read it (no FIM tokens: the prompt is the prefix).

A candidate is judged by how likely the model then finds what already follows the cursor: the candidate and the
first tokens after the hole are tokenized together, as the filled document will hold them, and the whole is scored as
a continuation of the prompt (backend `score`, one batch for all candidates). Tokenizing them together matters: a
line completion usually ends mid-line (`foo(a` before `, b)`) or just before the line break, and BPE merges across
that boundary (`a` + `,` or `)` + `\\n`) — tokenized apart, every candidate would be scored through a token boundary
the model never saw. A token that straddles the boundary counts as suffix: it carries text after the hole.

This module is the pure part (which tokens, where the boundary is, what the sums are); Engine.score_suffix runs it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .fim import Vocab
from .types import SuffixScore

# Tokens after the hole that are scored. Chosen on HumanEval (bench/results/suffix-ranking.md): the rest of the line
# and a line or two after it carry most of the evidence; more costs batch time for little.
SUFFIX_WINDOW_TOKENS = 32
# Characters of the suffix tokenized to find the window (generous: a run of indentation can be one token of many
# characters); the last token is dropped where this cut the text, as it may be a piece of a longer token.
_CHARS_PER_TOKEN = 16


@dataclass(frozen=True)
class Continuation:
    """What is scored for one candidate: `tokens` follow the prompt; the first `n_candidate` carry only the healed
    text and the candidate, the rest carry text after the hole."""

    tokens: tuple[int, ...]
    n_candidate: int


def _pieces(vocab: Vocab, tokens: Sequence[int]) -> bytes:
    return b"".join(vocab.token_piece(t) for t in tokens)


def tokenize_exact(vocab: Vocab, text: str) -> list[int] | None:
    """Tokens whose pieces are exactly `text`'s bytes, or None. SentencePiece vocabularies put a dummy space before
    the text; then the text is tokenized after a line break and the tokens of that line break are dropped (as
    prompt.PromptBuilder does for CodeLlama's suffix)."""
    if not text:
        return []
    want = text.encode("utf-8")
    toks = vocab.tokenize(text)
    if _pieces(vocab, toks) == want:
        return toks
    toks = vocab.tokenize("\n" + text)
    acc = b""
    for k, t in enumerate(toks):
        acc += vocab.token_piece(t)
        if acc in (b"\n", b" \n"):
            rest = toks[k + 1 :]
            return rest if _pieces(vocab, rest) == want else None
        if len(acc) > 2:
            break
    return None


def continuation(vocab: Vocab, heal: str, text: str, suffix: str,
                 window: int = SUFFIX_WINDOW_TOKENS) -> Continuation | None:
    """The tokens to score for candidate `text` at a hole followed by `suffix`: `heal` (what the prompt left out at
    its end, token healing) + `text` + the start of `suffix`, tokenized together, cut `window` tokens after the last
    token that lies within heal + text. None when the vocabulary cannot reproduce the text exactly."""
    head = heal + text
    cut = window * _CHARS_PER_TOKEN
    tail = suffix[:cut]
    toks = tokenize_exact(vocab, head + tail)
    if toks is None:
        return None
    boundary = len(head.encode("utf-8"))
    n_candidate, end = 0, 0
    for t in toks:
        end += len(vocab.token_piece(t))
        if end > boundary:
            break
        n_candidate += 1
    keep = n_candidate + window
    if len(suffix) > cut and len(toks) <= keep:
        keep = len(toks) - 1  # the cut text's last token may be part of a longer one
    toks = toks[: max(n_candidate, keep)]
    return Continuation(tuple(toks), n_candidate)


def suffix_score(cont: Continuation, logprobs: Sequence[float]) -> SuffixScore:
    """The score of a continuation from its tokens' log-probabilities (backend `score`)."""
    lps = [float(x) for x in logprobs]
    head, tail = lps[: cont.n_candidate], lps[cont.n_candidate :]
    return SuffixScore(suffix_logprob=sum(tail), suffix_tokens=len(tail), candidate_logprob=sum(head),
                       candidate_tokens=len(head), token_logprobs=tuple(round(x, 4) for x in tail))
