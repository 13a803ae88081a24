"""The engine: context → prompt → decode → post-process → cache, over one loaded model.

Thread-safety: `complete` may be called from several threads (the language server's workers); the model runs one
request at a time. A newer request for the same document makes an older one still decoding stop between two tokens
(stop reason "cancelled"), so a fast typist never waits for a stale completion.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import threading
import time
from dataclasses import asdict, replace
from typing import Callable

from .config import GPU_SCALE, BudgetConfig, EngineConfig
from .context import CompletionContext, Position, Range, build_context
from .decode import Sampler, generate
from .filters import postprocess
from .fim import Format, resolve_format
from .llama import LlamaRuntime
from .models import resolve_model
from .prompt import Prompt, PromptBuilder
from .stops import StopRules
from .types import Completion, CompletionRequest, Timings

log = logging.getLogger(__name__)


class _Cache:
    """LRU of finished completions keyed by the prompt-relevant inputs."""

    def __init__(self, size: int):
        self.size = size
        self._d: collections.OrderedDict[str, tuple[str, str, tuple[float, ...]]] = collections.OrderedDict()

    def get(self, key: str):
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
        return v

    def put(self, key: str, value) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.size:
            self._d.popitem(last=False)


class Engine:
    def __init__(self, runtime: LlamaRuntime, config: EngineConfig, fmt: Format | None = None):
        self.runtime = runtime
        self.config = config
        self.format = fmt or resolve_format(runtime, spm=config.spm)
        self.builder = PromptBuilder(runtime, self.format, config.budget)
        self.model_path = runtime.path
        self.model_name = os.path.basename(runtime.path)
        self._lock = threading.Lock()
        self._latest: dict[str, int] = {}
        self._counter = 0
        self._counter_lock = threading.Lock()
        self._cache = _Cache(config.cache_entries)
        # per document: (prompt prefix text, suffix text, raw completion, logprobs, mode) of the last decode
        self._last: dict[str, tuple[str, str, str, tuple[float, ...], str]] = {}
        self._sha256: str | None = None

    # ---------------------------------------------------------------- construction
    @classmethod
    def load(
        cls,
        config: EngineConfig | None = None,
        progress: Callable[[float], None] | None = None,
        model: str | None = None,
    ) -> "Engine":
        """Load the configured model (the embedded default when none is named)."""
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
        if rt.gpu_offload and config.budget == BudgetConfig():
            config = replace(config, budget=config.budget.scaled(GPU_SCALE))  # prompts are cheap on a GPU
        return cls(rt, config)

    def close(self) -> None:
        self.runtime.close()

    @property
    def family(self) -> str:
        return self.format.name

    def model_info(self) -> dict:
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
            "description": self.runtime.describe(),
            "n_ctx": self.runtime.n_ctx,
            "n_threads": self.runtime.n_threads,
            "extra_buffer_types": self.runtime.use_extra_bufts,
            "config": asdict(self.config),
        }

    # ---------------------------------------------------------------- requests
    def context_for(self, req: CompletionRequest) -> CompletionContext:
        return build_context(
            req.text, req.line, req.character, path=req.path, language=req.language, snippets=req.snippets,
            mode=req.mode,
        )

    def prompt_for(self, ctx: CompletionContext) -> Prompt:
        return self.builder.build(ctx)

    def _ticket(self, doc: str | None) -> tuple[str | None, int]:
        with self._counter_lock:
            self._counter += 1
            if doc is not None:
                self._latest[doc] = self._counter
            return doc, self._counter

    def _superseded(self, ticket: tuple[str | None, int]) -> bool:
        doc, n = ticket
        return doc is not None and self._latest.get(doc, n) != n

    def _max_tokens(self, req: CompletionRequest, mode: str | None = None) -> int:
        n = req.max_tokens if req.max_tokens is not None else self.config.decode.max_tokens
        return min(n, self.config.decode.max_line_tokens) if mode == "line" else n

    def _deadline(self, req: CompletionRequest, start: float) -> float | None:
        budget = self.config.decode.time_budget_ms if req.time_budget_ms == -1.0 else req.time_budget_ms
        return None if budget is None else start + budget / 1000.0

    def _cache_key(self, ctx: CompletionContext, prompt: Prompt, req: CompletionRequest) -> str:
        h = hashlib.blake2b(digest_size=16)
        for part in (
            self.model_path, ctx.mode, str(self._max_tokens(req, ctx.mode)), str(req.temperature), str(req.top_p), str(req.seed),
            str(self.config.decode.max_lines),
        ):
            h.update(part.encode() + b"\0")
        h.update(repr(prompt.tokens).encode())
        # The post-processor sees more than the prompt: the cursor line and the lines after it.
        h.update(ctx.line_prefix.encode() + b"\0" + ctx.suffix[:2000].encode())
        return h.hexdigest()

    def _finish(
        self, ctx: CompletionContext, raw: str, reason: str, logprobs, timings: Timings
    ) -> Completion:
        text = postprocess(ctx, raw)
        cursor = Position(ctx.line, ctx.character)
        return Completion(
            text=text,
            range=Range(cursor, cursor),
            stop_reason=reason,
            mode=ctx.mode,
            timings=timings,
            raw=raw,
            token_logprobs=tuple(logprobs),
            model=self.model_name,
        )

    def _typed_through(self, req: CompletionRequest, ctx: CompletionContext, t0: float) -> Completion | None:
        """The user typed what the last completion predicted: answer with the rest of it, no model call."""
        if req.document_id is None or not req.use_cache or req.temperature > 0:
            return None
        last = self._last.get(req.document_id)
        if last is None:
            return None
        old_prefix, old_suffix, raw, logprobs, mode = last
        if ctx.suffix[:2000] != old_suffix or not ctx.prefix.startswith(old_prefix):
            return None
        typed = ctx.prefix[len(old_prefix) :]
        if not typed or "\n" in typed or not raw.startswith(typed):
            return None
        rest = raw[len(typed) :]
        if not rest.strip():
            return None
        rest_ctx = replace(ctx, mode=mode)
        timings = Timings(total_ms=(time.perf_counter() - t0) * 1000)
        return self._finish(rest_ctx, rest, "typed", (), timings)

    def complete(self, req: CompletionRequest, cancel: threading.Event | None = None) -> Completion:
        """One completion for `req` (greedy when `req.temperature` is 0)."""
        t0 = time.perf_counter()
        ctx = self.context_for(req)
        ticket = self._ticket(req.document_id)
        hit = self._typed_through(req, ctx, t0)
        if hit is not None:
            return hit
        prompt = self.prompt_for(ctx)
        key = self._cache_key(ctx, prompt, req)
        if req.use_cache and req.temperature <= 0:
            cached = self._cache.get(key)
            if cached is not None:
                raw, _reason, logprobs = cached
                self._remember(req, ctx, raw, logprobs)
                return self._finish(ctx, raw, "cache", logprobs, Timings(total_ms=(time.perf_counter() - t0) * 1000))

        def cancelled() -> bool:
            return (cancel is not None and cancel.is_set()) or self._superseded(ticket)

        with self._lock:
            if cancelled():
                return self._finish(ctx, "", "cancelled", (), Timings(total_ms=(time.perf_counter() - t0) * 1000))
            tokens = self._fit(prompt.tokens, self._max_tokens(req))
            tp = time.perf_counter()
            reused, evaluated = self.runtime.sync(tokens)
            prompt_ms = (time.perf_counter() - tp) * 1000
            gen = generate(
                self.runtime,
                StopRules(ctx, self.config.decode.max_lines),
                Sampler(req.temperature, req.top_p, req.seed),
                max_tokens=self._max_tokens(req, ctx.mode),
                deadline=self._deadline(req, time.perf_counter()),
                stop_ids=self.format.stop_ids,
                cancelled=cancelled,
                heal=prompt.heal,
            )
        timings = Timings(
            prompt_tokens=len(tokens),
            prompt_reused=reused,
            prompt_evaluated=evaluated,
            prompt_ms=prompt_ms,
            decode_tokens=len(gen.tokens),
            decode_ms=gen.decode_ms,
            total_ms=(time.perf_counter() - t0) * 1000,
        )
        if gen.stop_reason not in ("cancelled", "time"):
            self._cache.put(key, (gen.text, gen.stop_reason, tuple(gen.token_logprobs)))
        if gen.stop_reason == "cancelled":  # stale: nobody wants half of it
            return self._finish(ctx, "", "cancelled", (), timings)
        if req.temperature <= 0:  # a sample the user may never see must not answer their typing later
            self._remember(req, ctx, gen.text, tuple(gen.token_logprobs))
        return self._finish(ctx, gen.text, gen.stop_reason, gen.token_logprobs, timings)

    def forget(self, document_id: str) -> None:
        """Drop per-document state (the editor closed the document)."""
        self._last.pop(document_id, None)
        with self._counter_lock:
            self._latest.pop(document_id, None)

    def remember(self, req: CompletionRequest, completion: Completion) -> None:
        """Make `completion` (shown to the user for `req`, e.g. a sampled candidate the language server chose) the
        document's last completion, so that typing through it is answered from it."""
        if completion.stop_reason in ("cancelled", "typed") or not completion.raw:
            return
        ctx = replace(self.context_for(req), mode=completion.mode)
        self._remember(req, ctx, completion.raw, completion.token_logprobs)

    def _remember(self, req: CompletionRequest, ctx: CompletionContext, raw: str, logprobs) -> None:
        if req.document_id is not None:
            self._last[req.document_id] = (ctx.prefix, ctx.suffix[:2000], raw, tuple(logprobs), ctx.mode)

    def _fit(self, tokens: tuple[int, ...], max_tokens: int) -> tuple[int, ...]:
        """Keep the prompt inside the context: drop tokens from the far end of the prefix side if needed."""
        room = self.runtime.n_ctx - max_tokens - 1
        if len(tokens) <= room:
            return tokens
        log.warning("prompt of %d tokens exceeds the context; keeping the last %d", len(tokens), room)
        head = (self.format.bos,) if self.format.bos is not None else ()
        return head + tokens[len(tokens) - room + len(head) :]

    def warm(self, req: CompletionRequest) -> Timings:
        """Evaluate the prompt for `req` without generating, so the next request at this place starts fast."""
        t0 = time.perf_counter()
        ctx = self.context_for(req)
        prompt = self.prompt_for(ctx)
        with self._lock:
            tokens = self._fit(prompt.tokens, self._max_tokens(req))
            reused, evaluated = self.runtime.sync(tokens)
        ms = (time.perf_counter() - t0) * 1000
        return Timings(len(tokens), reused, evaluated, ms, 0, 0.0, ms)

    def complete_many(self, req: CompletionRequest, n: int, cancel: threading.Event | None = None) -> list[Completion]:
        """`n` samples for `req` (use temperature > 0), seeds req.seed + i, from one shared prompt evaluation."""
        from .sampling import sample_many

        return sample_many(self, req, n, cancel=cancel)


def apply_completion(text: str, completion: Completion) -> str:
    """The document `text` with `completion` applied (its text replaces its range)."""
    from .context import offset_of

    start = offset_of(text, completion.range.start.line, completion.range.start.character)
    end = offset_of(text, completion.range.end.line, completion.range.end.character)
    return text[:start] + completion.text + text[end:]
