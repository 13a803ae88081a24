"""Post-processing: an ordered list of small named filters, each `(context, text) -> text`.

Each filter does one thing, never raises, and returns "" to drop a completion. The order matters and is pinned by
golden cases in tests/golden/ (a document with a cursor marker, a raw model output, the expected result).
"""

from __future__ import annotations

import itertools
import re
from typing import Callable

from .context import CompletionContext, is_closing_line

Filter = Callable[[CompletionContext, str], str]

_OPEN = {"(": ")", "[": "]", "{": "}"}
_CLOSE = {v: k for k, v in _OPEN.items()}
_QUOTES = "\"'`"


def remove_repetitive_lines(ctx: CompletionContext, text: str) -> str:
    """Cut a tail of repeated lines (a model stuck in a loop), keeping the first occurrence.

    Also cuts a last line that ends by repeating a short pattern many times (`aaaaaaaa…`, `foo(foo(foo(…`).
    """
    lines = text.split("\n")
    # Groups of 1–3 lines repeated at the end at least twice (three times for single lines).
    for size in (1, 2, 3):
        min_repeats = 3 if size == 1 else 2
        while len(lines) >= size * min_repeats:
            group = [ln.strip() for ln in lines[-size:]]
            if not any(group):
                break
            reps = 1
            while len(lines) >= size * (reps + 1) and [
                ln.strip() for ln in lines[-size * (reps + 1) : len(lines) - size * reps]
            ] == group:
                reps += 1
            if reps < min_repeats:
                break
            lines = lines[: len(lines) - size * (reps - 1)]
            break
    last = lines[-1] if lines else ""
    m = re.search(r"(.{1,20}?)\1{7,}$", last)
    if m and len(m.group(0)) >= 16:
        lines[-1] = last[: m.start()] + m.group(1)
    return "\n".join(lines)


def trim_space(ctx: CompletionContext, text: str) -> str:
    """Strip trailing whitespace on every line and trailing blank lines; no double space after the cursor."""
    lines = [ln.rstrip() for ln in text.split("\n")]
    while len(lines) > 1 and not lines[-1]:
        lines.pop()
    out = "\n".join(lines)
    lp = ctx.line_prefix
    if lp.strip() and lp[-1:] in (" ", "\t") and out[:1] in (" ", "\t"):
        out = out.lstrip(" \t")
    if ctx.line_suffix[:1] in (" ", "\t") and "\n" not in out:
        out = out.rstrip(" \t")
    return out


def normalize_indentation(ctx: CompletionContext, text: str) -> str:
    """Undo indentation the model repeated after an already-indented cursor, and follow the document's tabs/spaces."""
    lp = ctx.line_prefix
    lines = text.split("\n")
    if lp and not lp.strip() and lines[0][:1] in (" ", "\t"):
        lead = lines[0][: len(lines[0]) - len(lines[0].lstrip(" \t"))]
        if lead.expandtabs(4) == lp.expandtabs(4):
            # The model wrote the line as if from column 0: every line carries the cursor's indentation once too much
            # only for the first one (the others are absolute), so drop it from the first line alone.
            lines[0] = lines[0][len(lead) :]
    uses_tabs = _document_uses_tabs(ctx)
    if uses_tabs is not None:
        for i in range(len(lines)):
            line = lines[i]
            lead = line[: len(line) - len(line.lstrip(" \t"))]
            if not lead:
                continue
            if uses_tabs and " " in lead:
                width = len(lead.expandtabs(4))
                lines[i] = "\t" * (width // 4) + " " * (width % 4) + line[len(lead) :]
            elif not uses_tabs and "\t" in lead:
                lines[i] = lead.expandtabs(4) + line[len(lead) :]
    return "\n".join(lines)


def _document_uses_tabs(ctx: CompletionContext) -> bool | None:
    tabs = spaces = 0
    for line in ctx.prefix[-4000:].split("\n"):
        if line.startswith("\t"):
            tabs += 1
        elif line.startswith("  "):
            spaces += 1
    if tabs == spaces == 0:
        return None
    return tabs > spaces


def remove_duplicate_suffix_lines(ctx: CompletionContext, text: str) -> str:
    """Drop trailing completion lines that repeat the lines right after the cursor line."""
    lines = text.split("\n")
    if len(lines) < 2:
        return text
    following = list(itertools.islice((ln for ln in ctx.following_lines() if ln.strip()), len(lines) - 1))
    if not following:
        return text
    # The longest tail of the completion that equals the head of the following (non-blank) lines. A line that only
    # closes (`}`, `end`) equals one there only at the same indentation: the `}` of a block the completion opened
    # is not the `}` after the cursor (the tail never holds the first line, so its indentation is the document's).
    for k in range(min(len(lines) - 1, len(following)), 0, -1):
        if [_line_key(ln) for ln in lines[-k:]] == [_line_key(ln) for ln in following[:k]]:
            return "\n".join(lines[:-k]).rstrip()
    return text


def _line_key(line: str) -> tuple[str, int | None]:
    s = line.strip()
    return s, (len(line[: len(line) - len(line.lstrip(" \t"))].expandtabs(4)) if is_closing_line(s) else None)


def balance_brackets(ctx: CompletionContext, text: str) -> str:
    """On a line with code after the cursor, drop closing brackets/quotes the rest of the line already has."""
    suffix = ctx.line_suffix
    if "\n" in text or not suffix.strip():
        return text
    out = text.rstrip()
    while out:
        ch = out[-1]
        line = ctx.line_prefix + out + suffix
        if ch in _CLOSE and suffix.lstrip().startswith(ch):
            if line.count(ch) > line.count(_CLOSE[ch]):
                out = out[:-1].rstrip() if out[:-1].endswith(" ") else out[:-1]
                continue
        elif ch in _QUOTES and suffix.startswith(ch) and line.count(ch) % 2 == 1:
            out = out[:-1]
            continue
        elif ch in ";," and suffix.strip().startswith(ch) and len(suffix.strip()) == 1:
            out = out[:-1]
            continue
        break
    return out


def drop_duplicated(ctx: CompletionContext, text: str) -> str:
    """A completion that only repeats the rest of the line or the next line adds nothing."""
    s = text.strip()
    if not s:
        return text
    if s == ctx.line_suffix.strip():
        return ""
    nxt = next((ln for ln in ctx.following_lines() if ln.strip()), None)
    if nxt is not None and s == nxt.strip() and not ctx.line_prefix.strip():
        return ""
    return text


def drop_blank(ctx: CompletionContext, text: str) -> str:
    return "" if not text.strip() else text


FILTERS: tuple[Filter, ...] = (
    remove_repetitive_lines,
    trim_space,
    normalize_indentation,
    remove_duplicate_suffix_lines,
    balance_brackets,
    drop_duplicated,
    drop_blank,
)


def postprocess(ctx: CompletionContext, text: str, filters: tuple[Filter, ...] = FILTERS) -> str:
    for f in filters:
        text = f(ctx, text)
        if not text:
            return ""
    return text
