"""Quality and speed of quantized files against the full-precision reference, on held-out code.

KL divergence is measured the way `llama-perplexity --kl-divergence -c 512` does: the held-out text is tokenized
whole, cut into chunks of n_ctx tokens, each chunk evaluated in a fresh context, and only the second half of each
chunk is scored (positions n_ctx/2 … n_ctx-2 predicting the next token), so every scored token has at least n_ctx/2
tokens of context. All models are evaluated chunk by chunk side by side, so the reference logits are computed once
and never stored (95 chunks × 256 positions × 49152 floats would be 4.8 GB).
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .corpus import chunks
from .gguf_io import open_reader
from .llm import EvalModel


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max(axis=-1, keepdims=True)
    y = x - m
    return y - np.log(np.exp(y).sum(axis=-1, keepdims=True))


@dataclass
class Metrics:
    label: str
    path: str
    size_bytes: int
    bpw: float = 0.0
    kld: list = field(default_factory=list)
    same_top: int = 0
    n_scored: int = 0
    nll: float = 0.0
    prompt_tokens: int = 0
    prompt_seconds: float = 0.0
    gen_tokens: int = 0
    gen_seconds: float = 0.0
    exact: int = 0
    same_line: int = 0
    n_lines: int = 0

    def summary(self) -> dict:
        k = np.concatenate(self.kld) if self.kld else np.zeros(0)
        return {
            "label": self.label,
            "file": os.path.basename(self.path),
            "size_bytes": self.size_bytes,
            "bits_per_weight": round(self.bpw, 4),
            "mean_kld": float(k.mean()) if k.size else None,
            "kld_sem": float(k.std(ddof=1) / np.sqrt(k.size)) if k.size > 1 else None,
            "p99_kld": float(np.percentile(k, 99)) if k.size else None,
            "same_top_token": self.same_top / self.n_scored if self.n_scored else None,
            "perplexity": float(np.exp(self.nll / self.n_scored)) if self.n_scored else None,
            "scored_tokens": self.n_scored,
            "prompt_tokens_per_s": self.prompt_tokens / self.prompt_seconds if self.prompt_seconds else None,
            "gen_tokens_per_s": self.gen_tokens / self.gen_seconds if self.gen_seconds else None,
            "line_exact_match": self.exact / self.n_lines if self.n_lines else None,
            "line_same_as_reference": self.same_line / self.n_lines if self.n_lines else None,
            "lines": self.n_lines,
        }


def n_weights(path: str) -> int:
    r = open_reader(path)
    return int(sum(int(np.prod([int(x) for x in t.shape])) for t in r.tensors))


def line_samples(files: list[str], n: int = 16, prefix_chars: int = 1200, seed: int = 1) -> list[tuple[str, str]]:
    """(prompt, expected line) pairs from held-out files: the text before a line → the line (compared stripped)."""
    rng = random.Random(seed)
    out = []
    files = list(files)
    rng.shuffle(files)
    for f in files:
        try:
            with open(f, encoding="utf-8", errors="replace") as fh:
                lines = fh.read().split("\n")
        except OSError:
            continue
        cands = [i for i, ln in enumerate(lines) if i > 20 and 12 <= len(ln.strip()) <= 70
                 and not ln.strip().startswith(("#", '"', "'"))]
        if not cands:
            continue
        i = rng.choice(cands)
        line = lines[i]
        # The prompt ends where the byte-level BPE pre-tokenizer would cut the text anyway: after the line break and
        # all but the last indentation character ("\n       " | " new"). Ending at the bare line break leaves a
        # whitespace token the model never saw before an indented line (it then predicts column-0 code: every model,
        # F16 included, scored 0%); ending after the full indentation splits " new" the same way.
        indent = line[: len(line) - len(line.lstrip())]
        prompt = ("\n".join(lines[:i]) + "\n" + indent[:-1])[-prefix_chars:]
        out.append((prompt, line.strip()))
        if len(out) >= n:
            break
    return out


def evaluate(
    reference: str,
    candidates: dict[str, str],
    heldout_text: str,
    *,
    heldout_files: list[str] | None = None,
    n_ctx: int = 512,
    max_chunks: int | None = None,
    n_lines: int = 16,
    n_threads: int | None = None,
    progress: Callable[[float], None] | None = None,
) -> dict[str, dict]:
    """Metrics for every candidate file (and the reference itself: perplexity, speed, line match)."""
    ref = EvalModel(reference, n_ctx=n_ctx, n_threads=n_threads)
    models = {label: EvalModel(p, n_ctx=n_ctx, n_threads=n_threads) for label, p in candidates.items()}
    try:
        toks = ref.tokenize(heldout_text, add_special=ref.add_bos)
        parts = chunks(toks, n_ctx, max_chunks)
        first = n_ctx // 2
        metrics = {"reference": Metrics("reference", reference, os.path.getsize(reference))}
        for label, p in candidates.items():
            metrics[label] = Metrics(label, p, os.path.getsize(p))
        nw = n_weights(reference)
        for m in metrics.values():
            m.bpw = 8 * m.size_bytes / nw
        samples = line_samples(heldout_files or [], n_lines) if heldout_files and n_lines else []
        steps = len(parts) + len(samples)
        done = 0
        for part in parts:
            if ref.add_bos:
                part = [ref.bos] + part[1:]
            targets = np.asarray(part[first + 1:])
            t0 = time.perf_counter()
            lr = ref.eval_logits(part, first=first)[:-1]
            _account(metrics["reference"], len(part), time.perf_counter() - t0)
            lpr = log_softmax(lr)
            pr = np.exp(lpr)
            top_r = lr.argmax(axis=-1)
            mr = metrics["reference"]
            mr.nll -= float(lpr[np.arange(len(targets)), targets].sum())
            mr.n_scored += len(targets)
            mr.same_top += len(targets)
            for label, model in models.items():
                t0 = time.perf_counter()
                lq = model.eval_logits(part, first=first)[:-1]
                m = metrics[label]
                _account(m, len(part), time.perf_counter() - t0)
                lpq = log_softmax(lq)
                m.kld.append((pr * (lpr - lpq)).sum(axis=-1))
                m.same_top += int((lq.argmax(axis=-1) == top_r).sum())
                m.nll -= float(lpq[np.arange(len(targets)), targets].sum())
                m.n_scored += len(targets)
            done += 1
            if progress:
                progress(done / max(steps, 1))
        for prompt, expected in samples:
            ref_text = None
            for label, model in [("reference", ref), *models.items()]:
                ptoks = model.tokenize(prompt, add_special=model.add_bos)[-(n_ctx - 40):]

                def stop(out, model=model):
                    return "\n" in model.detokenize(out)

                out, tp, tg = model.generate(ptoks, 32, stop)
                text = model.detokenize(out).split("\n")[0]  # a blank line first is a miss
                m = metrics[label]
                m.gen_tokens += max(len(out) - 1, 0)
                m.gen_seconds += tg
                m.n_lines += 1
                m.exact += int(text.strip() == expected)
                if ref_text is None:
                    ref_text = text.strip()
                m.same_line += int(text.strip() == ref_text)
            done += 1
            if progress:
                progress(done / max(steps, 1))
        return {label: m.summary() for label, m in metrics.items()}
    finally:
        ref.close()
        for m in models.values():
            m.close()


def _account(m: Metrics, n: int, seconds: float) -> None:
    m.prompt_tokens += n
    m.prompt_seconds += seconds
