"""The decode loop: one or several candidates from one evaluated prompt, until a stop rule, an end-of-generation
token, the token limit, the time budget or a cancellation ends each. Mechanics over a backend (backend.Backend); no
documents, no filters.

Each candidate is a `Stream`: its sampler, its text so far, token healing (the first tokens must re-produce the text
the prompt left out at its end, which is not part of the completion), the stop rules applied after every token, and
the cut that a stop rule or a time-out makes. `run` advances all active streams one token per step, in one batch.

Speculative decoding without a draft model (prompt lookup): a single greedy stream on a backend that can `verify`
(llama.LlamaRuntime; not a remote server) drafts the tokens that followed the last occurrence of its last few tokens
earlier in its own sequence (prompt and completion so far: code repeats identifiers, argument lists, closing lines),
and checks the draft in one batch. The tokens the model agrees with are taken one by one through the same stop rules,
limits and cancellation as drawn ones, with their own draws' log-probabilities and entropies.
"""

from __future__ import annotations

import codecs
import re
import time
from dataclasses import dataclass
from typing import Callable, Collection, Sequence

import numpy as np

from .backend import Backend
from .sampler import Draw, Sampler
from . import names
from .stops import StopRules, _indent_width
from .types import StopReason

# A stream that ended on its own: its last line is judged too (the model may have stopped mid-rule).
_FINAL_CHECK = (StopReason.EOS, StopReason.MAX_TOKENS, StopReason.TIME)


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


class HealingIndex:
    """Which tokens may come next while a completion re-produces the healed text (or must not start with
    whitespace). Built from the vocabulary's pieces once per model, answers memoised."""

    CACHE_ENTRIES = 4096

    def __init__(self, vocab: Backend):
        self._vocab = vocab
        self._pieces: list[bytes] | None = None
        self._cache: dict[tuple[bytes, bool, bool, bool], np.ndarray] = {}

    @property
    def n_vocab(self) -> int:
        return self._vocab.n_vocab

    def candidates(self, remaining: bytes, no_space: bool = False, no_newline: bool = False,
                   no_word: bool = False) -> np.ndarray | None:
        """Tokens whose bytes are consistent with `remaining`: a prefix of it, or starting with all of it.

        `no_space` (the completion must not start with whitespace, see StopRules.no_leading_space; `remaining` is then
        the healed indentation): a token that covers `remaining` must not go on with a space or tab. With an empty
        `remaining`: every token that does not start with whitespace. (Refusing also the tokens that end exactly at the
        indentation's end was measured worse: 30.8% pass@1 on HumanEval single-line, against 31.5% without that.)

        `no_newline` (a line completion on a line holding only its indentation, see `Stream`): likewise no line break
        right after `remaining` — a line that ends before any code is an empty suggestion.

        `no_word` (`remaining` ends a name the completion is made to start with, see `Stream` `force`): no word
        character right after it — the name must end there, not grow into a longer one."""
        if not getattr(self._vocab, "enumerable", True):
            return None  # a server's tokenizer: its pieces cannot all be read, so no restriction (see remote.py)
        key = (remaining, no_space, no_newline, no_word)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        if self._pieces is None:
            self._pieces = [self._vocab.token_piece(t) for t in range(self._vocab.n_vocab)]
        n = len(remaining)
        banned = set((b" ", b"\t") * no_space + (b"\n", b"\r") * no_newline) | (_WORD_BYTES if no_word else set())
        ids = [t for t, p in enumerate(self._pieces) if p and (
            (remaining.startswith(p) and len(p) < n)
            or (p.startswith(remaining) and p[n : n + 1] not in banned))]
        arr = np.array(ids, dtype=np.int64)
        if len(self._cache) < self.CACHE_ENTRIES:
            self._cache[key] = arr
        return arr


# Drafting (PromptLookup, draft_length). Measured with SmolLM2-135M over 120 greedy completions in 10 stdlib modules
# (1736 tokens): the first draft token is taken 29% of the time after a 1-token match, 50% after 2, 66% after 3,
# 73% after 4, 78% after 5, 89% after 6 or more; each later one 75-90% of the time once the ones before it were.
FIRST_ACCEPTED = (0.0, 0.29, 0.50, 0.66, 0.73, 0.78, 0.89)  # by match length (the last: that many or more)
LATER_ACCEPTED = 0.8
MATCH_MIN = 2  # shorter matches are not drafted from
MATCH_MAX = 8  # matches are measured up to this length
DRAFT_TOKENS = 10  # the longest draft verified in one batch
VERIFY_COST = 0.3  # cost of one more token in a verify batch, in one-token decodes, where the backend does not say
PROBE_EVERY = 8  # where no draft is worth its cost, every 8th long match still drafts one token (see `propose`)


def draft_length(match: int, cost: float, limit: int) -> int:
    """How many tokens to draft after a `match`-token match, when each drafted token adds `cost` one-token decodes
    to the batch (backend.verify_cost): the length with the most tokens expected per unit of decode time, 0 when no
    draft is expected to beat decoding one token (the expectation: FIRST_ACCEPTED, then LATER_ACCEPTED per token).
    With cost 0.72 (one thread of a busy 2-core CPU, SmolLM2-135M) only long matches are drafted, 1 or 2 tokens;
    with 0.08 up to 10. Simulated on the measurement above: 1.03x, 1.22x and 1.55x the tokens per unit of decode
    time for costs 0.72, 0.3 and 0.08."""
    p_first = FIRST_ACCEPTED[min(match, len(FIRST_ACCEPTED) - 1)]
    best, best_k, expected, p = 1.0, 0, 1.0, 1.0
    for k in range(1, min(limit, DRAFT_TOKENS) + 1):
        p *= p_first if k == 1 else LATER_ACCEPTED
        expected += p
        ratio = expected / (1.0 + cost * k)
        if ratio > best:
            best, best_k = ratio, k
    return best_k


class PromptLookup:
    """Drafts from a sequence's own token history (prompt lookup, no draft model): the tokens that followed the
    earlier occurrence of the history's end that matches it longest (at least MATCH_MIN tokens, measured up to
    MATCH_MAX; the most recent among equally long ones), as many as `draft_length` finds worth verifying, continued
    periodically where they reach the present."""

    def __init__(self, history: Sequence[int], room: int = 0):
        self._buf = np.zeros(max(64, len(history) + room + 16), dtype=np.int64)
        self._buf[: len(history)] = history
        self.n = len(history)
        self._declined = 0  # long matches not drafted from since the last probe

    def append(self, token: int) -> None:
        if self.n == len(self._buf):
            self._buf = np.concatenate([self._buf, np.zeros(len(self._buf), dtype=np.int64)])
        self._buf[self.n] = token
        self.n += 1

    def match(self) -> tuple[int, int]:
        """(start of the tokens that followed the best earlier match, its length); (0, 0) when there is none."""
        m, h = self.n, self._buf
        if m <= MATCH_MIN:
            return 0, 0
        # Ends e (exclusive) of earlier occurrences of the last MATCH_MIN tokens, each followed by one token at least.
        hit = h[: m - MATCH_MIN] == h[m - MATCH_MIN]
        for j in range(1, MATCH_MIN):
            hit &= h[j : m - MATCH_MIN + j] == h[m - MATCH_MIN + j]
        ends = np.flatnonzero(hit) + MATCH_MIN
        if not len(ends):
            return 0, 0
        length = MATCH_MIN
        while length < min(MATCH_MAX, m - 1):  # extend backwards while some still match
            ok = ends > length
            ok[ok] = h[ends[ok] - length - 1] == h[m - length - 1]
            if not ok.any():
                break
            ends = ends[ok]
            length += 1
        return int(ends[-1]), length

    def propose(self, limit: int, cost: float = VERIFY_COST) -> list[int]:
        """Up to `limit` tokens that may come next (none when no earlier match makes a draft worth its cost)."""
        if limit < 1:
            return []
        start, length = self.match()
        if not length:
            return []
        k = draft_length(length, cost, limit)
        if k == 0 and length >= len(FIRST_ACCEPTED) - 1:
            # A probe: a backend that measures its verify cost (LlamaRuntime) would otherwise never see it fall again
            # once it judged drafts too dear. One token after a long match costs little even then.
            self._declined += 1
            if self._declined >= PROBE_EVERY:
                self._declined, k = 0, 1
        # What followed the match, up to the present; beyond it the pattern repeats (a match that ends p tokens before
        # the end, the most recent one in a run or a loop, says the history has period p).
        period = self.n - start
        return self._buf[start + np.arange(k) % period].tolist()


_WORD_BYTES = {bytes([c]) for c in b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"}
DIVERSIONS = 2  # attempts per candidate that could not be what the hole holds (Stream.dead_end)
# A statement that ends its block's flow, in Python and the C family (Go, Rust, JavaScript, Java, C#).
_ENDS_FLOW = re.compile(r"(return|raise|throw|break|continue)\b")
_COMMENT_STARTS = ("#", "//", "/*", "*", "--")
# Holes inside a word (Stream.join): lines a completion may run on to find where the rest of the cursor line fits,
# and the shortest rest that is looked for (shorter ones, `)` or `):`, end lines by chance).
JOIN_LINES = 6
JOIN_MIN_CHARS = 3
_WORD_END = re.compile(r"\w$")
_WORD_START = re.compile(r"\w")



class Stream:
    """The decoding state of one candidate on sequence `seq`.

    Speculative decoding's counters (see `run`; zero when it did not apply): `drafted`, the draft tokens sent to be
    verified; `accepted`, those the model agreed with (each saved a decode step; a stop rule may still cut them);
    `verified`, the verify batches (each also fed the token drawn before its draft, so they count among `run`'s
    batches)."""

    def __init__(self, seq: int, sampler: Sampler, rules: StopRules, heal: str = "",
                 replay: Sequence[int] = (), avoid: Collection[int] = (), force: str = ""):
        self.seq = seq
        self.sampler = sampler
        self.rules = rules
        self.heal = heal
        # Text the completion must start with (a diversion that binds a name the suffix needs, see `run`): its
        # tokens are the model's own, restricted like healing to re-produce it, and it is part of the completion.
        self.force = force
        self._must = (heal + force).encode("utf-8")  # what the first tokens re-produce: the healed text, then force
        ctx = rules.ctx
        # A line completion on a line that holds only its indentation must start with code, not end the line.
        self.no_leading_newline = rules.mode == "line" and bool(ctx.line_prefix) and not ctx.line_prefix.strip()
        # What a line completion on an empty line must not be (see `run`, diversion): the next line again, or a
        # statement that ends the block when more of the block's code follows it.
        self.duplicate_of: str | None = None
        self.code_follows = False
        if rules.mode == "line" and not ctx.line_prefix.strip():
            self.duplicate_of = rules.next_line
            code = next((ln for ln in ctx.following_lines()
                         if ln.strip() and not ln.lstrip().startswith(_COMMENT_STARTS)), None)
            self.code_follows = code is not None and _indent_width(code) >= _indent_width(ctx.line_prefix)
        # A hole inside a word (`for op in oper|alance < 0:`): the rest of the cursor line cannot follow a line the
        # model writes from here, so the completion may run over several lines to where that rest fits (`_seek_join`).
        lp, ls = ctx.line_prefix, ctx.line_suffix
        inside_word = bool(_WORD_END.search(lp)) and bool(_WORD_START.match(ls))
        self.join = ls.strip() if rules.mode == "line" and inside_word and len(ls.strip()) >= JOIN_MIN_CHARS else ""
        self.replay = list(replay)  # tokens this candidate must start with (a diversion re-walking another's start)
        self.avoid = np.array(sorted(avoid), dtype=np.int64)  # tokens it must not take right after them
        self.refused: set[int] = set()  # first tokens of diversions that ended the block again (see `run`)
        self.acc = TextAccumulator()
        self.tokens: list[int] = []
        self.logprobs: list[float] = []  # nan for tokens that only re-produce the healed text
        self.entropies: list[float] = []
        self.text = ""  # the completion once finished (healed text excluded)
        self.reason: StopReason | None = None  # None while decoding
        self.decoded = 0  # tokens decoded, including those a stop rule cut off
        self.drafted = 0
        self.accepted = 0
        self.verified = 0

    def allowed(self, healing: HealingIndex) -> np.ndarray | None:
        """The tokens allowed next while the completion has not started yet (None: any): during token healing, those
        consistent with the healed text; right after it, when the completion must not start with whitespace, those
        that do not."""
        step = len(self.tokens)
        if step < len(self.replay):
            return np.array([self.replay[step]], dtype=np.int64)
        n_chars, n_heal = len(self.acc.text), len(self.heal)
        allowed = None
        if n_chars < n_heal + len(self.force):
            remaining = self._must[len(self.acc.text.encode("utf-8")) :]
            allowed = (healing.candidates(remaining, no_word=bool(_WORD_END.search(self.force))) if self.force else
                       healing.candidates(remaining, self.rules.no_leading_space, self.no_leading_newline))
        elif n_chars == n_heal and not self.force and (self.rules.no_leading_space or self.no_leading_newline):
            allowed = healing.candidates(b"", self.rules.no_leading_space, self.no_leading_newline)
        if step == len(self.replay) and len(self.avoid):
            if allowed is None:
                allowed = np.arange(healing.n_vocab, dtype=np.int64)
            allowed = allowed[~np.isin(allowed, self.avoid)]
        return allowed

    def dead_end(self) -> str | None:
        """Why a line completion that ended on its own cannot be what the hole holds, if it cannot: "unbound" (the
        code after the cursor reads names nothing defines, and this line binds none of them: names.needed), "repeat"
        (it only repeats the next line; a filter would drop it) or "unreachable" (it returns, raises, breaks or
        continues, and the block's code goes on below it: that code could never run)."""
        if self.reason not in (StopReason.NEWLINE, StopReason.EOS) or self.rules.mode != "line":
            return None
        text = self.text.strip()
        needs = self.rules.needed_names
        if needs and not names.binds_any(text, needs):
            return "unbound"
        if self.duplicate_of is not None and text == self.duplicate_of:
            return "repeat"
        if self.code_follows and _ENDS_FLOW.match(text):
            return "unreachable"
        return None

    def add(self, draw: Draw, piece: bytes) -> bool:
        """Take a drawn token; False when a stop rule ended the candidate with it."""
        self.tokens.append(draw.token)
        self.decoded += 1
        self.acc.add(piece)
        n_heal = len(self.heal)
        # Only tokens that produce new text speak about the completion's quality.
        self.logprobs.append(draw.logprob if len(self.acc.text) > n_heal else float("nan"))
        self.entropies.append(draw.entropy)
        if len(self.acc.text) < n_heal:
            return True
        text = self.acc.text[n_heal:]
        hit = self._seek_join(text, final=False) if self.join else self.rules.check(text)
        if hit is not None:
            self.cut(*hit)
            return False
        return True

    def cut(self, at: int, reason: StopReason) -> None:
        n_keep = self.acc.tokens_within(at + len(self.heal))
        self.text = self.acc.text[len(self.heal) : len(self.heal) + at]
        del self.tokens[n_keep:]
        del self.logprobs[n_keep:]
        del self.entropies[n_keep:]
        self.reason = StopReason(reason)

    def _seek_join(self, text: str, final: bool) -> tuple[int, StopReason] | None:
        """For a hole inside a word: (cut, reason) where the completion ends, else None (decode on).

        It ends where one of its lines (the cursor line with the prefix before it, or a later one) ends with the rest
        of the cursor line (`join`): cut there, that rest follows ("suffix"). Failing that within JOIN_LINES more
        lines (or at the model's end), it is one line, as in line mode ("newline")."""
        lines = text.split("\n")
        complete = lines if final else lines[:-1]
        offset = 0
        lp = self.rules.ctx.line_prefix
        for i, line in enumerate(complete):
            body = (lp + line if i == 0 else line).rstrip()
            start = len(lp) if i == 0 else 0
            if body.endswith(self.join) and len(body) - len(self.join) >= start:
                return offset + len(body) - len(self.join) - start, StopReason.SUFFIX
            offset += len(line) + 1
            if i >= JOIN_LINES:
                break
        if len(complete) > JOIN_LINES or (final and "\n" in text):
            return text.find("\n"), StopReason.NEWLINE
        return None

    def finish(self, reason: StopReason) -> None:
        self.text = self.acc.text[len(self.heal) :]
        self.reason = reason
        if reason in _FINAL_CHECK:
            hit = self._seek_join(self.text, True) if self.join else self.rules.check(self.text, final=True)
            if hit is not None:
                self.cut(*hit)
            elif reason in (StopReason.TIME, StopReason.MAX_TOKENS) and self.rules.mode == "block":
                # Out of time or tokens mid-line: complete lines only. An unfinished last line is where a looping
                # model was cut (it also hides the loop from remove_repetitive_lines: 8 copies of one comment and
                # a partial ninth). At the token limit a block without one complete line is a runaway line: nothing.
                if "\n" in self.text:
                    self.cut(self.text.rfind("\n"), reason)
                elif reason == StopReason.MAX_TOKENS:
                    self.cut(0, reason)

    def diversion(self, kind: str, attempt: int) -> tuple[list[int], set[int], str] | None:
        """(tokens to re-walk, tokens to refuse after them, text to start with) for this candidate's `attempt`-th
        diversion (0 first), or None when there is none. A repeat is left at its `attempt`-th least likely token that
        produced text, where the model was least sure; an unreachable statement at its first token of code
        (`return`), and at the first tokens of the diversions that ended the block again; an unbound line is
        started again so that it binds one of the names the suffix needs (names.binding_starts, the `attempt`-th)."""
        if kind == "unbound":
            starts = names.binding_starts(self.rules.ctx, self.text, self.rules.needed_names)
            if attempt >= len(starts):
                return None
            return [], set(), starts[attempt]
        content = [i for i, lp in enumerate(self.logprobs) if lp == lp]
        if not content:
            return None
        if kind == "unreachable":
            first = content[0]
            return self.tokens[:first], {self.tokens[first], *self.refused}, ""
        ranked = sorted(content, key=lambda i: self.logprobs[i])
        if attempt >= len(ranked):
            return None
        i = ranked[attempt]
        return self.tokens[:i], {self.tokens[i]}, ""

    def adopt(self, other: "Stream") -> None:
        """Take a diversion's outcome as this candidate's (its decoding work is added to this one's)."""
        self.acc, self.text, self.reason = other.acc, other.text, other.reason
        self.tokens, self.logprobs, self.entropies = other.tokens, other.logprobs, other.entropies
        self.decoded += other.decoded
        self.drafted += other.drafted
        self.accepted += other.accepted
        self.verified += other.verified

    def signals(self) -> tuple[list[float], list[float]]:
        """Log-probabilities and entropies of the kept tokens that produced new text."""
        keep = [i for i, lp in enumerate(self.logprobs) if lp == lp]
        ents = [self.entropies[i] for i in keep]
        if any(e != e for e in ents):  # a backend that gives no entropies (a remote server): none, not a partial list
            ents = []
        return [self.logprobs[i] for i in keep], ents


@dataclass(frozen=True)
class Limits:
    max_tokens: int
    deadline: float | None = None  # time.perf_counter() value; None: no time limit
    stop_ids: frozenset[int] = frozenset()  # tokens that end a completion besides the vocabulary's end-of-generation


def run(backend: Backend, streams: list[Stream], limits: Limits, healing: HealingIndex,
        cancelled: Callable[[], bool] = lambda: False) -> int:
    """Decode `streams` (forked from the evaluated prompt) until each has ended. Returns the batches fed.

    One greedy stream on a backend with `verify` (and its `speculative` switch on) decodes speculatively
    (`_run_drafted`).

    Diversion: a greedy line completion on an empty line that only repeats the next line would be dropped (it adds
    nothing), yet it says the model expects that code next — so the hole holds something before it. A model that
    reads no suffix writes the next line at every such hole (`return False` where `return True` comes before it).
    Such a candidate is decoded again from the same prompt along its own tokens up to the one it was least sure of,
    which it must not take again (then the second least sure: DIVERSIONS attempts), and the first diversion that
    ends its line with other code replaces it. Likewise a line that returns (raises, breaks, continues) where the
    block's code goes on below — the model, seeing no code after the cursor, ends the function at its first line —
    is decoded again without that first token of code."""
    batches = _run(backend, streams, limits, healing, cancelled)
    if not getattr(backend, "enumerable", True):  # a server's tokens cannot be restricted to the ones re-walked
        return batches
    for attempt in range(DIVERSIONS):
        stuck = [(s, kind) for s in streams if s.sampler.greedy and (kind := s.dead_end())]
        if not stuck or cancelled() or (limits.deadline is not None and time.perf_counter() >= limits.deadline):
            break
        tries: list[tuple[Stream, str, Stream]] = []
        for s, kind in stuck:
            d = s.diversion(kind, attempt)
            if d is not None:
                tries.append((s, kind, Stream(0, s.sampler, s.rules, s.heal, replay=d[0], avoid=d[1], force=d[2])))
        width = max(1, backend.n_seq)
        for start in range(0, len(tries), width):
            wave = tries[start : start + width]
            backend.fork(len(wave), limits.max_tokens)
            for j, (_, _, t) in enumerate(wave):
                t.seq = j
            batches += _run(backend, [t for _, _, t in wave], limits, healing, cancelled)
            for s, kind, t in wave:
                if t.reason in (StopReason.NEWLINE, StopReason.EOS) and t.text.strip() and not t.dead_end():
                    s.adopt(t)
                    continue
                s.decoded += t.decoded  # the work was done, though its outcome is not taken
                if kind == "unreachable" and len(t.tokens) > len(t.replay):
                    s.refused.add(t.tokens[len(t.replay)])
    return batches


def _run(backend: Backend, streams: list[Stream], limits: Limits, healing: HealingIndex,
         cancelled: Callable[[], bool]) -> int:
    if (len(streams) == 1 and streams[0].sampler.greedy and getattr(backend, "verify", None) is not None
            and getattr(backend, "speculative", False) and getattr(backend, "seq_tokens", None) is not None):
        return _run_drafted(backend, streams[0], limits, healing, cancelled)
    active = list(streams)
    batches = 0
    for step in range(limits.max_tokens):
        if cancelled():
            for s in active:
                s.finish(StopReason.CANCELLED)
            return batches
        feed: dict[int, int] = {}
        for s in active:
            d = backend.draw(s.seq, s.sampler, s.allowed(healing))
            if backend.is_eog(d.token) or d.token in limits.stop_ids:
                s.finish(StopReason.EOS)
            elif s.add(d, d.piece if d.piece is not None else backend.token_piece(d.token)):
                feed[s.seq] = d.token
        active = [s for s in active if s.reason is None]
        if not active:
            return batches
        if limits.deadline is not None and time.perf_counter() >= limits.deadline:
            for s in active:
                s.finish(StopReason.TIME)
            return batches
        if step == limits.max_tokens - 1:
            break
        backend.feed(feed)
        batches += 1
    for s in active:
        s.finish(StopReason.MAX_TOKENS)
    return batches


def _run_drafted(backend: Backend, s: Stream, limits: Limits, healing: HealingIndex,
                 cancelled: Callable[[], bool]) -> int:
    """`run` for one greedy stream, speculatively: where `feed` would append the token just drawn, `verify` appends
    it with a draft (PromptLookup) in one batch and returns the draws after each; those that re-produce the draft are
    already in the sequence and are taken as the next steps' draws, the last one (the model's token after the
    agreeing draft) is the next step's draw. Each step is otherwise the one of `run`: cancellation before, the
    end-of-generation and stop tokens, the stop rules, the deadline and the token limit after each token.

    Drafts only once the completion has started (no token restriction: `Stream.allowed` is None, and stays so)."""
    verify = backend.verify  # type: ignore[attr-defined]
    history = PromptLookup(backend.seq_tokens(s.seq), limits.max_tokens + DRAFT_TOKENS)  # type: ignore[attr-defined]
    pending: list[Draw] = []  # draws a verify batch made, next first; all but the last are in the sequence already
    batches = 0
    for step in range(limits.max_tokens):
        if cancelled():
            s.finish(StopReason.CANCELLED)
            return batches
        if pending:
            d = pending.pop(0)
            in_seq = bool(pending)
        else:
            d = backend.draw(s.seq, s.sampler, s.allowed(healing))
            in_seq = False
        if backend.is_eog(d.token) or d.token in limits.stop_ids:
            s.finish(StopReason.EOS)
            return batches
        if not s.add(d, d.piece if d.piece is not None else backend.token_piece(d.token)):
            return batches
        history.append(d.token)
        if limits.deadline is not None and time.perf_counter() >= limits.deadline:
            s.finish(StopReason.TIME)
            return batches
        if step == limits.max_tokens - 1:
            break
        if in_seq:
            continue
        # Tokens still to draw after this one (the draft leaves the last to the draw after it), and room in the context.
        limit = min(limits.max_tokens - step - 2, backend.n_ctx - history.n)
        draft = history.propose(limit, getattr(backend, "verify_cost", VERIFY_COST)) if s.allowed(healing) is None else []
        if draft:
            pending = verify(s.seq, [d.token, *draft], s.sampler)
            s.verified += 1
            s.drafted += len(draft)
            s.accepted += len(pending) - 1
        else:
            backend.feed({s.seq: d.token})
        batches += 1
    s.finish(StopReason.MAX_TOKENS)
    return batches
