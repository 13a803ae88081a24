"""Speculative decoding without a draft model (engine/decode.py `_run_drafted`, engine/llama.py `verify`): decode
tokens/s with and without drafts, draft acceptance, and whether the answers are equal.

A/B in one process on the same positions: each position is answered greedily with drafts off and on, alternating
which goes first, each from a cold KV cache (the prompt is evaluated in full both times, so only decoding differs;
decode time is the engine's own `decode_ms`). Positions: the start of a line's code (after its indentation), the
middle of the line and its end, at lines spread over each file.

    python bench/speculative.py                                   # textwrap.py and click/core.py, 12 lines each
    python bench/speculative.py FILE ... --lines 30 --threads 1
    python bench/speculative.py --force --threads 4               # drafts on although not bit-exact there
    python bench/speculative.py --verify-cost 0.3                 # pin the draft-length cost instead of measuring

Drafts are on by default only where a batch gives bit-for-bit the logits of one token at a time (CPU, one thread:
LlamaRuntime.verify_exact); `--force` turns them on anyway, and then the answers may differ at close choices (the
equality check shows how often). Prints, asserts nothing; exits 1 when an answer differs where it must not.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import os
import sys
import textwrap
import time


def default_files() -> list[str]:
    files = [textwrap.__file__]
    spec = importlib.util.find_spec("click.core")
    if spec is not None and spec.origin:
        files.append(spec.origin)
    return files


def positions(text: str, n_lines: int) -> list[tuple[int, int]]:
    lines = text.split("\n")
    code = [i for i, ln in enumerate(lines) if ln.strip() and not ln.strip().startswith(("#", '"', "'"))]
    if not code:
        return []
    step = max(1, len(code) // n_lines)
    out = []
    for i in code[step // 2 :: step][:n_lines]:
        ln = lines[i]
        indent = len(ln) - len(ln.lstrip())
        for ch in sorted({indent, indent + (len(ln) - indent) // 2, len(ln)}):
            out.append((i, ch))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="source files (default: textwrap.py and click/core.py)")
    ap.add_argument("--lines", type=int, default=12, help="lines per file (three positions each)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--model", default=None, help="GGUF (default: the embedded model)")
    ap.add_argument("--max-tokens", type=int, default=None)
    ap.add_argument("--force", action="store_true", help="drafts on even where not bit-exact (CODEFILL_SPECULATIVE=1)")
    ap.add_argument("--verify-cost", type=float, default=None, help="pin backend.verify_cost (default: measured)")
    args = ap.parse_args()

    from codefill.engine import CompletionRequest, Engine, EngineConfig

    eng = Engine.load(EngineConfig(model_path=args.model, n_threads=args.threads))
    rt = eng.backend
    exact = rt.verify_exact
    print(f"model {os.path.basename(rt.path)}, {rt.n_threads} thread(s), verify_exact={exact}")
    if not exact and not args.force:
        print("drafts are off by default here (answers would not be bit-exact): --force to measure them anyway")
        return 2
    if args.verify_cost is not None:
        rt.verify_cost, rt.measure_verify_cost = args.verify_cost, False

    files = args.files or default_files()
    totals = {False: [0, 0.0], True: [0, 0.0]}  # tokens, decode ms
    drafted = accepted = verifies = 0
    n_pos = n_equal = 0
    max_lp = 0.0
    warm = True
    for path in files:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        per = {False: [0, 0.0], True: [0, 0.0]}
        f_draft = f_acc = 0
        for k, (line, ch) in enumerate(positions(text, args.lines)):
            req = CompletionRequest(text=text, line=line, character=ch, path=path, time_budget_ms=None,
                                    use_cache=False, max_tokens=args.max_tokens)
            if warm:  # one answer first: loading, the first decode's allocations
                rt.clear()
                eng.sample(req, 1)
                warm = False
            got = {}
            for spec in ((False, True) if k % 2 == 0 else (True, False)):
                rt.speculative = spec
                rt.clear()
                d0, a0, v0 = rt.drafted_tokens, rt.accepted_tokens, rt.verify_batches
                c = eng.sample(req, 1).candidates[0]
                t = c.completion.timings
                per[spec][0] += t.decode_tokens
                per[spec][1] += t.decode_ms
                got[spec] = (c.completion.text, c.completion.stop_reason, c.tokens, c.completion.token_logprobs)
                if spec:
                    f_draft += rt.drafted_tokens - d0
                    f_acc += rt.accepted_tokens - a0
                    verifies += rt.verify_batches - v0
            a, b = got[False], got[True]
            n_pos += 1
            same = a[:3] == b[:3]
            n_equal += same
            lp = max((abs(x - y) for x, y in zip(a[3], b[3]) if x == x and y == y), default=0.0)
            max_lp = max(max_lp, lp)
            if not same:
                print(f"  differs at {os.path.basename(path)}:{line + 1}:{ch + 1}: {a[0]!r} / {b[0]!r}")
        for spec in (False, True):
            totals[spec][0] += per[spec][0]
            totals[spec][1] += per[spec][1]
        drafted += f_draft
        accepted += f_acc
        print(f"{os.path.basename(path)}: {rate(*per[False]):.1f} tok/s without drafts, {rate(*per[True]):.1f} with; "
              f"acceptance {f_acc}/{f_draft} ({pct(f_acc, f_draft)})")
    off, on = rate(*totals[False]), rate(*totals[True])
    print(f"total: {n_pos} positions, {totals[False][0]} decoded tokens; {off:.1f} tok/s without drafts, {on:.1f} with "
          f"({on / off if off else math.nan:.2f}x)")
    print(f"drafts: {drafted} drafted, {accepted} accepted ({pct(accepted, drafted)}), {verifies} verify batches; "
          f"verify_cost now {rt.verify_cost:.2f}")
    print(f"answers equal (text, stop reason, tokens): {n_equal}/{n_pos}; largest log-probability difference {max_lp:.2e}")
    eng.close()
    return 0 if n_equal == n_pos or not exact else 1


def rate(tokens: int, ms: float) -> float:
    return tokens / (ms / 1000) if ms > 0 else 0.0


def pct(a: int, b: int) -> str:
    return f"{100 * a / b:.0f}%" if b else "-"


if __name__ == "__main__":
    t0 = time.perf_counter()
    rc = main()
    print(f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
    sys.exit(rc)
