"""The CLI as a user runs it: a subprocess, one-line errors, distinct exit codes."""

import json
import os
import subprocess
import sys

import pytest

from codefill.engine import CompletionRequest


def run(*args, env=None):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "codefill", *args], capture_output=True, text=True, timeout=120, env=e
    )


@pytest.fixture
def source(tmp_path):
    p = tmp_path / "geometry.py"
    p.write_text("import math\n\n\ndef circle_area(radius):\n    return \n", encoding="utf-8")
    return p


def test_complete_json_agrees_with_the_engine(source, engine):
    proc = run("complete", f"{source}:5:12", "--json", "--time-budget", "0")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert set(out) >= {"text", "range", "stop_reason", "timings", "logprob_mean", "model"}
    assert out["range"]["start"] == {"line": 4, "character": 11}
    assert out["timings"]["prompt_tokens"] > 0
    direct = engine.complete(
        CompletionRequest(text=source.read_text(), line=4, character=11, path=str(source), time_budget_ms=None,
                          use_cache=False)
    )
    assert out["text"] == direct.text


def test_prefix_tokens_bound_the_prompt_and_confidence_is_printed(tmp_path):
    long = tmp_path / "long.py"
    long.write_text("".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(200)) + "def g(x):\n    return \n",
                    encoding="utf-8")
    line = 802  # "    return " of g, 1-based
    small = json.loads(run("complete", f"{long}:{line}:12", "--json", "--time-budget", "0", "--max-tokens", "4",
                           "--prefix-tokens", "64").stdout)
    big = json.loads(run("complete", f"{long}:{line}:12", "--json", "--time-budget", "0", "--max-tokens", "4").stdout)
    assert 0 < small["timings"]["prompt_tokens"] <= 64 + 2 < big["timings"]["prompt_tokens"]
    assert 0.0 <= small["confidence"] <= 1.0 and 0.0 <= big["confidence"] <= 1.0
    assert run("complete", f"{long}:{line}:12", "--prefix-tokens", "8").returncode == 2


def test_complete_plain_prints_the_text(source):
    proc = run("complete", f"{source}:5:12", "--time-budget", "0")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    assert proc.stderr == ""


def test_column_defaults_to_end_of_line(source):
    a = run("complete", f"{source}:5", "--json", "--time-budget", "0")
    assert a.returncode == 0, a.stderr
    assert json.loads(a.stdout)["range"]["start"] == {"line": 4, "character": 11}


@pytest.mark.parametrize(
    "make,args,code,message",
    [
        (None, ["{d}/missing.py:1:1"], 7, "file not found"),
        ("empty", ["{d}/empty.py:1:1"], 9, "empty"),
        ("binary", ["{d}/blob.bin:1:1"], 8, "binary"),
        ("latin1", ["{d}/latin1.py:1:1"], 8, "not UTF-8"),
        ("good", ["{d}/good.py:9:1"], 10, "line 9"),
        ("good", ["{d}/good.py:1:40"], 10, "column 40"),
        ("good", ["{d}/good.py:1:1", "--model", "{d}/nope.gguf"], 3, "model not found"),
        ("good", ["{d}/good.py:1:1", "--model", "{d}/good.py"], 5, "not a GGUF"),
        ("good", ["{d}/good.py:1:1", "--model", "{d}"], 4, "directory"),
        ("good", ["{d}/good.py:0:1"], 10, "1-based"),
    ],
)
def test_bad_input_gets_one_line_and_its_exit_code(tmp_path, make, args, code, message):
    d = str(tmp_path)
    files = {
        "empty": ("empty.py", b""),
        "binary": ("blob.bin", b"\x7fELF\x02\x01\x01\x00\x00\x00"),
        "latin1": ("latin1.py", "s = 'caf\xe9'\n".encode("latin-1")),
        "good": ("good.py", b"x = 1\n"),
    }
    if make:
        name, data = files[make]
        (tmp_path / name).write_bytes(data)
    proc = run("complete", *[a.format(d=d) for a in args])
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in proc.stderr


def test_every_failure_class_has_its_documented_exit_code():
    from codefill.cli.common import exit_code
    from codefill.engine import errors as E
    from codefill.quantize import errors as Q

    documented = {  # README: the engine's 3-13, the quantizer's 20-25, 1 for the base classes
        E.CodefillError: 1, E.ModelNotFoundError: 3, E.ModelUnreadableError: 4, E.ModelFormatError: 5,
        E.ModelLoadError: 6, E.InputFileError: 7, E.BinaryFileError: 8, E.EmptyFileError: 9, E.PositionError: 10,
        E.DownloadError: 11, E.ConfigError: 12, E.DocumentTooLargeError: 13, Q.QuantizeError: 20,
        Q.UnsupportedArchitectureError: 21, Q.MissingFilesError: 22, Q.DiskSpaceError: 23, Q.CalibrationError: 24,
        Q.TargetSizeError: 25,
    }
    classes = {c for m in (E, Q) for c in vars(m).values() if isinstance(c, type) and issubclass(c, E.CodefillError)}
    assert classes == set(documented)
    assert {c: exit_code(c("x")) for c in classes} == documented

    class Narrower(Q.TargetSizeError):  # a subclass without its own entry exits like its parent
        pass

    assert exit_code(Narrower("x")) == 25


def test_corrupt_gguf_is_a_clean_error(tmp_path):
    from codefill.engine.models import embedded_model_path

    (tmp_path / "a.py").write_text("x = 1\n")
    bad = tmp_path / "cut.gguf"
    with open(embedded_model_path(), "rb") as fh:
        bad.write_bytes(fh.read(1 << 20))
    proc = run("complete", f"{tmp_path}/a.py:1:1", "--model", str(bad))
    assert proc.returncode in (5, 6), proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("codefill: error:")


def test_models_lists_the_embedded_default():
    proc = run("models")
    assert proc.returncode == 0, proc.stderr
    assert "embedded" in proc.stdout and "SmolLM2-135M-Instruct.Q4_1.gguf" in proc.stdout
    assert proc.stdout.lstrip().startswith("*")  # the default is marked


def test_models_set_default_writes_the_config(tmp_path):
    from codefill.engine.models import embedded_model_path

    cfg = tmp_path / "cfg"
    proc = run("models", "--set-default", embedded_model_path(), env={"CODEFILL_CONFIG_DIR": str(cfg)})
    assert proc.returncode == 0, proc.stderr
    assert embedded_model_path() in (cfg / "config.toml").read_text()


def test_pull_offline_without_cache_is_a_clean_error(tmp_path):
    proc = run("pull", "Qwen/Qwen2.5-Coder-0.5B-Instruct-GGUF", "--file", "*q8_0.gguf",
               env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 11
    assert "Traceback" not in proc.stderr and proc.stderr.startswith("codefill: error:")


def test_usage_errors_are_not_tracebacks():
    proc = run("no-such-command")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = run("complete", "file-without-position")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_help_lists_the_commands():
    proc = run("--help")
    assert proc.returncode == 0
    for cmd in ("complete", "models", "pull"):
        assert cmd in proc.stdout


def _fake_hf_cache(hf_home, repo, filename, source):
    """A Hugging Face cache entry laid out as huggingface-hub writes it (blob + snapshot link + ref)."""
    import hashlib

    repo_dir = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    rev = hashlib.sha1(repo.encode()).hexdigest()
    blob = repo_dir / "blobs" / hashlib.sha256(filename.encode()).hexdigest()
    blob.parent.mkdir(parents=True)
    os.link(source, blob) if os.stat(source).st_dev == os.stat(blob.parent).st_dev else blob.write_bytes(open(source, "rb").read())
    snap = repo_dir / "snapshots" / rev
    snap.mkdir(parents=True)
    (snap / filename).symlink_to(os.path.relpath(blob, snap))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(rev)
    return snap / filename


def test_pull_offline_from_cache_and_complete_with_it(tmp_path, source):
    from codefill.engine.models import embedded_model_path

    hf = tmp_path / "hf"
    cached = _fake_hf_cache(hf, "someone/tiny-GGUF", "tiny-q4_1.gguf", embedded_model_path())
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(hf)}
    proc = run("pull", "someone/tiny-GGUF", "--file", "tiny-q4_1.gguf", env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(cached)
    proc = run("pull", "someone/tiny-GGUF", "--file", "*.gguf", env=env)
    assert proc.returncode == 0, proc.stderr
    listed = run("models", env=env)
    assert "someone/tiny-GGUF/tiny-q4_1.gguf" in listed.stdout
    out = run("complete", f"{source}:5:12", "--json", "--time-budget", "0", "--model",
              "someone/tiny-GGUF/tiny-q4_1.gguf", env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["model"] == "tiny-q4_1.gguf"


@pytest.mark.parametrize("flag", [("--max-tokens", "4097"), ("--threads", "257"), ("--ctx", "131073"),
                                  ("--samples", "65"), ("--max-tokens", "0")])
def test_sizes_past_their_bounds_are_usage_errors(source, flag):
    proc = run("complete", f"{source}:5:12", *flag)
    assert proc.returncode == 2 and flag[0] in proc.stderr


def test_version_names_codefill_and_its_binding():
    from codefill import __version__

    proc = run("--version")
    assert proc.returncode == 0
    assert proc.stdout.startswith(f"codefill {__version__} (llama-cpp-python ") and "Python 3." in proc.stdout


@pytest.mark.slow
def test_eval_with_one_sample_count_is_pass_at_k(tmp_path):
    """README: `codefill eval humaneval --limit 100 --samples 10` — one K means K samples per task, not a coverage
    study (it used to fail with 'a list of sample counts needs --coverage')."""
    proc = run("eval", "humaneval", "--limit", "2", "--samples", "2", "--max-tokens", "8", "--threads", "1",
               "--out", str(tmp_path / "out"), "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert {"pass@1", "pass@2"} <= set(summary.get("summary", summary)), proc.stdout[:400]
    assert run("eval", "humaneval", "--limit", "2", "--samples", "1,2").returncode == 2  # a list needs --coverage


def test_ctrl_c_exits_130(tmp_path):
    """Click returns 130 for Ctrl-C instead of raising when it does not exit itself; the CLI used to drop it and
    exit 0. A real SIGINT while a long command runs (an evaluation of 300 tasks)."""
    import signal
    import time

    proc = subprocess.Popen([sys.executable, "-m", "codefill", "eval", "humaneval", "--limit", "300", "--threads", "1",
                             "--out", str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True,
                            # as from a terminal: a shell that starts CI in the background (`cmd &`) hands its
                            # children SIGINT ignored, and Python then keeps it ignored (the run goes on to the end)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    time.sleep(6)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err
