import os

import pytest

from codefill.eval.execution import run_program
from codefill.eval.humaneval import build_tasks, load_problems, program_for, sample_tasks
from codefill.eval.metrics import edit_similarity, exact_match, pass_at_k
from codefill.eval.repo import build_repo_tasks
from codefill.eval.runner import SampleRecord, TaskRecord, request_for, summarize


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


def test_known_tasks_of_other_modes():
    by_id = {t.task_id: t for mode in ("single-line", "multi-line", "random-span") for t in build_tasks(mode, seed=0)}
    last = by_id["HumanEval/2/single-line/0"]  # a one-line solution: the hole is the whole body after its indent
    assert (last.target, last.suffix, last.cursor) == ("return number % 1.0", "\n", (11, 4))
    assert last.prefix.endswith('"""\n    ')
    ml = by_id["HumanEval/0/multi-line/1"]  # lines 1-2 of the solution
    assert ml.target == "for idx, elem in enumerate(numbers):\n        for idx2, elem2 in enumerate(numbers):"
    assert ml.suffix.startswith("\n            if idx != idx2:")
    assert sum(1 for t in by_id.values() if t.problem_id == "HumanEval/0" and t.mode == "multi-line") == 28  # 7*8/2
    # Pinned: a change here changes every random-span figure, so it must be deliberate.
    assert by_id["HumanEval/0/random-span/1"].target == "  for idx2,"
    assert by_id["HumanEval/0/random-span/1"].prefix.endswith("ate(numbers):\n      ")


def test_tasks_ask_for_the_completion_mode_an_editor_would_use():
    t = build_tasks("single-line")[0]
    req = request_for(t)
    assert (req.mode, req.line, req.character, req.time_budget_ms, req.use_cache) == ("line", 11, 4, None, False)
    assert req.text == t.prefix + t.suffix and req.path == "HumanEval_0.py"
    assert request_for(build_tasks("multi-line")[1]).mode == "block"
    assert request_for(build_tasks("random-span")[0]).mode == "auto"
    assert request_for(t, completion_mode="auto").mode == "auto"
    with pytest.raises(ValueError):
        request_for(t, completion_mode="sideways")


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


def test_pass_at_k_is_stable_for_large_n():
    from fractions import Fraction
    from math import comb

    for n, c, k in ((200, 10, 100), (200, 1, 1), (100, 37, 10), (1000, 3, 500)):
        exact = 1 - Fraction(comb(n - c, k), comb(n, k))
        assert pass_at_k(n, c, k) == pytest.approx(float(exact), rel=1e-9, abs=1e-12)


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
    r = run_program("while True:\n    print('x' * 1000)\n", timeout=30)
    # The 1 MiB file-size limit ends the program long before the timeout; the harness keeps only a tail.
    assert (r.passed, r.status) == (False, "failed") and r.returncode != 0
    assert 0 < len(r.output) <= 2000


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


def test_sandbox_refuses_writes_processes_and_signals_outside_its_directory(tmp_path):
    target = tmp_path / "outside.txt"
    for code in (
        f"open({str(target)!r}, 'w').write('x')",
        f"import os; os.open({str(target)!r}, os.O_WRONLY | os.O_CREAT)",
        f"import shutil; shutil.rmtree({str(tmp_path)!r})",
        f"import os; os.rename('program.py', {str(target)!r})",
        "import os; os.system('true')",
        "import subprocess; subprocess.run(['true'])",
        "import os, signal; os.kill(os.getppid(), signal.SIGCONT)",
    ):
        r = run_program(code)
        assert r.status == "failed" and "PermissionError: codefill sandbox" in r.output, (code, r.output)
    assert sorted(os.listdir(tmp_path)) == []


def test_crashes_are_reported_not_raised():
    r = run_program("import os, ctypes; ctypes.string_at(0)")
    assert (r.passed, r.status) == (False, "crashed")
    r = run_program("import sys; sys.exit(3)")
    assert (r.passed, r.status, r.returncode) == (False, "failed", 3)
    r = run_program("x = bytearray(8 << 30)")  # beyond the address-space limit
    assert not r.passed and "MemoryError" in r.output


def test_summary_of_hand_built_records():
    def s(passed, exact, ms, status=None):
        return SampleRecord(text="x", passed=passed, status=status or ("passed" if passed else "failed"), exact=exact,
                            edit_sim=1.0 if exact else 0.5, latency_ms=ms, stop_reason="newline", decode_tokens=3,
                            logprob_mean=None, logprob_min=None)

    records = [
        TaskRecord("a", "single-line", "t", [s(True, True, 10), s(False, False, 20), s(True, False, 30)]),
        TaskRecord("b", "single-line", "t", [s(False, False, 40), s(False, False, 50, "timeout"), s(False, False, 60)]),
    ]
    out = summarize(records)
    assert out["pass@1"] == pytest.approx((2 / 3 + 0) / 2, abs=1e-4)
    assert out["pass@2"] == pytest.approx((1 + 0) / 2)  # a: n-c=1 < k, so 1; b: no pass, 0
    assert out["pass@3"] == pytest.approx(0.5)
    assert out["exact_match"] == pytest.approx(1 / 6, abs=1e-4)
    assert out["latency_p50_ms"] == 35.0 and out["timeouts"] == 1
    assert out["status"] == {"failed": 3, "passed": 2, "timeout": 1}
