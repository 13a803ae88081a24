"""Decoding: sample tokens until a stop rule, an end-of-generation token, the token limit, the time budget or a
cancellation ends the completion. Pure mechanics over a LlamaRuntime sequence; no documents, no filters."""

from __future__ import annotations

import codecs
import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .stops import StopRules


@dataclass
class Sampler:
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    rng: np.random.Generator = field(init=False)

    def __post_init__(self):
        self.rng = np.random.default_rng(self.seed)

    def pick(self, logits: np.ndarray, banned: frozenset[int] = frozenset()) -> tuple[int, float]:
        """(token, log-probability of that token under the model's untempered distribution)."""
        x = logits.astype(np.float64, copy=False)
        if banned:
            x = x.copy()
            x[list(banned)] = -np.inf
        m = float(np.max(x))
        logz = m + math.log(float(np.sum(np.exp(x - m))))
        if self.temperature <= 0:
            tok = int(np.argmax(x))
            return tok, float(x[tok] - logz)
        z = (x - m) / self.temperature
        p = np.exp(z)
        p /= p.sum()
        if self.top_p < 1.0:
            order = np.argsort(-p)
            cum = np.cumsum(p[order])
            keep = order[: int(np.searchsorted(cum, self.top_p)) + 1]
            q = np.zeros_like(p)
            q[keep] = p[keep]
            p = q / q.sum()
        tok = int(self.rng.choice(len(p), p=p))
        return tok, float(x[tok] - logz)


@dataclass
class Generation:
    text: str
    stop_reason: str
    token_logprobs: list[float]
    tokens: list[int]
    decode_ms: float


class TextAccumulator:
    """Token pieces → text, holding back incomplete UTF-8 sequences; tracks which tokens produced which characters."""

    def __init__(self):
        self._dec = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.text = ""
        self.ends: list[int] = []  # text length after each token

    def add(self, piece: bytes) -> None:
        self.text += self._dec.decode(piece)
        self.ends.append(len(self.text))

    def tokens_within(self, n_chars: int) -> int:
        """How many leading tokens lie entirely within the first n_chars characters."""
        k = 0
        while k < len(self.ends) and self.ends[k] <= n_chars:
            k += 1
        return k


def generate(
    rt,
    rules: StopRules,
    sampler: Sampler,
    *,
    seq: int = 0,
    max_tokens: int = 128,
    deadline: float | None = None,
    stop_ids: frozenset[int] = frozenset(),
    cancelled: Callable[[], bool] | None = None,
    first_logits: np.ndarray | None = None,
) -> Generation:
    """Decode from the current end of sequence `seq` (whose logits must be ready)."""
    t0 = time.perf_counter()
    acc = TextAccumulator()
    logprobs: list[float] = []
    tokens: list[int] = []
    reason = "max_tokens"
    logits = first_logits if first_logits is not None else rt.logits(seq)
    for _ in range(max_tokens):
        if cancelled is not None and cancelled():
            reason = "cancelled"
            break
        tok, lp = sampler.pick(logits)
        if rt.is_eog(tok) or tok in stop_ids:
            reason = "eos"
            break
        tokens.append(tok)
        logprobs.append(lp)
        acc.add(rt.token_piece(tok))
        hit = rules.check(acc.text)
        if hit is not None:
            cut, reason = hit
            n_keep = acc.tokens_within(cut)
            text = acc.text[:cut]
            del tokens[n_keep:]
            del logprobs[n_keep:]
            return Generation(text, reason, logprobs, tokens, (time.perf_counter() - t0) * 1000)
        if deadline is not None and time.perf_counter() >= deadline:
            reason = "time"
            break
        rt.decode_one(tok, seq)
        logits = rt.logits(seq)
    text = acc.text
    if reason in ("eos", "max_tokens", "time"):
        hit = rules.check(text, final=True)
        if hit is not None:
            cut, reason = hit
            n_keep = acc.tokens_within(cut)
            text = text[:cut]
            del tokens[n_keep:]
            del logprobs[n_keep:]
        elif reason == "time" and rules.mode == "block" and "\n" in text:
            # Out of time mid-line: keep the complete lines only.
            cut = text.rfind("\n")
            n_keep = acc.tokens_within(cut)
            text = text[:cut]
            del tokens[n_keep:]
            del logprobs[n_keep:]
    return Generation(text, reason, logprobs, tokens, (time.perf_counter() - t0) * 1000)
