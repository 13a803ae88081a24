"""The engine: context → prompt → decode → post-process → cache, over one backend (backend.Backend).

One request, one straight line: `prepare` turns it into its context, prompt and cache key once (`Prepared`); `complete`
answers from the typed-through state or the completion cache, or decodes one candidate; `sample` decodes n candidates
from one prompt evaluation — `complete`'s decode is its n = 1 case (decode.run over `Stream`s).

Thread-safety: `complete` and `sample` may be called from several threads (the language server's workers); the
backend runs one request at a time under the engine's lock, and so does every read and write of the engine's caches.
A newer request for the same document makes an older one still decoding stop between two tokens (stop reason
CANCELLED), so a fast typist never waits for a stale completion.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Callable, Sequence

from .backend import Backend
from .config import GPU_SCALE, SAMPLE_TEMPERATURE, SAMPLE_TOP_P, BudgetConfig, EngineConfig
from .context import CompletionContext, Position, Range, build_context, offset_of
from .decode import HealingIndex, Limits, Stream, run
from .filters import postprocess
from .fim import Format, resolve_format
from .llama import LlamaRuntime
from .models import resolve_model
from .prompt import Prompt, PromptBuilder
from .sampler import Sampler
from .selection import contenders, rank
from .stops import StopRules
from .suffix import SUFFIX_WINDOW_TOKENS, continuation, suffix_score
from .types import DEFAULT, Candidate, Completion, CompletionRequest, SampleSet, StopReason, Timings

if TYPE_CHECKING:
    from .remote import ServerSettings

log = logging.getLogger(__name__)

# The post-processor reads the lines after the cursor, not only the prompt: this much of the suffix keys the caches.
SUFFIX_KEY_CHARS = 2000


@dataclass(frozen=True)
class Prepared:
    """A request turned into what every later step takes: its context, its prompt (fitted into the context window)
    and its cache key. Built once by `Engine.prepare`; the prompt is tokenized on first use, so an answer from the
    user's typing through the last completion (which needs only the context) costs no tokenization."""

    request: CompletionRequest
    context: CompletionContext
    max_tokens: int  # this completion's token limit (line mode caps it)
    _build: Callable[[], tuple[Prompt, tuple[int, ...], str]] = field(repr=False, compare=False)

    @cached_property
    def _built(self) -> tuple[Prompt, tuple[int, ...], str]:
        return self._build()

    @property
    def prompt(self) -> Prompt:
        return self._built[0]

    @property
    def tokens(self) -> tuple[int, ...]:
        """The prompt's tokens, cut to leave room for the completion."""
        return self._built[1]

    @property
    def key(self) -> str:
        """Completion-cache key."""
        return self._built[2]

    @property
    def suffix_key(self) -> str:
        return self.context.suffix[:SUFFIX_KEY_CHARS]


@dataclass(frozen=True)
class _Answer:
    """A finished decode, as the completion cache keeps it."""

    raw: str
    logprobs: tuple[float, ...]


@dataclass(frozen=True)
class _LastCompletion:
    """A document's last shown completion, for answering the user's typing through it."""

    prefix: str
    suffix_key: str
    raw: str
    logprobs: tuple[float, ...]
    mode: str


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self._d: collections.OrderedDict[str, _Answer] = collections.OrderedDict()

    def get(self, key: str) -> _Answer | None:
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
        return v

    def put(self, key: str, value: _Answer) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)


class Engine:
    def __init__(self, backend: Backend, config: EngineConfig, fmt: Format | None = None):
        self.backend = backend
        self.config = config
        self.format = fmt or resolve_format(backend, spm=config.spm)
        # Token healing restricts the first tokens by their text: it needs every token's piece (not a server's
        # tokenizer, whose pieces cannot all be read; see remote.ServerVocab).
        self.builder = PromptBuilder(backend, self.format, config.budget, heal=getattr(backend, "enumerable", True))
        self.model_path = backend.path
        self.model_name = getattr(backend, "server_model", None) or os.path.basename(backend.path)
        self._healing = HealingIndex(backend)
        self._lock = threading.Lock()  # the backend: one request evaluates at a time
        # Background work (warm, precompute) yields to requests: each request sets the events of the background jobs
        # that are running or waiting, and they stop at their next micro-batch or token.
        self._background: set[threading.Event] = set()
        self._state_lock = threading.Lock()  # tickets and caches below (never held while decoding)
        self._latest: dict[str, int] = {}  # per document: the ticket of its newest request
        self._counter = 0
        self._cache = _LRU(config.cache_entries)
        self._last: dict[str, _LastCompletion] = {}
        self._sha256: str | None = None

    # ---------------------------------------------------------------- construction
    @classmethod
    def load(
        cls,
        config: EngineConfig | None = None,
        progress: Callable[[float], None] | None = None,
        model: str | None = None,
    ) -> "Engine":
        """Load the configured model (the embedded default when none is named) into the in-process backend."""
        config = config or EngineConfig()
        path = resolve_model(model or config.model_path)
        rt = LlamaRuntime(
            path,
            n_ctx=config.n_ctx,
            n_batch=config.n_batch,
            n_threads=config.n_threads,
            n_gpu_layers=config.n_gpu_layers,
            n_seq=config.n_seq,
            windows=config.windows,
            progress=progress,
        )
        config = replace(config, model_path=path)
        if rt.accelerated and config.budget == BudgetConfig():
            config = replace(config, budget=config.budget.scaled(GPU_SCALE))  # prompts are cheap on a GPU
        return cls(rt, config)

    @classmethod
    def connect(cls, server: "ServerSettings", config: EngineConfig | None = None, model: str | None = None,
                progress: Callable[[float], None] | None = None) -> "Engine":
        """An engine whose backend is an inference server (remote.RemoteBackend). `model` (or the config's): the
        served model's GGUF, loaded vocabulary-only for exact local tokenization (checked against the server's
        tokenizer where it has one); none: the server's /tokenize."""
        from .remote import RemoteBackend, check_vocab

        config = config or EngineConfig()
        vocab = None
        path = model or config.model_path
        if path:
            vocab = LlamaRuntime(resolve_model(path), vocab_only=True, progress=progress)
        try:
            backend = RemoteBackend(server, vocab, n_seq=config.n_seq, n_ctx=config.n_ctx)
            if vocab is not None:
                check_vocab(backend)
        except BaseException:
            if vocab is not None:
                vocab.close()
            raise
        return cls(backend, config)

    def close(self) -> None:
        self._foreground()  # background work stops at its next micro-batch, and the backend is closed after it
        with self._lock:
            self.backend.close()

    @property
    def family(self) -> str:
        return self.format.name

    @property
    def remote(self) -> bool:
        """The backend is an inference server (remote.RemoteBackend)."""
        return getattr(self.backend, "server_model", None) is not None

    @property
    def accelerated(self) -> bool:
        """The model runs on a GPU (or a server): parallel candidates cost about what one does."""
        return self.backend.accelerated

    def model_info(self) -> dict:
        remote = getattr(self.backend, "info", None)
        if getattr(self.backend, "server_model", None) is not None and remote is not None:
            return {
                "server": self.backend.client.display,  # never the API key
                "protocol": remote.protocol,
                "name": self.model_name,
                "family": self.family,
                "fim": self.format.is_fim,
                "tokenizer": "server" if not getattr(self.backend, "enumerable", True) else "local GGUF",
                "n_ctx": self.backend.n_ctx,
                "slots": remote.n_slots,
                "accelerated": True,
                "config": asdict(self.config),
            }
        if self._sha256 is None:
            h = hashlib.sha256()
            with open(self.model_path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            self._sha256 = h.hexdigest()
        return {
            "path": self.model_path,
            "name": self.model_name,
            "sha256": self._sha256,
            "size": os.path.getsize(self.model_path),
            "family": self.family,
            "fim": self.format.is_fim,
            "description": self.backend.describe(),
            "n_ctx": self.backend.n_ctx,
            "n_threads": self.backend.n_threads,
            "accelerated": self.backend.accelerated,
            "extra_buffer_types": getattr(self.backend, "use_extra_bufts", None),  # llama.cpp in-process only
            "config": asdict(self.config),
        }

    # ---------------------------------------------------------------- preparing a request
    def prepare(self, req: CompletionRequest | Prepared) -> Prepared:
        """The request's context, prompt and cache key, built once for every later step (a Prepared is returned
        as it is, so every step may take either)."""
        if isinstance(req, Prepared):
            return req
        ctx = build_context(
            req.text, req.line, req.character, path=req.path, language=req.language, snippets=req.snippets,
            mode=req.mode,
        )
        requested = req.max_tokens if req.max_tokens is not None else self.config.decode.max_tokens
        # The completion may take at most half of the context: the rest is the document's (a limit past the context
        # used to cut the prompt down to its first token).
        requested = max(1, min(requested, self.backend.n_ctx // 2))
        limit = min(requested, self.config.decode.max_line_tokens) if ctx.mode == "line" else requested

        def build() -> tuple[Prompt, tuple[int, ...], str]:
            prompt = self.builder.build(ctx)
            tokens = self._fit(prompt.tokens, requested)
            return prompt, tokens, self._cache_key(ctx, tokens, limit, req)

        return Prepared(req, ctx, limit, build)

    def _fit(self, tokens: tuple[int, ...], max_tokens: int) -> tuple[int, ...]:
        """Keep the prompt inside the context: drop tokens from the far end of the prefix side if needed."""
        room = self.backend.n_ctx - max_tokens - 1
        if len(tokens) <= room:
            return tokens
        log.warning("prompt of %d tokens exceeds the context; keeping the last %d", len(tokens), room)
        head = (self.format.bos,) if self.format.bos is not None else ()
        return head + tokens[len(tokens) - room + len(head) :]

    def _cache_key(self, ctx: CompletionContext, tokens: Sequence[int], limit: int, req: CompletionRequest) -> str:
        h = hashlib.blake2b(digest_size=16)
        for part in (
            self.model_path, ctx.mode, str(limit), str(req.temperature), str(req.top_p), str(req.seed),
            str(self.config.decode.max_lines),
        ):
            h.update(part.encode() + b"\0")
        h.update(repr(tuple(tokens)).encode())
        h.update(ctx.line_prefix.encode() + b"\0" + ctx.suffix[:SUFFIX_KEY_CHARS].encode())
        return h.hexdigest()

    def _deadline(self, req: CompletionRequest) -> float | None:
        budget = self.config.decode.time_budget_ms if req.time_budget_ms is DEFAULT else req.time_budget_ms
        return None if budget is None else time.perf_counter() + budget / 1000.0

    # ---------------------------------------------------------------- supersession
    def _ticket(self, doc: str | None) -> Callable[[], bool]:
        """A new request for `doc`; returns its `superseded()` check (true once a newer request for `doc` came)."""
        with self._state_lock:
            self._counter += 1
            n = self._counter
            if doc is not None:
                self._latest[doc] = n
        return lambda: doc is not None and self._latest.get(doc, n) != n

    # ---------------------------------------------------------------- answers
    def _finish(self, ctx: CompletionContext, raw: str, reason: StopReason, logprobs: Sequence[float],
                timings: Timings) -> Completion:
        cursor = Position(ctx.line, ctx.character)
        return Completion(
            text=postprocess(ctx, raw) if reason != StopReason.CANCELLED else "",
            range=Range(cursor, cursor),
            stop_reason=reason,
            mode=ctx.mode,
            timings=timings,
            raw=raw,
            token_logprobs=tuple(logprobs),
            model=self.model_name,
        )

    def _typed_through(self, p: Prepared, t0: float) -> Completion | None:
        """The user typed what the last completion predicted: answer with the rest of it, no model call."""
        req, ctx = p.request, p.context
        if req.document_id is None or not req.use_cache or req.temperature > 0:
            return None
        with self._state_lock:
            last = self._last.get(req.document_id)
        if last is None or p.suffix_key != last.suffix_key or not ctx.prefix.startswith(last.prefix):
            return None
        typed = ctx.prefix[len(last.prefix) :]
        if not typed or "\n" in typed or not last.raw.startswith(typed):
            return None
        rest = last.raw[len(typed) :]
        if not rest.strip():
            return None
        timings = Timings(total_ms=(time.perf_counter() - t0) * 1000)
        return self._finish(replace(ctx, mode=last.mode), rest, StopReason.TYPED, (), timings)

    def complete(self, req: CompletionRequest | Prepared, cancel: threading.Event | None = None) -> Completion:
        """One completion (greedy when the request's temperature is 0): from the user's typing through the
        document's last completion, from the completion cache, or decoded (`sample`'s n = 1 case)."""
        t0 = time.perf_counter()
        p = self.prepare(req)
        req = p.request
        superseded = self._ticket(req.document_id)
        hit = self._typed_through(p, t0)
        if hit is not None:
            return hit
        if req.use_cache and req.temperature <= 0:
            with self._state_lock:
                cached = self._cache.get(p.key)
            if cached is not None:
                self._remember(p, p.context.mode, cached.raw, cached.logprobs)
                return self._finish(p.context, cached.raw, StopReason.CACHE, cached.logprobs,
                                    Timings(total_ms=(time.perf_counter() - t0) * 1000))
        sampler = Sampler(req.temperature, req.top_p, req.seed)
        result = self._decode(p, [sampler], p.max_tokens, cancel, superseded, t0).candidates[0]
        c = result.completion
        if c.stop_reason not in (StopReason.CANCELLED, StopReason.TIME):
            with self._state_lock:
                self._cache.put(p.key, _Answer(c.raw, c.token_logprobs))
        if c.stop_reason != StopReason.CANCELLED and req.temperature <= 0:
            # (a sample the user may never see must not answer their typing later)
            self._remember(p, c.mode, c.raw, c.token_logprobs)
        return c

    def sample(
        self,
        req: CompletionRequest | Prepared,
        n: int,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        include_greedy: bool = True,
        max_tokens: int | None = None,
        cancel: threading.Event | None = None,
        seed_offset: int = 0,
    ) -> SampleSet:
        """`n` candidates from one prompt evaluation, decoded together one token per candidate per batch.

        Candidate 0 is greedy unless `include_greedy=False`; the others sample at `temperature`/`top_p` (default: the
        request's, or SAMPLE_TEMPERATURE/SAMPLE_TOP_P when the request is greedy) with seeds req.seed + seed_offset +
        i. Each records untempered per-token log-probabilities and entropies (the gate's signals). `max_tokens`
        overrides the request's limit. Candidates beyond the backend's `n_seq` are decoded in further waves that
        still share the evaluated prompt. No cache: every candidate is decoded.
        """
        if n < 1:
            raise ValueError("n must be at least 1")
        t0 = time.perf_counter()
        p = self.prepare(req)
        req = p.request
        temp = temperature if temperature is not None else (req.temperature if req.temperature > 0 else SAMPLE_TEMPERATURE)
        tp = top_p if top_p is not None else (req.top_p if req.top_p < 1.0 else SAMPLE_TOP_P)
        samplers = [Sampler(0.0 if include_greedy and i == 0 else temp, tp, req.seed + seed_offset + i)
                    for i in range(n)]
        return self._decode(p, samplers, max_tokens if max_tokens is not None else p.max_tokens, cancel,
                            self._ticket(req.document_id), t0)

    def complete_many(self, req: CompletionRequest, n: int, cancel: threading.Event | None = None) -> list[Completion]:
        """`n` completions for `req` from one prompt evaluation, each sampled at the request's temperature/top-p with
        its own seed (req.seed + i). At temperature 0 all n would be the same greedy answer: decoded once, repeated."""
        if n < 1:
            return []
        if req.temperature <= 0:
            return [self.sample(req, 1, cancel=cancel).candidates[0].completion] * n
        s = self.sample(req, n, temperature=req.temperature, top_p=req.top_p, include_greedy=False, cancel=cancel)
        return [c.completion for c in s.candidates]

    # ---------------------------------------------------------------- the suffix as evidence (prefix-only models)
    @property
    def scores_suffix(self) -> bool:
        """Whether `score_suffix` can judge candidates by the text after the hole: the model has no FIM tokens (a FIM
        model reads the suffix in its prompt already) and the backend can score tokens (llama.cpp in-process; an
        inference server's completion APIs return no log-probabilities of given tokens, so not there)."""
        return not self.format.is_fim and getattr(self.backend, "score", None) is not None

    def score_suffix(self, req: CompletionRequest | Prepared, candidates: Sequence[Candidate], *,
                     window: int = SUFFIX_WINDOW_TOKENS, cancel: threading.Event | None = None) -> list[Candidate]:
        """`candidates` with their `suffix` score (types.SuffixScore): how likely the model finds the first `window`
        tokens after the hole once the candidate is in place (suffix.continuation: tokenized with the candidate).
        Each distinct text is scored once; all of them as continuations of the prompt in one batch (backend
        `score`, in waves of its sequences). Returned unscored (as given) where the engine cannot score
        (`scores_suffix`), when cancelled, or for a text the vocabulary cannot reproduce; a cancelled candidate is
        never scored. A request: background work yields first."""
        cands = list(candidates)
        if not self.scores_suffix or not cands or (cancel is not None and cancel.is_set()):
            return cands
        p = self.prepare(req)
        heal, suffix = p.prompt.heal, p.context.suffix
        conts: dict[str, object] = {}
        for c in cands:
            if c.completion.stop_reason != StopReason.CANCELLED and c.text not in conts:
                conts[c.text] = continuation(self.backend, heal, c.text, suffix, window)
        todo = [(text, cont) for text, cont in conts.items() if cont is not None and cont.tokens]
        if not todo:
            return cands
        self._foreground()
        with self._lock:
            if cancel is not None and cancel.is_set():
                return cands
            try:
                lps = self.backend.score(p.tokens, [cont.tokens for _t, cont in todo])
            finally:
                self.backend.rewind()
        scores = {text: suffix_score(cont, lp) for (text, cont), lp in zip(todo, lps)}
        return [replace(c, suffix=scores[c.text]) if c.text in scores and c.completion.stop_reason != StopReason.CANCELLED
                else c for c in cands]

    def choose(self, req: CompletionRequest | Prepared, candidates: Sequence[Candidate], method: str = "auto", *,
               cancel: threading.Event | None = None) -> list[Candidate]:
        """`candidates` best first by selection `method` (selection.rank); `suffix` scores them first
        (`score_suffix`), and where the engine cannot score (a FIM model, an inference server) ranks as `auto`
        does — selection.rank's rule for unscored candidates."""
        cands = list(candidates)
        ctx = self.prepare(req).context
        if method == "suffix" and len({c.text for c in cands}) > 1 and self.scores_suffix:
            # Only what would not be dropped anyway (empty, breaking the syntax) is worth a place in the batch.
            worth = {id(c) for c in contenders(cands, ctx)}
            if len({c.text for c in cands if id(c) in worth}) > 1:
                scored = iter(self.score_suffix(req, [c for c in cands if id(c) in worth], cancel=cancel))
                cands = [next(scored) if id(c) in worth else c for c in cands]
        return rank(cands, ctx, method)

    # ---------------------------------------------------------------- background work (idle time)
    @contextlib.contextmanager
    def _yielding(self, cancel: threading.Event | None):
        """For background work: a `stop()` that turns true once a request comes (or `cancel` is set)."""
        came = threading.Event()
        with self._state_lock:
            self._background.add(came)
        try:
            yield lambda: came.is_set() or (cancel is not None and cancel.is_set())
        finally:
            with self._state_lock:
                self._background.discard(came)

    def _foreground(self) -> None:
        """A request is here: background work stops at its next micro-batch or token."""
        with self._state_lock:
            for came in self._background:
                came.set()

    def warm(self, req: CompletionRequest | Prepared, cancel: threading.Event | None = None) -> tuple[int, int]:
        """Evaluate into the KV cache, ahead of time, the prompt `req` needs (the person has moved there and will
        type), so that the request itself evaluates only its last tokens. Background work: it stops between two
        micro-batches as soon as a request comes. Nothing on a backend that cannot (a remote server).
        Returns (tokens reused, tokens evaluated)."""
        warm = getattr(self.backend, "warm", None)
        if warm is None:
            return 0, 0
        p = self.prepare(req)
        with self._yielding(cancel) as stop:
            if stop():
                return 0, 0
            tokens = p.tokens
            with self._lock:
                return warm(tokens, stop)

    def precompute(self, req: CompletionRequest, cancel: threading.Event | None = None) -> Completion | None:
        """Decode `req`'s greedy completion in the background into the completion cache, so that the request, when
        it comes, is answered from it at once (the next completion after the person accepts a suggestion). Stops at
        the next token when a request comes; an answer cut short is not kept. None when it was not decoded
        (not greedy, already cached, or stopped before it began)."""
        if req.temperature > 0:
            return None
        t0 = time.perf_counter()
        # No document id: it must neither supersede that document's requests nor answer its typing (`_remember`).
        p = self.prepare(replace(req, document_id=None, time_budget_ms=None, use_cache=True))
        with self._state_lock:
            if self._cache.get(p.key) is not None:
                return None
        with self._yielding(cancel) as stop:
            if stop():
                return None
            s = self._decode(p, [Sampler(0.0, p.request.top_p, p.request.seed)], p.max_tokens, None, stop, t0,
                             background=True)
        c = s.candidates[0].completion
        if c.stop_reason in (StopReason.CANCELLED, StopReason.TIME):
            return None
        with self._state_lock:
            self._cache.put(p.key, _Answer(c.raw, c.token_logprobs))
        return c

    def _decode(self, p: Prepared, samplers: list[Sampler], limit: int, cancel: threading.Event | None,
                superseded: Callable[[], bool], t0: float, background: bool = False) -> SampleSet:
        """The decode loop for every path: evaluate the prompt once, fork it to the candidates (in waves of at most
        the backend's sequences), run the streams, finish each into a Candidate. A request (not `background`) first
        makes background work yield."""

        def cancelled() -> bool:
            return (cancel is not None and cancel.is_set()) or superseded()

        if not background:
            self._foreground()

        backend = self.backend
        rules = StopRules(p.context, self.config.decode.max_lines)
        streams = [Stream(0, s, rules, p.prompt.heal) for s in samplers]
        reused = evaluated = batches = 0
        prompt_ms = decode_ms = 0.0
        with self._lock:
            if cancelled():
                for s in streams:
                    s.finish(StopReason.CANCELLED)
            else:
                tp = time.perf_counter()
                reused, evaluated = backend.evaluate(p.tokens)
                prompt_ms = (time.perf_counter() - tp) * 1000
                limits = Limits(limit, self._deadline(p.request), self.format.stop_ids)
                td = time.perf_counter()
                try:
                    width = max(1, backend.n_seq)
                    for start in range(0, len(streams), width):
                        wave = streams[start : start + width]
                        backend.fork(len(wave), limit)
                        for j, s in enumerate(wave):
                            s.seq = j
                        batches += run(backend, wave, limits, self._healing, cancelled)
                finally:
                    backend.rewind()
                decode_ms = (time.perf_counter() - td) * 1000
        total_ms = (time.perf_counter() - t0) * 1000
        n_prompt = len(p.tokens)
        candidates = []
        for i, s in enumerate(streams):
            lps, ents = s.signals() if s.reason != StopReason.CANCELLED else ([], [])
            t = Timings(
                prompt_tokens=n_prompt,
                prompt_reused=reused if i == 0 else n_prompt,
                prompt_evaluated=evaluated if i == 0 else 0,
                prompt_ms=prompt_ms if i == 0 else 0.0,
                decode_tokens=s.decoded,
                decode_ms=decode_ms / len(streams),
                total_ms=total_ms,
            )
            comp = self._finish(p.context, s.text if s.reason != StopReason.CANCELLED else "", s.reason, lps, t)
            candidates.append(Candidate(comp, index=i, seed=s.sampler.seed, greedy=s.sampler.greedy, entropies=tuple(ents),
                                        tokens=tuple(s.tokens), decoded_tokens=s.decoded))
        timings = Timings(
            prompt_tokens=n_prompt, prompt_reused=reused, prompt_evaluated=evaluated, prompt_ms=prompt_ms,
            decode_tokens=sum(s.decoded for s in streams), decode_ms=decode_ms, total_ms=total_ms,
        )
        return SampleSet(candidates, p.context, p.request, timings, batches)

    def reset(self) -> None:
        """Forget everything cached: completions, what each document was last shown, and the KV cache (benchmarks
        start each run from here)."""
        with self._lock:
            with self._state_lock:
                self._cache = _LRU(self.config.cache_entries)
                self._last.clear()
            self.backend.clear()

    # ---------------------------------------------------------------- per-document state
    def forget(self, document_id: str) -> None:
        """Drop per-document state (the editor closed the document)."""
        with self._state_lock:
            self._last.pop(document_id, None)
            self._latest.pop(document_id, None)

    def remember(self, req: CompletionRequest | Prepared, completion: Completion) -> None:
        """Make `completion` (shown to the user for `req`, e.g. a sampled candidate the language server chose) the
        document's last completion, so that typing through it is answered from it."""
        if completion.stop_reason in (StopReason.CANCELLED, StopReason.TYPED) or not completion.raw:
            return
        self._remember(self.prepare(req), completion.mode, completion.raw, completion.token_logprobs)

    def _remember(self, p: Prepared, mode: str, raw: str, logprobs: Sequence[float]) -> None:
        doc = p.request.document_id
        if doc is not None:
            with self._state_lock:
                self._last[doc] = _LastCompletion(p.context.prefix, p.suffix_key, raw, tuple(logprobs), mode)


def apply_completion(text: str, completion: Completion) -> str:
    """The document `text` with `completion` applied (its text replaces its range)."""
    start = offset_of(text, completion.range.start.line, completion.range.start.character)
    end = offset_of(text, completion.range.end.line, completion.range.end.character)
    return text[:start] + completion.text + text[end:]
