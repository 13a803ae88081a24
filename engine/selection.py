"""Choosing among candidates without tests: log-probability, agreement, syntax — and `auto`, which combines them.

Every selector takes candidates with `.text` and `.token_logprobs` (engine.types.Candidate, or anything shaped
like it) and the CompletionContext they complete, and ranks them best first.

- `logprob`: mean token log-probability (length-normalised, so short answers are not favoured just for being short).
- `cluster`: agreement — candidates whose normalised code is the same (Python tokens without comments and spacing;
  whitespace-collapsed text elsewhere) form a cluster; the largest cluster wins, its most likely member represents it.
- `syntax`: candidates that keep the buffer parseable first (Python's parser; JSON's; unknown elsewhere), then logprob.
- `auto`: drop candidates that break the syntax and empty ones (unless nothing else is left), then score each cluster
  by `cluster_weight · log(size/n) + max mean-logprob of its members`, and take the best member of the best cluster.
- `suffix`: the text after the hole as evidence (prefix-only models; the scores come from Engine.score_suffix):
  drop what `auto` drops, then rank by `suffix_logprob + suffix_candidate_weight · candidate_logprob` of each
  candidate's types.SuffixScore. Candidates without a score rank after those with one; when none has one (a FIM
  model, an inference server, nothing scored) this is `auto`.
"""

from __future__ import annotations

import ast
import functools
import io
import json
import math
import re
import tokenize
import warnings
from dataclasses import dataclass
from typing import Iterable, Sequence

METHODS = ("first", "logprob", "cluster", "syntax", "auto", "suffix")
ALIASES = {"agreement": "cluster"}  # the name for the cluster selector


@dataclass(frozen=True)
class SelectionWeights:
    cluster_weight: float = 1.0  # how much a doubling of agreement is worth, in nats of mean log-probability
    drop_syntax_errors: bool = True
    drop_empty: bool = True
    # `suffix`: how much the candidate's own tokens count beside the suffix's (1: the joint probability of candidate and
    # suffix window, i.e. the candidate's posterior given the suffix; 0: the suffix alone).
    suffix_candidate_weight: float = 1.0


DEFAULT_WEIGHTS = SelectionWeights()


# ---------------------------------------------------------------------------------------------- signals


def mean_logprob(c) -> float:
    lps = tuple(getattr(c, "token_logprobs", ()) or ())
    if not lps:
        return -1e9  # nothing decoded: no evidence at all
    return sum(lps) / len(lps)


def normalize(text: str, language: str | None = "python") -> str:
    """A key under which equivalent completions agree: code tokens without comments, spacing or line breaks."""
    if language == "python":
        try:
            toks = []
            for t in tokenize.generate_tokens(io.StringIO(text.strip() + "\n").readline):
                if t.type in (tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                              tokenize.ENDMARKER):
                    continue
                s = t.string
                if t.type == tokenize.STRING:
                    s = _canonical_string(s)
                toks.append(s)
            return " ".join(toks)
        except (tokenize.TokenError, IndentationError, SyntaxError):
            pass
    return re.sub(r"\s+", " ", text.strip())


def _canonical_string(s: str) -> str:
    """'a' and "a" are the same literal."""
    try:
        v = ast.literal_eval(s)
    except Exception:
        return s
    return repr(v)


def _parse_python(src: str) -> SyntaxError | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(src)
        return None
    except SyntaxError as exc:
        return exc
    except (ValueError, RecursionError, MemoryError) as exc:  # NUL bytes, absurd nesting
        return SyntaxError(str(exc))


@functools.lru_cache(maxsize=4)
def _parses_without(src: str) -> bool:
    """Does the buffer parse without the completion (asked once per request, not once per candidate)."""
    return _parse_python(src) is None


# A larger Python buffer is judged on its top-level statements around the cursor, not parsed whole: parsing a 1.5 MB
# module for each candidate made ~45 MB of AST objects each time (their churn fragmented the server's small-object
# heap) and cost a fraction of a second per candidate.
WHOLE_PARSE_CHARS = 100_000
WINDOW_CHARS = 200_000  # how far to look for those statements' start and end; farther: not judged
_TOP_LEVEL = re.compile(r"^(?:(?:async[ \t]+)?def|class)\b|^@", re.M)


def python_window(prefix: str, suffix: str) -> tuple[str, str] | None:
    """The end of `prefix` and the start of `suffix` that syntax is judged on: all of them in a small buffer; in a
    large one, from the nearest top-level `def`/`class`/decorator line above the cursor line to the next one after
    it (the code between two such lines parses on its own). None when neither lies within WINDOW_CHARS."""
    if len(prefix) + len(suffix) <= WHOLE_PARSE_CHARS:
        return prefix, suffix
    line_start = prefix.rfind("\n") + 1
    lo = max(0, line_start - WINDOW_CHARS)
    start = None
    for m in _TOP_LEVEL.finditer(prefix, lo, line_start):
        start = m.start()
    if start is None:
        if lo > 0:
            return None
        start = 0
    nl = suffix.find("\n")
    if nl < 0:
        return prefix[start:], suffix
    hi = min(len(suffix), nl + 1 + WINDOW_CHARS)
    m = _TOP_LEVEL.search(suffix, nl + 1, hi)
    if m is None and hi < len(suffix):
        return None
    return prefix[start:], suffix[: m.start() if m else len(suffix)]


def syntax_ok(ctx, text: str) -> bool | None:
    """Does the buffer still parse with `text` inserted at the cursor? None when that cannot be judged.

    Python: True if it parses; False if it does not while the buffer without the completion does, or the parser's
    error points into the inserted lines (or the line after them); None if the buffer is broken elsewhere anyway.
    A buffer over WHOLE_PARSE_CHARS is judged on the top-level statements around the cursor (`python_window`).
    JSON: the same with json.loads, up to WHOLE_PARSE_CHARS. Other languages: None.
    """
    language = getattr(ctx, "language", None)
    if language == "python":
        window = python_window(ctx.prefix, ctx.suffix)
        if window is None:
            return None
        before, after = window
        err = _parse_python(before + text + after)
        if err is None:
            return True
        if _parses_without(before + after):
            return False
        start = before.count("\n") + 1  # 1-based line numbers, as SyntaxError reports them
        end = start + text.count("\n") + 1
        lineno = getattr(err, "lineno", None)
        if lineno is not None and start <= lineno <= end:
            return False
        return None
    if language == "json" and len(ctx.prefix) + len(ctx.suffix) <= WHOLE_PARSE_CHARS:
        try:
            json.loads(ctx.prefix + text + ctx.suffix)
            return True
        except json.JSONDecodeError as exc:
            try:
                json.loads(ctx.prefix + ctx.suffix)
                return False
            except ValueError:
                pass
            # The hole itself breaks the buffer: blame the candidate when the error lies inside it.
            start = len(ctx.prefix)
            return False if start <= exc.pos <= start + len(text) else None
    return None


# ---------------------------------------------------------------------------------------------- clusters


def clusters(candidates: Sequence, language: str | None = "python") -> list[list[int]]:
    """Indices of candidates grouped by normalised text, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(candidates):
        groups.setdefault(normalize(c.text, language), []).append(i)
    return list(groups.values())


# ---------------------------------------------------------------------------------------------- ranking


def rank(candidates: Sequence, ctx, method: str = "auto", weights: SelectionWeights = DEFAULT_WEIGHTS) -> list:
    """Candidates best first according to `method` (one of METHODS). Stable: ties keep the original order."""
    method = ALIASES.get(method, method)
    if method not in METHODS:
        raise ValueError(f"unknown selection method {method!r} (one of {', '.join(METHODS + tuple(ALIASES))})")
    cands = list(candidates)
    if not cands:
        return []
    language = getattr(ctx, "language", None)
    order = list(range(len(cands)))
    lp = [mean_logprob(c) for c in cands]
    empty = [not c.text.strip() for c in cands]
    if method == "first":
        return cands
    if method == "logprob":
        order.sort(key=lambda i: (empty[i], -lp[i]))
        return [cands[i] for i in order]
    if method == "syntax":
        ok = [syntax_ok(ctx, c.text) for c in cands]
        order.sort(key=lambda i: (empty[i], ok[i] is False, -lp[i]))
        return [cands[i] for i in order]
    if method == "suffix":
        if not any(getattr(c, "suffix", None) is not None for c in cands):
            return rank(cands, ctx, "auto", weights)
        bad = _dropped(cands, ctx, clusters(cands, language), empty, weights)

        def key(i):
            sc = getattr(cands[i], "suffix", None)
            if sc is None:
                return (bad[i], 1, 0.0, -lp[i])
            return (bad[i], 0, -(sc.suffix_logprob + weights.suffix_candidate_weight * sc.candidate_logprob), -lp[i])

        order.sort(key=key)
        return [cands[i] for i in order]
    groups = clusters(cands, language)
    if method == "cluster":
        size = {i: len(g) for g in groups for i in g}
        order.sort(key=lambda i: (empty[i], -size[i], -lp[i]))
        return [cands[i] for i in order]
    # auto
    n = len(cands)
    bad = _dropped(cands, ctx, groups, empty, weights)
    scored = []
    for g in groups:
        members = [i for i in g if not bad[i]]
        if not members:
            continue
        best = max(members, key=lambda i: (lp[i], -i))
        score = weights.cluster_weight * math.log(len(g) / n) + lp[best]
        scored.append((score, best, g))
    scored.sort(key=lambda t: (-t[0], t[1]))
    out: list[int] = []
    for _s, best, g in scored:
        out.append(best)
        out.extend(sorted((i for i in g if i != best and not bad[i]), key=lambda i: -lp[i]))
    seen = set(out)
    out.extend(sorted((i for i in range(n) if i not in seen), key=lambda i: (empty[i], -lp[i])))
    return [cands[i] for i in out]


def _dropped(cands: Sequence, ctx, groups: list[list[int]], empty: list[bool], weights: SelectionWeights) -> list[bool]:
    """`auto`'s rule: candidates that break the syntax and empty ones are dropped, unless nothing else is left (then
    only the empty ones, unless all are empty)."""
    n = len(cands)
    ok = {}
    for g in groups:  # one parse per distinct answer
        v = syntax_ok(ctx, cands[g[0]].text) if weights.drop_syntax_errors else None
        for i in g:
            ok[i] = v
    bad = [(weights.drop_empty and empty[i]) or ok[i] is False for i in range(n)]
    if all(bad):
        bad = [weights.drop_empty and empty[i] for i in range(n)] if not all(empty) else [False] * n
    return bad


def default_method(mode: str) -> str:
    """The selection to use when none is asked for, by the completion's mode: `suffix` for a line (HumanEval
    single-line, 8 candidates, embedded model: 43.3% pass@1 against auto's 38.7% and greedy's 34.7%), `auto` for a
    block (multi-line: no gain over auto, and scoring long candidates cost half as much again as decoding them;
    bench/results/suffix-ranking.md). `suffix` itself ranks as `auto` where nothing can be scored."""
    return "suffix" if mode == "line" else "auto"


def contenders(candidates: Sequence, ctx, weights: SelectionWeights = DEFAULT_WEIGHTS) -> list:
    """The candidates `auto` and `suffix` do not drop (those worth scoring by the suffix: the others rank last
    whatever their score)."""
    cands = list(candidates)
    empty = [not c.text.strip() for c in cands]
    bad = _dropped(cands, ctx, clusters(cands, getattr(ctx, "language", None)), empty, weights)
    return [c for c, b in zip(cands, bad) if not b]


def select(candidates: Sequence, ctx, method: str = "auto", weights: SelectionWeights = DEFAULT_WEIGHTS):
    """The best candidate according to `method`."""
    ranked = rank(candidates, ctx, method, weights)
    if not ranked:
        raise ValueError("no candidates to select from")
    return ranked[0]


def distinct(candidates: Iterable, language: str | None = "python") -> list:
    """The first candidate of each normalised answer, in order."""
    seen: set[str] = set()
    out = []
    for c in candidates:
        k = normalize(c.text, language)
        if k not in seen:
            seen.add(k)
            out.append(c)
    return out
