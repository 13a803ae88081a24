"""Completion on real code: deterministic holes in the files of a directory, scored by exact match and edit
similarity (no execution).

- line holes: a non-trivial line that is not a comment in the file's language (`#` is a comment in Python and shell,
  not in C, where it starts `#include`, nor in Rust, where it starts `#[derive(…)]`); the cursor after its
  indentation, the hole the rest of the line;
- block holes: the indented body following a line that opens a block (`:` or `{` at its end); the cursor at the
  start of the body's first line after its indentation, the hole the body's lines up to the first line that is
  indented no deeper than the opener.
Files are read in sorted order and holes sampled with `random.Random(seed)`, so two runs pick the same holes.
"""

from __future__ import annotations

import os
import random

from codefill.engine.context import LANGUAGES, comment_lines, language_for, read_source_file
from codefill.engine.errors import CodefillError

from .humaneval import InfillTask

SKIP_DIRS = {".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", "build", "dist", ".tox", ".mypy_cache",
             "site-packages", "runs"}
MAX_FILE_BYTES = 200_000


def source_files(root: str) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if os.path.splitext(name)[1].lower() in LANGUAGES:
                path = os.path.join(dirpath, name)
                try:
                    if 0 < os.path.getsize(path) <= MAX_FILE_BYTES:
                        out.append(path)
                except OSError:
                    continue
    return out


def _indent(line: str) -> int:
    return len(line.expandtabs(4)) - len(line.expandtabs(4).lstrip())


def _holes(path: str, text: str) -> list[InfillTask]:
    lines = text.split("\n")
    starts, off = [], 0
    for ln in lines:
        starts.append(off)
        off += len(ln) + 1
    rel = path
    comments = comment_lines(lines, language_for(path))
    out = []
    for i, ln in enumerate(lines):
        s = ln.strip()
        if len(s) >= 8 and not comments[i]:
            b = starts[i] + len(ln) - len(ln.lstrip())
            e = starts[i] + len(ln)
            out.append(InfillTask(f"{rel}:{i + 1}/line", rel, "line", text[:b], text[b:e], text[e:]))
        if s.endswith((":", "{")) and i + 1 < len(lines) and lines[i + 1].strip():
            base = _indent(ln)
            j = i + 1
            while j < len(lines) and (not lines[j].strip() or _indent(lines[j]) > base):
                j += 1
            while j - 1 > i and not lines[j - 1].strip():
                j -= 1
            if j - (i + 1) < 2 or j - (i + 1) > 12:
                continue
            first = lines[i + 1]
            b = starts[i + 1] + len(first) - len(first.lstrip())
            e = starts[j - 1] + len(lines[j - 1])
            out.append(InfillTask(f"{rel}:{i + 2}/block", rel, "block", text[:b], text[b:e], text[e:]))
    return out


def build_repo_tasks(root: str, limit: int = 200, seed: int = 0) -> list[InfillTask]:
    """Up to `limit` holes (about half lines, half blocks) from the source files under `root`."""
    lines, blocks = [], []
    for path in source_files(root):
        try:
            text = read_source_file(path)
        except CodefillError:
            continue
        for t in _holes(os.path.relpath(path, root), text):
            (lines if t.mode == "line" else blocks).append(t)
    rng = random.Random(seed)
    n_blocks = min(len(blocks), limit // 2)
    n_lines = min(len(lines), limit - n_blocks)
    chosen = rng.sample(lines, n_lines) + rng.sample(blocks, n_blocks)
    return sorted(chosen, key=lambda t: t.task_id)
