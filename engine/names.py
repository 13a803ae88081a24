"""Names the hole must bind (Python): what the code after the cursor reads but nothing before it, nor itself, defines.

A model that reads no suffix writes a line that fits the prefix: at `|` in

    for idx, elem in enumerate(numbers):
        |
            if elem2 > elem: ...

it writes `for j in range(len(numbers)):`, though the lines below read `elem2`, which nothing defines. Such a name is
evidence the suffix gives for free: the hole's line binds it (`for idx2, elem2 in enumerate(numbers):`). On HumanEval
single-line holes, 156 of the 693 greedy failures (at 01621bc) were lines that bound none of the names their
suffix needed, while the canonical line bound one; 1 passing answer of 340 did so.

`needed` finds those names; `binding_starts` the starts a line completion is then made to take (decode.Stream `force`,
decode.run's "unbound" diversion): the rest of the line is the model's. Lexical, not a parser: the suffix and the
line are usually incomplete code. Strings and comments are blanked first; a name found anywhere before the cursor
counts as defined (conservative: a false "needed" name forces a wrong line).
"""

from __future__ import annotations

import builtins
import keyword
import re
import sys

from .context import CompletionContext

# The code after the cursor that is read: the rest of the enclosing top-level definition, at most this many lines.
SCOPE_LINES = 40
# Strings and comments are blanked in this much of the prefix nearest the cursor; further up, any mention counts.
PREFIX_CLEAN_CHARS = 50_000

_IDENT = re.compile(r"(?<![\w.])([A-Za-z_]\w*)")
_STRINGS_COMMENTS = re.compile(
    r"""(?:[rRbBuUfF]{0,2})(?:'''.*?'''|\"\"\".*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*")|\#[^\n]*""", re.S)
_KNOWN = frozenset(dir(builtins)) | frozenset(keyword.kwlist) | frozenset(keyword.softkwlist) | {"self", "cls"}
_MODULES = frozenset(getattr(sys, "stdlib_module_names", ()))


def _blank(text: str) -> str:
    return _STRINGS_COMMENTS.sub(" ", text)


def _names(code: str) -> list[str]:
    """Identifiers not after a dot, in order of first appearance."""
    return list(dict.fromkeys(_IDENT.findall(code)))


def bound(code: str) -> set[str]:
    """Names `code` (strings and comments blanked) binds: loop targets, assignments at a line's start (plain,
    augmented, tuple), def and class names and parameters, `as` targets, imports, lambda parameters, walrus targets
    and keyword arguments (not a read of the name)."""
    out: set[str] = set()

    def words(s: str) -> set[str]:
        return set(re.findall(r"[A-Za-z_]\w*", s))

    for m in re.finditer(r"\bfor\s+([\w\s,()\[\]*]+?)\s+in\b", code):
        out |= words(m.group(1))
    for m in re.finditer(r"(?m)^[ \t]*([\w \t,\[\]().*]+?)[ \t]*(?:[-+*/%|&^@]|//|\*\*|>>|<<)?=(?!=)", code):
        # Plain names among the targets (`a, (b, *c) =`); `a[i] =` and `a.x =` bind no name, `f(k=` is a call.
        lhs = m.group(1)
        if re.search(r"\w\s*\(", lhs):
            continue
        for target in lhs.split(","):
            name = target.strip(" \t()*")
            if re.fullmatch(r"[A-Za-z_]\w*", name) and not keyword.iskeyword(name):
                out.add(name)
    for m in re.finditer(r"\b(?:def|class)\s+(\w+)", code):
        out.add(m.group(1))
    for m in re.finditer(r"\bdef\s+\w+\s*\(([^)]*)\)?", code):
        out |= words(re.sub(r"[:=][^,]*", "", m.group(1)))
    for m in re.finditer(r"\bas\s+(\w+)", code):
        out.add(m.group(1))
    for m in re.finditer(r"\blambda\b([^:]*):", code):
        out |= words(m.group(1))
    for m in re.finditer(r"\bimport\s+([\w \t,.]+)", code):
        out |= words(m.group(1))
    for m in re.finditer(r"(\w+)\s*:=", code):
        out.add(m.group(1))
    for m in re.finditer(r"[(,]\s*(\w+)\s*=(?!=)", code):
        out.add(m.group(1))
    return out - {"as", "in", "import", "from"}


def _scope(ctx: CompletionContext) -> str:
    """The lines after the cursor line up to the next top-level line (the enclosing definition's end)."""
    out = []
    for k, line in enumerate(ctx.following_lines()):
        if k >= SCOPE_LINES or (line.strip() and not line[0].isspace()):
            break
        out.append(line)
    return "\n".join(out)


def needed(ctx: CompletionContext) -> tuple[str, ...]:
    """Names the code after a Python cursor reads that nothing before the cursor or after it defines, in the order
    the suffix first reads them; () elsewhere (another language, a cursor at the top level or after code on its
    line, nothing after it)."""
    lp = ctx.line_prefix
    if ctx.language != "python" or lp.strip() or not lp or ctx.line_suffix.strip():
        return ()
    scope = _blank(_scope(ctx))
    if not scope.strip():
        return ()
    own = bound(scope)
    cands = [n for n in _names(scope) if n not in _KNOWN and n not in own and not n.startswith("__")]
    if not cands:
        return ()
    near = ctx.prefix[-PREFIX_CLEAN_CHARS:]
    far = ctx.prefix[: -PREFIX_CLEAN_CHARS] if len(ctx.prefix) > PREFIX_CLEAN_CHARS else ""
    defined = set(_names(_blank(near)))
    return tuple(n for n in cands
                 if n not in defined and not (far and re.search(rf"(?<!\w){re.escape(n)}(?!\w)", far)))


def binds_any(line: str, names: tuple[str, ...]) -> bool:
    return bool(bound(_blank(line)) & set(names))


def binding_starts(ctx: CompletionContext, line: str, names: tuple[str, ...]) -> list[str]:
    """How a line completion at `ctx` (a blank indented line) that must bind one of `names` may start, most likely
    first, given `line`, the answer it replaces. A line that opens a block (the next code line is indented deeper,
    and is not the next item of a bracket left open) binds a name the suffix calls as a helper `def`, else a name as
    a loop target — in `line`'s own loop where it has one, at the target the suffix never reads. A plain line imports
    a standard module the suffix reads attributes of, else assigns to the name."""
    scope = _blank(_scope(ctx))
    nxt = next((ln for ln in scope.split("\n") if ln.strip()), "")
    opens = (len(nxt) - len(nxt.lstrip()) > len(ctx.line_prefix.expandtabs(4))
             and not nxt.rstrip().endswith(",") and nxt.strip()[:1] not in ")]}")

    def called(name: str) -> bool:
        return re.search(rf"(?<![\w.]){re.escape(name)}\s*\(", scope) is not None

    def start(name: str) -> str:
        if opens:
            if called(name):
                return f"def {name}"
            m = re.match(r"(for\s+)([\w\s,()]+?)\s+in\b", line.strip())
            if m:
                targets = re.findall(r"[A-Za-z_]\w*", m.group(2))
                unread = [t for t in targets if not re.search(rf"(?<![\w.]){re.escape(t)}(?!\w)", scope)]
                if unread:
                    at = m.start(2) + re.search(rf"(?<!\w){re.escape(unread[0])}(?!\w)", m.group(2)).start()
                    return line.strip()[:at] + name
            return f"for {name}"
        if name in _MODULES and re.search(rf"(?<![\w.]){re.escape(name)}\.", scope):
            return f"import {name}"
        return name

    order = sorted(names, key=lambda n: not (opens and called(n)))  # stable: else the suffix's order
    return list(dict.fromkeys(start(n) for n in order))
