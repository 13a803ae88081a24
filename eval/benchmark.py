"""A person writing a real file, as a script of editor states: the typing-session benchmark.

At sampled lines the line is cleared back to its indentation (the person is about to write it): the first request
there is a "new position" request. Then the line is typed character by character, with a request every `every`
characters ("typing" requests). The same script drives the engine directly (`codefill bench latency`) and the
language server (bench/lsp_latency.py), so their figures compare.
"""

from __future__ import annotations

import random
import resource
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from codefill.engine.types import CompletionRequest

from .metrics import percentile


@dataclass(frozen=True)
class Step:
    kind: str  # "new" | "typing"
    text: str  # the whole document at this moment
    line: int
    character: int


def typing_session(text: str, n_lines: int = 20, every: int = 3, seed: int = 0, min_length: int = 8) -> Iterator[Step]:
    lines = text.split("\n")
    candidates = [i for i, ln in enumerate(lines) if len(ln.strip()) >= min_length and not ln.lstrip().startswith("#")]
    rng = random.Random(seed)
    chosen = rng.sample(candidates, min(n_lines, len(candidates)))
    for i in chosen:  # in random order: each one is a jump to a new place in the file
        line = lines[i]
        indent = line[: len(line) - len(line.lstrip())]
        body = line[len(indent) :]
        for k in range(0, len(body) + 1, every):
            current = lines[:i] + [indent + body[:k]] + lines[i + 1 :]
            yield Step("new" if k == 0 else "typing", "\n".join(current), i, len(indent) + k)


def peak_rss_mb() -> float:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


@dataclass
class LatencyReport:
    new_ms: list[float] = field(default_factory=list)
    typing_ms: list[float] = field(default_factory=list)
    prompt_tokens: int = 0
    prompt_ms: float = 0.0
    decode_tokens: int = 0
    decode_ms: float = 0.0
    reused: int = 0
    cache_hits: int = 0
    requests: int = 0

    def summary(self) -> dict:
        return {
            "requests": self.requests,
            "new_position_p50_ms": round(percentile(self.new_ms, 50), 1),
            "new_position_p95_ms": round(percentile(self.new_ms, 95), 1),
            "typing_p50_ms": round(percentile(self.typing_ms, 50), 1),
            "typing_p95_ms": round(percentile(self.typing_ms, 95), 1),
            "prompt_tokens_per_s": round(self.prompt_tokens / (self.prompt_ms / 1000), 1) if self.prompt_ms else 0.0,
            "decode_tokens_per_s": round(self.decode_tokens / (self.decode_ms / 1000), 1) if self.decode_ms else 0.0,
            "prompt_tokens_evaluated": self.prompt_tokens,
            "prompt_tokens_reused": self.reused,
            "cache_hits": self.cache_hits,
            "peak_rss_mb": round(peak_rss_mb(), 1),
        }


def run_latency(
    engine,
    text: str,
    path: str,
    *,
    n_lines: int = 20,
    every: int = 3,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> LatencyReport:
    steps = list(typing_session(text, n_lines, every, seed))
    rep = LatencyReport()
    for n, step in enumerate(steps):
        t0 = time.perf_counter()
        c = engine.complete(
            CompletionRequest(text=step.text, line=step.line, character=step.character, path=path, document_id=path)
        )
        ms = (time.perf_counter() - t0) * 1000
        (rep.new_ms if step.kind == "new" else rep.typing_ms).append(ms)
        rep.requests += 1
        rep.prompt_tokens += c.timings.prompt_evaluated
        rep.prompt_ms += c.timings.prompt_ms
        rep.decode_tokens += c.timings.decode_tokens
        rep.decode_ms += c.timings.decode_ms
        rep.reused += c.timings.prompt_reused
        rep.cache_hits += c.stop_reason in ("cache", "typed")
        if progress:
            progress(n + 1, len(steps))
    return rep
