"""Fixtures of the language-server tests."""

import os

import pytest
from lsp_helpers import RawClient


@pytest.fixture
def raw(tmp_path):
    env = dict(os.environ, CODEFILL_CONFIG_DIR=str(tmp_path / "config"), CODEFILL_CACHE_DIR=str(tmp_path / "cache"),
               HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    env.pop("CODEFILL_MODEL", None)
    c = RawClient(env)
    yield c
    c.close()
