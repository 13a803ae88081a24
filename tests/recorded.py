"""Greedy answers of the embedded model recorded before the decode refactor (issue 10), and the positions they answer.

    python tests/recorded.py            # re-record tests/data/recorded_greedy.json (only when a change is meant to
                                        # change greedy output: say so in the commit)

The positions cover what the decode loop decides: line and block mode, token healing (a cursor inside a word and after
indentation), the no-leading-space rule, a cursor after code and a prompt with snippets from another file.
Requests carry no time budget, so the answers do not depend on the machine's speed;
each starts from an empty KV cache, so they do not depend on what ran before.

Greedy answers do depend on the CPU: llama.cpp's kernels for another instruction set (AVX2, AVX-512, repacked
weights) round differently, and a close choice between two tokens can go the other way (seen: 5 of 28 answers differ
between an AMD EPYC and a Xeon whose AMX kernels are off). So each answer also keeps its trace: for every token the
greedy loop drew, its id and its margin (its logit minus the best other allowed token's). tests/test_recorded.py
accepts a different answer only where the two traces part at a token that was a near-tie on both machines.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "data")
RECORDED = os.path.join(DATA, "recorded_greedy.json")
FILES = {
    "textwrap.py": os.path.join(DATA, "textwrap_py311.py"),  # CPython 3.11's textwrap module, a copy
    "geometry.py": os.path.join(os.path.dirname(HERE), "examples", "geometry.py"),
}
SNIPPET = ("helpers.py", "def indent_width(line):\n    return len(line) - len(line.lstrip())\n")


def positions() -> list[dict]:
    """Seeded positions: (file, 0-based line, character, mode, with snippet)."""
    out = [
        {"file": "geometry.py", "line": 4, "character": 11, "mode": "auto"},
        {"file": "geometry.py", "line": 7, "character": 17, "mode": "auto"},
        {"file": "geometry.py", "line": 8, "character": 4, "mode": "line"},
    ]
    with open(FILES["textwrap.py"], encoding="utf-8") as fh:
        lines = fh.read().split("\n")
    rng = random.Random(0)
    code = [i for i, ln in enumerate(lines) if ln.strip() and not ln.strip().startswith(("#", '"', "'"))]
    for i in sorted(rng.sample(code, 10)):
        ln = lines[i]
        indent = len(ln) - len(ln.lstrip())
        out.append({"file": "textwrap.py", "line": i, "character": indent, "mode": "auto"})  # start of the line
        mid = indent + max(1, (len(ln) - indent) // 2)
        out.append({"file": "textwrap.py", "line": i, "character": mid, "mode": "auto"})  # inside the line (healing)
    openers = [i for i, ln in enumerate(lines) if ln.rstrip().endswith(":") and ln.strip().startswith(("def ", "if ", "for "))]
    for i in sorted(rng.sample(openers, 4)):
        out.append({"file": "textwrap.py", "line": i, "character": len(lines[i]), "mode": "block"})
    out.append({"file": "textwrap.py", "line": code[40], "character": 0, "mode": "auto", "snippet": True})
    return out


# How close two tokens' logits can be and still be ordered either way by another machine's rounding. Measured between
# an AMD EPYC and a Xeon (AMX off), same tokens: an answer's mean log-probability moved by up to 0.075 nats (4 tokens),
# the partings seen were at margins of 0.002 to 0.13 nats; a tie is called within 0.3.
TIE = 0.3


def parting(want: list, got: list) -> int | None:
    """The first step where two traces drew different tokens (or one ended); None when they are the same."""
    for i, (a, b) in enumerate(zip(want, got)):
        if a[0] != b[0]:
            return i
    return None if len(want) == len(got) else min(len(want), len(got))


def margin(trace: list, i: int) -> float:
    if i >= len(trace):
        return math.inf  # the same tokens, and one answer went on where the other stopped: the stop rules changed
    m = trace[i][1]
    return math.inf if m is None else m


def request_for(pos: dict, text: str):
    from codefill.engine import CompletionRequest, Snippet

    snippets = (Snippet(path=SNIPPET[0], text=SNIPPET[1]),) if pos.get("snippet") else ()
    return CompletionRequest(text=text, line=pos["line"], character=pos["character"], path=pos["file"],
                             mode=pos["mode"], time_budget_ms=None, use_cache=False, snippets=snippets)


def texts() -> dict[str, str]:
    out = {}
    for name, path in FILES.items():
        with open(path, encoding="utf-8") as fh:
            out[name] = fh.read()
    return out


@contextlib.contextmanager
def tracing():
    """Record (token, margin) for every draw of the greedy sampler while the block runs."""
    from codefill.engine import sampler as sampler_mod

    trace: list[tuple[int, float]] = []
    plain = sampler_mod.Sampler.draw

    def draw(self, logits, allowed=None):
        d = plain(self, logits, allowed)
        x = np.asarray(logits, dtype=np.float32)
        pool = x if allowed is None else x[np.asarray(allowed)]
        if pool.size < 2:
            margin = math.inf
        else:
            top2 = np.partition(pool, pool.size - 2)[-2:]
            margin = float(top2[1] - top2[0])  # the chosen token is the best allowed one (greedy)
        trace.append((d.token, margin))
        return d

    sampler_mod.Sampler.draw = draw
    try:
        yield trace
    finally:
        sampler_mod.Sampler.draw = plain


def answer(engine, pos: dict, text: str) -> dict:
    # A cold KV cache for every answer: what an earlier request left cached changes how llama.cpp batches the
    # prompt, and its batch-size dependent rounding can move log-probabilities by ~1e-2 and flip a close greedy
    # choice. (`runtime` is the in-process backend's name before the refactor; the recording was made with it.)
    (engine.backend if hasattr(engine, "backend") else engine.runtime).clear()
    with tracing() as trace:
        c = engine.complete(request_for(pos, text))
    return {"text": c.text, "raw": c.raw, "stop_reason": str(c.stop_reason), "mode": c.mode,
            "kept_tokens": len(c.token_logprobs), "logprob_mean": c.logprob_mean,
            "trace": [[t, round(m, 4) if math.isfinite(m) else None] for t, m in trace]}


def record(path: str = RECORDED) -> None:
    from codefill.engine import Engine, EngineConfig

    engine = Engine.load(EngineConfig(n_threads=2))
    docs = texts()
    rows = []
    for k, pos in enumerate(positions()):
        rows.append({"position": pos, "answer": answer(engine, pos, docs[pos["file"]])})
        print(f"{k + 1}/{len(positions())} {pos['file']}:{pos['line'] + 1}:{pos['character'] + 1} "
              f"{rows[-1]['answer']['stop_reason']} {rows[-1]['answer']['text'][:40]!r}", file=sys.stderr)
    with open(path, "w", encoding="utf-8") as fh:
        import platform

        import llama_cpp

        from codefill.engine.hardware import _cpu_model

        made_on = {"cpu": _cpu_model(), "machine": platform.machine(), "llama_cpp_python": llama_cpp.__version__}
        head = json.dumps({"model": os.path.basename(engine.model_path), "recorded_on": made_on}, ensure_ascii=False)
        fh.write(head[:-1] + ', "answers": [\n')  # one answer per line: a re-recording's diff shows which changed
        fh.write(",\n".join(json.dumps(r, ensure_ascii=False) for r in rows))
        fh.write("\n]}\n")
    engine.close()


if __name__ == "__main__":
    record()
