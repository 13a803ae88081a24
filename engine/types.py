"""The engine's request and result types (plain frozen dataclasses, no LSP or CLI types)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .context import Position, Range, Snippet

__all__ = ["CompletionRequest", "Completion", "Timings", "Position", "Range", "Snippet"]


@dataclass(frozen=True)
class CompletionRequest:
    """One completion at a cursor. Positions are 0-based, `character` counts Python str characters (code points)."""

    text: str
    line: int
    character: int
    path: str | None = None  # file path, shown to models that know file names; picks the language
    language: str | None = None  # overrides the language guessed from `path`
    document_id: str | None = None  # stable id (URI or path): requests with the same id supersede each other
    snippets: tuple[Snippet, ...] = ()  # extra context from other files, most relevant first
    mode: str = "auto"  # "auto" | "line" | "block"
    max_tokens: int | None = None  # None: the engine's default
    time_budget_ms: float | None = -1.0  # -1: the engine's default; None: no time limit
    temperature: float = 0.0  # 0: greedy (deterministic)
    top_p: float = 1.0
    seed: int = 0
    use_cache: bool = True  # answer from the completion cache when possible


@dataclass(frozen=True)
class Timings:
    prompt_tokens: int = 0  # tokens in the prompt
    prompt_reused: int = 0  # prompt tokens whose KV cache was kept from an earlier request
    prompt_evaluated: int = 0  # prompt tokens evaluated for this request
    prompt_ms: float = 0.0
    decode_tokens: int = 0
    decode_ms: float = 0.0
    total_ms: float = 0.0

    @property
    def prompt_tokens_per_s(self) -> float:
        return self.prompt_evaluated / (self.prompt_ms / 1000) if self.prompt_ms > 0 else 0.0

    @property
    def decode_tokens_per_s(self) -> float:
        return self.decode_tokens / (self.decode_ms / 1000) if self.decode_ms > 0 else 0.0

    def to_dict(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "prompt_reused": self.prompt_reused,
            "prompt_evaluated": self.prompt_evaluated,
            "prompt_ms": round(self.prompt_ms, 2),
            "decode_tokens": self.decode_tokens,
            "decode_ms": round(self.decode_ms, 2),
            "total_ms": round(self.total_ms, 2),
            "prompt_tokens_per_s": round(self.prompt_tokens_per_s, 1),
            "decode_tokens_per_s": round(self.decode_tokens_per_s, 1),
        }


@dataclass(frozen=True)
class Completion:
    """The result: `text` replaces `range` of the document (an empty range at the cursor for a plain insertion)."""

    text: str
    range: Range
    stop_reason: str  # eos | newline | dedent | suffix | blank | max_lines | max_tokens | time | cancelled | cache | typed | empty
    # (cache: the same request was answered before; typed: the user typed the start of the document's last completion,
    # this is the rest of it)
    mode: str  # "line" | "block"
    timings: Timings = field(default_factory=Timings)
    raw: str = ""  # model output before post-processing (after stop rules)
    token_logprobs: tuple[float, ...] = ()  # log-probability of each generated token (sampling distribution)
    model: str = ""  # model file name

    @property
    def logprob_mean(self) -> float | None:
        return sum(self.token_logprobs) / len(self.token_logprobs) if self.token_logprobs else None

    @property
    def logprob_min(self) -> float | None:
        return min(self.token_logprobs) if self.token_logprobs else None

    def to_dict(self) -> dict:
        return {
            "text": self.text,
            "range": {
                "start": {"line": self.range.start.line, "character": self.range.start.character},
                "end": {"line": self.range.end.line, "character": self.range.end.character},
            },
            "stop_reason": self.stop_reason,
            "mode": self.mode,
            "timings": self.timings.to_dict(),
            "logprob_mean": self.logprob_mean,
            "logprob_min": self.logprob_min,
            "model": self.model,
        }
