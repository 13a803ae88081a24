"""Fixtures for the quantizer tests: tiny Hugging Face models per architecture, and the embedded model in HF form."""

from __future__ import annotations

import json

import pytest
from tinyhf import make_tiny_hf

@pytest.fixture(autouse=True)
def _no_amx_probe_per_file(monkeypatch):
    """On a CPU that advertises AMX, the engine probes each new model file in a child process (hardware.py). These
    tests make many short-lived files; answer the probe with the verdict this machine class gets (off)."""
    from codefill.engine.hardware import cpu_advertises_amx

    if cpu_advertises_amx():
        monkeypatch.setenv("CODEFILL_EXTRA_BUFTS", "off")


@pytest.fixture(scope="session")
def tiny_hf(tmp_path_factory):
    """arch → a converted-ready tiny HF directory (made once per session)."""
    base = tmp_path_factory.mktemp("tiny-hf")
    made: dict[str, str] = {}

    def get(arch: str, **kw) -> str:
        key = arch + json.dumps(kw, sort_keys=True)
        if key not in made:
            made[key] = make_tiny_hf(str(base / f"{arch}-{len(made)}"), arch, **kw)
        return made[key]

    return get


@pytest.fixture(scope="session")
def tiny_gguf(tiny_hf, tmp_path_factory):
    """arch → tiny model converted to an F16 GGUF."""
    from codefill.quantize.convert import convert

    base = tmp_path_factory.mktemp("tiny-gguf")
    made: dict[str, str] = {}

    def get(arch: str) -> str:
        if arch not in made:
            made[arch] = convert(tiny_hf(arch), str(base / f"tiny-{arch}-F16.gguf"))
        return made[arch]

    return get


@pytest.fixture(scope="session")
def smol_hf(tmp_path_factory):
    """The embedded SmolLM2 model as a Hugging Face directory (dequantized weights as F16 safetensors)."""
    from codefill.engine.models import embedded_model_path
    from codefill.quantize.hfexport import export_llama

    return export_llama(embedded_model_path(), str(tmp_path_factory.mktemp("smol-hf")))
