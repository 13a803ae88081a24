"""From a completion context to prompt tokens, within a token budget.

- The prefix is cut at a line boundary, by token count. Its first line is chosen on a grid (`anchor_step`), so while
  a person types (or moves down a few lines) the start of the prompt stays the same and llama.cpp's KV cache for it
  stays valid; the window only jumps when the budget overflows. The choice depends on the text and cursor alone, so the
  same request always gets the same prompt (CLI and editor agree).
- The suffix is cut at a line boundary after the cursor.
- Extra snippets (other files) fill their own budget, most relevant first, and sit furthest from the cursor in
  reverse order of relevance (the most relevant ends up nearest the current file).
"""

from __future__ import annotations

import collections
import os
import re
import threading
from dataclasses import dataclass

from .config import BudgetConfig
from .context import CompletionContext, comment_prefix
from .fim import Format, Vocab

ANCHOR_LINES = 32
_HEALABLE = re.compile(r"\s+|[ \t]?[A-Za-z0-9_]+")


@dataclass(frozen=True)
class Prompt:
    tokens: tuple[int, ...]
    prefix_text: str  # the part of the document's prefix that made it into the prompt
    suffix_text: str  # the part of the document's suffix that made it into the prompt
    prefix_start_line: int
    n_snippets: int = 0
    # Token healing: when the prompt ends with the prefix, its last token is left out and the completion must
    # start with this text (the model then chooses how to tokenize across the cursor, e.g. "\n    " + "return").
    heal: str = ""


class TokenCounter:
    """Token counts of single lines, memoised: budgeting a 2,000-line file costs one tokenize per new line.

    Bounded by the characters it keeps, not by entries: keyed on whole lines, an entry-bounded cache held 82 MB after
    400 keystrokes on one 409 KB minified line (issue 12). Lines longer than `max_line_chars` are counted each time
    and never kept (they change with every keystroke typed in them, so a kept count would never be asked for again).
    """

    def __init__(self, vocab: Vocab, max_chars: int = 4_000_000, max_line_chars: int = 4096):
        self._vocab = vocab
        self._max_chars = max_chars
        self._max_line_chars = max_line_chars
        self._counts: collections.OrderedDict[str, int] = collections.OrderedDict()
        self._chars = 0
        self._lock = threading.Lock()  # the engine's callers may build prompts from more than one thread

    def _count_uncached(self, line: str) -> int:
        return len(self._vocab.tokenize(line)) if line else 0

    def __call__(self, line: str) -> int:
        if len(line) > self._max_line_chars:
            return self._count_uncached(line)
        with self._lock:
            n = self._counts.get(line)
            if n is not None:
                self._counts.move_to_end(line)
                return n
        n = self._count_uncached(line)
        with self._lock:
            if line not in self._counts:
                self._counts[line] = n
                self._chars += len(line)
                while self._chars > self._max_chars:
                    old, _ = self._counts.popitem(last=False)
                    self._chars -= len(old)
        return n

    @property
    def kept_chars(self) -> int:
        return self._chars


def _cut_prefix(lines_before: list[str], line_prefix: str, budget: int, count: TokenCounter, first: int = 0) -> int:
    """Index of the first line to keep, counted in the whole prefix, of which `lines_before` are the last lines
    before the cursor line, from line `first` on."""
    used = count(line_prefix)
    n = len(lines_before)
    start = n
    for i in range(n - 1, -1, -1):
        c = count(lines_before[i] + "\n")
        if used + c > budget:
            break
        used += c
        start = i
    start += first
    if start == 0:
        return 0
    # Snap to a grid: the smallest multiple of the grid step ≥ start keeps the start stable across keystrokes.
    # The step grows with the budget (a few percent of the lines that fit), and snapping never drops more than
    # half of the lines that fit.
    step = anchor_step(budget)
    snapped = -(-start // step) * step
    total = first + n
    return snapped if total - snapped >= (total - start) / 2 else start


def _last_lines(text: str, n: int) -> tuple[list[str], int]:
    """`text.split("\\n")` without its first lines when it has more than `n` + 1: only the last `n` lines and the
    text after the last line break, and the index of the first of them. A prompt keeps fewer lines than its token
    budget (every line costs a token), and splitting a large document's whole prefix per request made tens of
    thousands of strings."""
    lines = text.count("\n")
    if lines <= n:
        return text.split("\n"), 0
    return text.rsplit("\n", n + 1)[1:], lines - n


def anchor_step(budget_tokens: int) -> int:
    return max(4, min(ANCHOR_LINES, budget_tokens // 64))


def _cut_suffix(line_suffix: str, lines_after: list[str], budget: int, count: TokenCounter) -> str:
    used = count(line_suffix)
    if used > budget:
        return ""
    kept = [line_suffix]
    for line in lines_after:
        c = count("\n" + line)
        if used + c > budget:
            break
        used += c
        kept.append(line)
    return "\n".join(kept)


def _repo_name(path: str | None) -> str:
    if not path:
        return "project"
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    return parent or "project"


class PromptBuilder:
    def __init__(self, vocab: Vocab, fmt: Format, budget: BudgetConfig, heal: bool = True):
        self.vocab = vocab
        self.heal = heal
        self.fmt = fmt
        self.budget = budget
        self.count = TokenCounter(vocab)
        self._newline_tokens: list[int] | None = None

    def _document_start(self) -> int:
        """The token a prefix-only model saw before a document in training: GPT-style vocabularies separate
        documents with <|endoftext|>; else the BOS token; else a line break."""
        for tok in (self.vocab.special_token("<|endoftext|>"), self.vocab.bos):
            if tok is not None:
                return tok
        return self._tok("\n")[0]

    def _tok(self, text: str) -> list[int]:
        return self.vocab.tokenize(text) if text else []

    def _suffix_tokens(self, text: str) -> list[int]:
        """CodeLlama's `encode_infilling`: the suffix without SentencePiece's dummy leading space."""
        if not self.fmt.family.infill_suffix or not text:
            return self._tok(text)
        toks = self.vocab.tokenize("\n" + text)
        acc = b""
        for k, t in enumerate(toks):
            acc += self.vocab.token_piece(t)
            if acc in (b"\n", b" \n"):
                return toks[k + 1 :]
            if len(acc) > 2:
                break
        return self._tok(text)

    def _snippet_tokens(self, ctx: CompletionContext) -> tuple[list[int], int]:
        fmt, budget = self.fmt, self.budget.extra_tokens
        chosen: list[list[int]] = []
        used = 0
        for snip in ctx.snippets:
            if used >= budget:
                break
            text = snip.text.rstrip("\n") + "\n"
            lines = text.split("\n")
            # Keep whole lines from the top of the snippet until the budget is spent.
            acc: list[str] = []
            cost = self.count(f"{comment_prefix(ctx.language)} {snip.path}\n") + 1  # the header: path and separators
            for line in lines:
                c = self.count(line + "\n")
                if used + cost + c > budget:
                    break
                acc.append(line)
                cost += c
            if not acc:
                continue
            body = "\n".join(acc).rstrip("\n") + "\n"
            if fmt.sep is not None:
                toks = [fmt.sep] + self._tok(f"{snip.path}\n{body}")
            elif fmt.family.path_as_comment or not fmt.is_fim or fmt.file_end is None:
                toks = self._tok(f"{comment_prefix(ctx.language)} {snip.path}\n{body}\n")
            else:
                toks = self._tok(f"{snip.path}\n{body}") + [fmt.file_end]
            chosen.append(toks)
            used += len(toks)
        out: list[int] = []
        for toks in reversed(chosen):  # most relevant nearest the cursor
            out.extend(toks)
        return out, len(chosen)

    def build(self, ctx: CompletionContext) -> Prompt:
        fmt = self.fmt
        before, first = _last_lines(ctx.prefix, self.budget.prefix_tokens + 1)
        lines_before, line_prefix = before[:-1], before[-1]
        start = _cut_prefix(lines_before, line_prefix, self.budget.prefix_tokens, self.count, first)
        prefix_text = "\n".join(lines_before[start - first :] + [line_prefix])
        suffix_text = ""
        if fmt.is_fim:
            # as many lines as the budget can hold (each costs a token), then the rest unsplit (never reached)
            after = ctx.suffix.split("\n", self.budget.suffix_tokens + 1)
            suffix_text = _cut_suffix(after[0], after[1:], self.budget.suffix_tokens, self.count)

        head: list[int] = [fmt.bos] if fmt.bos is not None else []
        snippets, n_snip = self._snippet_tokens(ctx) if ctx.snippets else ([], 0)
        path = ctx.path
        if fmt.rep is not None and (snippets or path):
            head += [fmt.rep] + self._tok(_repo_name(path) + "\n")
        head += snippets
        if path:
            if fmt.sep is not None:
                head += [fmt.sep] + self._tok(path + "\n")
            elif fmt.filename is not None:
                head += [fmt.filename] + self._tok(path + "\n")
            elif fmt.family.path_as_comment:
                head += self._tok(f"{comment_prefix(ctx.language)}{path}\n")

        pre_toks = self._tok(prefix_text)
        heal = ""
        ends_with_prefix = not fmt.is_fim or fmt.spm
        if ends_with_prefix and self.heal and len(pre_toks) > 1:
            piece = self.vocab.token_piece(pre_toks[-1])
            try:
                text = piece.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            # Only where a token boundary at the cursor is unnatural: after indentation (the model would write
            # "\n    return" as one or two tokens) and inside a word being typed ("retu|").
            if text and len(piece) <= 32 and prefix_text.endswith(text) and _HEALABLE.fullmatch(text):
                heal = text
                pre_toks = pre_toks[:-1]
        if not fmt.is_fim:
            tokens = head + pre_toks
            if not tokens:  # the cursor at the very start of a file, and no BOS: begin where a document begins
                tokens = [self._document_start()]
        else:
            suf_toks = self._suffix_tokens(suffix_text)
            name = fmt.family.name
            if name == "codestral":
                tokens = head + [fmt.suf] + suf_toks + [fmt.pre] + pre_toks
            elif fmt.spm:  # StarCoder / CodeLlama suffix-first: ⟨PRE⟩⟨SUF⟩S⟨MID⟩P
                tokens = head + [fmt.pre, fmt.suf] + suf_toks + [fmt.mid] + pre_toks
            else:
                tokens = head + [fmt.pre] + pre_toks + [fmt.suf] + suf_toks + [fmt.mid]
        return Prompt(
            tokens=tuple(tokens),
            prefix_text=prefix_text,
            suffix_text=suffix_text,
            prefix_start_line=start,
            n_snippets=n_snip,
            heal=heal,
        )
