import os

import pytest

from codefill.engine.evaluation.execution import run_program
from codefill.engine.evaluation.humaneval import build_tasks, load_problems, program_for, sample_tasks
from codefill.engine.evaluation.metrics import edit_similarity, exact_match, pass_at_k
from codefill.engine.evaluation.repo import build_repo_tasks


def test_task_counts_match_the_paper():
    assert len(load_problems()) == 164
    assert len(build_tasks("single-line")) == 1033
    assert len(build_tasks("multi-line")) == 5815
    assert len(build_tasks("random-span", seed=0)) == 1640


def test_single_line_task_content():
    t = build_tasks("single-line")[0]  # HumanEval/0, first line of the solution
    assert t.problem_id == "HumanEval/0"
    assert t.target == "for idx, elem in enumerate(numbers):"
    assert t.prefix.endswith('"""\n    ')  # cursor after the line's indentation
    assert t.suffix.startswith("\n        for idx2, elem2 in enumerate(numbers):")
    assert t.cursor == (t.prefix.count("\n"), 4)
    p = load_problems()[0]
    assert t.prefix + t.target + t.suffix == p.prompt + p.canonical_solution


def test_every_task_reassembles_the_solution():
    problems = {p.task_id: p for p in load_problems()}
    for mode in ("single-line", "multi-line", "random-span"):
        for t in build_tasks(mode)[::37]:
            p = problems[t.problem_id]
            assert t.prefix + t.target + t.suffix == p.prompt + p.canonical_solution
            if mode != "random-span":
                assert t.target.strip() and "\n" not in t.target.split("\n")[0]


def test_random_spans_are_seeded():
    assert build_tasks("random-span", seed=1) == build_tasks("random-span", seed=1)
    assert build_tasks("random-span", seed=1) != build_tasks("random-span", seed=2)
    a = sample_tasks(build_tasks("single-line"), 50, seed=0)
    assert a == sample_tasks(build_tasks("single-line"), 50, seed=0) and len(a) == 50


def test_pass_at_k_against_hand_computed_values():
    assert pass_at_k(1, 1, 1) == 1.0
    assert pass_at_k(1, 0, 1) == 0.0
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(4, 1, 2) == pytest.approx(1 - 3 / 6)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(5, 2, 3) == pytest.approx(1 - 1 / 10)  # 1 - C(3,3)/C(5,3)
    assert pass_at_k(5, 3, 3) == 1.0
    with pytest.raises(ValueError):
        pass_at_k(2, 1, 3)


def test_exact_match_and_edit_similarity():
    assert exact_match("return x  \n", "return x")
    assert not exact_match("return  x", "return x")
    assert edit_similarity("abc", "abc") == 1.0
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert edit_similarity("", "x") == 0.0


def test_canonical_solutions_pass():
    from concurrent.futures import ThreadPoolExecutor

    problems = load_problems()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda p: run_program(program_for(p, p.prompt + p.canonical_solution), 20), problems))
    failed = [p.task_id for p, r in zip(problems, results) if not r.passed]
    assert failed == []


def test_broken_completion_fails():
    p = load_problems()[0]
    broken = p.prompt + p.canonical_solution.replace("return True", "return False", 1)
    r = run_program(program_for(p, broken))
    assert not r.passed and r.status == "failed" and "AssertionError" in r.output


def test_hanging_completion_times_out():
    r = run_program("while True:\n    pass\n", timeout=1.5)
    assert r.status == "timeout" and not r.passed


def test_infinite_output_is_capped_and_harmless():
    r = run_program("while True:\n    print('x' * 1000)\n", timeout=3)
    assert not r.passed
    assert len(r.output) <= 2000


def test_programs_run_in_an_empty_temporary_directory(tmp_path):
    marker = tmp_path / "marker.txt"
    code = (
        "import os, sys\n"
        "assert os.listdir('.') == ['program.py', 'output.txt'] or sorted(os.listdir('.')) == ['output.txt', 'program.py']\n"
        "open('written.txt', 'w').write('x')\n"
        f"assert not os.path.exists({str(marker)!r})\n"
        "assert os.environ['HOME'] == os.getcwd()\n"
    )
    r = run_program(code)
    assert r.passed, r.output
    assert not (tmp_path / "written.txt").exists() and not os.path.exists("written.txt")


def test_repo_tasks_are_deterministic(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text(
        "def area(radius):\n    pi = 3.14159\n    return pi * radius * radius\n\n\n"
        "class Shape:\n    def __init__(self, name):\n        self.name = name\n        self.sides = 0\n"
    )
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "skip.py").write_text("should_not_be_used = 1\n")
    a = build_repo_tasks(str(tmp_path), limit=10, seed=0)
    assert a == build_repo_tasks(str(tmp_path), limit=10, seed=0)
    assert a and all(t.problem_id == os.path.join("pkg", "a.py") for t in a)
    kinds = {t.mode for t in a}
    assert kinds == {"line", "block"}
    block = next(t for t in a if t.mode == "block")
    assert block.target.startswith(("pi = 3.14159", "def __init__", "self.name"))
