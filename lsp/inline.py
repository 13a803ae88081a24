"""`textDocument/inlineCompletion` (LSP 3.18): ghost text.

- Automatic triggers (the editor asks while you type) get at most one item: the greedy completion, scored by the
  confidence gate (engine/gate.py). When the gate is unsure of it, `adaptiveSamples` more candidates (default: 7
  with a GPU, none on a CPU, where they cost more latency than they are worth) are decoded together from the same
  prompt and the best one (selection `auto`) is taken; the answer is hidden when its confidence is below
  `gateThreshold` (ghost text that is probably wrong costs the user a read and an Escape).
  Answers typed through (the user typed what the last suggestion predicted) are shown without asking again.
- Invoked triggers (the editor's "trigger inline suggestion") are never hidden: the greedy completion first, then
  distinct alternatives to cycle through (settings `suggestions`, `temperature`), sampled together from one prompt
  evaluation and ranked best first; sampling stops after three decoding time budgets. For a model without FIM tokens
  (in-process), the greedy answer and the alternatives are ranked together by the text after the cursor
  (`suffixRanking`, default "invoked"; Engine.score_suffix): the one the suffix supports best comes first.
  HumanEval single-line, embedded model, 8 candidates: 43.3% pass@1 against greedy 35.3%, for 3.8x the p50
  latency on a busy 2-core machine (bench/results/suffix-ranking.md).
- `context.selectedCompletionInfo` (the item selected in the completion popup): the completion is computed as if
  that item was accepted, and every answer replaces the item's range and starts with its text, as the spec asks.
- Each item's `range` is exactly what it replaces (usually the empty range at the cursor), in the negotiated encoding.
- Each item carries the command `codefill.accepted` (with an id) that the editor runs when it is accepted: acceptance
  statistics, kept on this machine (lsp/stats.py; setting `stats`).
- A newer request for the same document supersedes an older one (which answers an empty list), and
  `$/cancelRequest` stops a request between two tokens (pygls answers it with RequestCancelled).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from lsprotocol import types

from codefill.engine import Candidate, Completion, Engine
from codefill.engine.adaptive import AdaptivePolicy, adaptive_complete
from codefill.engine.config import SAMPLE_TOP_P
from codefill.engine.gate import features
from codefill.engine.selection import normalize, rank
from codefill.engine.types import DEFAULT, StopReason

from . import warmup
from .edits import cursor_for, edit_for, engine_request, language_of, lsp_range
from .stats import Signals

if TYPE_CHECKING:
    from .server import CodefillLanguageServer

log = logging.getLogger(__name__)

# Extra candidates for an unsure automatic suggestion when `adaptiveSamples` is not set and the model runs on a GPU,
# where decoding 8 sequences together costs about what one does. On a CPU the default is none: on 2 cores they added
# 4 right suggestions out of 255 requests for +1.2 s at each new position (bench/lsp_latency.py, argparse.py).
GPU_ADAPTIVE_SAMPLES = 7
# Samples beside the greedy answer when the suffix ranks them (invoked requests; automatic ones with suffixRanking
# "always" where adaptiveSamples is 0, its CPU default): with 8 candidates in all the suffix gained most on HumanEval
# single-line, with 4 about a quarter of that (bench/results/suffix-ranking.md).
SUFFIX_SAMPLES = 7


@dataclass(frozen=True)
class Answer:
    """A completion to show and what the gate saw in it (recorded with the shown item for `codefill stats`)."""

    completion: Completion
    signals: Signals


def _answer(completion, ctx, gate_p: float | None = None) -> Answer:
    """`completion`: a Completion or a sampling Candidate (which carries entropies)."""
    comp = getattr(completion, "completion", completion)
    p = None if gate_p is None or math.isnan(gate_p) else gate_p
    return Answer(comp, Signals(features(completion, ctx), bool(getattr(completion, "entropies", ())), p))


def _context(prepared):
    """The prompt's CompletionContext (position features of the gate); None from an engine that prepares nothing."""
    return getattr(prepared, "context", None)


def register(server: "CodefillLanguageServer") -> None:
    warmup.register(server)  # the idle-time work that makes the next inline answer faster

    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(ls: "CodefillLanguageServer", params: types.InlineCompletionParams):
        started = time.perf_counter()
        doc = ls.documents.require(params.text_document.uri)
        settings = ls.settings
        if doc.stale or not settings.enabled_for(language_of(doc)):  # stale: its text is not the editor's
            return types.InlineCompletionList(items=[])
        context = params.context
        invoked = context is not None and context.trigger_kind == types.InlineCompletionTriggerKind.Invoked
        selected = context.selected_completion_info if context is not None else None
        enc = ls.encoding
        cur = cursor_for(doc, params.position, enc, selected)
        req = engine_request(cur, settings, ls.snippets_for(doc))
        n = settings.suggestions if invoked else 1

        def job(cancel):
            engine = ls.engine_or_none()
            if engine is None or cancel.is_set():
                return []
            if invoked:
                return _alternatives(engine, req, settings, n, cancel)
            return _gated(ls, engine, req, settings, cancel)

        warmup.interrupt(ls)  # background work on the model thread gives way to this request
        answers = await ls.run_model(("inline", doc.uri), job, empty=[])
        edits, signals = [], []
        for a in answers:
            edit = edit_for(cur, a.completion)
            if edit is None or not edit[2]:
                continue
            edits.append(edit)
            signals.append(a.signals)
        commands = ls.stats.shown(cur, edits, signals, invoked=invoked,
                                  latency_ms=(time.perf_counter() - started) * 1000, language=language_of(cur.doc),
                                  model=(answers[0].completion.model if answers else None)
                                  or getattr(ls.model.engine, "model_name", None))
        items = [types.InlineCompletionItem(insert_text=text, range=lsp_range(cur.doc, start, end, enc), command=cmd)
                 for (start, end, text), cmd in zip(edits, commands)]
        if edits and not invoked and doc.version == cur.doc.version:
            warmup.precompute_after(ls, cur, *edits[0])  # Tab: the next piece is ready when it is asked for
        return types.InlineCompletionList(items=items)


def _gated(ls: "CodefillLanguageServer", engine: Engine, req, settings, cancel) -> list:
    """An automatic request: the engine's answer (cache, typed-through, KV reuse), scored by the confidence gate;
    when the gate is unsure, `adaptiveSamples` more candidates share the prompt and the best one is taken; the
    answer is hidden when its confidence stays below the threshold."""
    gate = ls.gate
    threshold = settings.gate_threshold if settings.gate_threshold is not None else (gate.threshold if gate else 0.0)
    k = settings.adaptive_samples
    if k is None:
        # (on a shared inference server every extra candidate is another stream on other people's GPU: opt-in)
        k = GPU_ADAPTIVE_SAMPLES if engine.accelerated and not getattr(engine, "remote", False) else 0
    by_suffix = settings.suffix_ranking == "always" and getattr(engine, "scores_suffix", False)
    if by_suffix and k == 0:
        k = SUFFIX_SAMPLES
    prepared = engine.prepare(req)
    if gate is None or (threshold <= 0 and k == 0):
        c = engine.complete(prepared, cancel=cancel)
        return [] if c.stop_reason == StopReason.CANCELLED or cancel.is_set() else [_answer(c, _context(prepared))]
    policy = AdaptivePolicy(few=k, many=k)  # k = 0: the first answer is only judged
    r = adaptive_complete(engine, prepared, gate=gate, policy=policy, cancel=cancel, first="complete")
    if r.completion.stop_reason == StopReason.CANCELLED or cancel.is_set():
        return []
    if by_suffix and r.n_samples > 1:  # the pool the gate asked for, chosen by the text after the cursor instead
        chosen = engine.choose(prepared, r.sample_set.candidates, "suffix", cancel=cancel)[0]
        if cancel.is_set():
            return []
        r = replace(r, chosen=chosen, completion=chosen.completion,
                    chosen_probability=r.probability if chosen is r.first else gate.score(chosen, _context(prepared)))
    if r.chosen is not r.first:
        engine.remember(prepared, r.completion)  # typing through the shown candidate is answered from it
    if not r.should_show(threshold):
        log.debug("hidden: confidence %.3f < %.3f (%d candidates) for %r", r.chosen_probability, threshold,
                  r.n_samples, r.completion.text[:40])
        return []
    return [_answer(r.chosen, _context(prepared), r.chosen_probability)]


def _alternatives(engine: Engine, req, settings, n: int, cancel) -> list:
    """An invoked request: the engine's answer first, then up to n-1 distinct alternatives sampled together from the
    same prompt (one evaluation shared by all), best first. Not gated: the user asked."""
    prepared = engine.prepare(req)
    first = engine.complete(prepared, cancel=cancel)
    if first.stop_reason == StopReason.CANCELLED or cancel.is_set():
        return []
    out = [_answer(first, _context(prepared))]
    if n <= 1:
        return out
    # Sampling stops after three decoding budgets (none when the budget is off): a person who asked explicitly
    # still gets an answer within a few seconds on a slow machine.
    budget = engine.config.decode.time_budget_ms if settings.time_budget_ms is DEFAULT else settings.time_budget_ms
    samples = replace(req, temperature=settings.temperature, top_p=SAMPLE_TOP_P, use_cache=False, seed=req.seed + 1,
                      time_budget_ms=None if budget is None else 3 * budget)
    # "invoked": line completions only (blocks gained nothing measurable and their scoring costs most); "always": all.
    by_suffix = (getattr(engine, "scores_suffix", False)
                 and (settings.suffix_ranking == "always"
                      or (settings.suffix_ranking == "invoked" and prepared.context.mode == "line")))
    k = max(2 * (n - 1), SUFFIX_SAMPLES if by_suffix else 0)
    s = engine.sample(samples, k, include_greedy=False, cancel=cancel)
    if cancel.is_set():
        return []
    language = s.context.language
    sampled = [c for c in s.candidates if c.completion.stop_reason != StopReason.CANCELLED]
    if by_suffix and sampled:
        # The greedy answer competes with the samples: the text after the cursor decides which comes first.
        greedy = Candidate(first, index=-1, seed=req.seed, greedy=True)
        ranked = engine.choose(prepared, [greedy, *sampled], "suffix", cancel=cancel)
        if cancel.is_set():
            return []
        out, seen = [], set()
        for cand in ranked:
            key = normalize(cand.text, language)
            if cand.text.strip() and key not in seen and len(out) < n:
                seen.add(key)
                out.append(_answer(first if cand is greedy else cand, s.context))
        if out and out[0].completion is not first:
            engine.remember(prepared, out[0].completion)  # typing through the first item is answered from it
        return out or [_answer(first, _context(prepared))]
    seen = {normalize(first.text, language)}
    for cand in rank(sampled, s.context, "auto"):
        key = normalize(cand.text, language)
        if cand.text.strip() and key not in seen and len(out) < n:
            seen.add(key)
            out.append(_answer(cand, s.context))
    return out
