"""Going back and forth between a few places in a file: what warm windows (EngineConfig.windows) save.

A person edits function A, looks something up in B, goes back to A, then to C… Each place is a cursor after the
indentation of a real line. The first visit to a place is a cold new position; later visits find its prompt in a warm
window (when windows > 0) instead of evaluating it again. Greedy, no time limit, no completion cache (so every visit
runs the model); prints time to the answer and prompt tokens evaluated, first visits against returns.

    python bench/revisit.py /usr/lib/python3.11/argparse.py --places 4 --rounds 3 --threads 2
"""

from __future__ import annotations

import argparse
import json
import random
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--places", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--windows", default="0,4", help="warm windows settings to compare")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--model", default=None)
    a = ap.parse_args(argv)

    from codefill.engine import CompletionRequest, Engine, EngineConfig, read_source_file

    text = read_source_file(a.file)
    lines = text.split("\n")
    cands = [i for i, ln in enumerate(lines) if len(ln.strip()) >= 8 and not ln.lstrip().startswith("#") and i > 50]
    places = random.Random(a.seed).sample(cands, a.places)
    out = []
    for w in [int(x) for x in a.windows.split(",")]:
        engine = Engine.load(EngineConfig(model_path=a.model, n_threads=a.threads, windows=w))
        first, back, ev_first, ev_back = [], [], [], []
        for r in range(a.rounds):
            for i in places:
                ln = lines[i]
                indent = len(ln) - len(ln.lstrip())
                doc = "\n".join(lines[:i] + [ln[:indent]] + lines[i + 1 :])
                t0 = time.perf_counter()
                c = engine.complete(CompletionRequest(text=doc, line=i, character=indent, path=a.file, mode="line",
                                                      time_budget_ms=None, use_cache=False, document_id=a.file))
                ms = (time.perf_counter() - t0) * 1000
                (first if r == 0 else back).append(ms)
                (ev_first if r == 0 else ev_back).append(c.timings.prompt_evaluated)
        engine.close()
        out.append({"windows": w, "first_visit_ms_p50": round(float(np.median(first)), 1),
                    "return_ms_p50": round(float(np.median(back)), 1),
                    "return_ms_max": round(float(np.max(back)), 1),
                    "prompt_evaluated_first_mean": round(float(np.mean(ev_first)), 1),
                    "prompt_evaluated_return_mean": round(float(np.mean(ev_back)), 1)})
    print(json.dumps({"file": a.file, "places": places, "rounds": a.rounds, "results": out}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
