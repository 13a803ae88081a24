"""Stop rules: when to stop decoding, applied to the text generated so far after every token.

The same rules run on a finished raw output (`apply_stop_rules`), which is how golden cases pin them.

- line mode: stop at the end of the first line that has content ("newline").
- block mode:
  - stop before a line indented less than the block the completion started in ("dedent"),
  - stop before a line that repeats the next non-empty line after the cursor ("suffix"); a line that only closes
    (`}`, `});`, `end`) repeats it only at the same indentation: the `}` of an inner block is not the suffix's,
  - at the top level (indent 0), stop at the first blank line after content ("blank") where the completion has
    closed the braces it opened: a blank line inside a top-level `function f() {` / `fn f() {` body is not the
    end of the definition,
  - stop after `max_lines` lines ("max_lines").
Token limits, time budgets, end-of-generation tokens and cancellation are the decoder's.
"""

from __future__ import annotations

import re

from .context import CompletionContext, is_closing_line, opens_block
from .names import needed
from .types import StopReason


def _indent_width(line: str) -> int:
    return len(line[: len(line) - len(line.lstrip(" \t"))].expandtabs(4))


_STRING = re.compile(r""""(?:\\.|[^"\\])*"|'(?:\\.|[^'\\])*'""")


def _depth_change(line: str) -> int:
    """Braces a line opens minus those it closes, outside simple string literals (`"{"` is no block)."""
    code = _STRING.sub("", line)
    return code.count("{") - code.count("}")


def _keeps_indentation(ctx: CompletionContext) -> bool:
    """The cursor sits right after the indentation (spaces or tabs, nothing else on the line): the editor chose that
    indentation, so the completion must not start with more — unless the line above opens a block that the cursor's
    indentation does not enter yet (an editor without smart indent)."""
    lp = ctx.line_prefix
    if not lp or lp.strip():
        return False
    above = next((ln for ln in ctx.preceding_lines() if ln.strip()), None)
    if above is not None and opens_block(above) and _indent_width(above) >= _indent_width(lp):
        return False
    return True


class StopRules:
    def __init__(self, ctx: CompletionContext, max_lines: int = 16):
        self.ctx = ctx
        self.mode = ctx.mode
        self.max_lines = max_lines
        self._line_prefix = ctx.line_prefix
        self._cursor_line_blank = not self._line_prefix.strip()
        nxt = next((ln for ln in ctx.following_lines() if ln.strip()), None)
        self.next_line = nxt.strip() if nxt is not None else None
        self._next_indent = _indent_width(nxt) if nxt is not None else None
        self.no_leading_space = _keeps_indentation(ctx)
        self._needed: tuple[str, ...] | None = None

    @property
    def needed_names(self) -> tuple[str, ...]:
        """Names the code after the cursor needs the hole to bind (names.needed; line mode only), found once, when a
        finished line is first judged."""
        if self._needed is None:
            self._needed = needed(self.ctx) if self.mode == "line" else ()
        return self._needed

    def check(self, text: str, final: bool = False) -> tuple[int, StopReason] | None:
        """(cut position, reason) if `text` must end at that position, else None.

        `final`: the text is complete (the model stopped), so its last line is judged too.
        """
        if self.mode == "line":
            nl = text.find("\n")
            while nl >= 0:
                if text[:nl].strip() or not self._cursor_line_blank or self._line_prefix:
                    return nl, StopReason.NEWLINE
                # a blank cursor line: the model may start on it with a newline only when the line is empty
                nl = text.find("\n", nl + 1)
            return None
        return self._check_block(text, final)

    def _check_block(self, text: str, final: bool) -> tuple[int, StopReason] | None:
        lines = text.split("\n")
        complete = lines if final else lines[:-1]
        # Cursor after code: the first line continues it, and the block is judged from the following lines.
        start_idx = 0 if self._cursor_line_blank else 1
        # An indented blank cursor line fixes the block's indentation; at column 0 the first line of content does.
        block_indent: int | None = _indent_width(self._line_prefix) if self._cursor_line_blank and self._line_prefix else None
        seen_content = False
        depth = 0  # braces opened since the start of the cursor line
        offset = 0
        for i, line in enumerate(complete):
            cut = max(offset - 1, 0)  # just before the newline that starts this line
            offset += len(line) + 1
            if i >= self.max_lines:
                return cut, StopReason.MAX_LINES
            full = self._line_prefix + line if i == 0 else line
            stripped = full.strip()
            if not stripped:
                if seen_content and block_indent == 0 and depth <= 0:
                    return cut, StopReason.BLANK
                continue
            depth += _depth_change(stripped)
            if i < start_idx:
                seen_content = True
                continue
            width = _indent_width(full)
            if stripped == self.next_line and (not is_closing_line(stripped) or width == self._next_indent):
                return cut, StopReason.SUFFIX
            if block_indent is None:
                block_indent = width
            elif width < block_indent:
                return cut, StopReason.DEDENT
            seen_content = True
        return None


def apply_stop_rules(ctx: CompletionContext, raw: str, max_lines: int = 16) -> tuple[str, StopReason | None]:
    """Cut a finished raw output the way the decoder would have stopped."""
    rules = StopRules(ctx, max_lines)
    hit = rules.check(raw, final=True)
    if hit is None:
        return raw, None
    return raw[: hit[0]], hit[1]
