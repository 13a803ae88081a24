"""Every `codefill …` command the README shows still works (issue 15: a README example that failed for every new user).

Each command in the README's code blocks is parsed by the real CLI (every option still exists and takes that value).
The ones that can run here — offline, with the embedded model — are run for real as a subprocess in a scratch folder
that has the files they name (`src/app.py` is real code: the stdlib's textwrap.py), with small limits put in place of
the README's large ones; they must exit 0. What cannot run here (a Hugging Face download, another model file, an
inference server, VS Code's `code`) is parse-checked only; the list of those is explicit, so a new README command is
run unless someone decides it cannot be."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig

import click
import pytest
import typer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODEFILL = os.path.join(os.path.dirname(sys.executable), "codefill")

# Commands that need what a test machine does not have: parsed, not run.
NOT_RUN = {
    "--model ~/models/": "another model file",
    "pull Qwen/": "a Hugging Face download",
    "--server": "an inference server",
    "quantize ": "a Hugging Face model or an F16 GGUF (the quantizer's tests use tiny models they make)",
    "--refit-gate": "200 recorded suggestions of the user's own (tests/lsp/test_lsp_stats.py refits on records)",
}


def readme_commands() -> list[str]:
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        text = fh.read()
    out = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.S | re.M):
        for line in block.splitlines():
            line = line.strip()
            # `.venv/bin/codefill …` at the end of the set-up line counts too
            m = re.search(r"(?:^|&& )(?:\.venv/bin/)?(codefill(?: .*)?)$", line)
            if m:
                out.append(m.group(1))
    return out


def split(command: str) -> list[str]:
    """The command's words without the trailing shell comment."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=False)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    return list(lexer)[1:]


def parse(args: list[str]) -> None:
    """Parse `args` with the real click commands, group by group, without running anything."""
    from codefill.cli.main import app

    cmd = typer.main.get_command(app)
    parent = None
    while True:
        ctx = cmd.make_context("codefill", list(args), parent=parent, resilient_parsing=False)
        if not isinstance(cmd, click.Group):
            return
        rest = ctx.protected_args + ctx.args
        if not rest:
            return
        _name, cmd, args = cmd.resolve_command(ctx, rest)
        parent = ctx


def small(args: list[str]) -> list[str]:
    """The README's command with limits a test can afford: two tasks, one line, a short timeout per test run."""
    args = list(args)
    for flag, value in (("--limit", "2"), ("--lines", "1")):
        if flag in args:
            args[args.index(flag) + 1] = value
    if args[:2] == ["eval", "humaneval"] and "--limit" not in args:
        args += ["--limit", "2"]
    if args[:2] == ["bench", "latency"] and "--lines" not in args:
        args += ["--lines", "1"]
    if args[0] == "fill" and "--timeout" not in args:  # a candidate `lo = mid` loops forever: 10 s, not 120
        args += ["--timeout", "10"]
    return args


COMMANDS = readme_commands()


def test_the_readme_shows_commands():
    # the set-up line, completing, eval, fill, bench, models: if this shrinks, the parser below broke
    assert len(COMMANDS) >= 20, COMMANDS
    assert any(c.startswith("codefill complete examples/") for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.split("  #")[0].strip())
def test_every_readme_command_parses(command):
    args = split(command)
    try:
        parse(args)
    except (click.exceptions.Exit, typer.Exit):
        pass  # --version and --help exit while parsing, as they should
    except click.UsageError as exc:
        pytest.fail(f"README: `{command}` no longer parses: {exc.format_message()}")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A folder with the files the README's commands name: examples/, src/app.py (real code with a hole at line 42),
    tests/test_app.py (passes once the hole is filled right), path/to/real_file.py, ~/src/myproject."""
    d = tmp_path_factory.mktemp("readme")
    shutil.copytree(os.path.join(ROOT, "examples"), d / "examples")
    stdlib = sysconfig.get_paths()["stdlib"]
    textwrap_py = os.path.join(stdlib, "textwrap.py")
    # src/app.py: the stdlib's pure-Python bisect (its C accelerator import taken out, so the tests run this code)
    # with a hole where its line 42 was: `lo = mid + 1`, cut back to its indentation, the 1-based column 17
    with open(os.path.join(stdlib, "bisect.py"), encoding="utf-8") as fh:
        lines = fh.read().replace("try:\n    from _bisect import *\nexcept ImportError:\n    pass\n", "").split("\n")
    assert lines[41].strip() == "lo = mid + 1", lines[41]
    lines[41] = " " * 16
    (d / "src").mkdir()
    (d / "src" / "app.py").write_text("\n".join(lines))
    (d / "tests").mkdir()
    (d / "tests" / "test_app.py").write_text(
        "import os, random, sys\nsys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'src'))\n"
        "import app\n\n\ndef test_bisect_right_agrees_with_a_scan():\n    rng = random.Random(0)\n"
        "    for _ in range(200):\n        a = sorted(rng.randrange(10) for _ in range(rng.randrange(12)))\n"
        "        x = rng.randrange(-1, 11)\n        assert app.bisect_right(a, x) == sum(e <= x for e in a)\n")
    (d / "path" / "to").mkdir(parents=True)
    shutil.copy(textwrap_py, d / "path" / "to" / "real_file.py")
    (d / "home" / "src" / "myproject").mkdir(parents=True)
    for name in ("textwrap.py", "shlex.py"):
        shutil.copy(os.path.join(sysconfig.get_paths()["stdlib"], name), d / "home" / "src" / "myproject" / name)
    # a project is a git repository: `fill` copies the git root above FILE (else only FILE's folder)
    subprocess.run(["git", "init", "-q", str(d)], check=True)
    return d


RUN = [c for c in COMMANDS if not any(k in c for k in NOT_RUN)]


@pytest.mark.slow
@pytest.mark.parametrize("command", RUN, ids=lambda c: c.split("  #")[0].strip())
def test_readme_command_runs(command, scratch):
    args = small(split(command))
    # ~/src/myproject is the scratch project; the venv's bin on PATH, as for a user who installed codefill there
    env = dict(os.environ, HOME=str(scratch / "home"),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    args = [str(scratch / "home") + a[1:] if a.startswith("~/") else a for a in args]
    proc = subprocess.run([CODEFILL, *args], cwd=scratch, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (f"README: `{command}` (run as `codefill {shlex.join(args)}`) exited "
                                  f"{proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]


def test_what_is_not_run_is_what_cannot_run_here():
    skipped = [c for c in COMMANDS if c not in RUN]
    assert all(any(k in c for k in NOT_RUN) for c in skipped)
    # what every new user runs first is among those run
    for must in ("codefill complete examples/", "codefill eval humaneval --limit 100 --samples 10", "codefill models",
                 "codefill --version", "codefill fill "):
        assert any(c.startswith(must) for c in RUN), must
