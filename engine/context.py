"""From a document and a cursor to an immutable completion context.

This is the first step of the pipeline (context → prompt → decode → post-process): it knows nothing about tokens or
models. Positions are 0-based and count Python `str` characters (code points); adapters convert (the CLI from 1-based
compiler-style positions, the language server from UTF-16 code units).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from .errors import BinaryFileError, DocumentTooLargeError, EmptyFileError, InputFileError, PositionError

# Documents larger than this are refused: a completion engine has no business tokenizing a 50 MB log file.
MAX_DOCUMENT_CHARS = 8_000_000

LANGUAGES = {
    ".py": "python", ".pyi": "python", ".js": "javascript", ".mjs": "javascript", ".cjs": "javascript",
    ".jsx": "javascriptreact", ".ts": "typescript", ".mts": "typescript", ".cts": "typescript",
    ".tsx": "typescriptreact", ".go": "go", ".rs": "rust", ".c": "c", ".h": "c", ".cc": "cpp", ".cpp": "cpp", ".cxx": "cpp", ".hpp": "cpp", ".hh": "cpp", ".java": "java",
    ".kt": "kotlin", ".swift": "swift", ".rb": "ruby", ".php": "php", ".cs": "csharp", ".scala": "scala",
    ".lua": "lua", ".sh": "shellscript", ".bash": "shellscript", ".zsh": "shellscript", ".sql": "sql",
    ".html": "html", ".css": "css", ".scss": "scss", ".json": "json", ".yaml": "yaml", ".yml": "yaml",
    ".toml": "toml", ".md": "markdown", ".r": "r", ".jl": "julia", ".hs": "haskell", ".ml": "ocaml",
    ".ex": "elixir", ".exs": "elixir", ".erl": "erlang", ".dart": "dart", ".vim": "vim", ".zig": "zig",
    ".pl": "perl", ".pm": "perl", ".mk": "makefile", ".cmake": "cmake",
}

# Files known by their whole name, not an extension (compared in lower case).
LANGUAGE_BY_NAME = {
    "makefile": "makefile", "gnumakefile": "makefile", "dockerfile": "dockerfile", "cmakelists.txt": "cmake",
    "rakefile": "ruby", "gemfile": "ruby", "justfile": "makefile",
}

LINE_COMMENT = {
    "python": "#", "shellscript": "#", "ruby": "#", "yaml": "#", "toml": "#", "r": "#", "julia": "#",
    "elixir": "#", "perl": "#", "makefile": "#", "dockerfile": "#", "cmake": "#", "lua": "--", "sql": "--", "haskell": "--", "vim": '"', "erlang": "%",
}

# Line endings that open a block whose body is expected on the following lines, before a trailing comment
# (`# …`, `// …`, `/* … */`).
_BLOCK_OPENER = re.compile(r"(:|\{|\(|\[|=>|->|\bdo|\bthen|\bbegin|\belse)\s*(#.*|//.*|/\*.*\*/)?$")


def opens_block(line: str) -> bool:
    """Whether a line ends by opening a block (`{`, `:`, `(`, `=>`, `do`, …), a trailing comment after it or not."""
    return bool(_BLOCK_OPENER.search(line.rstrip()))


def language_for(path: str | None) -> str | None:
    if not path:
        return None
    name = os.path.basename(path).lower()
    return LANGUAGE_BY_NAME.get(name) or LANGUAGES.get(os.path.splitext(name)[1])


def comment_prefix(language: str | None) -> str:
    return LINE_COMMENT.get(language or "", "//")


# Python's docstrings read as comments; every language without a line comment of its own in LINE_COMMENT has C's
# (`//`, `/* … */`, and ` * ` continuation lines inside a block comment). `*p = 0;` and `*elt = x;` are code.
_COMMENT_CONTINUATION = re.compile(r"^\*(\s|/|$)")


def is_comment_line(stripped: str, language: str | None) -> bool:
    """Whether a line (without its indentation) is a comment in `language` (unknown: C's syntax, and Python's `#`)."""
    marker = LINE_COMMENT.get(language or "")
    if marker is not None:
        return stripped.startswith(marker) or (language == "python" and stripped.startswith(('"""', "'''")))
    if language is None and stripped.startswith("#"):
        return True
    return stripped.startswith(("//", "/*")) or bool(_COMMENT_CONTINUATION.match(stripped))


# A line that only closes what is open: `}`, `});`, `]`, `end`. It says little by itself: the same `}` closes every
# block, so where it stands (its indentation) is what tells the suffix's `}` from one that closes an inner block.
_CLOSING_LINE = re.compile(r"^(?:[)\]}]+[;,]?|end)$")


def is_closing_line(stripped: str) -> bool:
    return bool(_CLOSING_LINE.match(stripped))


def comment_lines(lines: list[str], language: str | None) -> list[bool]:
    """For each line, whether it is a comment: `is_comment_line`, or, in languages with C's comments, a line that
    starts inside a `/* … */` (GNU style continues one without a leading `*`)."""
    c_comments = LINE_COMMENT.get(language or "") is None and language is not None
    out, inside = [], False
    for line in lines:
        s = line.strip()
        out.append(inside or is_comment_line(s, language))
        if c_comments:
            # where the line leaves us: after its last `/*` or `*/` (strings holding them are rare enough)
            opened, closed = line.rfind("/*"), line.rfind("*/")
            if opened > closed:
                inside = True
            elif closed >= 0:
                inside = False
    return out


@dataclass(frozen=True)
class Position:
    line: int
    character: int


@dataclass(frozen=True)
class Range:
    start: Position
    end: Position


@dataclass(frozen=True)
class Snippet:
    """Extra context from another file (most relevant first), e.g. other documents open in the editor."""

    path: str
    text: str


@dataclass(frozen=True)
class CompletionContext:
    """Everything the prompt builder and the post-processor need to know about the cursor."""

    prefix: str  # the whole document before the cursor
    suffix: str  # the whole document after the cursor
    line: int
    character: int
    path: str | None = None
    language: str | None = None
    snippets: tuple[Snippet, ...] = ()
    mode: str = "line"  # "line": one line; "block": several lines of the cursor's block

    @property
    def line_prefix(self) -> str:
        """Text on the cursor line before the cursor."""
        return self.prefix[self.prefix.rfind("\n") + 1 :]

    @property
    def line_suffix(self) -> str:
        """Text on the cursor line after the cursor."""
        end = self.suffix.find("\n")
        return self.suffix if end < 0 else self.suffix[:end]

    def following_lines(self) -> Iterator[str]:
        """Lines after the cursor line, nearest first, found as they are read: callers want the next few, and
        splitting a large document's whole suffix per request made tens of thousands of strings."""
        s = self.suffix
        i = s.find("\n")
        while i >= 0:
            j = s.find("\n", i + 1)
            yield s[i + 1 :] if j < 0 else s[i + 1 : j]
            i = j

    def preceding_lines(self) -> Iterator[str]:
        """Lines before the cursor line, nearest first (see `following_lines`)."""
        p = self.prefix
        end = p.rfind("\n")
        while end >= 0:
            start = p.rfind("\n", 0, end)
            yield p[start + 1 : end]
            end = start

    @property
    def indent(self) -> str:
        """Indentation of the cursor line (or of the line being started)."""
        lp = self.line_prefix
        return lp[: len(lp) - len(lp.lstrip(" \t"))]

    @property
    def block_indent(self) -> int:
        """Width of the indentation a completed line may not go below (the cursor's block)."""
        lp = self.line_prefix
        if lp.strip():
            base = _width(self.indent)
            return base + (4 if _BLOCK_OPENER.search(lp.rstrip()) and not self.line_suffix.strip() else 0)
        return _width(lp)


def _width(indent: str) -> int:
    return len(indent.expandtabs(4))


def decide_mode(prefix: str, suffix: str) -> str:
    """Single line when the cursor has code after it or sits mid-expression; a block on an empty line or after an opener.

    - `x = foo(|)`, `return |`, `for i in |` → "line"
    - `def f(x):|` (nothing after the cursor, line ends with an opener) → "block"
    - an empty (or all-whitespace) cursor line → "block"
    """
    line_prefix = prefix[prefix.rfind("\n") + 1 :]
    end = suffix.find("\n")
    line_suffix = suffix if end < 0 else suffix[:end]
    if line_suffix.strip():
        return "line"
    if not line_prefix.strip():
        return "block"
    if _BLOCK_OPENER.search(line_prefix.rstrip()):
        return "block"
    return "line"


def offset_of(text: str, line: int, character: int) -> int:
    """Offset of a 0-based (line, character) in `text`, or PositionError."""
    if line < 0 or character < 0:
        raise PositionError(f"position {line + 1}:{character + 1} is outside the document")
    start = 0
    for _ in range(line):
        nl = text.find("\n", start)
        if nl < 0:
            n_lines = text.count("\n") + 1
            raise PositionError(f"line {line + 1} is outside the document ({n_lines} lines)")
        start = nl + 1
    nl = text.find("\n", start)
    line_text = text[start:] if nl < 0 else text[start:nl]
    if line_text.endswith("\r"):
        line_text = line_text[:-1]
    if character > len(line_text):
        raise PositionError(
            f"column {character + 1} is outside line {line + 1} (it has {len(line_text)} characters)"
        )
    return start + character


def build_context(
    text: str,
    line: int,
    character: int,
    *,
    path: str | None = None,
    language: str | None = None,
    snippets: tuple[Snippet, ...] | list[Snippet] = (),
    mode: str = "auto",
) -> CompletionContext:
    """Validate the cursor and split the document around it."""
    if len(text) > MAX_DOCUMENT_CHARS:
        raise DocumentTooLargeError(f"document is too large to complete ({len(text):,} characters)")
    if "\x00" in text:
        raise BinaryFileError("document contains NUL bytes: it looks like a binary file")
    offset = offset_of(text, line, character)
    prefix, suffix = text[:offset], text[offset:]
    if mode == "auto":
        mode = decide_mode(prefix, suffix)
    elif mode not in ("line", "block"):
        raise ValueError(f"unknown completion mode {mode!r}")
    return CompletionContext(
        prefix=prefix,
        suffix=suffix,
        line=line,
        character=character,
        path=path,
        language=language or language_for(path),
        snippets=tuple(snippets),
        mode=mode,
    )


def read_source_file(path: str) -> str:
    """Read a file to complete: UTF-8 text, not binary, not empty; errors are one-line CodefillErrors."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_DOCUMENT_CHARS * 4 + 1)
    except FileNotFoundError:
        raise InputFileError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise InputFileError(f"not a file: {path}") from None
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror or exc}") from None
    if not data:
        raise EmptyFileError(f"file is empty: {path}")
    if len(data) > MAX_DOCUMENT_CHARS * 4:
        raise DocumentTooLargeError(f"file is too large to complete: {path}")
    if b"\x00" in data[:65536]:
        raise BinaryFileError(f"binary file (NUL bytes): {path}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BinaryFileError(f"not UTF-8 text: {path} (invalid byte at offset {exc.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return text
