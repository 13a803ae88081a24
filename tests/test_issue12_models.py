"""Issue 12 #9: `models --set-default` writes a top-level key (not into the last [table]), through a symlinked
config; `pull` refuses '..'/absolute file names cleanly; offline lookups see files in repo subfolders; the offline
error message is reachable."""

import hashlib
import os
import subprocess
import sys
import tomllib

import pytest

from codefill.engine.models import write_config_value

from tinymodels import make_tiny_vocab


def run(*args, env=None):
    e = dict(os.environ, CODEFILL_NO_PROGRESS="1")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "codefill", *args], capture_output=True, text=True, timeout=120, env=e)


CONFIG = '# my settings\nthreads = 2\n\n[lsp]\nmodel = "lsp-only.gguf"\ndebounce_ms = 50\n\n[eval]\nlimit = 3\n'


def test_set_default_is_top_level_not_inside_the_last_table(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text(CONFIG)
    write_config_value("model", "/models/a.gguf", str(cfg))
    data = tomllib.loads(cfg.read_text())
    assert data["model"] == "/models/a.gguf"
    assert data["eval"] == {"limit": 3} and data["lsp"]["model"] == "lsp-only.gguf" and data["threads"] == 2
    write_config_value("model", "/models/b.gguf", str(cfg))  # replaces the top-level one only
    text = cfg.read_text()
    data = tomllib.loads(text)
    assert data["model"] == "/models/b.gguf" and data["lsp"]["model"] == "lsp-only.gguf"
    assert text.count("a.gguf") == 0 and text.startswith("# my settings\n")


def test_set_default_via_cli_takes_effect(tmp_path):
    cfgdir = tmp_path / "cfg"
    cfgdir.mkdir()
    (cfgdir / "config.toml").write_text(CONFIG)
    model = make_tiny_vocab("qwen", str(tmp_path)).path
    proc = run("models", "--set-default", model, env={"CODEFILL_CONFIG_DIR": str(cfgdir)})
    assert proc.returncode == 0, proc.stderr
    assert tomllib.loads((cfgdir / "config.toml").read_text())["model"] == model


def test_set_default_writes_through_a_symlinked_config(tmp_path):
    real = tmp_path / "dotfiles" / "codefill.toml"
    real.parent.mkdir()
    real.write_text(CONFIG)
    link = tmp_path / "config.toml"
    link.symlink_to(real)
    write_config_value("model", "x.gguf", str(link))
    assert link.is_symlink() and tomllib.loads(real.read_text())["model"] == "x.gguf"
    assert sorted(os.listdir(real.parent)) == ["codefill.toml"]


def test_set_default_refuses_a_broken_config(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text("[lsp\nnot toml")
    from codefill.engine.errors import ConfigError

    with pytest.raises(ConfigError):
        write_config_value("model", "x.gguf", str(cfg))
    assert cfg.read_text() == "[lsp\nnot toml"


@pytest.mark.parametrize("name", ["../../evil.gguf", "sub/../../evil.gguf", "/etc/evil.gguf", "..\\evil.gguf"])
def test_pull_refuses_names_outside_the_repository(tmp_path, name):
    proc = run("pull", "someone/tiny-GGUF", "--file", name, env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 11, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "evil.gguf").exists()


def test_pull_refuses_a_bad_repo_id(tmp_path):
    proc = run("pull", "../repo", "--file", "x.gguf", env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 11 and "Traceback" not in proc.stderr


def test_offline_missing_file_says_offline(tmp_path):
    proc = run("pull", "someone/tiny-GGUF", "--file", "tiny-q4.gguf",
               env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 11 and "offline" in proc.stderr, proc.stderr


def _fake_hf_cache(hf_home, repo, filename, source):
    repo_dir = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    rev = hashlib.sha1(repo.encode()).hexdigest()
    blob = repo_dir / "blobs" / hashlib.sha256(filename.encode()).hexdigest()
    blob.parent.mkdir(parents=True)
    blob.write_bytes(open(source, "rb").read())
    target = repo_dir / "snapshots" / rev / filename
    target.parent.mkdir(parents=True)
    target.symlink_to(os.path.relpath(blob, target.parent))
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text(rev)
    return target


def test_offline_lookup_finds_files_in_repo_subfolders(tmp_path):
    hf = tmp_path / "hf"
    src = make_tiny_vocab("qwen", str(tmp_path)).path
    cached = _fake_hf_cache(hf, "someone/tiny-GGUF", "sub/dir/tiny-q4.gguf", src)
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(hf)}
    listed = run("models", env=env)
    assert "someone/tiny-GGUF/sub/dir/tiny-q4.gguf" in listed.stdout, listed.stdout + listed.stderr
    proc = run("pull", "someone/tiny-GGUF", "--file", "sub/dir/*.gguf", env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == str(cached), proc.stderr
    cfg = tmp_path / "cfg"
    proc = run("models", "--set-default", "someone/tiny-GGUF/sub/dir/tiny-q4.gguf",
               env={**env, "CODEFILL_CONFIG_DIR": str(cfg)})
    assert proc.returncode == 0, proc.stderr
