"""`codefill fill`: fill a hole, check candidates with the user's own command, show the diff, write only if asked.

    codefill fill src/app.py:42 --until "pytest -q tests/test_app.py"          # show the diff of the first passing fill
    codefill fill src/app.py:42 --until "pytest -q tests/test_app.py" --write  # and write it

Each candidate is tried in a temporary copy of the project (the git root above FILE, else FILE's directory; .git,
.venv, node_modules and __pycache__ are not copied): the hole is filled there and the command runs there (`shell=True`,
in the copy's counterpart of the current directory, its own session and process group, killed on timeout, at the end
and on Ctrl-C, background children included). Symbolic links that stay inside the project are links in the copy too;
those that lead outside it are copied as files (a write in the copy can never reach the user's files), dangling ones
are left out. The copy is capped (MAX_COPY_FILES files, MAX_COPY_BYTES bytes) and needs the free disk for it. The
user's files are never touched unless `--write`, which replaces FILE atomically (through a symlink: its target, the
link stays), keeps a UTF-8 BOM, and refuses when FILE changed since it was read. Candidates come from one shared prompt evaluation
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
from codefill.engine.errors import InputFileError
from codefill.engine.search import search_with_tests
from codefill.engine.selection import ALIASES, METHODS, rank
from codefill.process import kill_group

from .common import load_engine, parse_location

IGNORED = (".git", ".hg", ".svn", ".venv", "venv", "node_modules", "__pycache__", ".mypy_cache", ".pytest_cache",
           ".tox", ".ruff_cache")
OUTPUT_TAIL = 4000
MAX_COPY_FILES = 20_000
MAX_COPY_BYTES = 200 * 1000 * 1000
DISK_MARGIN = 64 * 1000 * 1000  # free disk to leave after the copy
BOM = b"\xef\xbb\xbf"


class ProjectCopyError(InputFileError):
    """The project cannot be copied into a sandbox (too large, not enough disk, unreadable)."""


class FileChangedError(InputFileError):
    """FILE changed on disk while the search ran; --write refuses to overwrite it."""


def encode_like(original: bytes, text: str) -> bytes:
    """`text` as UTF-8, with the BOM `original` had (read_source_file drops it)."""
    data = text.encode("utf-8")
    return BOM + data if original.startswith(BOM) and not data.startswith(BOM) else data


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


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
    """Run `command` with the shell in `cwd`, in its own session; kill its whole process group when it outlives
    `timeout` seconds, when it ends (background children do not survive it) and on an interruption."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(command, shell=True, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True, env=env)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            rc = None
        finally:  # also on KeyboardInterrupt/SystemExit: nothing of the command keeps running
            kill_group(proc)
        size = out.seek(0, os.SEEK_END)
        out.seek(max(0, size - OUTPUT_TAIL))
        output = out.read().decode("utf-8", errors="replace")
    if rc is None:
        output += f"\n[codefill: command timed out after {timeout:g} s]"
    return CommandResult(rc == 0, rc, output, time.perf_counter() - t0)


class ProjectSandbox:
    """A temporary copy of the project in which one file can be replaced and a command run."""

    def __init__(self, file_path: str, root: str | None = None, max_files: int | None = None,
                 max_bytes: int | None = None):
        self.file_path = os.path.abspath(file_path)
        self.root = os.path.abspath(root or project_root(file_path))
        self.rel = os.path.relpath(self.file_path, self.root)
        self.max_files = MAX_COPY_FILES if max_files is None else max_files
        self.max_bytes = MAX_COPY_BYTES if max_bytes is None else max_bytes
        ops, n_bytes = self._plan()
        base = tempfile.gettempdir()
        try:
            free = shutil.disk_usage(base).free
        except OSError:
            free = None
        if free is not None and free < n_bytes + DISK_MARGIN:
            raise ProjectCopyError(f"not enough free disk in {base} to copy the project for --until: "
                                   f"{n_bytes / 1e6:,.0f} MB needed, {free / 1e6:,.0f} MB free")
        self._tmp = tempfile.mkdtemp(prefix="codefill-fill-")
        self.copy = os.path.join(self._tmp, os.path.basename(self.root) or "project")
        try:
            self._materialise(ops)
            target = self._target()
            with open(target, "rb") as fh:
                self.original = fh.read()
        except BaseException:
            self.close()
            raise

    def _plan(self) -> tuple[list[tuple], int]:
        """What to create in the copy: ("dir", rel) / ("file", src, rel) / ("link", rel, target_rel), and the bytes.

        Links are not followed blindly: one resolving inside the project becomes a link to the same place in the copy;
        one leading outside is copied as what it points to (counted against the caps); a dangling one is left out (a
        write through it could create a file anywhere). Sockets, FIFOs and devices are left out."""
        root_real = os.path.realpath(self.root)
        root_abs = os.path.abspath(self.root)
        ops: list[tuple] = []
        visited: set[str] = set()
        count = [0, 0]  # files, bytes

        def charge(size: int) -> None:
            count[0] += 1
            count[1] += size
            if count[0] > self.max_files:
                raise ProjectCopyError(
                    f"the project {self.root} is too large to copy for --until: more than {self.max_files:,} files "
                    "(the limit; the project is the git root above FILE: is there a .git in a parent directory?)")
            if count[1] > self.max_bytes:
                raise ProjectCopyError(
                    f"the project {self.root} is too large to copy for --until: more than "
                    f"{self.max_bytes / 1e6:,.0f} MB (the limit; the project is the git root above FILE: is there a "
                    ".git in a parent directory?)")

        def scan(src_dir: str, rel: str) -> None:
            real = os.path.realpath(src_dir)
            if real in visited:
                return  # a link loop, or a folder reached twice
            visited.add(real)
            ops.append(("dir", rel))
            try:
                entries = sorted(os.scandir(src_dir), key=lambda e: e.name)
            except OSError as exc:
                raise ProjectCopyError(f"cannot read {src_dir}: {exc.strerror or exc}") from None
            for e in entries:
                if e.name in IGNORED:
                    continue
                r = os.path.join(rel, e.name)
                try:
                    if e.is_symlink():
                        target = os.path.realpath(e.path)
                        if not os.path.exists(target):
                            continue
                        # where the link's own text points (one hop): inside the project, the copy gets the same
                        # link to the copy's counterpart, which is itself a file, folder or link made by these rules
                        hop = os.path.normpath(os.path.join(os.path.dirname(e.path), os.readlink(e.path)))
                        base = next((b for b in (root_abs, root_real) if _inside(hop, b)), None)
                        if base is not None and os.path.relpath(hop, base) != ".":
                            charge(0)
                            ops.append(("link", r, os.path.relpath(hop, base)))
                        elif os.path.isdir(target):
                            scan(target, r)
                        elif os.path.isfile(target):
                            charge(os.path.getsize(target))
                            ops.append(("file", target, r))
                    elif e.is_dir(follow_symlinks=False):
                        scan(e.path, r)
                    elif e.is_file(follow_symlinks=False):
                        charge(e.stat(follow_symlinks=False).st_size)
                        ops.append(("file", e.path, r))
                except OSError as exc:
                    raise ProjectCopyError(f"cannot read {e.path}: {exc.strerror or exc}") from None

        scan(self.root, "")
        return ops, count[1]

    def _materialise(self, ops: list[tuple]) -> None:
        for op in ops:
            if op[0] == "dir":
                os.makedirs(os.path.join(self.copy, op[1]), exist_ok=True)
            elif op[0] == "file":
                try:
                    shutil.copy2(op[1], os.path.join(self.copy, op[2]))
                except OSError as exc:
                    raise ProjectCopyError(f"cannot copy {op[1]}: {exc.strerror or exc}") from None
            else:
                dst = os.path.join(self.copy, op[1])
                os.symlink(os.path.relpath(os.path.join(self.copy, op[2]), os.path.dirname(dst)), dst)

    def _target(self) -> str:
        """The file in the copy that stands for FILE (through in-copy links), never anything outside the copy."""
        target = os.path.realpath(os.path.join(self.copy, self.rel))
        if not _inside(target, os.path.realpath(self.copy)):
            raise ProjectCopyError(f"{self.file_path} does not lead to a file inside the project copy")
        return target

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
        """Put `text` into the copy's FILE (with FILE's BOM, if it had one)."""
        with open(self._target(), "wb") as fh:
            fh.write(encode_like(self.original, text))

    def restore(self) -> None:
        """The copy's FILE back to its original bytes (BOM and all)."""
        with open(self._target(), "wb") as fh:
            fh.write(self.original)

    def run(self, text: str, command: str, timeout: float, cwd: str | None = None) -> CommandResult:
        self.write(text)
        return run_command(command, self.cwd_for(cwd or os.getcwd()), timeout)

    def close(self) -> None:
        if getattr(self, "_tmp", None):
            shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def write_atomically(path: str, text: str | bytes, expected: bytes | None = None) -> None:
    """Replace `path` with `text` (UTF-8 when a str) in one rename, keeping its permissions.

    A symlink is written through: its target is replaced and the link stays. With `expected` (the bytes read when
    the work began) it refuses, with FileChangedError, if the file no longer holds them."""
    path = os.path.realpath(os.path.abspath(path))
    d = os.path.dirname(path)
    data = text.encode("utf-8") if isinstance(text, str) else text
    fd, tmp = tempfile.mkstemp(prefix=".codefill-", dir=d)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            shutil.copymode(path, tmp)
        except OSError:
            pass
        if expected is not None:
            try:
                with open(path, "rb") as fh:
                    now = fh.read()
            except OSError:
                now = None
            if now != expected:
                raise FileChangedError(f"not writing {path}: it changed since codefill read it (edited during the "
                                       "search?); nothing was written, run the command again")
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
    try:
        with open(path, "rb") as fh:
            original = fh.read()  # what --write checks is still there, and whose BOM it keeps
    except OSError as exc:
        raise InputFileError(f"cannot read {path}: {exc.strerror or exc}") from None
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
            write_atomically(path, encode_like(original, after), expected=original)
            err.write(f"codefill: wrote {path}\n")
        return
    previous = _terminate_as_exit()
    try:
        res = _search(engine, req, path, text, until, samples, rounds, timeout, budget, feedback, select, err)
    except KeyboardInterrupt:
        # (typer turns a KeyboardInterrupt into a return value of 130 that cli.main drops: exit explicitly)
        err.write("codefill: interrupted; the command's processes were killed and the copy removed, "
                  f"{path} is unchanged\n")
        sys.exit(130)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    if not res.passed:
        err.write(f"codefill: no candidate passed ({len(res.attempts)} tried, {res.samples} sampled, "
                  f"{res.rounds + 1} round(s), {res.stopped})\n")
        sys.exit(1)  # (typer.Exit is swallowed by standalone_mode=False in cli.main)
    after = apply_completion(text, res.winner.completion)
    sys.stdout.write(unified_diff(path, text, after))
    err.write(f"codefill: passed after {len(res.attempts)} run(s) of the command in {res.elapsed_s:.1f} s\n")
    if write:
        write_atomically(path, encode_like(original, after), expected=original)
        err.write(f"codefill: wrote {path}\n")


def _terminate_as_exit():
    """Make SIGTERM unwind like Ctrl-C (so the command's process group is killed and the copy removed); returns the
    previous handler, or None when it cannot be set (not the main thread)."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)

    try:
        return signal.signal(signal.SIGTERM, handler)
    except ValueError:
        return None


def _search(engine, req, path, text, until, samples, rounds, timeout, budget, feedback, select, err):
    with ProjectSandbox(path) as box:
        cwd = os.getcwd()

        def verify(c):
            r = box.run(apply_completion(text, c.completion), until, timeout, cwd)
            return r.passed, r.output

        def report(a):
            first = a.candidate.text.strip().split("\n")[0]
            err.write(f"codefill: round {a.round}: {'PASS' if a.passed else 'fail'} ({a.elapsed_s:.1f} s) {first[:70]}\n")

        try:
            return search_with_tests(engine, req, verify, n=samples, rounds=rounds, time_budget_s=budget,
                                     feedback=feedback, method=select, on_attempt=report)
        finally:
            box.restore()


def register(app: typer.Typer) -> None:
    app.command("fill")(fill)
