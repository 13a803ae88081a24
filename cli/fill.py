"""`codefill fill`: fill a hole, check candidates with the user's own command, show the diff, write only if asked.

    codefill fill src/app.py:42 --until "pytest -q tests/test_app.py"          # show the diff of the first passing fill
    codefill fill src/app.py:42 --until "pytest -q tests/test_app.py" --write  # and write it

Each candidate is tried in a temporary copy of the project (the git root above FILE, else FILE's directory; .git,
.venv, node_modules and __pycache__ are not copied): the hole is filled there and the command runs there (`shell=True`,
in the copy's counterpart of the current directory, its own process group, killed on timeout). The user's files are
never touched unless `--write`, which replaces FILE atomically. Candidates come from one shared prompt evaluation
(-n of them, best-ranked first); when none passes, further rounds put the failing output into the prompt as a comment
block and resample (S*-style; --rounds, --budget). Exit status 0 when a candidate passes, 1 when none does.
"""

from __future__ import annotations

import difflib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

import typer

from codefill.engine import CompletionRequest, apply_completion, read_source_file
from codefill.engine.config import MAX_THREADS, MAX_TOKENS, SAMPLE_TEMPERATURE
from codefill.engine.search import search_with_tests
from codefill.engine.selection import ALIASES, METHODS, rank

from .common import load_engine, parse_location

IGNORED = (".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache", ".pytest_cache",
           ".tox", ".ruff_cache")
OUTPUT_TAIL = 4000


def project_root(path: str) -> str:
    """The git root above `path` if there is one, else the directory containing it."""
    d = os.path.dirname(os.path.abspath(path))
    probe = d
    while True:
        if os.path.exists(os.path.join(probe, ".git")):
            return probe
        parent = os.path.dirname(probe)
        if parent == probe:
            return d
        probe = parent


@dataclass
class CommandResult:
    passed: bool
    returncode: int | None  # None: timed out
    output: str  # tail of stdout+stderr
    elapsed_s: float


def run_command(command: str, cwd: str, timeout: float, env: dict | None = None) -> CommandResult:
    """Run `command` with the shell in `cwd`; kill its whole process group if it outlives `timeout` seconds."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(command, shell=True, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                proc.kill()
            proc.wait()
            rc = None
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - OUTPUT_TAIL))
        output = out.read().decode("utf-8", errors="replace")
    if rc is None:
        output += f"\n[codefill: command timed out after {timeout:g} s]"
    return CommandResult(rc == 0, rc, output, time.perf_counter() - t0)


class ProjectSandbox:
    """A temporary copy of the project in which one file can be replaced and a command run."""

    def __init__(self, file_path: str, root: str | None = None):
        self.file_path = os.path.abspath(file_path)
        self.root = os.path.abspath(root or project_root(file_path))
        self.rel = os.path.relpath(self.file_path, self.root)
        self._tmp = tempfile.mkdtemp(prefix="codefill-fill-")
        self.copy = os.path.join(self._tmp, os.path.basename(self.root) or "project")
        shutil.copytree(self.root, self.copy, symlinks=True, ignore=shutil.ignore_patterns(*IGNORED))
        with open(os.path.join(self.copy, self.rel), "rb") as fh:
            self.original = fh.read()

    def cwd_for(self, cwd: str) -> str:
        """Where in the copy a command run from `cwd` should run."""
        cwd = os.path.abspath(cwd)
        rel = os.path.relpath(cwd, self.root)
        if rel == "." or not rel.startswith(".."):
            d = os.path.join(self.copy, rel)
            if os.path.isdir(d):
                return d
        return self.copy

    def write(self, text: str) -> None:
        with open(os.path.join(self.copy, self.rel), "wb") as fh:
            fh.write(text.encode("utf-8"))

    def run(self, text: str, command: str, timeout: float, cwd: str | None = None) -> CommandResult:
        self.write(text)
        return run_command(command, self.cwd_for(cwd or os.getcwd()), timeout)

    def close(self) -> None:
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_atomically(path: str, text: str) -> None:
    """Replace `path` with `text` (UTF-8) in one rename, keeping its permissions."""
    path = os.path.abspath(path)
    d = os.path.dirname(path)
    fd, tmp = tempfile.mkstemp(prefix=".codefill-", dir=d)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        try:
            shutil.copymode(path, tmp)
        except OSError:
            pass
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def unified_diff(path: str, before: str, after: str) -> str:
    return "".join(difflib.unified_diff(before.splitlines(True), after.splitlines(True), f"a/{path}", f"b/{path}"))


def fill(
    location: str = typer.Argument(..., metavar="FILE:LINE[:COL]", help="1-based position of the hole."),
    until: str = typer.Option(None, "--until", help="Shell command that must exit 0 (run in a temporary copy)."),
    samples: int = typer.Option(8, "--samples", "-n", min=1, max=64, help="Candidates per round (one shared prompt evaluation)."),
    rounds: int = typer.Option(2, "--rounds", help="Further rounds with the failing output in the prompt."),
    timeout: float = typer.Option(120.0, "--timeout", help="Seconds per run of the command."),
    budget: float = typer.Option(600.0, "--budget", help="Seconds for the whole search."),
    write: bool = typer.Option(False, "--write", help="Write the passing fill to FILE."),
    select: str = typer.Option("auto", "--select", help="Order of trying: auto | logprob | agreement (= cluster) | syntax | first."),
    feedback: bool = typer.Option(True, "--feedback/--no-feedback", help="Show failing output to later rounds."),
    mode: str = typer.Option("auto", help="auto | line | block"),
    max_tokens: int = typer.Option(None, "--max-tokens", min=1, max=MAX_TOKENS),
    temperature: float = typer.Option(SAMPLE_TEMPERATURE, "--temperature", help="Sampling temperature of the non-greedy candidates."),
    seed: int = typer.Option(0, "--seed"),
    model: str = typer.Option(None, "--model", "-m"),
    threads: int = typer.Option(None, "--threads", "-t", min=1, max=MAX_THREADS),
) -> None:
    """Fill FILE at LINE[:COL], keep the first candidate that makes --until pass, print the diff.

    Example: codefill fill src/app.py:42 --until "pytest -q tests/test_app.py" --write
    """
    if select not in METHODS and select not in ALIASES:
        raise typer.BadParameter(f"--select must be one of {', '.join(METHODS + tuple(ALIASES))}")
    if samples < 1:
        raise typer.BadParameter("--samples must be at least 1")
    path, line, col = parse_location(location)
    text = read_source_file(path)
    if col < 0:
        lines = text.split("\n")
        col = len(lines[line].rstrip("\r")) if line < len(lines) else 0
    engine = load_engine(model, threads=threads, n_seq=samples)
    req = CompletionRequest(text=text, line=line, character=col, path=path, mode=mode, max_tokens=max_tokens,
                            time_budget_ms=None, temperature=temperature, seed=seed, use_cache=False)
    err = sys.stderr
    if until is None:
        s = engine.sample(req, samples)
        best = rank(s.candidates, s.context, select)[0]
        after = apply_completion(text, best.completion)
        sys.stdout.write(unified_diff(path, text, after))
        if write and after != text:
            write_atomically(path, after)
            err.write(f"codefill: wrote {path}\n")
        return
    with ProjectSandbox(path) as box:
        cwd = os.getcwd()

        def verify(c):
            r = box.run(apply_completion(text, c.completion), until, timeout, cwd)
            return r.passed, r.output

        def report(a):
            first = a.candidate.text.strip().split("\n")[0]
            err.write(f"codefill: round {a.round}: {'PASS' if a.passed else 'fail'} ({a.elapsed_s:.1f} s) {first[:70]}\n")

        res = search_with_tests(engine, req, verify, n=samples, rounds=rounds, time_budget_s=budget,
                                feedback=feedback, method=select, on_attempt=report)
        box.write(text)
    if not res.passed:
        err.write(f"codefill: no candidate passed ({len(res.attempts)} tried, {res.samples} sampled, "
                  f"{res.rounds + 1} round(s), {res.stopped})\n")
        sys.exit(1)  # (typer.Exit is swallowed by standalone_mode=False in cli.main)
    after = apply_completion(text, res.winner.completion)
    sys.stdout.write(unified_diff(path, text, after))
    err.write(f"codefill: passed after {len(res.attempts)} run(s) of the command in {res.elapsed_s:.1f} s\n")
    if write:
        write_atomically(path, after)
        err.write(f"codefill: wrote {path}\n")


def register(app: typer.Typer) -> None:
    app.command("fill")(fill)
