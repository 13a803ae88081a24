"""Greedy HumanEval single-line answers, each from a cold KV cache, for a list of task ids.

Two `codefill eval humaneval` runs of different code can differ in a few greedy answers only because what the KV
cache held differs (llama.cpp's batch-size dependent rounding flips close choices). Answering the differing tasks
cold with both versions tells a real change of behaviour from that.

    python bench/greedy_cold.py ids.json out.json     # ids.json: a JSON list of task ids
"""

import json
import sys

from codefill.engine import Engine, EngineConfig

try:
    from codefill.eval.humaneval import build_tasks
    from codefill.eval.runner import request_for
except ImportError:  # codefill before the eval/ package (88cfe95 and older)
    from codefill.engine.evaluation.humaneval import build_tasks
    from codefill.engine.evaluation.runner import request_for


def main() -> None:
    ids = json.load(open(sys.argv[1]))
    tasks = {t.task_id: t for t in build_tasks("single-line", 0)}
    engine = Engine.load(EngineConfig(n_threads=1))
    backend = getattr(engine, "backend", None) or engine.runtime  # `runtime` before the backend seam
    out = {}
    for i, k in enumerate(ids):
        backend.clear()
        out[k] = engine.complete(request_for(tasks[k], completion_mode="line")).text
        print(f"\r{i + 1}/{len(ids)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    with open(sys.argv[2], "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
