"""`codefill quantize` end to end on a tiny model: files, report, resumption, and bad input."""

from __future__ import annotations

import json
import os

import pytest
import typer
from typer.testing import CliRunner

from codefill.cli.quantize_cmd import register
from codefill.engine.errors import DownloadError, ModelNotFoundError
from codefill.quantize.errors import ConfigError
from codefill.quantize.pipeline import parse_size


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.command("noop")
    def _noop() -> None:  # a second command keeps typer from collapsing the app into `quantize`
        pass

    return app


def test_quantize_command_end_to_end(tiny_hf, tmp_path):
    src = tiny_hf("llama", seed=11)
    out = tmp_path / "out"
    from codefill.quantize.convert import convert

    f16_size = os.path.getsize(convert(src, str(tmp_path / "probe.gguf")))
    target = int(f16_size * 0.45)
    args = ["quantize", src, "--out", str(out), "--types", "Q8_0,Q4_0", "--target-size", str(target),
            "--eval-chunks", "1", "--eval-lines", "2", "--imatrix-chunks", "2", "--threads", "1"]
    res = CliRunner().invoke(_app(), args)
    assert res.exit_code == 0, (res.output, res.exception)
    name = os.path.basename(src)
    files = sorted(os.listdir(out))
    for f in (f"{name}-F16.gguf", f"{name}-Q8_0.gguf", f"{name}-Q4_0.gguf", "imatrix.gguf", "sensitivity.json",
              "report.json", "REPORT.md", "quality-vs-size.png"):
        assert f in files, files
    assert not [f for f in files if f.endswith(".part")]
    mixed = [f for f in files if "mixed" in f]
    assert len(mixed) == 1 and os.path.getsize(out / mixed[0]) <= target
    report = json.loads((out / "report.json").read_text())
    labels = {r["label"] for r in report["results"]}
    assert {"Q8_0", "Q4_0"} <= labels and any(lab.startswith("mixed") for lab in labels)
    for r in report["results"]:
        assert r["mean_kld"] is not None and r["mean_kld"] >= 0 and r["size_bytes"] > 0
        assert 0 <= r["same_top_token"] <= 1 and r["perplexity"] > 1 and r["lines"] == 2
    by = {r["label"]: r for r in report["results"]}
    assert by["Q8_0"]["mean_kld"] < by["Q4_0"]["mean_kld"]
    assert (out / "quality-vs-size.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| Q4_0 |" in (out / "REPORT.md").read_text()

    # a second run finds every stage's output and rewrites none of the model files
    stamps = {f: os.stat(out / f).st_mtime_ns for f in os.listdir(out) if f.endswith((".gguf", ".json"))
              and f != "report.json"}
    res = CliRunner().invoke(_app(), args + ["--no-eval"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert {f: os.stat(out / f).st_mtime_ns for f in stamps} == stamps


def test_missing_source_fails_before_any_work(tmp_path):
    res = CliRunner().invoke(_app(), ["quantize", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, ModelNotFoundError)


def test_repo_id_download_failure_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = CliRunner().invoke(_app(), ["quantize", "someone/some-coder-model", "--out", str(tmp_path / "o")])
    assert isinstance(res.exception, DownloadError)
    assert "someone/some-coder-model" in str(res.exception)
    assert not (tmp_path / "o" / "hf-model").exists()


def test_unknown_type_is_refused(tiny_hf, tmp_path):
    res = CliRunner().invoke(_app(), ["quantize", tiny_hf("qwen2"), "--out", str(tmp_path / "o"), "--types", "Q4_Z"])
    assert isinstance(res.exception, ConfigError)
    assert not (tmp_path / "o").exists() or os.listdir(tmp_path / "o") == []


@pytest.mark.parametrize("text,value", [("90MB", 90_000_000), ("100MiB", 104_857_600), ("105454144", 105_454_144),
                                        ("1.5GB", 1_500_000_000)])
def test_parse_size(text, value):
    assert parse_size(text) == value


def test_parse_size_rejects_nonsense():
    with pytest.raises(ConfigError):
        parse_size("ninety")


def test_gguf_source_is_quantized_without_conversion(tiny_gguf, tmp_path):
    src = tiny_gguf("starcoder2")
    out = tmp_path / "o"
    res = CliRunner().invoke(_app(), ["quantize", src, "--out", str(out), "--types", "Q8_0", "--no-eval",
                                      "--imatrix-chunks", "1", "--threads", "1"])
    assert res.exit_code == 0, (res.output, res.exception)
    assert sorted(os.listdir(out)) == ["imatrix.gguf", "tiny-starcoder2-Q8_0.gguf"]
    from codefill.quantize.gguf_io import field_value, open_reader

    r = open_reader(str(out / "tiny-starcoder2-Q8_0.gguf"))
    assert field_value(r, "general.architecture") == "starcoder2"
    assert field_value(r, "general.file_type") == 7
    # the second step refuses the now-quantized file as a source, before any work
    res = CliRunner().invoke(_app(), ["quantize", str(out / "tiny-starcoder2-Q8_0.gguf"), "--out", str(tmp_path / "p")])
    assert "already quantized" in str(res.exception)
