"""Suffix ranking A/B (issue 15 #3): quality and latency of greedy against N candidates chosen by `--select`, through
`codefill eval humaneval` itself, one run after another (never two at once: they would share the cores).

    python bench/suffix_ab.py --mode single-line --limit 150 --seed 0 --threads 1 --arms greedy,auto:8,suffix:4,suffix:8
    python bench/suffix_ab.py --table runs/suffix-ab-single-line    # the table again, from the runs' results.json

Each arm writes runs/suffix-ab-<mode>/<arm>/results.json; the table has pass@1, exact match, edit similarity,
latency p50/p95 per completion (for candidates: all of them decoded, and scored for `suffix`) and the completions'
wall time against greedy's. Quality is deterministic for a seed; latency needs a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def _arm_args(arm: str) -> list[str]:
    if arm == "greedy":
        return []
    method, _, n = arm.partition(":")
    return ["-n", n or "8", "--select", method]


def table(root: str, arms: list[str] | None = None) -> str:
    arms = arms or sorted(os.listdir(root), key=lambda a: (a != "greedy", a))
    rows, base = [], None
    for arm in arms:
        path = os.path.join(root, arm.replace(":", "-"), "results.json")
        if not os.path.exists(path):
            continue
        s = json.load(open(path))["summary"]
        base = base or s["completions_s"]
        rows.append(f"| {arm} | {100 * s['pass@1']:.1f}% | {100 * s['exact_match']:.1f}% | {s['edit_similarity']:.3f} | "
                    f"{s['latency_p50_ms']:.0f} | {s['latency_p95_ms']:.0f} | {s['completions_s'] / base:.2f} |")
    head = ("| arm | pass@1 | exact | edit sim | p50 ms | p95 ms | wall × first arm |\n"
            "|---|---|---|---|---|---|---|")
    return "\n".join([head, *rows])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="single-line")
    ap.add_argument("--limit", default="150")
    ap.add_argument("--seed", default="0")
    ap.add_argument("--threads", default="1")
    ap.add_argument("--arms", default="greedy,auto:8,suffix:4,suffix:8")
    ap.add_argument("--root", default=None, help="default: runs/suffix-ab-<mode>")
    ap.add_argument("--table", help="print the table of an earlier A/B's root directory")
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return
    root = args.root or os.path.join("runs", f"suffix-ab-{args.mode}")
    arms = args.arms.split(",")
    for arm in arms:
        out = os.path.join(root, arm.replace(":", "-"))
        cmd = [sys.executable, "-m", "codefill", "eval", "humaneval", "--mode", args.mode, "--limit", args.limit,
               "--seed", args.seed, "--threads", args.threads, "--out", out, "--json", *_arm_args(arm)]
        print("$", " ".join(cmd[2:]), file=sys.stderr, flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ, CODEFILL_NO_PROGRESS="1"))
    print(table(root, arms))


if __name__ == "__main__":
    main()
