"""The engine's request and result types (plain frozen dataclasses, no LSP or CLI types)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from .context import CompletionContext, Position, Range, Snippet

__all__ = [
    "CompletionRequest", "Completion", "Timings", "Candidate", "SuffixScore", "SampleSet", "Position", "Range", "Snippet",
    "StopReason", "DEFAULT", "EngineDefault",
]


class StopReason(str, enum.Enum):
    """Why a completion ended. A str, so it compares equal to its value and is written as it in JSON."""

    EOS = "eos"  # the model's end-of-generation token, or a stop token of its FIM family
    NEWLINE = "newline"  # line mode: the first line with content ended
    DEDENT = "dedent"  # block mode: a line indented less than the block
    SUFFIX = "suffix"  # block mode: a line that repeats the next line after the cursor
    BLANK = "blank"  # block mode at the top level: a blank line after content
    MAX_LINES = "max_lines"
    MAX_TOKENS = "max_tokens"
    TIME = "time"  # the decoding time budget ran out (a block keeps its complete lines)
    CANCELLED = "cancelled"  # cancelled, or superseded by a newer request for the same document: no text
    CACHE = "cache"  # the same request was answered before
    TYPED = "typed"  # the user typed the start of the document's last completion; this is the rest of it

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class EngineDefault:
    """The type of `DEFAULT`: "use the engine's configured value" where None already means something else."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"

    def __reduce__(self):
        return (EngineDefault, ())


DEFAULT = EngineDefault()


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
    time_budget_ms: float | None | EngineDefault = DEFAULT  # DEFAULT: the engine's; None: no time limit
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
    stop_reason: StopReason
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
            "stop_reason": str(self.stop_reason),
            "mode": self.mode,
            "timings": self.timings.to_dict(),
            "logprob_mean": self.logprob_mean,
            "logprob_min": self.logprob_min,
            "model": self.model,
        }


@dataclass(frozen=True)
class SuffixScore:
    """How likely the model finds the text after the hole once a candidate is in place (Engine.score_suffix, for
    models that cannot read the suffix in their prompt): the candidate and the first tokens after the hole are
    tokenized together, as the document will hold them, and scored as a continuation of the prompt."""

    suffix_logprob: float  # sum of the log-probabilities of the tokens that carry text after the hole
    suffix_tokens: int
    candidate_logprob: float  # sum over the tokens before them (the healed text and the candidate)
    candidate_tokens: int
    token_logprobs: tuple[float, ...] = ()  # the suffix tokens' own, in order (a shorter window is a prefix sum)

    @property
    def joint(self) -> float:
        """log P(candidate, suffix window | prefix): the candidate's posterior given the suffix, up to a constant."""
        return self.suffix_logprob + self.candidate_logprob


@dataclass(frozen=True)
class Candidate:
    """One of several completions decoded from one prompt evaluation, with the decode-pass signals the selectors and
    the confidence gate use."""

    completion: Completion
    index: int  # 0 = the first (greedy when the set includes the greedy answer)
    seed: int
    greedy: bool
    entropies: tuple[float, ...] = ()  # entropy (nats) of the full next-token distribution at each kept token
    tokens: tuple[int, ...] = ()  # kept token ids
    decoded_tokens: int = 0  # tokens decoded, including those a stop rule cut off
    suffix: SuffixScore | None = None  # set by Engine.score_suffix (prefix-only models); None: not scored

    @property
    def text(self) -> str:
        return self.completion.text

    @property
    def token_logprobs(self) -> tuple[float, ...]:
        return self.completion.token_logprobs


@dataclass
class SampleSet:
    """Candidates that share one prompt evaluation, and what they cost together."""

    candidates: list[Candidate]
    context: CompletionContext
    request: CompletionRequest
    timings: Timings  # prompt counted once; decode_tokens = all tokens decoded for all candidates
    batches: int = 0  # batches fed to the backend

    def __len__(self) -> int:
        return len(self.candidates)

    def __iter__(self):
        return iter(self.candidates)
