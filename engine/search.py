"""Test-time search with a verifier (`codefill fill`): S*-style rounds of candidates from one prompt evaluation each,
verified best-ranked first, with the failing output fed back into the next round's prompt."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Callable, Sequence

from .context import Snippet, comment_prefix
from .engine import Engine
from .selection import normalize, rank
from .types import Candidate, CompletionRequest


@dataclass
class Attempt:
    candidate: Candidate
    passed: bool
    output: str  # tail of the verifier's output
    round: int
    elapsed_s: float


@dataclass
class SearchResult:
    winner: object | None  # the first candidate that passed, or None
    attempts: list[Attempt]
    rounds: int  # rounds started (0 = only the parallel round)
    samples: int  # candidates decoded in all
    decode_tokens: int
    elapsed_s: float
    stopped: str  # "passed" | "exhausted" | "time"

    @property
    def passed(self) -> bool:
        return self.winner is not None


def feedback_snippet(attempts: Sequence[Attempt], language: str | None, max_lines: int = 16, max_failures: int = 2):
    """The failing output of the best-ranked failed attempts as a comment block (an S* debugging round for a
    prefix/FIM model that cannot follow instructions: the prompt shows it what went wrong, then resamples)."""
    cp = comment_prefix(language)
    lines: list[str] = []
    for a in [a for a in attempts if not a.passed][:max_failures]:
        first = a.candidate.text.strip().split("\n")[0]
        lines.append(f"{cp} This line was tried here and the tests failed: {first}")
        out = [ln.rstrip() for ln in a.output.strip().split("\n") if ln.strip()][-max_lines:]
        lines.extend(f"{cp}   {ln[:160]}" for ln in out)
    return Snippet(path="test results", text="\n".join(lines) + "\n")


def search_with_tests(
    engine: Engine,
    req: CompletionRequest,
    verify: Callable[[Candidate], tuple[bool, str]],
    *,
    n: int = 8,
    rounds: int = 3,
    time_budget_s: float | None = None,
    feedback: bool = True,
    method: str = "auto",
    on_attempt: Callable[[Attempt], None] | None = None,
) -> SearchResult:
    """S*-style search: `n` parallel candidates, verified best-ranked first; then up to `rounds` sequential rounds of
    `n` new candidates whose prompt carries the failing output (`feedback`) as a comment block. Stops at the first
    candidate `verify(candidate) -> (passed, output)` accepts, when nothing new is left, or when the time runs out.
    Candidates whose normalised text was already tried are not run again."""
    t0 = time.perf_counter()
    attempts: list[Attempt] = []
    tried: set[str] = set()
    samples = tokens = 0
    language = None
    r = 0
    for r in range(rounds + 1):
        if time_budget_s is not None and time.perf_counter() - t0 >= time_budget_s:
            return SearchResult(None, attempts, r, samples, tokens, time.perf_counter() - t0, "time")
        rreq = req
        if r > 0:
            seed = req.seed + 7919 * r
            rreq = replace(req, seed=seed, use_cache=False)
            if feedback and attempts:
                failed = rank([a.candidate for a in attempts if not a.passed], ctx, method)
                by_cand = {id(a.candidate): a for a in attempts}
                snip = feedback_snippet([by_cand[id(c)] for c in failed], language)
                rreq = replace(rreq, snippets=(snip,) + tuple(req.snippets))
        s = engine.sample(rreq, n, include_greedy=True)
        ctx = s.context
        language = getattr(ctx, "language", None)
        samples += len(s.candidates)
        tokens += s.timings.decode_tokens
        fresh = []
        for c in rank(s.candidates, ctx, method):
            key = normalize(c.text, language)
            if key in tried or not c.text.strip():
                continue
            tried.add(key)
            fresh.append(c)
        for c in fresh:
            if time_budget_s is not None and time.perf_counter() - t0 >= time_budget_s:
                return SearchResult(None, attempts, r, samples, tokens, time.perf_counter() - t0, "time")
            ta = time.perf_counter()
            ok, output = verify(c)
            a = Attempt(c, bool(ok), output, r, time.perf_counter() - ta)
            attempts.append(a)
            if on_attempt is not None:
                on_attempt(a)
            if ok:
                return SearchResult(c, attempts, r, samples, tokens, time.perf_counter() - t0, "passed")
    return SearchResult(None, attempts, r, samples, tokens, time.perf_counter() - t0, "exhausted")
