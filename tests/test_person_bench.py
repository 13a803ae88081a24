"""The person benchmark's pure parts (eval/person.py): which lines, the table, and the newest-job scheduler."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from codefill.eval.person import Background, format_rows, person_lines


def test_person_lines_are_seeded_code_lines():
    text = "\n".join(["# a comment line here", "x = compute_something(1)", "", "    return value + 1",
                      "y"] * 4)
    a, b = person_lines(text, 3, seed=1), person_lines(text, 3, seed=1)
    lines = text.split("\n")
    assert a == b and len(a) == 3
    assert all(len(lines[i].strip()) >= 8 and not lines[i].lstrip().startswith("#") for i in a)
    assert person_lines(text, 100, seed=0) and len(person_lines(text, 100, seed=0)) == 8


def test_the_table_has_a_column_per_run_and_dashes_for_what_is_missing():
    runs = [{"warmup": False, "think_ms": 800.0, "first_p50_ms": 1685.2, "first_p95_ms": 1774.0, "keystrokes": 10,
             "shown": 4, "superseded": 6, "decode_tokens_per_s": None},
            {"warmup": True, "think_ms": 0.0, "first_p50_ms": 1143.0, "first_p95_ms": 1270.0, "keystrokes": 9,
             "shown": 5, "superseded": 4, "decode_tokens_per_s": 57.0}]
    rows = format_rows(runs)
    assert "off, pause 800 ms" in rows[0] and "on, pause 0 ms" in rows[0]
    first = next(r for r in rows if r.startswith("first answer"))
    assert "1685 / 1774" in first and "1143 / 1270" in first
    assert "10 / 4 / 6" in next(r for r in rows if r.startswith("keystrokes"))
    decode = next(r for r in rows if r.startswith("decode"))
    assert decode.split()[-2:] == ["-", "57"]


def test_background_runs_only_the_newest_job_and_a_preempting_one_stops_the_running():
    exe = ThreadPoolExecutor(1)
    bg = Background(exe)
    ran, stopped = [], threading.Event()

    def long_job(cancel):
        ran.append("long")
        if cancel.wait(5):
            stopped.set()
        return 1

    bg.schedule(long_job, 0.0, preempt=False)
    deadline = time.monotonic() + 5
    while not ran and time.monotonic() < deadline:
        time.sleep(0.01)
    bg.schedule(lambda c: ran.append("stale") or 0, 0.2, preempt=False)
    bg.schedule(lambda c: ran.append("newest") or 2, 0.0, preempt=True)  # replaces the pending one
    assert stopped.wait(5)
    while "newest" not in ran and time.monotonic() < deadline:
        time.sleep(0.01)
    bg.close()
    exe.shutdown()
    assert ran == ["long", "newest"] and bg.tokens == 3
